import Foundation
import Logging
import SluiceConfig
import SluiceProtocol
import SluiceTensor
import SluiceTransport
import SluiceWire

/// The source process: reads sensors (or ready tensors), cuts windows, groups them into
/// numbered micro-batches and pushes them to the first stage.
public final class SourceRole: PipelineRole {
    private let name: String
    private let context = ZMQContext()
    private let control: ControlChannel
    private var logger: Logger

    /// The source's protocol: every decision about batches, epochs and the end of input is its.
    private var machine = SourceMachine()
    private var assignment: SourceAssignment?
    private var feed: WindowFeed?
    private var push: ZMQSocket?
    private var counters = RoleCounters()
    private var started = monotonicSeconds()
    private var nextHeartbeat = 0.0
    /// Windows and samples the machine refused, after their feed made them.
    private lazy var drops = DropLog(logger: logger)

    public init(name: String, controller endpoint: String) throws {
        self.name = name
        logger = makeLogger(name)
        control = try ControlChannel(context: context, endpoint: endpoint, name: name)
    }

    public func run() -> Int32 {
        control.send(.hello(Hello(role: .source, name: name, pid: getpid(), host: ProcessInfo.processInfo.hostName)))
        while true {
            if let status = serveControl() { return status }
            if control.controllerSilent(for: assignment?.liveness.timeoutSeconds ?? 30) {
                logger.error("the controller went silent; exiting")
                return 1
            }
            let now = monotonicSeconds()
            var waitUntil = now + 0.05
            if machine.readsInput, let feed {
                switch machine.stopRequested ? .end : feed.next(now: now) {
                case .windows(let windows):
                    waitUntil = now
                    for window in windows {
                        if let status = perform(machine.handle(.window(window, now: now))) { return status }
                    }
                case .wait(let until):
                    if let until { waitUntil = min(waitUntil, until) }
                case .end:
                    if let status = perform(machine.handle(.inputEnded(samplesInNoWindow: feed.samplesInNoWindow))) { return status }
                }
            }
            if let status = perform(machine.handle(.tick(now: monotonicSeconds()))) { return status }
            if let deadline = machine.deadline { waitUntil = min(waitUntil, deadline) }
            heartbeatIfDue()
            let timeout = max(0, Int((waitUntil - monotonicSeconds()) * 1000))
            var items: [(ZMQSocket, PollEvents)] = [(control.socket, .readable)]
            if machine.isStreaming, let socket = feed?.socket { items.append((socket, .readable)) }
            if timeout > 0 { _ = try? poll(items, timeoutMilliseconds: timeout) }
        }
    }

    /// Takes a stop signal and every control message waiting to the machine, in the main loop
    /// and while a send waits alike; returns the exit status once the machine ends the run.
    private func serveControl() -> Int32? {
        if StopSignal.received > 0 && !machine.stopRequested {
            // Run by hand (not under `sluice run`): a signal ends the input; the pipeline drains.
            if let status = perform(machine.handle(.control(.stop))) { return status }
        }
        while let message = control.receive(logger: logger) {
            if let status = perform(machine.handle(.control(message))) { return status }
        }
        return nil
    }

    /// Carries out the machine's directives in order; returns the exit status once one ends the run.
    private func perform(_ actions: [SourceAction]) -> Int32? {
        for action in actions {
            switch action {
            case .takeAssignment(let new):
                let answer: SourceEvent
                do {
                    try apply(new)
                    answer = .assigned(new)
                } catch {
                    answer = .assignmentFailed("\(error)")
                }
                if let status = perform(machine.handle(answer)) { return status }
            case .startStreaming:
                started = monotonicSeconds()
            case .send(let batch):
                if let status = send(batch) { return status }
            case .sendControl(let message):
                control.send(message)
            case .connectReplica(let endpoint):
                connect(push, toReplica: endpoint, logger: logger)
            case .drop(let count, let unit, let reason, let detail):
                drops.drop([(count, unit)], reason, detail)
            case .log(let level, let message):
                switch level {
                case .info: logger.info("\(message)")
                case .warning: logger.warning("\(message)")
                case .error: logger.error("\(message)")
                }
            case .discardLateInput:
                feed?.discardAfterEnd()
            case .finish:
                (feed as? ZMQSensorFeed)?.flushLog()
                drops.flush()
                heartbeatIfDue(force: true)
                return 0
            case .fail:
                return 1
            }
        }
        return nil
    }

