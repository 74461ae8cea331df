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
public final class StageRole: PipelineRole, RoleAdapter {
    private let shell: RoleShell
    private var logger: Logger { shell.logger }
    private var machine = StageMachine()

    private var assignment: StageAssignment?
    private var executor: Executor?
    private let loader = WeightLoader()
    /// The load whose result the machine is deciding on.
    private var finishedLoad: WeightLoader.Loaded?
    private var pull: ZMQSocket?
    private var push: ZMQSocket?
    private var counters = RoleCounters()
    private var layerTimings: [Int: LayerTiming] = [:]
    private var started = monotonicSeconds()
    private lazy var dropLog = DropLog(logger: logger)
    /// Times in stage (received to sent, seconds) of the latest batches, for the live p50/p99.
    private var recentInStage: [Double] = []
    private var nextInStage = 0

    public init(name: String, controller endpoint: String, keys: RoleKeys?, binding: DataBinding?) throws {
        shell = try RoleShell(name: name, controller: endpoint, keys: keys)
        pull = try binding.map { try shell.bindAdvertised($0) }
    }

    /// Runs until the controller says shutdown (0), or a fatal error (1).
    public func run() -> Int32 { shell.run(self) }

    var kind: RoleKind { .stage }
    var liveness: Liveness? { assignment?.liveness }
    var dataSocket: ZMQSocket? { pull }
    var pollMilliseconds: Int { 20 }

    /// Where models fetched from the controller are kept.
    public var modelCache = ModelFetch.defaultFolder
    /// What waits for a model file being fetched: the assignment, or a load for a move.
    private enum Waiting {
        case assignment(StageAssignment)
        case load(layers: Range<Int>, acking: UInt32?)
    }
    /// The weights being fetched (`model` once the first piece came), how far pieces have been
    /// asked for, and what waits for them.
    private var fetch: (request: ModelRequest, model: ModelFetch?, askedUpTo: Int, then: Waiting)?
    /// Pieces asked for ahead of the one being taken: each request crosses this host's link
    /// out, which may be busy with batches, so one at a time would wait on it for every piece.
    private static let piecesAhead = 4
    /// Whole model files on this host by digest: the assignment's own path, or a fetched copy.
    private var modelsHere: [String: String] = [:]
    /// The layers whose weights the model file in use holds, when it holds only some (fetched
    /// for this stage's layers): a move to others fetches theirs first.
    private var fileLayers: Range<Int>?

    func handle(_ message: ControlMessage) -> RoleExit? {
        switch message {
        case .modelPiece(let piece):
            return take(piece)
        case .assignStage(var assignment) where assignment.modelDigest != nil:
            guard let path = modelHere(assignment) else {
                return startFetch(assignment, layers: assignment.layers, then: .assignment(assignment))
            }
            assignment.modelPath = path
            return perform(machine.handle(.control(.assignStage(assignment))))
        default:
            return perform(machine.handle(.control(message)))
        }
    }

    /// The model the assignment names, if this host has it whole: at its path, or fetched before.
    private func modelHere(_ assignment: StageAssignment) -> String? {
        guard let digest = assignment.modelDigest else { return assignment.modelPath }
        if let path = modelsHere[digest] { return path }
        let path = SHA256.file(assignment.modelPath) == digest ? assignment.modelPath : ModelFetch.cached(digest, in: modelCache)
        modelsHere[digest] = path
        return path
    }

    /// This host lacks the model (no shared filesystem): the controller sends the weights of
    /// `layers`.
    private func startFetch(_ assignment: StageAssignment, layers: LayerSpan, then waiting: Waiting) -> RoleExit? {
        guard let digest = assignment.modelDigest else { return nil }
        let request = ModelRequest(digest: digest, offset: 0, layers: layers)
        if let fetch, fetch.request == request {
            self.fetch?.then = waiting
            return nil
        }
        fetch = (request, nil, 0, waiting)
        logger.info("\(assignment.modelPath) is not on this host; fetching the weights of layers \(layers) from the controller")
        shell.control.send(.fetchModel(request))
        return nil
    }

    private func take(_ piece: ModelPiece) -> RoleExit? {
        guard let (request, started, askedUpTo, waiting) = fetch, piece.digest == request.digest, piece.layers == request.layers else {
            logger.warning("dropped a model piece nobody asked for")
            return nil
        }
        do {
            let model = try started ?? ModelFetch(digest: piece.fileDigest ?? piece.digest, total: piece.total, folder: modelCache)
            let before = model.received
            let taken = try model.take(piece)
            let pieceBytes = max(1, model.received - before)
            guard let path = taken else {
                // Keep a few pieces asked for beyond this one (the controller answers in order).
                var asked = max(askedUpTo, model.received)
                while asked < model.total, asked < model.received + Self.piecesAhead * pieceBytes {
                    var next = request
                    next.offset = asked
                    shell.control.send(.fetchModel(next))
                    asked += pieceBytes
                }
                fetch = (request, model, asked, waiting)
                return nil
            }
            fetch = nil
            let layers = request.layers.map { $0.start..<$0.end }
            if layers == nil { modelsHere[request.digest] = path }
            fileLayers = layers
            logger.info("fetched the weights of layers \(request.layers.map(\.description) ?? "all") from the controller into \(path) (\(model.total) bytes, sha256 checked)")
            switch waiting {
            case .assignment(var assignment):
                assignment.modelPath = path
                return perform(machine.handle(.control(.assignStage(assignment))))
            case .load(let layers, let acking):
                self.assignment?.modelPath = path
                if let assignment = self.assignment { loader.load(assignment: assignment, layers: layers, acking: acking) }
                return nil
            }
        } catch {
            fetch = nil
            return failAssignment("fetching the model failed: \(error)")
        }
    }

