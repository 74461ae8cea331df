import CProcess
import Foundation
import Logging
import SluiceProtocol
import SluiceTransport
import Synchronization

/// Wall-clock nanoseconds (CLOCK_REALTIME): comparable across processes, for batch timestamps.
public func wallNanos() -> UInt64 {
    var spec = timespec()
    clock_gettime(CLOCK_REALTIME, &spec)
    return UInt64(spec.tv_sec) * 1_000_000_000 + UInt64(spec.tv_nsec)
}

/// Monotonic seconds, for durations.
public func monotonicSeconds() -> Double {
    var spec = timespec()
    clock_gettime(CLOCK_MONOTONIC, &spec)
    return Double(spec.tv_sec) + Double(spec.tv_nsec) / 1e9
}

/// This process's resident memory, from /proc/self/statm (0 where that is unavailable).
public func residentBytes() -> Int {
    guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
    let fields = text.split(separator: " ")
    guard fields.count > 1, let pages = Int(fields[1]) else { return 0 }
    return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
}

/// Counts SIGINT/SIGTERM deliveries; loops poll it between waits of at most ~50 ms.
public enum StopSignal {
    /// Bumped from the signal handler, which may interrupt a read of it on the same thread or
    /// run beside one on another: a lock-free atomic is all a handler may touch (a plain static
    /// var goes through Swift's exclusivity checks and lazy initialization, neither safe there).
    static let count = Atomic<Int32>(0)

    public static var received: Int32 { count.load(ordering: .acquiring) }

    /// Installs the handlers. Managed roles (started by `sluice run`) ignore SIGINT: a terminal's
    /// Ctrl-C reaches the whole process group, and the launcher drains the pipeline in order
    /// instead. They also end with their launcher, so no process is ever left behind.
    public static func install(managed: Bool) {
        // Initialize the atomic now, so the handler never runs its lazy initializer.
        _ = count.load(ordering: .relaxed)
        let handler: @convention(c) (Int32) -> Void = { _ in StopSignal.count.wrappingAdd(1, ordering: .releasing) }
        // A parent may have started us with these blocked (the mask survives exec).
        var unblock = sigset_t()
        sigemptyset(&unblock)
        sigaddset(&unblock, SIGINT)
        sigaddset(&unblock, SIGTERM)
        pthread_sigmask(SIG_UNBLOCK, &unblock, nil)
        signal(SIGTERM, handler)
        if managed {
            signal(SIGINT, SIG_IGN)
            _ = sluice_terminate_with_parent()
            if getppid() == 1 { exit(1) }  // the launcher died before we could ask to follow it
        } else {
            signal(SIGINT, handler)
        }
        signal(SIGPIPE, SIG_IGN)
    }
}

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

/// A role's DEALER socket to the controller, named after the role so the controller's ROUTER
/// can address it.
final class ControlChannel {
    let socket: ZMQSocket
    let name: String
    private(set) var lastHeard = monotonicSeconds()

    init(context: ZMQContext, endpoint: String, name: String) throws {
        self.name = name
        // Linger long enough that a last "failed" or "sink_done" still leaves when the role exits.
        socket = try ZMQSocket(context, .dealer, lingerMilliseconds: 2000, sendHighWaterMark: 1000,
                               receiveHighWaterMark: 1000, identity: name)
        try socket.connect(endpoint)
    }

    func send(_ message: ControlMessage) {
        do {
            // Never block on the controller: a role whose controller is gone must still notice and exit.
            if try !socket.send([.bytes(message.encoded())], dontWait: true) {
                writeStandardError("\(name): the controller is not taking messages; dropped a \(message.type)\n")
            }
        } catch {
            writeStandardError("\(name): cannot reach the controller: \(error)\n")
        }
    }

    /// Next control message if one is waiting; malformed frames are logged and skipped.
    func receive(logger: Logger) -> ControlMessage? {
        while let frames = try? socket.receive(dontWait: true) {
            lastHeard = monotonicSeconds()
            guard let frame = frames.last else { continue }
            do {
                return try frame.withBytes { try ControlMessage.decode($0) }
            } catch {
                logger.warning("dropped a control frame: \(error)")
            }
        }
        return nil
    }

    func controllerSilent(for timeout: Double) -> Bool { monotonicSeconds() - lastHeard > timeout }
}

/// A worker process of a pipeline (stage, source, sink): it says hello to the controller,
/// takes its assignment from it and runs until told to shut down.
public protocol PipelineRole {
    init(name: String, controller endpoint: String) throws
    /// The process exit status: 0 after shutdown, 1 on a fatal error.
    func run() -> Int32
}

/// Starts another process of this same executable (a role of the pipeline) with `arguments`.
func startSluiceProcess(_ arguments: [String]) throws -> Process {
    let process = Process()
    let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    try process.run()
    return process
}

/// A replica joined the next hop: `push` spreads batches over it too from now on.
func connect(_ push: ZMQSocket?, toReplica endpoint: String, logger: Logger) {
    do {
        try push?.connect(endpoint)
        logger.info("sending to \(endpoint) too (a new replica of the next stage)")
    } catch {
        logger.error("cannot connect to the new replica at \(endpoint): \(error)")
    }
}
