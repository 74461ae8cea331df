import Foundation
import SluiceConfig
import SluiceProtocol
import SluiceTensor
import SluiceWire

/// Writes predictions in the order given, as they are released: JSON lines (one per window) or
/// rows of one .npy file. Nothing waits for the end of the run: JSON lines leave within
/// `sink.max_delay_ms` of their batch's release, .npy rows go to the file as each batch comes,
/// so memory stays flat. The output path is opened with open(2), never replaced (see
/// `OutputFile`).
final class PredictionWriter {
    private let config: SinkConfig
    private let classes: [String]
    /// The model's class labels as text, where label values are to be found among them.
    private let modelLabels: [String]?
    private let lines: OutputFile?
    private let rows: NPYRowWriter?
    /// A zmq sink: hands a message of JSON lines to consumers; false when it could not.
    private let deliver: (([UInt8]) -> Bool)?
    private var buffer = ""
    /// When the oldest line in `buffer` was added (monotonic seconds); nil when it is empty.
    private var pendingSince: Double?
    private var finished = false
    /// The first write that failed: later writes are skipped and `flushIfDue`/`finish` throw it.
    private var failure: Error?
    private let maxDelaySeconds: Double
    /// Flush before the buffer grows past this, whatever the delay.
    private static let bufferLimit = 64 << 10

    /// For a sink that takes over from a dead one: the windows its output holds (nil where that
    /// cannot be read back: standard output, a pipe, a device).
    let windowsHeld: UInt64?

    /// `resuming`: a sink started in place of a dead one keeps what the output holds, cutting
    /// off a partly written last line or row, and writes after it.
    /// `deliver`: for a zmq sink, sends one message to its consumers.
    init(config: SinkConfig, classes: [String], modelLabels: [String]? = nil, resuming: Bool = false, deliver: (([UInt8]) -> Bool)? = nil) throws {
        self.config = config
        self.classes = classes
        self.modelLabels = modelLabels
        self.deliver = deliver
        maxDelaySeconds = max(0, config.maxDelayMilliseconds) / 1000
        switch config.kind {
        case .zmq:
            guard deliver != nil else { throw OutputFileError(path: config.network?.endpoint ?? "", reason: "a zmq sink needs its socket") }
            lines = nil
            rows = nil
            // What consumers took cannot be read back: a sink started in place of a dead one
            // may send windows again, which they drop by window_seq.
            windowsHeld = nil
        case .jsonl:
            var info = stat()
            if config.path != "-", stat(config.path, &info) == 0, (info.st_mode & S_IFMT) == S_IFIFO {
                makeLogger("sink").info("waiting for a reader to open the named pipe \(config.path)")
            }
            let file = try OutputFile(path: config.path, keepingContents: resuming)
            lines = file
            rows = nil
            windowsHeld = resuming && file.isRegularFile ? try Self.takeUpLines(file) : nil
        case .npy:
            lines = nil
            let writer = try NPYRowWriter(path: config.path, resuming: resuming)
            rows = writer
            windowsHeld = resuming ? UInt64(writer.rows) : nil
        }
    }

