import Foundation
import Logging
import SluiceConfig
import SluiceProtocol
import SluiceTensor
import SluiceTransport
import SluiceWire

/// The source process: reads sensors (or ready tensors), cuts windows, groups them into
/// numbered micro-batches and pushes them to the first stage.
public final class SourceRole: PipelineRole, RoleAdapter {
    private let shell: RoleShell
    private var logger: Logger { shell.logger }

    /// The source's protocol: every decision about batches, epochs and the end of input is its.
    private var machine = SourceMachine()
    private var assignment: SourceAssignment?
    private var feed: WindowFeed?
    private var push: ZMQSocket?
    private var counters = RoleCounters()
    private var started = monotonicSeconds()
    /// When the next round is due at the latest: the feed's next input, or the batcher's deadline.
    private var waitUntil = 0.0
    /// Windows and samples the machine refused, after their feed made them.
    private lazy var drops = DropLog(logger: logger)

    public init(name: String, controller endpoint: String, keys: RoleKeys?, binding: DataBinding?) throws {
        // Its sensors' socket is the pipeline's source.endpoint; batches it only sends.
        if binding != nil { throw RoleError("a source binds no data socket: --bind is for stages and the sink (sensors connect to source.endpoint)") }
        shell = try RoleShell(name: name, controller: endpoint, keys: keys)
    }

    public func run() -> Int32 { shell.run(self) }

    var kind: RoleKind { .source }
    var liveness: Liveness? { assignment?.liveness }
    var watchedSockets: [ZMQSocket] { machine.isStreaming ? [feed?.socket].compactMap { $0 } : [] }
    /// Rounded up: a wait under a millisecond truncated to 0 would spin a core until it ends
    /// (a fast paced replay waits so between most samples).
    var pollMilliseconds: Int { max(0, Int(((waitUntil - monotonicSeconds()) * 1000).rounded(.up))) }

    func handle(_ message: ControlMessage) -> RoleExit? { perform(machine.handle(.control(message))) }

    /// Run by hand (not under `sluice run`): a signal ends the input; the pipeline drains.
    func stopSignalled() -> RoleExit? { perform(machine.handle(.control(.stop))) }

    /// Reads the feed into the machine, and ticks it.
    func step() -> RoleExit? {
        let now = monotonicSeconds()
        waitUntil = now + 0.05
        if machine.readsInput, let feed {
            switch machine.stopRequested ? .end : feed.next(now: now) {
            case .windows(let windows):
                waitUntil = now
                for window in windows {
                    if let exit = perform(machine.handle(.window(window, now: now))) { return exit }
                }
            case .wait(let until):
                if let until { waitUntil = min(waitUntil, until) }
            case .end:
                if let exit = perform(machine.handle(.inputEnded(samplesInNoWindow: feed.samplesInNoWindow))) { return exit }
            }
        }
        if let exit = perform(machine.handle(.tick(now: monotonicSeconds()))) { return exit }
        if let deadline = machine.deadline { waitUntil = min(waitUntil, deadline) }
        return nil
    }

    func counters(final: Bool) -> RoleCounters? {
        guard assignment != nil else { return nil }
        counters.elapsedSeconds = monotonicSeconds() - started
        counters.rejected = feed?.rejected ?? 0
        var dropped = feed?.drops ?? DropCounts()
        dropped.add(drops.counts)
        counters.drops = dropped
        return counters
    }

