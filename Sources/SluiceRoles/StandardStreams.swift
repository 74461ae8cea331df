import Foundation
import SluiceTensor

/// Writes to standard error for logs and summaries. FileHandle.write traps when the write fails,
/// so `sluice run … 2>&1 | head` killed the process (SIGILL) once head had exited and the pipe
/// was closed. A line that cannot be written is dropped: with nobody reading, there is nobody
/// to tell, and the run itself goes on.
public func writeStandardError(_ text: String) {
    let bytes = Array(text.utf8)
    bytes.withUnsafeBytes { raw in
        guard let base = raw.baseAddress else { return }
        _ = writeEveryByte(base, count: raw.count) { Foundation.write(STDERR_FILENO, $0, $1) }
    }
}
