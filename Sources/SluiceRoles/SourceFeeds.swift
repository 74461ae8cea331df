import Foundation
import Logging
import SluiceConfig
import SluiceProtocol
import SluiceTensor
import SluiceTransport
import SluiceWire

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
    /// Everything the feed dropped, by unit and reason.
    var drops: DropCounts { get }
    /// After the input ended: takes what is still queued and counts it as dropped.
    func discardAfterEnd()
    /// Samples in no window cut so far (at the end: tails that never filled one).
    var samplesInNoWindow: Int { get }
}

extension WindowFeed {
    var drops: DropCounts { DropCounts() }
    func discardAfterEnd() {}
    var samplesInNoWindow: Int { 0 }
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
        let start = origin ?? (inputTime, now)
        origin = start
        return start.wall + (inputTime - start.input) / speed
    }
}

/// The windows a source started in place of a dead one passes over: the sink has them already.
/// They are cut no further than needed to count them, so taking up a long stream costs a scan
/// of its input, not the work of making every window again.
struct PassOver {
    /// Numbered windows still to pass over. A window the source refuses for a non-finite value
    /// gets no number, so it does not count here.
    private(set) var remaining: UInt64
    let nanPolicy: NaNPolicy
    /// Windows passed over that the source refuses: counted again, as the dead source counted
    /// them (a restarted role's counters replace its predecessor's).
    private(set) var drops = DropCounts()

    init(windows: UInt64, nanPolicy: NaNPolicy) {
        remaining = windows
        self.nanPolicy = nanPolicy
    }

    var active: Bool { remaining > 0 }

    mutating func passed(finite: Bool) {
        if finite || nanPolicy == .pass {
            remaining -= 1
        } else {
            drops.add(1, .window, .nonFinite)
        }
    }

    /// Samples passed over per step at most: the control socket is served between steps.
    static let samplesPerStep = 65_536
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
    private var passOver: PassOver

    init(recording: Recording, window: WindowConfig, rate: ReplayRate, repeats: Int = 1, passOver: PassOver = PassOver(windows: 0, nanPolicy: .reject)) {
        self.recording = recording
        self.passOver = passOver
        windows = SlidingWindows(channels: recording.channelNames.count, config: window)
        pacer = Pacer(rate)
        passes = repeats
        let span = (recording.times.max() ?? 0) - (recording.times.min() ?? 0)
        let step = recording.times.count > 1 ? zip(recording.times, recording.times.dropFirst()).map { $1 - $0 }.filter { $0 > 0 }.min() ?? 1 : 1
        passLength = span + step
    }

    var windowShape: [Int] { windows.windowShape }
    var samplesInNoWindow: Int { windows.samplesInNoWindow }
    var drops: DropCounts { passOver.drops }

