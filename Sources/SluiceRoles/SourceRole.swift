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

    private var assignment: SourceAssignment?
    private var feed: WindowFeed?
    private var batcher: MicroBatcher?
    private var push: ZMQSocket?
    private var counters = RoleCounters()
    private var streaming = false
    private var stopRequested = false
    private var finished = false
    private var started = monotonicSeconds()
    private var nextHeartbeat = 0.0
    /// Samples left in no window when the input ended.
    private var tailDrops = DropCounts()
    /// The plan epoch new batches are stamped with.
    private var epoch: UInt32 = 0
    /// Windows refused here, after their feed made them.
    private lazy var windowDrops = DropLog(logger: logger)

    /// Whether `window` goes into a batch: under `source.nan_policy: reject` one holding NaN or
    /// ±infinity is dropped and counted, since no score computed from it means anything.
    private func admits(_ window: Window) -> Bool {
        guard assignment?.nanPolicy != .pass, let bad = window.values.firstIndex(where: { !$0.isFinite }) else { return true }
        windowDrops.drop([(1, .window)], .nonFinite,
                         "sensor '\(window.key.sensor.prefix(64))' at \(window.key.start): value \(window.values[bad]) at position \(bad) (source.nan_policy: reject)")
        return false
    }

    public init(name: String, controller endpoint: String) throws {
        self.name = name
        logger = makeLogger(name)
        control = try ControlChannel(context: context, endpoint: endpoint, name: name)
    }

    public func run() -> Int32 {
        control.send(.hello(Hello(role: .source, name: name, pid: getpid(), host: ProcessInfo.processInfo.hostName)))
        while true {
            if StopSignal.received > 0 && !stopRequested {
                // Run by hand (not under `sluice run`): a signal ends the input; the pipeline drains.
                stopRequested = true
            }
            while let message = control.receive(logger: logger) {
                switch message {
                case .assignSource(let sourceAssignment):
                    do {
                        try apply(sourceAssignment)
                        control.send(.ready)
                    } catch {
                        logger.error("cannot take assignment: \(error)")
                        control.send(.failed(message: "\(error)"))
                        return 1
                    }
                case .start:
                    streaming = true
                    started = monotonicSeconds()
                case .stop:
                    stopRequested = true
                case .mark(let newEpoch):
                    markEpoch(newEpoch)
                case .connect(let endpoint):
                    connect(push, toReplica: endpoint, logger: logger)
                case .shutdown:
                    // What reached the socket too late is counted, not silently left there.
                    feed?.discardAfterEnd()
                    (feed as? ZMQSensorFeed)?.flushLog()
                    windowDrops.flush()
                    heartbeatIfDue(force: true)
                    return 0
                default:
                    break
                }
            }
            if control.controllerSilent(for: assignment?.liveness.timeoutSeconds ?? 30) {
                logger.error("the controller went silent; exiting")
                return 1
            }
            let now = monotonicSeconds()
            var waitUntil = now + 0.05
            if streaming && !finished, let feed, batcher != nil {
                let step: FeedStep = stopRequested ? .end : feed.next(now: now)
                switch step {
                case .windows(let windows):
                    waitUntil = now
                    for window in windows where admits(window) {
                        if let ready = batcher!.add(window, now: now) { send(ready) }
                    }
                case .wait(let until):
                    if let until { waitUntil = min(waitUntil, until) }
                case .end:
                    if let ready = batcher!.flush() { send(ready) }
                    finished = true
                    counters.rejected = feed.rejected
                    // Samples sent but in no window: the model never saw them, so they are counted.
                    let unwindowed = feed.samplesInNoWindow
                    if unwindowed > 0 {
                        tailDrops.add(unwindowed, .sample, .incompleteWindow)
                        logger.warning("dropped \(unwindowed) samples (in no complete window): their sensors' input ended before they filled one")
                    }
                    let done = SourceDone(batches: batcher!.nextBatch, windows: batcher!.nextWindow)
                    control.send(.sourceDone(done))
                    logger.info("input finished: \(done.windows) windows in \(done.batches) batches")
                }
                // The batcher is updated in place: a mark handled mid-send must see its true next batch.
                if !finished, let ready = batcher!.flushIfDue(now: monotonicSeconds()) { send(ready) }
                if let deadline = batcher!.deadline { waitUntil = min(waitUntil, deadline) }
            }
            // After the end, input still arriving is taken off the socket and counted as dropped.
            if finished { feed?.discardAfterEnd() }
            heartbeatIfDue()
            let timeout = max(0, Int((waitUntil - monotonicSeconds()) * 1000))
            var items: [(ZMQSocket, PollEvents)] = [(control.socket, .readable)]
            if streaming, let socket = feed?.socket { items.append((socket, .readable)) }
            if timeout > 0 { _ = try? poll(items, timeoutMilliseconds: timeout) }
        }
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
        batcher = MicroBatcher(maxSize: new.batching.maxSize, maxDelaySeconds: new.batching.maxDelayMilliseconds / 1000,
                               sampleShape: new.sampleShape)
        let socket = try ZMQSocket(context, .push, lingerMilliseconds: 5000, sendHighWaterMark: 2, receiveHighWaterMark: 2)
        for endpoint in new.pushEndpoints { try socket.connect(endpoint) }
        push = socket
        assignment = new
        epoch = new.epoch
    }

    /// Every stage now runs the new plan: batches from here on are wholly handled under it.
    private func markEpoch(_ newEpoch: UInt32) {
        epoch = newEpoch
        control.send(.marked(Mark(epoch: newEpoch, firstBatch: batcher?.nextBatch ?? 0)))
    }

    private func check(_ shape: [Int], against assignment: SourceAssignment, what: String) throws {
        guard shape == assignment.sampleShape else {
            throw RoleError("model input '\(assignment.inputName)' takes \(assignment.sampleShape) per sample, but the source gives \(shape): \(what)")
        }
    }

    private func send(_ ready: ReadyBatch) {
        guard let assignment, let push else { return }
        var batch = Batch(header: BatchHeader(batchSequence: ready.batchSequence, firstWindow: ready.firstWindow,
                                              windowCount: UInt32(ready.keys.count), epoch: epoch, cursor: 0,
                                              created: wallNanos(), tensors: []),
                          metadata: WindowKey.encode(ready.keys), tensors: [:])
        batch.setTensors([assignment.inputName: ready.input], order: [assignment.inputName])
        let frames = batch.frames()
        var waitStart = monotonicSeconds()
        do {
            // Backpressure: the first stage's queue is full. Keep answering the controller meanwhile.
            while try !push.send(frames, dontWait: true) {
                _ = try poll([(push, .writable)], timeoutMilliseconds: 100)
                counters.blockedSeconds += monotonicSeconds() - waitStart
                waitStart = monotonicSeconds()
                heartbeatIfDue()
                while let message = control.receive(logger: logger) {
                    if case .stop = message { stopRequested = true }
                    if case .mark(let newEpoch) = message { markEpoch(newEpoch) }
                    if case .connect(let endpoint) = message { connect(push, toReplica: endpoint, logger: logger) }
                    if case .shutdown = message { exit(0) }
                }
                if StopSignal.received > 0 && !stopRequested { stopRequested = true }
                if control.controllerSilent(for: assignment.liveness.timeoutSeconds) {
                    logger.error("the controller went silent while the source waited to send; exiting")
                    exit(1)
                }
            }
        } catch {
            logger.error("send failed: \(error)")
        }
        counters.blockedSeconds += monotonicSeconds() - waitStart
        counters.batches += 1
        counters.sent += 1
        counters.samples += ready.keys.count
    }

    private func heartbeatIfDue(force: Bool = false) {
        guard let assignment, force || monotonicSeconds() >= nextHeartbeat else { return }
        nextHeartbeat = monotonicSeconds() + assignment.liveness.heartbeatSeconds
        counters.elapsedSeconds = monotonicSeconds() - started
        counters.rejected = feed?.rejected ?? 0
        var drops = feed?.drops ?? DropCounts()
        drops.add(windowDrops.counts)
        drops.add(tailDrops)
        counters.drops = drops
        control.send(.heartbeat(counters))
    }
}