    private func failAssignment(_ reason: String) -> RoleExit? {
        logger.error("\(reason)")
        shell.control.send(.failed(message: reason))
        return RoleExit(status: 1, finalHeartbeat: false)
    }

    func stopSignalled() -> RoleExit? { perform(machine.handle(.stopSignal)) }

    /// Hands the machine the weights a background load finished; it installs them if they still
    /// match what must be held.
    func takeFinishedWork() -> RoleExit? {
        guard let loaded = loader.take() else { return nil }
        finishedLoad = loaded
        defer { finishedLoad = nil }
        var failure: String?
        if case .failure(let error) = loaded.result { failure = "\(error)" }
        return perform(machine.handle(.weightsLoaded(layers: loaded.layers, acking: loaded.acking, failure: failure)))
    }

    /// Performs the machine's directives in order; returns the exit one of them asks for.
    private func perform(_ actions: [StageAction]) -> RoleExit? {
        for action in actions {
            switch action {
            case .send(let message):
                shell.control.send(message)
            case .takeAssignment(let new, let layers):
                do {
                    try take(new, layers: layers)
                } catch {
                    return perform(machine.handle(.assignmentFailed("\(error)")))
                }
                if let exit = perform(machine.handle(.assignmentTaken)) { return exit }
            case .loadWeights(let layers, let epoch):
                guard let assignment else { break }
                if let held = fileLayers, layers.lowerBound < held.lowerBound || layers.upperBound > held.upperBound {
                    // A move needs weights this host was never sent: fetch them, then load.
                    if let exit = startFetch(assignment, layers: LayerSpan(layers), then: .load(layers: layers, acking: epoch)) { return exit }
                } else {
                    loader.load(assignment: assignment, layers: layers, acking: epoch)
                }
            case .install(let layers):
                guard case .success(let newExecutor)? = finishedLoad?.result, finishedLoad?.layers == layers else { break }
                let shrinking = (executor?.parameterBytes ?? 0) > newExecutor.parameterBytes
                executor = newExecutor
                // Hand freed weights back to the system, so a stage's memory follows its share.
                if shrinking { sluice_release_free_memory() }
                logger.info("holding layers \(LayerSpan(layers)) (\(newExecutor.parameterBytes) bytes of weights)")
            case .connect(let endpoint):
                shell.connectReplica(push, endpoint)
            case .compress(let compression):
                assignment?.compression = compression
            case .log(let level, let message):
                logger.log(level, message)
            case .finish(let status, let finalHeartbeat):
                return RoleExit(status: status, finalHeartbeat: finalHeartbeat)
            case .run, .passThrough, .reject:
                break  // answers about a batch, taken in `receive`
            }
        }
        return nil
    }

    func counters(final: Bool) -> RoleCounters? {
        guard assignment != nil else { return nil }
        if final { dropLog.flush() }  // the final heartbeat: say what the rate limit held back
        counters.elapsedSeconds = monotonicSeconds() - started
        // Whatever is neither compute nor waiting to send is waiting for input.
        counters.idleSeconds = max(0, counters.elapsedSeconds - counters.busySeconds - counters.blockedSeconds)
        counters.layers = layerTimings.keys.sorted().compactMap { layerTimings[$0] }
        counters.residentBytes = residentBytes()
        if !recentInStage.isEmpty {
            let sorted = recentInStage.sorted()
            counters.inStageP50Seconds = nearestRank(0.5, of: sorted)
            counters.inStageP99Seconds = nearestRank(0.99, of: sorted)
        }
        return counters
    }