    /// Carries out the machine's directives in order; returns the exit one of them asks for.
    private func perform(_ actions: [SourceAction]) -> RoleExit? {
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
                if let exit = perform(machine.handle(answer)) { return exit }
            case .startStreaming:
                started = monotonicSeconds()
            case .send(let batch):
                if send(batch) {
                    counters.batches += 1
                    counters.windows += batch.keys.count
                }
            case .resend(let batch):
                if send(batch) { counters.replayed += 1 }
            case .sendControl(let message):
                shell.control.send(message)
            case .connectReplica(let endpoint):
                shell.connectReplica(push, endpoint)
            case .drop(let count, let unit, let reason, let detail):
                drops.drop([(count, unit)], reason, detail)
            case .log(let level, let message):
                logger.log(level, message)
            case .discardLateInput:
                feed?.discardAfterEnd()
            case .finish:
                (feed as? ZMQSensorFeed)?.flushLog()
                drops.flush()
                return RoleExit(status: 0, finalHeartbeat: true)
            case .fail:
                return RoleExit(status: 1, finalHeartbeat: false)
            }
        }
        return nil
    }

    private func apply(_ new: SourceAssignment) throws {
        switch new.source {
        case .recording(let config):
            guard let window = new.window else { throw RoleError("a recording source needs a window") }
            let recording = try Recording.load(config)
            let recordingFeed = RecordingFeed(recording: recording, window: window, rate: config.rate, repeats: config.repeats,
                                              passOver: PassOver(windows: new.resume?.window ?? 0, nanPolicy: new.nanPolicy))
            try check(recordingFeed.windowShape, against: new, sensorWindow: true, what: "a \(recording.channelNames.count)-channel window of \(window.length) samples (\(window.layout.rawValue))")
            feed = recordingFeed
            logger.info("replaying \(recording.count) samples of \(Set(recording.sensors).count) sensors at rate \(config.rate)")
            if let resume = new.resume { logger.info("taking up the stream at window \(resume.window), batch \(resume.batch)") }
        case .tensors(let config):
            let tensorsFeed = try TensorsFeed(config: config, passOver: PassOver(windows: new.resume?.window ?? 0, nanPolicy: new.nanPolicy))
            try check(tensorsFeed.windowShape, against: new, sensorWindow: false, what: "rows of \(config.path)")
            feed = tensorsFeed
        case .zmq(let config):
            guard let window = new.window else { throw RoleError("a zmq source needs a window") }
            let shell = shell
            let zmqFeed = try ZMQSensorFeed(context: shell.context, config: config, window: window, logger: logger,
                                            followsDeadSource: new.resume != nil) { socket in
                guard let keyFile = config.keyFile else { return }
                try shell.serveOthers(socket, keyFile: keyFile, allowing: config.senderKeyFiles, domain: "sluice-sensors")
            }
            try check(zmqFeed.windowShape, against: new, sensorWindow: true, what: "a \(config.channels)-channel window of \(window.length) samples (\(window.layout.rawValue))")
            feed = zmqFeed
            let security = config.keyFile != nil ? ", CURVE: \(config.senderKeyFiles.count) sender keys let in"
                : config.endpoint.hasPrefix("tcp://") ? " in plaintext (no source.key: any peer that reaches it can send)" : ""
            logger.info("listening for sensors on \(config.endpoint)\(security)")
        }
        let socket = try ZMQSocket(shell.context, .push, lingerMilliseconds: 5000, sendHighWaterMark: 2, receiveHighWaterMark: 2)
        // Batches go only to peers whose connection is up: when a peer dies, libzmq drops its
        // pipe and spreads what follows over the live ones (or holds it until one is back),
        // instead of queueing batches for a process that may never return.
        try socket.queueOnlyToConnectedPeers()
        for endpoint in new.pushEndpoints { try shell.connectData(socket, endpoint) }
        push = socket
        assignment = new
    }

    /// `sensorWindow`: the source cuts windows, which a model of flat feature rows (scikit-learn's)
    /// takes flattened in the layout's order.
    private func check(_ shape: [Int], against assignment: SourceAssignment, sensorWindow: Bool, what: String) throws {
        let flattened = sensorWindow && assignment.windowShape == [Tensor.elementCount(of: shape)]
        guard shape == assignment.windowShape || flattened else {
            throw RoleError("model input '\(assignment.inputName)' takes \(assignment.windowShape) per window, but the source gives \(shape): \(what)")
        }
    }

    /// Sends `outgoing` to the first stage; while it has no room, control messages go on reaching
    /// the machine, and an end decided meanwhile abandons the send. Whether it left.
    private func send(_ outgoing: SourceBatch) -> Bool {
        guard let push else { return false }
        var batch = Batch(header: BatchHeader(batchSequence: outgoing.batchSequence, firstWindow: outgoing.firstWindow,
                                              windowCount: UInt32(outgoing.keys.count), epoch: outgoing.epoch, cursor: 0,
                                              created: wallNanos(), tensors: [], sourceGeneration: outgoing.generation),
                          metadata: WindowKey.encode(outgoing.keys), tensors: [:])
        batch.setTensors([outgoing.inputName: outgoing.input], order: [outgoing.inputName])
        let sent = shell.send(batch.frames(), on: push)
        counters.blockedSeconds += sent.blockedSeconds
        guard sent.delivered else {
            // The batch did not leave (the run ended while the first stage had no room, or the
            // socket failed): what is queued before it cannot be counted on to leave either, and
            // closing must not wait out the linger for it.
            try? push.setLinger(milliseconds: 0)
            return false
        }
        counters.sent += 1
        return true
    }
}
