import Foundation
import Logging
import SluiceConfig
import SluiceProtocol
import SluiceTensor
import SluiceTransport

/// What a feed has for the source now.
enum FeedStep {
    case windows([Window])
    /// Nothing before this (monotonic) time; nil: until its socket is readable.
    case wait(until: Double?)
    case end
}

/// Turns some input into windows for the micro-batcher.
protocol WindowFeed: AnyObject {
    /// A socket the source must poll for this feed (live inputs).
    var socket: ZMQSocket? { get }
    func next(now: Double) -> FeedStep
    /// Samples or messages the feed had to drop, counted.
    var rejected: Int { get }
}

/// Pacing: maps a position in the input (seconds of recording, or row index / rate) to the
/// moment it is due, or always "now" at max rate.
struct Pacer {
    let speed: Double?
    var origin: (input: Double, wall: Double)?

    init(_ rate: ReplayRate) {
        if case .realtime(let speed) = rate { self.speed = speed } else { speed = nil }
    }

    mutating func due(at inputTime: Double, now: Double) -> Double {
        guard let speed else { return now }
        if origin == nil { origin = (inputTime, now) }
        return origin!.wall + (inputTime - origin!.input) / speed
    }
}

/// Replays a recording file through per-sensor sliding windows.
final class RecordingFeed: WindowFeed {
    let socket: ZMQSocket? = nil
    let rejected = 0
    private let recording: Recording
    private var windows: SlidingWindows
    private var pacer: Pacer
    private var index = 0
    private var pass = 0
    private let passes: Int
    /// Each pass is shifted by the recording's span plus one sample period.
    private let passLength: Double

    init(recording: Recording, window: WindowConfig, rate: ReplayRate, repeats: Int = 1) {
        self.recording = recording
        windows = SlidingWindows(channels: recording.channelNames.count, config: window)
        pacer = Pacer(rate)
        passes = repeats
        let span = (recording.times.max() ?? 0) - (recording.times.min() ?? 0)
        let step = recording.times.count > 1 ? zip(recording.times, recording.times.dropFirst()).map { $1 - $0 }.filter { $0 > 0 }.min() ?? 1 : 1
        passLength = span + step
    }

    var sampleShape: [Int] { windows.sampleShape }

    func next(now: Double) -> FeedStep {
        var out: [Window] = []
        let channels = recording.channelNames.count
        // A bounded slice per step keeps the control socket served during fast replays.
        while out.count < 256 {
            if index == recording.count {
                pass += 1
                index = 0
            }
            guard pass < passes, recording.count > 0 else { return out.isEmpty ? .end : .windows(out) }
            let time = recording.times[index] + Double(pass) * passLength
            let due = pacer.due(at: time, now: now)
            if due > now { return out.isEmpty ? .wait(until: due) : .windows(out) }
            let window = recording.samples.withUnsafeBufferPointer { all in
                windows.append(sensor: recording.sensors[index], time: time,
                               values: UnsafeBufferPointer(rebasing: all[(index * channels)..<((index + 1) * channels)]),
                               label: recording.labels[index])
            }
            if let window { out.append(window) }
            index += 1
        }
        return .windows(out)
    }
}

/// Ready model inputs from an .npy file, one row per window.
final class TensorsFeed: WindowFeed {
    let socket: ZMQSocket? = nil
    let rejected = 0
    private let rows: Tensor
    private let rowLength: Int
    private var pacer: Pacer
    private let rowsPerSecond: Double
    private let totalRows: Int
    private var index = 0

    init(config: TensorsSource) throws {
        rows = try NPY.read(path: config.path)
        guard rows.dtype == .float32, rows.rank >= 2, rows.shape[0] > 0 else {
            throw RoleError("\(config.path): a tensors source needs at least one float32 row [rows, …], not \(rows.dtype)\(rows.shape)")
        }
        rowLength = rows.elementCount / rows.shape[0]
        pacer = Pacer(config.rate)
        rowsPerSecond = config.rowsPerSecond ?? 1
        totalRows = rows.shape[0] * config.repeats
    }

    var sampleShape: [Int] { Array(rows.shape.dropFirst()) }

    func next(now: Double) -> FeedStep {
        guard index < totalRows else { return .end }
        var out: [Window] = []
        while index < totalRows, out.count < 256 {
            let due = pacer.due(at: Double(index) / rowsPerSecond, now: now)
            if due > now { return out.isEmpty ? .wait(until: due) : .windows(out) }
            let row = index % rows.shape[0]
            let values = rows.withUnsafeBufferPointer(as: Float.self) { Array($0[(row * rowLength)..<((row + 1) * rowLength)]) }
            out.append(Window(key: WindowKey(sensor: "row", start: Double(row)), values: values))
            index += 1
        }
        return .windows(out)
    }
}

/// Live sensors pushing sample chunks (docs/protocol.md) to an endpoint this source binds.
final class ZMQSensorFeed: WindowFeed {
    let socket: ZMQSocket?
    private(set) var rejected = 0
    private var windows: SlidingWindows
    private let config: ZMQSource
    /// Set when the source starts streaming, so preparation time never counts as idle.
    private var lastMessage: Double?
    private var ended = false
    private let logger: Logger

    init(context: ZMQContext, config: ZMQSource, window: WindowConfig, logger: Logger) throws {
        self.config = config
        self.logger = logger
        windows = SlidingWindows(channels: config.channels, config: window)
        let pull = try ZMQSocket(context, .pull, lingerMilliseconds: 0, sendHighWaterMark: 100, receiveHighWaterMark: 1000)
        try pull.bind(config.endpoint)
        socket = pull
    }

    var sampleShape: [Int] { windows.sampleShape }

    func next(now: Double) -> FeedStep {
        if ended { return .end }
        var out: [Window] = []
        var messages = 0
        while messages < 64, let frames = try? socket?.receive(dontWait: true) {
            messages += 1
            lastMessage = now
            do {
                let payloadBytes = frames.count > 1 ? frames[1].count : nil
                let header = try frames[0].withBytes {
                    try SampleChunkHeader.decode($0, payloadBytes: payloadBytes, expectedChannels: config.channels)
                }
                if header.isEndOfStream {
                    ended = true
                    break
                }
                // Copied out: a frame's bytes need not be aligned for Float.
                var values = [Float](repeating: 0, count: header.count! * config.channels)
                values.withUnsafeMutableBytes { out in frames[1].withBytes { out.copyMemory(from: $0) } }
                values.withUnsafeBufferPointer { all in
                    for sample in 0..<header.count! {
                        let slice = UnsafeBufferPointer(rebasing: all[(sample * config.channels)..<((sample + 1) * config.channels)])
                        if let window = windows.append(sensor: header.sensor!, time: header.t0! + Double(sample) * header.dt!,
                                                       values: slice, label: header.labels?[sample]) {
                            out.append(window)
                        }
                    }
                }
            } catch {
                rejected += 1
                logger.warning("dropped a sensor message: \(error)")
            }
        }
        if !out.isEmpty { return .windows(out) }
        if ended { return .end }
        if config.idleTimeoutSeconds > 0 {
            let since = lastMessage ?? now
            lastMessage = since
            if now - since > config.idleTimeoutSeconds { return .end }
            return .wait(until: since + config.idleTimeoutSeconds)
        }
        return .wait(until: nil)
    }
}
