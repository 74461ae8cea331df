import Foundation
import Logging

/// Logging to standard error, labelled by role; stdout is kept for predictions.
/// `SLUICE_LOG=debug` shows more.
public func makeLogger(_ label: String) -> Logger {
    var logger = Logger(label: label) { RoleLogHandler(label: $0) }
    logger.logLevel = ProcessInfo.processInfo.environment["SLUICE_LOG"].flatMap(Logger.Level.init(rawValue:)) ?? .info
    return logger
}

/// One short line per event: time, role, level (when not info), message.
struct RoleLogHandler: LogHandler {
    let label: String
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let level = event.level
        let message = event.message
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var parts = tm()
        var seconds = now.tv_sec
        localtime_r(&seconds, &parts)
        let time = String(format: "%02d:%02d:%02d.%03d", parts.tm_hour, parts.tm_min, parts.tm_sec, now.tv_nsec / 1_000_000)
        let tag = level == .info ? "" : " \(level.rawValue)"
        writeStandardError("\(time) \(label)\(tag): \(message)\n")
    }
}

public struct RoleError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