    func next(now: Double) -> FeedStep {
        var out: [Window] = []
        let channels = recording.channelNames.count
        var passedOver = 0
        // A bounded slice per step keeps the control socket served during fast replays.
        while out.count < 256 {
            if index == recording.count {
                pass += 1
                index = 0
            }
            guard pass < passes, recording.count > 0 else { return out.isEmpty ? .end : .windows(out) }
            let time = recording.times[index] + Double(pass) * passLength
            if passOver.active {
                guard passedOver < PassOver.samplesPerStep else { return .windows(out) }
                passedOver += 1
                let finite = recording.samples.withUnsafeBufferPointer { all in
                    windows.passOver(sensor: recording.sensors[index], time: time,
                                     values: UnsafeBufferPointer(rebasing: all[(index * channels)..<((index + 1) * channels)]),
                                     label: recording.labels[index])
                }
                if let finite { passOver.passed(finite: finite) }
                index += 1
                continue
            }
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
    private var passOver: PassOver

    init(config: TensorsSource, passOver: PassOver = PassOver(windows: 0, nanPolicy: .reject)) throws {
        self.passOver = passOver
        rows = try NPY.read(path: config.path)
        guard rows.dtype == .float32, rows.rank >= 2, rows.shape[0] > 0 else {
            throw RoleError("\(config.path): a tensors source needs at least one float32 row [rows, …], not \(rows.dtype)\(rows.shape)")
        }
        rowLength = rows.elementCount / rows.shape[0]
        pacer = Pacer(config.rate)
        rowsPerSecond = config.rowsPerSecond ?? 1
        totalRows = rows.shape[0] * config.repeats
    }

    var windowShape: [Int] { Array(rows.shape.dropFirst()) }
    var drops: DropCounts { passOver.drops }

    func next(now: Double) -> FeedStep {
        guard index < totalRows else { return .end }
        var out: [Window] = []
        var passedOver = 0
        while index < totalRows, passOver.active {
            guard passedOver < PassOver.samplesPerStep else { return .windows(out) }
            passedOver += 1
            let row = index % rows.shape[0]
            passOver.passed(finite: rows.withUnsafeBufferPointer(as: Float.self) {
                $0[(row * rowLength)..<((row + 1) * rowLength)].allSatisfy(\.isFinite)
            })
            index += 1
        }
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
    private let dropLog: DropLog
    /// Per sender: chunks taken (accepted or rejected), whether its end of stream came, and when
    /// it last sent (senders silent past `sensorIdleSeconds` are forgotten, like sensors).
    private struct Sender {
        var chunks = 0
        var ended = false
        var lastSeen: Double
    }
    private var senders: [String: Sender] = [:]
    private var malformedBySender: [String: Int] = [:]
    /// Forgotten senders' counts, so one that comes back (or ends) later is still checked whole;
    /// bounded by `maxSensors`, the longest forgotten going first (docs/protocol.md §4).
    private var forgotten: [String: (chunks: Int, ended: Bool, serial: Int)] = [:]
    private var forgottenOrder: [(sender: String, serial: Int)] = []
    private var forgottenHead = 0
    private var forgottenSerial = 0
    /// Some sender has been heard from: the input may end (its senders may since be forgotten).
    private var heardFromASender = false
    /// Sender connections open now: a connected sender may still send.
    private let connections: ConnectionMonitor?
    /// Connections (by descriptor) closed since the queue was last read empty.
    private var closedConnections: [Int32] = []
    /// Ends of stream per connection (by descriptor) not yet matched with that connection's
    /// close, and ends whose connection libzmq did not name (ipc). Counted, not a set: the
    /// kernel gives a closed connection's descriptor to the next one, so two connections'
    /// ends can wait on one descriptor. Only a sender's first end counts: a repeated end, or
    /// one from a sender past the limit, must not excuse another connection's close.
    private var endsThrough: [Int32: Int] = [:]
    private var endsOfUnknownConnection = 0
    /// At most this many closes wait to be matched; past it the oldest is settled at once.
    static let maximumWaitingCloses = 4096

    var drops: DropCounts { dropLog.counts }
    /// Sensors forgotten after `sensorIdleSeconds` of silence (their partial windows with them).
    private(set) var evictedSensors = 0
    private(set) var forgottenSenders = 0
    private var lastEviction: Double?
    private var lastForcedEviction: Double?
    /// Scans of the sensor and sender tables for idle ones, each costing their size.
    private(set) var evictionScans = 0
    /// A full table makes every chunk of a new id ask for an eviction; one scan per this many
    /// seconds serves them all, so a flood of new ids costs a dictionary lookup each.
    static let forcedEvictionInterval = 0.1

    /// No sensor chunk comes near this; larger messages are refused by the socket before they
    /// are held in memory (docs/protocol.md).
    static let maximumMessageBytes: Int64 = 4 << 20

    /// Started in place of a live source that died: its senders' counts began at the dead one.
    private let followsDeadSource: Bool

    /// `secure`: makes the socket a CURVE server before it binds (`source.key`).
    init(context: ZMQContext, config: ZMQSource, window: WindowConfig, logger: Logger, followsDeadSource: Bool = false,
         secure: (ZMQSocket) throws -> Void = { _ in }) throws {
        self.followsDeadSource = followsDeadSource
        self.config = config
        self.logger = logger
        dropLog = DropLog(logger: logger)
        windows = SlidingWindows(channels: config.channels, config: window)
        let pull = try ZMQSocket(context, .pull, lingerMilliseconds: 0, sendHighWaterMark: 100, receiveHighWaterMark: 1000)
        try pull.setMaximumMessageBytes(Self.maximumMessageBytes)
        try secure(pull)
        try pull.bind(config.endpoint)
        socket = pull
        connections = try pull.monitorConnections(context)
    }

    /// Every sender heard from has sent its end of stream and closed its connection: whatever
    /// they sent before has arrived, and no sender is left that could still send.
    /// A forgotten sender that never ended does not hold the end back: it was silent past
    /// `sensorIdleSeconds`, and if it sends again it is tracked again.
    private var everySenderDone: Bool {
        heardFromASender && (connections?.open ?? 0) == 0 && senders.values.allSatisfy(\.ended)
    }

    /// Senders whose chunk counts the feed holds (at most `maxSensors`, and as many forgotten).
    var trackedSenders: Int { senders.count + malformedBySender.keys.filter { senders[$0] == nil }.count }

    /// Evicts sensors and senders silent past `sensorIdleSeconds`: at most every tenth of that
    /// period, or when `force`d (a new id finding a table full) at most every
    /// `forcedEvictionInterval`, so the scan costs little per message. A forced eviction also
    /// forgets senders that have ended: their count is kept among the forgotten.
    /// The chunks a sender's end of stream says it sent that never arrived. A source started in
    /// place of a dead one cannot tell those the dead one took from those lost with it (that
    /// loss is counted once, as the dead process, by the sink), so it only logs them.
    private func countShortfall(of sender: String, counted: Int?, arrived: Int) {
        guard let counted, counted > arrived else { return }
        let detail = "sender '\(sender.prefix(64))' ended after \(counted) chunks; \(arrived) arrived"
        if followsDeadSource {
            logger.info("\(detail) here; the source that died took the others or lost them")
        } else {
            dropLog.drop([(counted - arrived, .chunk)], .neverArrived, detail)
        }
    }

    private func evictIdle(now: Double, force: Bool) {
        if force {
            if let last = lastForcedEviction, now - last < Self.forcedEvictionInterval, now >= last { return }
            lastForcedEviction = now
        } else if let last = lastEviction, now - last < config.sensorIdleSeconds / 10, now >= last {
            return
        }
        lastEviction = now
        evictionScans += 1
        let before = now - config.sensorIdleSeconds
        let evicted = windows.evict(lastSeenBefore: before)
        let silent = senders.filter { $0.value.lastSeen < before || (force && $0.value.ended) }.map(\.key)
        for sender in silent { forget(sender) }
        // Senders known only by malformed messages go too; their counts are kept among the forgotten.
        for sender in malformedBySender.keys where senders[sender] == nil { forget(sender) }
        if !silent.isEmpty {
            logger.info("forgot \(silent.count) sender(s) silent for over source.sensor_idle_s = \(config.sensorIdleSeconds) s or ended; \(forgottenSenders) in all")
        }
        guard !evicted.isEmpty else { return }
        evictedSensors += evicted.count
        logger.info("evicted \(evicted.count) sensor(s) silent for over source.sensor_idle_s = \(config.sensorIdleSeconds) s, with their partial windows (\(evicted.prefix(3).map { String($0.prefix(64)) }.joined(separator: ", "))\(evicted.count > 3 ? ", …" : ""); \(evictedSensors) in all)")
    }

    /// Moves a sender's counts to the forgotten, so its table slot is free.
    private func forget(_ sender: String) {
        let state = senders.removeValue(forKey: sender)
        let malformed = malformedBySender.removeValue(forKey: sender) ?? 0
        guard state != nil || malformed > 0 else { return }
        if state != nil { forgottenSenders += 1 }
        forgottenSerial += 1
        // Malformed messages of a sender already forgotten add to what it had.
        let earlier = forgotten[sender]
        forgotten[sender] = ((state?.chunks ?? 0) + malformed + (earlier?.chunks ?? 0),
                             (state?.ended ?? false) || (earlier?.ended ?? false), forgottenSerial)
        forgottenOrder.append((sender, forgottenSerial))
        while forgotten.count > config.maxSensors, forgottenHead < forgottenOrder.count {
            let oldest = forgottenOrder[forgottenHead]
            forgottenHead += 1
            if forgotten[oldest.sender]?.serial == oldest.serial { forgotten[oldest.sender] = nil }
        }
        // Entries of senders taken back or forgotten again are stale: dropped once they outnumber
        // the live ones, so the order stays within a small multiple of the table.
        if forgottenOrder.count - forgottenHead > 2 * forgotten.count + 1024 {
            forgottenOrder = forgottenOrder[forgottenHead...].filter { forgotten[$0.sender]?.serial == $0.serial }
            forgottenHead = 0
        } else if forgottenHead > 1024, forgottenHead * 2 > forgottenOrder.count {
            forgottenOrder.removeFirst(forgottenHead)
            forgottenHead = 0
        }
    }

    /// A sender's state: tracked, remembered among the forgotten, or new.
    private func sender(_ name: String, now: Double) -> Sender? {
        if var state = senders[name] {
            state.lastSeen = now
            return state
        }
        if senders.count >= config.maxSensors { evictIdle(now: now, force: true) }
        guard senders.count < config.maxSensors else { return nil }
        let remembered = forgotten.removeValue(forKey: name)
        return Sender(chunks: remembered?.chunks ?? 0, ended: remembered?.ended ?? false, lastSeen: now)
    }

    /// Whether a chunk of `sensor` is windowed: always for a live sensor, for a new one while
    /// fewer than `maxSensors` are live. Otherwise it is refused, so the sensors already live
    /// keep their windows whole however many new ids arrive.
    private func admits(_ sensor: String, samples: Int, now: Double) -> Bool {
        if windows.isLive(sensor) || windows.liveSensors < config.maxSensors { return true }
        evictIdle(now: now, force: true)
        if windows.liveSensors < config.maxSensors { return true }
        dropLog.drop([(1, .chunk), (samples, .sample)], .sensorLimit,
                     "new sensor '\(sensor.prefix(64))' while \(windows.liveSensors) sensors are live (source.max_sensors)")
        return false
    }

    var windowShape: [Int] { windows.windowShape }
    var samplesInNoWindow: Int { windows.samplesInNoWindow }

    func next(now: Double) -> FeedStep {
        if ended { return .end }
        // Connection events first: a sender's chunks are queued before its connection closes, so
        // once the close is seen, draining the queue takes every chunk it sent.
        connections?.update()
        for descriptor in connections?.takeClosed() ?? [] { closedConnections.append(descriptor) }
        if closedConnections.count > Self.maximumWaitingCloses {
            settle(closedConnections.prefix(closedConnections.count - Self.maximumWaitingCloses))
            closedConnections.removeFirst(closedConnections.count - Self.maximumWaitingCloses)
        }
        evictIdle(now: now, force: false)
        var out: [Window] = []
        var messages = 0
        var drained = false
        while messages < 64 {
            guard let frames = try? socket?.receive(dontWait: true) else {
                drained = true
                break
            }
            messages += 1
            lastMessage = now
            do {
                let payloadBytes = frames.count > 1 ? frames[1].count : nil
                let header = try frames[0].withBytes {
                    try SampleChunkHeader.decode($0, payloadBytes: payloadBytes, expectedChannels: config.channels)
                }
                // Per connection ZeroMQ keeps order: a sender's end of stream follows every chunk it
                // sent. The input ends when every sender heard from has ended, so no chunk sent
                // before its sender's end is ever cut off by another sender's end.
                let sender = header.senderName ?? ""
                // Senders are bounded like sensors (a chunk without a sender makes its sensor one):
                // past the limit, once silent and ended ones are forgotten, a new sender is not
                // tracked, and its chunks are refused.
                guard var state = self.sender(sender, now: now) else {
                    // A forgotten sender's end needs no table slot: its counts are kept apart.
                    if header.isEndOfStream, let remembered = forgotten[sender], !remembered.ended {
                        countShortfall(of: sender, counted: header.chunks, arrived: remembered.chunks)
                        forgotten[sender]?.ended = true
                        creditEnd(through: frames[0])
                    } else if !header.isEndOfStream {
                        dropLog.drop([(1, .chunk), (header.count ?? 0, .sample)], .sensorLimit,
                                     "new sender '\(sender.prefix(64))' while \(senders.count) senders are tracked (source.max_sensors)")
                    }
                    continue
                }
                heardFromASender = true
                if header.isEndOfStream {
                    // A sender ends once: a repeated end (a retry, or a forger's) is counted as
                    // malformed and must not count the chunks it claims a second time.
                    if state.ended {
                        senders[sender] = state
                        dropLog.drop([(1, .chunk)], .malformed, "a second end of stream from sender '\(sender.prefix(64))'")
                        continue
                    }
                    let arrived = state.chunks + (malformedBySender[sender] ?? 0)
                    malformedBySender[sender] = nil
                    state.chunks = arrived
                    countShortfall(of: sender, counted: header.chunks, arrived: arrived)
                    state.ended = true
                    senders[sender] = state
                    creditEnd(through: frames[0])
                    logger.info("sender '\(sender)' ended its stream after \(state.chunks) chunks")
                    continue
                }
                state.chunks += 1
                senders[sender] = state
                if state.ended {
                    dropLog.drop([(1, .chunk), (header.count ?? 0, .sample)], .afterSenderEnded,
                                 "sensor '\(header.sensor ?? "?")' of sender '\(sender)' after that sender's end of stream")
                    continue
                }
                // decode checked these; still, nothing from a socket is unwrapped by force.
                guard let sensor = header.sensor, let t0 = header.t0, let dt = header.dt, let count = header.count,
                      frames.count > 1 else {
                    throw WireError.malformed("sample header lacks sensor, t0, dt or count")
                }
                guard admits(sensor, samples: count, now: now) else { continue }
                // Copied out: a frame's bytes need not be aligned for Float.
                var values = [Float](repeating: 0, count: count * config.channels)
                values.withUnsafeMutableBytes { out in frames[1].withBytes { out.copyMemory(from: $0) } }
                values.withUnsafeBufferPointer { all in
                    for sample in 0..<count {
                        let slice = UnsafeBufferPointer(rebasing: all[(sample * config.channels)..<((sample + 1) * config.channels)])
                        if let window = windows.append(sensor: sensor, time: t0 + Double(sample) * dt,
                                                       values: slice, label: header.labels?[sample], now: now) {
                            out.append(window)
                        }
                    }
                }
            } catch {
                rejected += 1
                // A chunk its sender will count in its end of stream: note it arrived.
                // (It does not make its sender one the input waits for: only a valid message does.)
                if let sender = Self.senderOf(frames.first), malformedBySender[sender] != nil || malformedBySender.count < config.maxSensors {
                    malformedBySender[sender, default: 0] += 1
                }
                dropLog.drop([(1, .chunk)], .malformed, "a sensor message: \(error)")
            }
        }
        if drained, everySenderDone {
            ended = true
            logger.info("input ended: every sender (\(senders.count), and \(forgottenSenders) forgotten) sent its end of stream or fell silent, and disconnected")
        }
        if drained { settleClosedConnections() }
        if !out.isEmpty { return .windows(out) }
        if ended { return .end }
        if config.idleTimeoutSeconds > 0 {
            let since = lastMessage ?? now
            lastMessage = since
            if now - since > config.idleTimeoutSeconds {
                settleClosedConnections()
                return .end
            }
            return .wait(until: since + config.idleTimeoutSeconds)
        }
        return .wait(until: nil)
    }

    /// A sender's first end of stream came through `frame`'s connection, which may close cleanly after it.
    private func creditEnd(through frame: ZMQFrame) {
        if let descriptor = frame.sourceDescriptor {
            endsThrough[descriptor, default: 0] += 1
        } else {
            endsOfUnknownConnection += 1
        }
    }

    /// Counts each connection that closed with no end of stream through it, once the queue has
    /// been read empty after its close was seen: libzmq queues a connection's messages before it
    /// reports the close, so an end of stream it sent has been read by then.
    private func settleClosedConnections() {
        settle(closedConnections[...])
        closedConnections.removeAll(keepingCapacity: true)
    }

    private func settle(_ closes: ArraySlice<Int32>) {
        for descriptor in closes {
            if let ends = endsThrough[descriptor], ends > 0 {
                endsThrough[descriptor] = ends > 1 ? ends - 1 : nil
            } else if endsOfUnknownConnection > 0 {
                endsOfUnknownConnection -= 1
            } else {
                dropLog.drop([(1, .connection)], .closedWithoutEnd,
                             "what it still carried is lost (libzmq drops a connection that sends a message over \(Self.maximumMessageBytes >> 20) MiB; or its sender stopped without ending)")
            }
        }
    }

    func discardAfterEnd() {
        var messages = 0
        while messages < 64, let frames = try? socket?.receive(dontWait: true) {
            messages += 1
            let header = frames.first.flatMap { frame in
                try? frame.withBytes { try SampleChunkHeader.decode($0, payloadBytes: frames.count > 1 ? frames[1].count : nil,
                                                                    expectedChannels: config.channels) }
            }
            if let header, header.isEndOfStream { continue }
            if header == nil { rejected += 1 }
            dropLog.drop([(1, .chunk), (header?.count ?? 0, .sample)], header == nil ? .malformed : .afterEndOfInput,
                         "sensor '\(header?.sensor ?? "?")' of sender '\(header?.senderName ?? Self.senderOf(frames.first) ?? "?")'")
        }
    }

    func flushLog() { dropLog.flush() }

    /// The sender a message names, read leniently from a header that failed its checks.
    private static func senderOf(_ frame: ZMQFrame?) -> String? {
        guard let frame, frame.count <= 1 << 16,
              let object = frame.withBytes({ try? JSONSerialization.jsonObject(with: Data($0)) }) as? [String: Any] else { return nil }
        return (object["sender"] as? String) ?? (object["sensor"] as? String)
    }
}