    private func apply(_ new: SourceAssignment) throws {
        switch new.source {
        case .recording(let config):
            guard let window = new.window else { throw RoleError("a recording source needs a window") }
            let recording = try Recording.load(config)
            let recordingFeed = RecordingFeed(recording: recording, window: window, rate: config.rate, repeats: config.repeats)
            try check(recordingFeed.sampleShape, against: new, what: "a \(recording.channelNames.count)-channel window of \(window.length) samples (\(window.layout.rawValue))")
            feed = recordingFeed
            logger.info("replaying \(recording.count) samples of \(Set(recording.sensors).count) sensors at rate \(config.rate)")
        case .tensors(let config):
            let tensorsFeed = try TensorsFeed(config: config)
            try check(tensorsFeed.sampleShape, against: new, what: "rows of \(config.path)")
            feed = tensorsFeed
        case .zmq(let config):
            guard let window = new.window else { throw RoleError("a zmq source needs a window") }
            let zmqFeed = try ZMQSensorFeed(context: context, config: config, window: window, logger: logger)
            try check(zmqFeed.sampleShape, against: new, what: "a \(config.channels)-channel window of \(window.length) samples (\(window.layout.rawValue))")
            feed = zmqFeed
            logger.info("listening for sensors on \(config.endpoint)")
        }
        let socket = try ZMQSocket(context, .push, lingerMilliseconds: 5000, sendHighWaterMark: 2, receiveHighWaterMark: 2)
        for endpoint in new.pushEndpoints { try socket.connect(endpoint) }
        push = socket
        assignment = new
    }

    private func check(_ shape: [Int], against assignment: SourceAssignment, what: String) throws {
        guard shape == assignment.sampleShape else {
            throw RoleError("model input '\(assignment.inputName)' takes \(assignment.sampleShape) per sample, but the source gives \(shape): \(what)")
        }
    }

    /// Sends `outgoing` to the first stage; returns the exit status if the run ended while the
    /// first stage had no room for it.
    private func send(_ outgoing: SourceBatch) -> Int32? {
        guard let push else { return nil }
        var batch = Batch(header: BatchHeader(batchSequence: outgoing.batchSequence, firstWindow: outgoing.firstWindow,
                                              windowCount: UInt32(outgoing.keys.count), epoch: outgoing.epoch, cursor: 0,
                                              created: wallNanos(), tensors: []),
                          metadata: WindowKey.encode(outgoing.keys), tensors: [:])
        batch.setTensors([outgoing.inputName: outgoing.input], order: [outgoing.inputName])
        let frames = batch.frames()
        var waitStart = monotonicSeconds()
        do {
            // Backpressure: the first stage's queue is full. Keep answering the controller meanwhile.
            while try !push.send(frames, dontWait: true) {
                _ = try poll([(push, .writable)], timeoutMilliseconds: 100)
                counters.blockedSeconds += monotonicSeconds() - waitStart
                waitStart = monotonicSeconds()
                heartbeatIfDue()
                var ended = serveControl()
                if ended == nil, control.controllerSilent(for: assignment?.liveness.timeoutSeconds ?? 30) {
                    logger.error("the controller went silent while the source waited to send; exiting")
                    ended = 1
                }
                if let ended {
                    // The batches still queued cannot leave (the first stage takes none): closing
                    // must not wait for them, or the exit waits out the socket's linger.
                    try? push.setLinger(milliseconds: 0)
                    return ended
                }
            }
        } catch {
            logger.error("send failed: \(error)")
        }
        counters.blockedSeconds += monotonicSeconds() - waitStart
        counters.batches += 1
        counters.sent += 1
        counters.samples += outgoing.keys.count
        return nil
    }

    private func heartbeatIfDue(force: Bool = false) {
        guard let assignment, force || monotonicSeconds() >= nextHeartbeat else { return }
        nextHeartbeat = monotonicSeconds() + assignment.liveness.heartbeatSeconds
        counters.elapsedSeconds = monotonicSeconds() - started
        counters.rejected = feed?.rejected ?? 0
        var dropped = feed?.drops ?? DropCounts()
        dropped.add(drops.counts)
        counters.drops = dropped
        control.send(.heartbeat(counters))
    }
}
