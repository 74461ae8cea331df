import ArgumentParser
import Foundation
import SluiceConfig
import SluiceRoles

/// Reports and predictions never share a stream. Predictions go where the sink says (standard
/// output for `path: "-"`); a report (`run --report`, `profile`'s tables or JSON, its trace and
/// chart) goes to standard output only when the predictions do not, and never to the file the
/// predictions go to. A command asked to mix them refuses before anything runs and says how to
/// part them (`--predictions FILE` moves the predictions).
enum OutputStreams {
    /// Where `path` leads: a file's device and inode, or nil where it does not exist yet.
    private static func identity(_ path: String) -> (device: UInt64, inode: UInt64)? {
        var info = stat()
        let found = path == "-" ? fstat(STDOUT_FILENO, &info) : stat(path, &info)
        guard found == 0 else { return nil }
        return (UInt64(info.st_dev), UInt64(info.st_ino))
    }

    /// Output sent to a null device (/dev/null or another node of it) mixes with nothing.
    private static func isNullDevice(_ path: String) -> Bool {
        var target = stat()
        var null = stat()
        let found = path == "-" ? fstat(STDOUT_FILENO, &target) : stat(path, &target)
        guard found == 0, stat("/dev/null", &null) == 0, (null.st_mode & S_IFMT) == S_IFCHR else { return false }
        return (target.st_mode & S_IFMT) == S_IFCHR && target.st_rdev == null.st_rdev
    }

    /// True when writing to `a` and to `b` would land in one stream or file.
    static func shared(_ a: String, _ b: String) -> Bool {
        if a == "-" && b == "-" { return true }
        if isNullDevice(a) || isNullDevice(b) { return false }
        if let first = identity(a), let second = identity(b) { return first == second }
        func absolute(_ path: String) -> String {
            URL(fileURLWithPath: path).standardizedFileURL.resolvingSymlinksInPath().path
        }
        return a != "-" && b != "-" && absolute(a) == absolute(b)
    }

    /// Refuses `option`'s `path` where it would mix with the predictions (at `sink.path`)
    /// or, with `reportOnStandardOutput`, with the report on standard output.
    static func check(_ option: String, _ path: String, sink: SinkConfig, pipeline: String,
                      reportOnStandardOutput: Bool = false) throws {
        let predictions = sink.path
        if sink.kind != .zmq, shared(path, predictions) {
            let place = path == "-" || predictions == "-" ? "standard output" : "'\(predictions)'"
            throw refuse("\(option) \(path) would write into \(place), where the predictions of \(pipeline) go. "
                + "Send the predictions to \(sink.kind == .npy ? "another" : "a") file with --predictions FILE\(dropHint(sink)), or give \(option) another file.")
        }
        if reportOnStandardOutput, shared(path, "-") {
            throw refuse("\(option) \(path) would write into standard output, where the report goes: give it a file.")
        }
    }

    /// Refuses a command whose report goes to standard output while its sink writes there too.
    static func checkReportOnStandardOutput(command: String, sink: SinkConfig, pipeline: String) throws {
        guard sink.kind != .zmq, shared("-", sink.path) else { return }
        throw refuse("sluice \(command) prints its report on standard output, and the sink of \(pipeline) writes its "
            + "predictions there too. Send the predictions to a file: --predictions FILE\(dropHint(sink)).")
    }

    /// Only a jsonl sink can write to a device: an npy sink rewrites its header in place.
    private static func dropHint(_ sink: SinkConfig) -> String {
        sink.kind == .jsonl ? " (--predictions /dev/null drops them)" : ""
    }

    /// A usage error: said on standard error, exit status 64, before anything runs.
    private static func refuse(_ message: String) -> ExitCode {
        writeStandardError("sluice: error: \(message)\n")
        return ExitCode.validationFailure
    }
}
