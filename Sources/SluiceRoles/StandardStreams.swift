import Foundation

/// Writes to standard error for logs and summaries. FileHandle.write traps when the write fails,
/// so `sluice run … 2>&1 | head` killed the process (SIGILL) once head had exited and the pipe
/// was closed. A line that cannot be written is dropped: with nobody reading, there is nobody
/// to tell, and the run itself goes on.
public func writeStandardError(_ text: String) {
    let bytes = Array(text.utf8)
    var done = 0
    while done < bytes.count {
        let written = bytes.withUnsafeBytes { raw in
            Foundation.write(STDERR_FILENO, raw.baseAddress.map { $0 + done }, raw.count - done)
        }
        if written < 0 {
            if errno == EINTR { continue }
            return
        }
        done += written
    }
}
