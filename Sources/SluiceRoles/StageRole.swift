import CProcess
import Dispatch
import Foundation
import Logging
import SluiceConfig
import SluiceONNX
import SluicePlan
import SluiceProtocol
import SluiceTensor
import SluiceTransport
import SluiceWire

/// A stage process: runs a contiguous range of layers on every batch that reaches it.
/// It learns its range, model and endpoints from the controller, never from its command line,
/// and changes its range live (two-phase, see `StageMachine`) without pausing the stream:
/// weights for a move load on a background thread while batches keep flowing.
public final class StageRole: PipelineRole {
    private let name: String
    private let context = ZMQContext()
    private let control: ControlChannel
    private var logger: Logger

    private var assignment: StageAssignment?
    private var machine: StageMachine?
    private var executor: Executor?
    /// Layers the current executor holds weights for.
    private var executorLayers: Range<Int>?
    private let loader = WeightLoader()
    private var pull: ZMQSocket?
    private var push: ZMQSocket?
    private var counters = RoleCounters()
    private var layerTimings: [Int: LayerTiming] = [:]
    private var started = monotonicSeconds()
    private var nextHeartbeat = 0.0
    private var pendingShutdown = false

    public init(name: String, controller endpoint: String) throws {
        self.name = name
        logger = makeLogger(name)
        control = try ControlChannel(context: context, endpoint: endpoint, name: name)
    }

    /// Runs until the controller says shutdown (0), or a fatal error (1).
    public func run() -> Int32 {
        control.send(.hello(Hello(role: .stage, name: name, pid: getpid(), host: ProcessInfo.processInfo.hostName)))
        while true {
            if StopSignal.received > 0 || pendingShutdown {
                heartbeatIfDue(force: true)  // the controller's report waits for final counters
                return 0
            }
            var items: [(ZMQSocket, PollEvents)] = [(control.socket, .readable)]
            if let pull { items.append((pull, .readable)) }
            let ready: [PollEvents]
            do {
                ready = try poll(items, timeoutMilliseconds: 20)
            } catch {
                logger.error("poll failed: \(error)")
                return 1
            }
            while let message = control.receive(logger: logger) {
                if let status = handle(message) { return status }
            }
            installLoadedWeights()
            let timeout = assignment?.liveness.timeoutSeconds ?? 30
            if control.controllerSilent(for: timeout) {
                logger.error("the controller has been silent for \(Int(timeout)) s; exiting")
                return 1
            }
            if ready.count > 1, ready[1].contains(.readable) {
                // Drain what is queued, but come back to the control socket within ~10 ms, so a
                // move or a shutdown never waits behind a backlog.
                let drainUntil = monotonicSeconds() + 0.01
                while monotonicSeconds() < drainUntil, let frames = try? pull?.receive(dontWait: true) {
                    process(frames)
                }
            }
            heartbeatIfDue()
        }
    }

    /// Returns an exit status when the message ends the stage.
    private func handle(_ message: ControlMessage) -> Int32? {
        switch message {
        case .assignStage(let stageAssignment):
            do {
                try apply(stageAssignment)
                control.send(.ready)
            } catch {
                logger.error("cannot take assignment: \(error)")
                control.send(.failed(message: "\(error)"))
                return 1
            }
        case .prepare(let move):
            guard let assignment, var machine, move.ranges.indices.contains(assignment.stageIndex) else { break }
            let range = move.ranges[assignment.stageIndex]
            guard range.start >= 0, range.start < range.end, range.end <= assignment.cut.layers.count else {
                logger.warning("ignoring prepare of epoch \(move.epoch): layer range \(range) is outside the model's \(assignment.cut.layers.count) layers")
                break
            }
            let held = machine.prepare(epoch: move.epoch, range: range.start..<range.end)
            self.machine = machine
            if held == executorLayers {
                control.send(.prepared(epoch: move.epoch))
            } else {
                logger.info("preparing epoch \(move.epoch): loading weights for layers \(describe(held)) while batches flow")
                loader.load(assignment: assignment, layers: held, acking: move.epoch)
            }
        case .commit(let epoch):
            guard var machine else { break }
            if machine.commit(epoch: epoch) {
                self.machine = machine
                logger.info("epoch \(epoch): now running layers \(describe(machine.range))")
                control.send(.committed(epoch: epoch))
            } else {
                logger.warning("commit of epoch \(epoch), which was never prepared here")
            }
        case .retire(let epoch):
            guard let assignment, var machine else { break }
            let held = machine.retire(epoch: epoch)
            self.machine = machine
            if held != executorLayers { loader.load(assignment: assignment, layers: held, acking: nil) }
        case .connect(let endpoint):
            connect(push, toReplica: endpoint, logger: logger)
        case .shutdown(let reason):
            heartbeatIfDue(force: true)
            logger.debug("shutdown: \(reason)")
            return 0
        default:
            break
        }
        return nil
    }