    /// The windows a JSON-lines file holds: one past the `window_seq` of its last whole line
    /// (windows are numbered from 0 and written in order, each once). A partly written last
    /// line is cut off. Only the file's end is read: an output may be days long.
    private static func takeUpLines(_ file: OutputFile) throws -> UInt64 {
        guard let length = file.length(), length > 0 else { return 0 }
        let longestLine = 1 << 24
        var chunk = 1 << 16
        while true {
            let start = max(0, length - chunk)
            let tail = try file.read(at: start, count: length - start)
            let newline = UInt8(ascii: "\n")
            let lastEnd = tail.lastIndex(of: newline)
            let lineStart = lastEnd.flatMap { end in tail[..<end].lastIndex(of: newline).map { $0 + 1 } } ?? 0
            // The last whole line must start inside what was read: read further back if not.
            if start > 0, lastEnd == nil || lineStart == 0 {
                guard chunk < longestLine else { break }
                chunk *= 4
                continue
            }
            guard let lastEnd else {
                // No whole line at all: what the dead sink began is cut.
                try file.truncate(to: 0)
                return 0
            }
            let line = tail[lineStart..<lastEnd]
            guard let object = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any],
                  let sequence = (object["window_seq"] as? NSNumber).flatMap({ UInt64(exactly: $0.doubleValue) }), sequence < UInt64.max else {
                throw OutputFileError(path: file.path, reason: "its last line (at byte \(start + lineStart)) is not a prediction with a window_seq, so the stream cannot be taken up after it")
            }
            if start + lastEnd + 1 < length { try file.truncate(to: start + lastEnd + 1) }
            return sequence + 1
        }
        throw OutputFileError(path: file.path, reason: "its last line is over \(longestLine) bytes long: not a prediction Sluice wrote")
    }

    /// Each row's class from the model's label output: the label itself, renamed where the
    /// pipeline names the classes (`model.classes`) and the label is one of the model's.
    private func className(labels: Tensor, rows: Int) -> [String?] {
        let texts: [String]
        switch labels.dtype {
        case .string: texts = labels.strings
        case .int64, .int32, .int16, .int8, .uint8, .uint16, .uint32: texts = labels.int64Values.map(String.init)
        default: texts = labels.doubles.map { "\($0)" }
        }
        return (0..<rows).map { row in
            guard row < texts.count else { return nil }
            let text = texts[row]
            if let modelLabels, modelLabels != classes, let position = modelLabels.firstIndex(of: text), position < classes.count {
                return classes[position]
            }
            return text
        }
    }

    /// Whether everything written so far has left the process.
    var isFlushed: Bool { buffer.isEmpty }

    /// Writes one batch, except its first `alreadyOut` rows (the output holds them already);
    /// returns the predicted class name per window, for every row, where classes are known.
    /// A failed write is kept and thrown by the next `flushIfDue` or `finish`.
    func write(output: Tensor, label: Tensor? = nil, keys: [WindowKey], batch: UInt64, firstWindow: UInt64, alreadyOut: Int = 0) -> [String?] {
        let rowCount = output.rank >= 1 ? output.shape[0] : 0
        let width = output.elementCount / max(rowCount, 1)
        let values = output.doubles
        let predicted = label.map { className(labels: $0, rows: rowCount) } ?? (0..<rowCount).map { row -> String? in
            guard width == classes.count, width > 0 else { return nil }
            // A NaN compares false with everything, so an argmax over NaN scores would name the
            // first class: scores that are not all finite name none.
            guard (0..<width).allSatisfy({ values[row * width + $0].isFinite }) else { return nil }
            var best = 0
            for column in 1..<width where values[row * width + column] > values[row * width + best] { best = column }
            return classes[best]
        }
        guard failure == nil, !finished else { return predicted }
        if let rows {
            do {
                if rowCount > alreadyOut { try rows.append(output, fromRow: alreadyOut) }
            } catch {
                failure = error
            }
            return predicted
        }
        for (row, key) in keys.enumerated() where row < rowCount && row >= alreadyOut {
            // Over the network, each prediction says its batch too: a consumer that reconnects
            // drops what it has by window_seq.
            var line = deliver == nil ? "{" : "{\"batch_seq\":\(batch),"
            line += "\"window_seq\":\(firstWindow &+ UInt64(row)),\"sensor\":\(JSONText.string(key.sensor)),\"window_start\":\(format(key.start))"
            if let name = predicted[row] { line += ",\"class\":\(JSONText.string(name))" }
            line += ",\"scores\":["
            for column in 0..<width {
                if column > 0 { line += "," }
                line += output.dtype == .float32 ? format(Float(values[row * width + column])) : format(values[row * width + column])
            }
            line += "]"
            if let label = key.label { line += ",\"label\":\(JSONText.string(label))" }
            line += "}\n"
            buffer += line
        }
        if pendingSince == nil, !buffer.isEmpty { pendingSince = monotonicSeconds() }
        if buffer.utf8.count >= Self.bufferLimit || maxDelaySeconds == 0 {
            flush()
        } else {
            try? flushIfDue()
        }
        return predicted
    }

    /// Seconds until the oldest buffered line is due (0: now); nil when nothing waits. The
    /// sink's loop waits no longer than this, so `max_delay_ms` holds while no batch arrives.
    var secondsUntilDue: Double? {
        guard let pendingSince else { return nil }
        return max(0, pendingSince + maxDelaySeconds - monotonicSeconds())
    }

    /// Writes the buffered lines once the oldest has waited `max_delay_ms`; throws the first
    /// write failure.
    func flushIfDue() throws {
        if let secondsUntilDue, secondsUntilDue <= 0 { flush() }
        if let failure { throw failure }
    }

    /// Writes the buffered lines now; throws the first write failure.
    func flushNow() throws {
        flush()
        if let failure { throw failure }
    }

    private func flush() {
        defer { pendingSince = nil }
        guard !buffer.isEmpty, failure == nil else { buffer = ""; return }
        if let deliver {
            if !deliver(Array(buffer.utf8)) { failure = OutputFileError(path: config.network?.endpoint ?? "", reason: "no consumer took the predictions before the sink was told to stop") }
        } else if let lines {
            do {
                try lines.write(Data(buffer.utf8))
            } catch {
                failure = error
            }
        }
        buffer = ""
    }

    /// Writes what is buffered (and the npy header's row count) and closes the output; later
    /// calls do nothing.
    func finish() throws {
        guard !finished else { return }
        flush()
        finished = true
        if let failure { throw failure }
        try rows?.finish()
        try lines?.close()
    }
}

/// Shortest text that reads back as the same number; JSON has no NaN or infinity.
private func format<Number: BinaryFloatingPoint & LosslessStringConvertible>(_ value: Number) -> String {
    value.isFinite ? "\(value)" : "null"
}