    /// Loads the assignment's weights now (the stage is not ready before) and opens its sockets.
    private func take(_ new: StageAssignment, layers: Range<Int>) throws {
        Kernels.setThreads(new.threads)
        let loaded = try WeightLoader.executor(for: new, layers: layers)
        executor = loaded
        if pull == nil {
            let pullSocket = try ZMQSocket(shell.context, .pull, lingerMilliseconds: 0, sendHighWaterMark: 2, receiveHighWaterMark: 2)
            try shell.bindData(pullSocket, new.pullEndpoint)
            pull = pullSocket
        }
        if push == nil {
            let pushSocket = try ZMQSocket(shell.context, .push, lingerMilliseconds: 5000, sendHighWaterMark: 2, receiveHighWaterMark: 2)
            // Batches go only to peers whose connection is up: when a peer dies, libzmq drops its
        // pipe and spreads what follows over the live ones (or holds it until one is back),
        // instead of queueing batches for a process that may never return.
        try pushSocket.queueOnlyToConnectedPeers()
        for endpoint in new.pushEndpoints { try shell.connectData(pushSocket, endpoint) }
            push = pushSocket
        }
        // The counters are this process's: an assignment sent again (the same, or after a fetch)
        // must not start them over, or the final report says the stage computed nothing.
        if assignment == nil {
            started = monotonicSeconds()
            counters = RoleCounters()
            counters.residentBytesAtStart = residentBytes()
        }
        assignment = new
        logger.info("holding layers \(new.layers) (nodes \(loaded.nodes.lowerBound)..<\(loaded.nodes.upperBound), \(loaded.parameterBytes) bytes of weights)")
    }

    /// Counts, logs (rate-limited) and drops a message; `windows` when the header was readable.
    private func reject(_ reason: DropReason, _ detail: String, windows: Int = 0) {
        // A copy superseded by a replay is expected after a death, not a bad message.
        if reason != .superseded { counters.rejected += 1 }
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

    func receive(_ frames: [ZMQFrame]) -> RoleExit? {
        guard let assignment, let executor, let push else {
            reject(.notAssigned, "no assignment yet")
            return nil
        }
        let received = wallNanos()
        var batch: Batch
        counters.received += 1
        counters.receivedBytes += frames.reduce(0) { $0 + $1.count }
        do {
            batch = try Batch.decode(frames)
        } catch {
            reject(.malformed, "\(error)")
            return nil
        }
        let windows = batch.verifiedWindowCount
        for action in machine.handle(.batch(sequence: batch.header.batchSequence, cursor: Int(batch.header.cursor), epoch: batch.header.epoch)) {
            switch action {
            case .reject(let reason, let detail):
                reject(reason, detail, windows: windows)
                return nil
            case .run(let layers):
                guard run(layers, on: &batch, executor: executor, assignment: assignment, received: received, windows: windows) else { return nil }
            default:
                break  // .passThrough: forwarded as it came
            }
        }
        if assignment.compression != .none {
            var tally = counters.narrowing ?? NarrowingTally()
            batch.compress(assignment.compression, tally: &tally)
            counters.narrowing = tally
        }
        let frames = batch.frames()
        let sent = shell.send(frames, on: push)
        counters.blockedSeconds += sent.blockedSeconds
        guard sent.delivered else { return nil }
        counters.sent += 1
        counters.sentBytes += frames.reduce(0) { $0 + $1.byteCount }
        noteInStage(Double(wallNanos() &- received) / 1e9)
        return nil
    }

    /// Runs `layers` on the batch and leaves only the tensors the next layer needs; false (after
    /// counting the drop) when they fail to run.
    private func run(_ layers: Range<Int>, on batch: inout Batch, executor: Executor, assignment: StageAssignment, received: UInt64,
                     windows: Int) -> Bool {
        let computeStart = wallNanos()
        let clockStart = monotonicSeconds()
        var values = batch.tensors
        let windowCount = Int(batch.header.windowCount)
        do {
            if assignment.profiling {
                for layerIndex in layers {
                    let layer = assignment.cut.layers[layerIndex]
                    let layerStart = monotonicSeconds()
                    try executor.run(layer.nodes, values: &values)
                    var timing = layerTimings[layerIndex] ?? LayerTiming(layer: layerIndex, seconds: 0, windows: 0)
                    timing.seconds += monotonicSeconds() - layerStart
                    timing.windows += windowCount
                    layerTimings[layerIndex] = timing
                }
            } else {
                let cut = assignment.cut
                try executor.run(cut.layers[layers.lowerBound].nodeStart..<cut.layers[layers.upperBound - 1].nodeEnd, values: &values)
            }
        } catch {
            counters.busySeconds += monotonicSeconds() - clockStart
            reject(.failedToRun, "batch \(batch.header.batchSequence): \(error)", windows: windows)
            return false
        }
        let computeSeconds = monotonicSeconds() - clockStart
        if assignment.slowdown > 0 { usleep(UInt32(min(computeSeconds * assignment.slowdown * 1e6, 60e6))) }
        counters.busySeconds += monotonicSeconds() - clockStart
        let boundary = assignment.cut.boundary(before: layers.upperBound)
        guard boundary.allSatisfy({ values[$0] != nil }) else {
            reject(.failedToRun, "batch \(batch.header.batchSequence) lacks boundary tensors \(boundary.filter { values[$0] == nil })", windows: windows)
            return false
        }
        batch.setTensors(values.filter { boundary.contains($0.key) }, order: boundary)
        batch.header.cursor = UInt16(layers.upperBound)
        if assignment.profiling {
            batch.header.hops.append(Hop(stage: UInt16(assignment.stageIndex), received: received, computeStart: computeStart,
                                         computeEnd: wallNanos(), sendStart: wallNanos()))
        }
        counters.batches += 1
        counters.windows += windowCount
        return true
    }
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