    /// Swaps in weights a background load finished, if they still match what must be held.
    private func installLoadedWeights() {
        guard let loaded = loader.take() else { return }
        switch loaded.result {
        case .failure(let error):
            logger.error("cannot load weights for layers \(describe(loaded.layers)): \(error)")
            control.send(.failed(message: "cannot load weights for layers \(describe(loaded.layers)): \(error)"))
        case .success(let newExecutor):
            guard loaded.layers == machine?.held else { return }  // superseded by a later prepare
            let shrinking = (executor?.parameterBytes ?? 0) > newExecutor.parameterBytes
            executor = newExecutor
            executorLayers = loaded.layers
            // Hand freed weights back to the system, so a stage's memory follows its share.
            if shrinking { sluice_release_free_memory() }
            logger.info("holding layers \(describe(loaded.layers)) (\(newExecutor.parameterBytes) bytes of weights)")
            if let epoch = loaded.acking { control.send(.prepared(epoch: epoch)) }
        }
    }

    private func heartbeatIfDue(force: Bool = false) {
        guard let assignment, force || monotonicSeconds() >= nextHeartbeat else { return }
        if force { dropLog.flush() }  // the final heartbeat: say what the rate limit held back
        nextHeartbeat = monotonicSeconds() + assignment.liveness.heartbeatSeconds
        counters.elapsedSeconds = monotonicSeconds() - started
        // Whatever is neither compute nor waiting to send is waiting for input.
        counters.idleSeconds = max(0, counters.elapsedSeconds - counters.busySeconds - counters.blockedSeconds)
        counters.layers = layerTimings.keys.sorted().map { layerTimings[$0]! }
        counters.residentBytes = residentBytes()
        if !recentInStage.isEmpty {
            let sorted = recentInStage.sorted()
            counters.inStageP50Seconds = nearestRank(0.5, of: sorted)
            counters.inStageP99Seconds = nearestRank(0.99, of: sorted)
        }
        control.send(.heartbeat(counters))
    }

    private func apply(_ new: StageAssignment) throws {
        guard new.layers.start >= 0, new.layers.start < new.layers.end, new.layers.end <= new.cut.layers.count else {
            throw RoleError("layer range \(new.layers) is outside the model's \(new.cut.layers.count) layers")
        }
        let layers = new.layers.start..<new.layers.end
        Kernels.setThreads(new.threads)
        let loaded = try WeightLoader.executor(for: new, layers: layers)
        executor = loaded
        executorLayers = layers
        machine = StageMachine(range: layers, epoch: new.epoch)
        if pull == nil {
            let pullSocket = try ZMQSocket(context, .pull, lingerMilliseconds: 0, sendHighWaterMark: 2, receiveHighWaterMark: 2)
            try pullSocket.bind(new.pullEndpoint)
            pull = pullSocket
        }
        if push == nil {
            let pushSocket = try ZMQSocket(context, .push, lingerMilliseconds: 5000, sendHighWaterMark: 2, receiveHighWaterMark: 2)
            for endpoint in new.pushEndpoints { try pushSocket.connect(endpoint) }
            push = pushSocket
        }
        assignment = new
        started = monotonicSeconds()
        counters = RoleCounters()
        counters.residentBytesAtStart = residentBytes()
        logger.info("holding layers \(new.layers) (nodes \(loaded.nodes.lowerBound)..<\(loaded.nodes.upperBound), \(loaded.parameterBytes) bytes of weights)")
    }

    private lazy var dropLog = DropLog(logger: logger)
    /// Times in stage (received to sent, seconds) of the latest batches, for the live p50/p99.
    private var recentInStage: [Double] = []
    private var nextInStage = 0

    /// Counts, logs (rate-limited) and drops a message; `windows` when the header was readable.
    private func reject(_ reason: DropReason, _ detail: String, windows: Int = 0) {
        counters.rejected += 1
        dropLog.drop([(1, .batch), (windows, .window)], reason, detail)
        counters.drops = dropLog.counts
    }

    private func noteInStage(_ seconds: Double) {
        if recentInStage.count < 1024 {
            recentInStage.append(seconds)
        } else {
            recentInStage[nextInStage] = seconds
            nextInStage = (nextInStage + 1) % recentInStage.count
        }
    }

    private func process(_ frames: [ZMQFrame]) {
        guard let assignment, let machine, let executor, let push else { return reject(.notAssigned, "no assignment yet") }
        let received = wallNanos()
        var batch: Batch
        counters.received += 1
        do {
            batch = try Batch.decode(frames)
        } catch {
            return reject(.malformed, "\(error)")
        }
        let windows = batch.verifiedWindowCount
        switch machine.decide(cursor: Int(batch.header.cursor)) {
        case .reject(let reason):
            return reject(.misrouted, "batch \(batch.header.batchSequence): \(reason)", windows: windows)
        case .passThrough:
            break
        case .run(let layers):
            let computeStart = wallNanos()
            let clockStart = monotonicSeconds()
            var values = batch.tensors
            let samples = Int(batch.header.windowCount)
            do {
                if assignment.profiling {
                    for layerIndex in layers {
                        let layer = assignment.cut.layers[layerIndex]
                        let layerStart = monotonicSeconds()
                        try executor.run(layer.nodes, values: &values)
                        var timing = layerTimings[layerIndex] ?? LayerTiming(layer: layerIndex, seconds: 0, samples: 0)
                        timing.seconds += monotonicSeconds() - layerStart
                        timing.samples += samples
                        layerTimings[layerIndex] = timing
                    }
                } else {
                    let cut = assignment.cut
                    try executor.run(cut.layers[layers.lowerBound].nodeStart..<cut.layers[layers.upperBound - 1].nodeEnd, values: &values)
                }
            } catch {
                counters.busySeconds += monotonicSeconds() - clockStart
                return reject(.failedToRun, "batch \(batch.header.batchSequence): \(error)", windows: windows)
            }
            let computeSeconds = monotonicSeconds() - clockStart
            if assignment.slowdown > 0 { usleep(UInt32(min(computeSeconds * assignment.slowdown * 1e6, 60e6))) }
            counters.busySeconds += monotonicSeconds() - clockStart
            let boundary = assignment.cut.boundary(before: layers.upperBound)
            guard boundary.allSatisfy({ values[$0] != nil }) else {
                return reject(.failedToRun, "batch \(batch.header.batchSequence) lacks boundary tensors \(boundary.filter { values[$0] == nil })",
                              windows: windows)
            }
            batch.setTensors(values.filter { boundary.contains($0.key) }, order: boundary)
            batch.header.cursor = UInt16(layers.upperBound)
            if assignment.profiling {
                batch.header.hops.append(Hop(stage: UInt16(assignment.stageIndex), received: received, computeStart: computeStart,
                                             computeEnd: wallNanos(), sendStart: wallNanos()))
            }
            counters.batches += 1
            counters.samples += samples
        }
        send(batch, on: push)
        noteInStage(Double(wallNanos() &- received) / 1e9)
    }

    /// Sends downstream, counting the time spent waiting for room as blocked.
    private func send(_ batch: Batch, on socket: ZMQSocket) {
        let frames = batch.frames()
        var waitStart = monotonicSeconds()
        do {
            while try !socket.send(frames, dontWait: true) {
                _ = try poll([(socket, .writable), (control.socket, .readable)], timeoutMilliseconds: 100)
                if StopSignal.received > 0 || shutdownRequested() { return }
                if control.controllerSilent(for: assignment?.liveness.timeoutSeconds ?? 30) {
                    logger.error("the controller went silent while this stage waited to send; exiting")
                    pendingShutdown = true
                    return
                }
                counters.blockedSeconds += monotonicSeconds() - waitStart
                waitStart = monotonicSeconds()
                heartbeatIfDue()
            }
            counters.sent += 1
        } catch {
            logger.error("send failed: \(error)")
        }
        counters.blockedSeconds += monotonicSeconds() - waitStart
    }

    /// While blocked sending, the controller may still tell this stage to stop or to move;
    /// moves are handled here too, so a blocked stage never holds up a rebalance.
    private func shutdownRequested() -> Bool {
        while let message = control.receive(logger: logger) {
            if case .shutdown = message {
                pendingShutdown = true
            } else if handle(message) != nil {
                pendingShutdown = true
            }
        }
        installLoadedWeights()
        return pendingShutdown
    }
}

private func describe(_ layers: Range<Int>) -> String {
    layers.count == 1 ? "\(layers.lowerBound)" : "\(layers.lowerBound)-\(layers.upperBound - 1)"
}

/// Builds executors on a background thread, one at a time, so weights for a move load while
/// the stage keeps computing on the ones it has.
final class WeightLoader: @unchecked Sendable {
    struct Loaded {
        var layers: Range<Int>
        var acking: UInt32?
        var result: Result<Executor, Error>
    }

    private let queue = DispatchQueue(label: "sluice.weights")
    private let lock = NSLock()
    private var finished: [Loaded] = []

    func load(assignment: StageAssignment, layers: Range<Int>, acking epoch: UInt32?) {
        queue.async {
            let result = Result { try WeightLoader.executor(for: assignment, layers: layers) }
            self.lock.lock()
            self.finished.append(Loaded(layers: layers, acking: epoch, result: result))
            self.lock.unlock()
        }
    }

    /// The oldest finished load, if any.
    func take() -> Loaded? {
        lock.lock()
        defer { lock.unlock() }
        return finished.isEmpty ? nil : finished.removeFirst()
    }

    /// Reads the model and keeps only the weights of `layers`' nodes.
    static func executor(for assignment: StageAssignment, layers: Range<Int>) throws -> Executor {
        let model = try ONNXModel.load(path: assignment.modelPath)
        let nodes = assignment.cut.layers[layers.lowerBound].nodeStart..<assignment.cut.layers[layers.upperBound - 1].nodeEnd
        return try Executor(model: model, nodes: nodes)
    }
}
