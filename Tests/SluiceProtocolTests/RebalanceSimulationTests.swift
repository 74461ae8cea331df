import Foundation
import Testing
import SluiceTestSupport
import SluiceConfig
import SluicePlan
import SluiceWire
@testable import SluiceProtocol

/// A whole pipeline as the pure state machines the processes run — `SourceMachine`,
/// `StageMachine` for every stage process, `SinkMachine` and `ControllerMachine` with its
/// `RebalanceCoordinator` — with every data and control message delivered in a random order,
/// while the controller moves layer boundaries and adds replicas at random. The simulation
/// plays only the shells' I/O: the feed, the sockets (PUSH spreads a hop's batches over the
/// processes it is connected to), the clock, heartbeats, process starts and each stage's
/// background loader, which finishes loads later, one at a time, in the order asked.
/// Processes also crash at random points: a crashed process loses its state and every
/// message in flight to and from it; the controller sees it exit (or, for a stage process,
/// may hear nothing from it until its timeout), and a process it starts in its place begins
/// with a fresh machine. A crashed sink's output keeps what it had written out (its buffer
/// is lost); a crashed source's successor reads the same input from its start.
/// Layers are exact integer functions, so the single-process result of every window is known,
/// and any lost, duplicated, reordered or mis-computed batch shows.
private struct Simulation {
    static let modulus: Int64 = 1_000_003

    static func layer(_ index: Int, _ value: Int64) -> Int64 { (value * 31 + Int64(index) * 7 + 1) % modulus }

    static func singleProcess(_ value: Int64, layers: Int) -> Int64 {
        (0..<layers).reduce(value) { layer($1, $0) }
    }

    /// A batch on its way: each window's value as the layers run so far left it.
    struct DataMessage {
        var sequence: UInt64; var firstWindow: UInt64; var keys: [WindowKey]; var values: [Int64]; var cursor: Int; var epoch: UInt32
        var generation: UInt16 = 0
    }

    /// One stage process; a stage with replicas has several.
    struct Stage {
        var stage: Int
        var name: String
        var machine = StageMachine()
        /// Layers whose weights are loaded (what the installed executor holds).
        var loaded: Range<Int>?
        /// The background loader's queue: loads asked for and not yet finished, oldest first.
        var loads: [(layers: Range<Int>, acking: UInt32?)] = []
        /// The processes of the next hop its PUSH is connected to, by endpoint.
        var peers: [String] = []
        var finished = false
        /// Killed: it does nothing more, and what was queued to it is gone.
        var crashed = false
        /// Its PULL is bound (it took its assignment): peers' PUSH sockets hand it batches.
        var bound: Bool { !crashed && loaded != nil }

        init(stage: Int, name: String) { self.stage = stage; self.name = name }
    }

    /// One thing that can happen next.
    enum Step {
        case feedWindow, endInput, sourceSend, deliverToSink, deliverToController, move, grow, tick
        case deliverData(Int), deliverControl(String), finishLoad(Int)
    }

    /// Every batch's stamps: plausible, so the sink never drops one for its timestamps.
    static let created: UInt64 = 1_000
    /// Short, so that moves (whose retire waits for the sink's heartbeat) finish within a few hundred steps.
    static let liveness = Liveness(heartbeatSeconds: 0.02, timeoutSeconds: 2)
    static let initialEpoch: UInt32 = 1
    /// Small, as queues are unbounded here: a source that may keep a few dozen batches is held
    /// back (backpressure) rather than flood the stages with replays.
    static let replayBytes = 512

    let layers: Int
    var rng: SplitMix
    let stageCount: Int
    let cut: LayerCut
    /// Seconds on the simulated clock; only ticks move it.
    var now = 0.0
    var controller: ControllerMachine
    /// Every stage process, replicas included; data[p] feeds stage process p (each has its own pipe, as PUSH peers do).
    var stages: [Stage]
    var data: [[DataMessage]]
    let initialProcesses: Int
    var source = SourceMachine()
    var sourcePeers: [String] = []
    /// Batches the source made and has not yet handed to the first stage: a send waits while
    /// the stage has no room, and control messages reach the source meanwhile.
    var sourceOutbox: [DataMessage] = []
    var sourceAssigned = false
    var sourceFinished = false
    var windowsFed: UInt64 = 0
    var inputEnded = false
    /// Windows in the input, once it ended: a source started again reads the same input.
    var inputLength: UInt64?
    var sourceCrashed = false
    /// Windows a source that died had read of the input: the input is at least this long.
    var inputRead: UInt64 = 0
    var batchesMade: UInt64 = 0
    var batchesSent = 0
    /// Every mark the source answered: batches from its first batch on carry its epoch.
    /// Marks the sources answered, each with the generation of the source that did (a new one's
    /// assignment counts as a mark at its first batch).
    var marks: [(mark: Mark, generation: UInt16)] = []
    var sourceGeneration: UInt16 = 0
    var sourceDone: SourceDone?
    var sink = SinkMachine<DataMessage>()
    var sinkFinished = false
    var toSink: [DataMessage] = []
    /// The sink's output: what it wrote, of which the first `writtenOut` entries have left its process.
    var released: [DataMessage] = []
    var writtenOut = 0
    var sinkCrashed = false
    /// What the sink reported when it said the run was done.
    var sinkDone: SinkSummary?
    var toRoles: [String: [ControlMessage]] = [:]
    /// Every process's role name, in the order they started.
    var roleNames: [String] = []
    /// Where each stage process is in `stages`, by role name (and so by endpoint).
    var stageIndex: [String: Int] = [:]
    var toController: [(String, ControlMessage)] = []
    var lastHeartbeat: [String: Double] = [:]
    var outcome: ControllerOutcome?
    var violations: [String] = []
    var tracing = false
    func trace(_ text: @autoclosure () -> String) { if tracing { print(String(format: "%.3f ", now) + text()) } }
    /// Random moves, and random growths (each followed by a move), to start while the input flows.
    let movesWanted: Int
    let growthsWanted: Int
    var movesStarted = 0
    var growthsStarted = 0
    /// Stage processes to kill while the stream runs.
    let crashesWanted: Int
    /// Which processes a crash may hit: stage processes always, and the source and the sink when set.
    let crashesSourceAndSink: Bool
    /// Whether a crash may hit the controller too.
    let crashesController: Bool
    var controllerCrashes = 0
    /// A controller that took over after the input ended left the move the dead one left unfinished.
    var movesLeftAtTakeover = 0
    /// What a controller started in place of a dead one begins from: the plan the run started with.
    let initialAssignments: [String: ControlMessage]
    let initialCoordinator: RebalanceCoordinator
    var crashes = 0
    /// Crashes while a move was in flight.
    var crashesDuringMoves = 0
    var sinkCrashes = 0
    var sourceCrashes = 0
    /// Batches stages dropped as superseded by a replay (only ever after a crash).
    var superseded = 0
    /// The epochs each batch was sent again under, by sequence.
    var resentEpochs: [UInt64: Set<UInt32>] = [:]

    var coordinator: RebalanceCoordinator? { controller.coordinator }
    var isRebalancing: Bool { coordinator?.isMoving ?? false || coordinator?.isGrowing ?? false }
    /// Replicas that joined during the run.
    var replicasJoined: Int { (coordinator?.instances.count ?? 0) - initialProcesses }

    init(layers: Int, stages count: Int, moves: Int, growths: Int, crashes: Int = 0, crashesSourceAndSink: Bool = false,
         crashesController: Bool = false, seed: UInt64) {
        self.layers = layers
        self.crashesController = crashesController
        crashesWanted = crashes
        self.crashesSourceAndSink = crashesSourceAndSink
        movesWanted = moves
        growthsWanted = growths
        stageCount = count
        rng = SplitMix(seed: seed)
        let initial = Simulation.randomSplit(layers: layers, stages: count, rng: &rng)
        cut = LayerCut(layers: (0..<layers).map {
            Layer(index: $0, nodeStart: $0, nodeEnd: $0 + 1, opTypes: ["F"], flopsPerWindow: 1, parameterBytes: 4,
                  outputs: ["x"], outputBytesPerWindow: 8)
        }, inputs: ["x"], inputBytesPerWindow: 8)
        var processes: [[String]] = []
        for stage in initial.indices {
            processes.append((0..<(Int(rng.next() % 3) + 1)).map { StageInstance.name(stage: stage, replica: $0) })
        }
        processes.append(["sink"])
        var assignments: [String: ControlMessage] = [:]
        for stage in initial.indices {
            for name in processes[stage] {
                // Endpoints are the role names: a process binds its PULL under its own name.
                assignments[name] = .assignStage(StageAssignment(stageIndex: stage, epoch: Simulation.initialEpoch, modelPath: "model.onnx", cut: cut,
                                                                 layers: LayerSpan(initial[stage]), pullEndpoint: name,
                                                                 pushEndpoints: processes[stage + 1], slowdown: 0, liveness: Simulation.liveness))
            }
        }
        let batching = BatchingConfig(maxSize: Int(rng.next() % 4) + 1, maxDelayMilliseconds: 10)
        assignments["source"] = .assignSource(SourceAssignment(source: .tensors(TensorsSource(path: "windows.npy", rate: .max, rowsPerSecond: nil)),
                                                               window: nil, batching: batching, inputName: "x", windowShape: [1],
                                                               epoch: Simulation.initialEpoch, pushEndpoints: processes[0], liveness: Simulation.liveness,
                                                               replayBytes: Simulation.replayBytes))
        assignments["sink"] = .assignSink(SinkAssignment(sink: SinkConfig(kind: .jsonl, path: "-"), pullEndpoint: "sink", outputName: "x",
                                                         classes: [], layerCount: layers, liveness: Simulation.liveness))
        let stageNames = processes.dropLast().flatMap { $0 }
        initialProcesses = stageNames.count
        stages = []
        data = []
        let coordinator = RebalanceCoordinator(ranges: initial, epoch: Simulation.initialEpoch,
                                               rebalancer: Rebalancer(config: RebalanceConfig(policy: .off), cut: cut, stages: count),
                                               instances: stageNames)
        controller = ControllerMachine(assignments: assignments, liveness: Simulation.liveness, coordinator: coordinator,
                                       replicaEndpoint: { $0 })
        initialAssignments = assignments
        initialCoordinator = coordinator
        for name in stageNames { addStage(name) }
        perform(controller.handle(.tick(now: now)))
        // Every process starts and says hello, in no particular order.
        var names = stageNames + ["source", "sink"]
        names.shuffle(using: &rng)
        for name in names { sayHello(name) }
    }

    /// A stage process starts (in place of a dead one, under its name: what its upstream
    /// queued for the endpoint while it was away waits for it to bind).
    mutating func addStage(_ name: String) {
        guard let stage = StageInstance.stage(of: name) else {
            violations.append("\(name) is no stage process")
            return
        }
        if let index = stageIndex[name] {
            if !stages[index].crashed { violations.append("\(name) was started while it ran") }
            stages[index] = Stage(stage: stage, name: name)
            // What the controller sent the name before the new process connected went nowhere
            // (a ROUTER drops messages to a peer it has no connection to).
            toRoles[name] = []
            return
        }
        stageIndex[name] = stages.count
        stages.append(Stage(stage: stage, name: name))
        data.append([])
    }

    static func randomSplit(layers: Int, stages: Int, rng: inout SplitMix) -> [Range<Int>] {
        var cuts = Set<Int>()
        while cuts.count < stages - 1 { cuts.insert(Int(rng.next() % UInt64(layers - 1)) + 1) }
        let bounds = [0] + cuts.sorted() + [layers]
        return (0..<stages).map { bounds[$0]..<bounds[$0 + 1] }
    }

    mutating func sayHello(_ name: String) {
        let role: RoleKind = name == "source" ? .source : name == "sink" ? .sink : .stage
        if !roleNames.contains(name) { roleNames.append(name) }
        toController.append((name, .hello(Hello(role: role, name: name, pid: 1, host: "sim"))))
    }

    // MARK: The controller's shell

    mutating func perform(_ actions: [ControllerAction]) {
        for action in actions {
            switch action {
            case .send(let name, let message):
                if message != .ping { trace("ctl -> \(name): \(message.type) \(message.type == "heartbeat" ? "" : "\(message)".prefix(300))") }
                toRoles[name, default: []].append(message)
            case .spawn("sink"):
                if !sinkCrashed { violations.append("the sink was started while it ran") }
                sink = SinkMachine()
                sinkCrashed = false
                toRoles["sink"] = []
                sayHello("sink")
            case .spawn("source"):
                if !sourceCrashed { violations.append("the source was started while it ran") }
                source = SourceMachine()
                sourceCrashed = false
                toRoles["source"] = []
                sayHello("source")
            case .spawn(let name):
                // The new process starts and registers like any role.
                addStage(name)
                sayHello(name)
            case .finish(let result):
                if outcome != nil { violations.append("the controller finished twice") }
                outcome = result
            case .log(let text) where text.hasPrefix("the input has ended: the move"):
                trace("ctl log: \(text)")
                movesLeftAtTakeover += 1
            case .log(let text) where tracing:
                trace("ctl log: \(text)")
            case .fence(let name):
                // Only a crashed process goes silent here: there is nothing left to kill.
                if let index = stageIndex[name], !stages[index].crashed { violations.append("\(name) was fenced while it ran") }
            case .addReplica, .log:
                break  // the machine turns `addReplica` into `spawn`
            }
        }
    }

    /// One turn of the controller's loop takes what has arrived, up to a bound.
    mutating func deliverToController() {
        let taken = Int(rng.next() % UInt64(min(toController.count, 64))) + 1
        let turn = toController.prefix(taken)
        toController.removeFirst(taken)
        for (name, message) in turn {
            if message.type != "heartbeat" { trace("\(name) -> ctl: \(message.type) \("\(message)".prefix(200))") }
            perform(controller.handle(.received(from: name, message)))
        }
    }

    // MARK: The source's shell

    mutating func perform(_ actions: [SourceAction]) {
        for action in actions {
            switch action {
            case .takeAssignment(let assignment):
                sourcePeers = assignment.pushEndpoints
                sourceAssigned = true
                if let resume = assignment.resume {
                    // Its feed passes over the windows the sink has; it numbers on from where
                    // the sink stands, under the plan in force.
                    windowsFed = resume.window
                    batchesMade = resume.batch
                    sourceGeneration = resume.generation
                    marks.append((Mark(epoch: assignment.epoch, firstBatch: resume.batch), resume.generation))
                }
                perform(source.handle(.assigned(assignment)))
            case .send(let batch):
                if batch.batchSequence != batchesMade { violations.append("the source made batch \(batch.batchSequence) after \(batchesMade) batches") }
                batchesMade += 1
                sourceOutbox.append(DataMessage(sequence: batch.batchSequence, firstWindow: batch.firstWindow, keys: batch.keys,
                                                values: batch.input.floats.map { Int64($0) }, cursor: 0, epoch: batch.epoch,
                                                generation: batch.generation))
            case .resend(let batch):
                if crashes == 0 { violations.append("the source replayed batch \(batch.batchSequence) with no process dead") }
                resentEpochs[batch.batchSequence, default: []].insert(batch.epoch)
                sourceOutbox.append(DataMessage(sequence: batch.batchSequence, firstWindow: batch.firstWindow, keys: batch.keys,
                                                values: batch.input.floats.map { Int64($0) }, cursor: 0, epoch: batch.epoch,
                                                generation: batch.generation))
            case .sendControl(let message):
                if case .marked(let mark) = message { marks.append((mark, sourceGeneration)) }
                if case .sourceDone(let done) = message {
                    if sourceDone != nil { violations.append("the source said done twice") }
                    sourceDone = done
                }
                toController.append(("source", message))
            case .connectReplica(let endpoint):
                if !sourcePeers.contains(endpoint) { sourcePeers.append(endpoint) }
            case .drop(let count, let unit, let reason, let detail):
                violations.append("the source dropped \(unit.counted(count)) (\(reason.rawValue)): \(detail)")
            case .log(let level, let message) where level == .warning || level == .error:
                violations.append("the source logged: \(message)")
            case .finish:
                sourceFinished = true
                heartbeat("source")
            case .fail:
                violations.append("the source failed")
            case .startStreaming, .discardLateInput, .log:
                break
            }
        }
    }

    /// The feed cuts window n, whose single value is n.
    mutating func feedWindow() {
        let window = Window(key: WindowKey(sensor: "s", start: Double(windowsFed)), values: [Float(windowsFed)])
        windowsFed += 1
        perform(source.handle(.window(window, now: now)))
    }

    /// The source's PUSH hands its oldest batch to one of the first stage's processes.
    mutating func sourceSend() {
        let message = sourceOutbox.removeFirst()
        batchesSent += 1
        push(message, to: sourcePeers)
    }

    // MARK: The stages' shells

    /// A PUSH hands the message to one of the peers it is connected to whose connection is up
    /// (ZMQ_IMMEDIATE); while none is, the message waits for the first that comes back (it
    /// waits in that peer's queue here, which a crash before it binds empties: a loss the
    /// replay after the restart covers).
    mutating func push(_ message: DataMessage, to peers: [String]) {
        guard !peers.isEmpty else {
            violations.append("batch \(message.sequence) had nowhere to go")
            return
        }
        let live = peers.filter { stageIndex[$0].map { stages[$0].bound } ?? true }
        let choices = live.isEmpty ? peers : live
        let peer = choices[Int(rng.next() % UInt64(choices.count))]
        if peer == "sink" {
            toSink.append(message)
        } else if let index = stageIndex[peer] {
            data[index].append(message)
        } else {
            violations.append("batch \(message.sequence) went to \(peer), which no process binds")
        }
    }

    /// What a stage process's shell does with its machine's directives (batch answers are taken in `deliverData`).
    mutating func perform(_ actions: [StageAction], stage index: Int) {
        let name = stages[index].name
        for action in actions {
            if case .send = action {} else { trace("\(name) does \("\(action)".prefix(200))") }
            switch action {
            case .send(let message):
                toController.append((name, message))
            case .takeAssignment(let assignment, let layers):
                stages[index].loaded = layers
                stages[index].peers = assignment.pushEndpoints
                perform(stages[index].machine.handle(.assignmentTaken), stage: index)
            case .loadWeights(let layers, let epoch):
                stages[index].loads.append((layers, epoch))
            case .install(let layers):
                stages[index].loaded = layers
            case .connect(let endpoint):
                if !stages[index].peers.contains(endpoint) { stages[index].peers.append(endpoint) }
            case .compress:
                break  // changes the bytes on the link, never what a batch holds once widened
            case .log(let level, let message) where level == .warning || level == .error:
                violations.append("\(name) logged: \(message)")
            case .finish(let status, let finalHeartbeat):
                if status != 0 { violations.append("\(name) exited with status \(status)") }
                stages[index].finished = true
                if finalHeartbeat { heartbeat(name) }
            case .run, .passThrough, .reject:
                violations.append("\(name) did \(action) out of turn")
            case .log:
                break
            }
        }
    }

    mutating func deliverData(to hop: Int) {
        var message = data[hop].removeFirst()
        let stage = stages[hop]
        for action in stages[hop].machine.handle(.batch(sequence: message.sequence, cursor: message.cursor, epoch: message.epoch)) {
            switch action {
            case .reject(.superseded, let reason):
                if crashes == 0 { violations.append("\(stage.name) took batch \(message.sequence) for superseded with no process dead: \(reason)") }
                superseded += 1
                return
            case .reject(_, let reason):
                violations.append("\(stage.name) rejected batch \(message.sequence): \(reason)")
                return
            case .run(let range):
                guard let loaded = stage.loaded, range.lowerBound >= loaded.lowerBound && range.upperBound <= loaded.upperBound else {
                    violations.append("\(stage.name) ran layers \(range) holding only \(stage.loaded.map { "\($0)" } ?? "none")")
                    return
                }
                message.values = message.values.map { value in range.reduce(value) { Simulation.layer($1, $0) } }
                message.cursor = range.upperBound
            case .passThrough:
                break
            default:
                violations.append("\(stage.name) answered batch \(message.sequence) with \(action)")
            }
        }
        push(message, to: stage.peers)
    }

    /// The oldest background load of stage process `index` finishes.
    mutating func finishLoad(stage index: Int) {
        let load = stages[index].loads.removeFirst()
        perform(stages[index].machine.handle(.weightsLoaded(layers: load.layers, acking: load.acking, failure: nil)), stage: index)
    }

    // MARK: The sink's shell

    mutating func perform(_ actions: [SinkAction<DataMessage>]) {
        for action in actions {
            switch action {
            case .takeAssignment:
                perform(sink.handle(.assignmentTaken(at: Simulation.created, outputHolds: UInt64(released.reduce(0) { $0 + $1.keys.count }))))
            case .release(let release):
                // Rows the output holds already (written before a crash) are not written again.
                if release.alreadyOut < release.keys.count {
                    var rest = release.payload
                    rest.keys.removeFirst(release.alreadyOut)
                    rest.values.removeFirst(release.alreadyOut)
                    rest.firstWindow += UInt64(release.alreadyOut)
                    released.append(rest)
                }
                perform(sink.handle(.written(keys: release.keys, predictions: release.keys.map { _ in nil })))
                // A buffered output: what was written leaves the process now and then.
                if rng.next() % 2 == 0 { flushSink() }
            case .flushOutput:
                flushSink()
            case .finishOutput:
                flushSink()
                perform(sink.handle(.outputFinished))
            case .send(let message):
                if case .sinkDone(let summary) = message {
                    if sinkDone != nil { violations.append("the sink said done twice") }
                    sinkDone = summary
                }
                toController.append(("sink", message))
            case .drop(_, _, .superseded, _) where sourceCrashes > 0:
                break  // made by a source that died: its successor makes it again
            case .drop(_, _, let reason, let detail):
                violations.append("the sink dropped a batch (\(reason.rawValue)): \(detail)")
            case .log(let level, let message) where level == .warning || level == .error:
                violations.append("the sink logged: \(message)")
            case .finish(let status, let finalHeartbeat):
                if status != 0 { violations.append("the sink exited with status \(status)") }
                sinkFinished = true
                if finalHeartbeat { heartbeat("sink") }
            case .log, .closeOutput:
                break
            }
        }
    }

    mutating func flushSink() {
        writtenOut = released.count
        perform(sink.handle(.outputFlushed))
    }

    mutating func deliverToSink() {
        let message = toSink.removeFirst()
        let header = BatchHeader(batchSequence: message.sequence, firstWindow: message.firstWindow, windowCount: UInt32(message.keys.count),
                                 epoch: message.epoch, cursor: UInt16(message.cursor), created: Simulation.created, tensors: [],
                                 sourceGeneration: message.generation)
        perform(sink.handle(.batch(SinkArrival(header: header, verifiedWindows: message.keys.count, outputRows: message.values.count,
                                               metadata: WindowKey.encode(message.keys), arrived: Simulation.created + 1, payload: message))))
    }

    // MARK: Every shell

    /// Control messages to a process that has exited (or crashed) are lost with it.
    mutating func deliverControl(to name: String) {
        let message = toRoles[name, default: []].removeFirst()
        if message != .ping { trace("deliver to \(name): \(message.type)") }
        // The shell says hello to a controller that asks its roles to rejoin, then the machine answers.
        if message == .rejoin, !(stageIndex[name].map { stages[$0].crashed } ?? false) { sayHello(name) }
        if let index = stageIndex[name], stages[index].crashed { return }
        switch name {
        case "source":
            if !sourceFinished && !sourceCrashed { perform(source.handle(.control(message))) }
        case "sink":
            if !sinkFinished && !sinkCrashed { perform(sink.handle(.control(message))) }
        default:
            guard let index = stageIndex[name] else {
                violations.append("the controller sent \(message.type) to \(name), which is no process")
                return
            }
            if !stages[index].finished { perform(stages[index].machine.handle(.control(message)), stage: index) }
        }
    }

    /// Processes that took their assignment and have not exited: each reports its counters now and then.
    var reporting: [String] {
        var names = stages.filter { $0.machine.assignment != nil && !$0.finished && !$0.crashed }.map(\.name)
        if sourceAssigned && !sourceFinished && !sourceCrashed { names.append("source") }
        if sink.assignment != nil && !sinkFinished && !sinkCrashed { names.append("sink") }
        return names
    }

    mutating func heartbeat(_ name: String) {
        var counters = RoleCounters()
        switch name {
        case "sink":
            counters = sink.counters
        case "source":
            counters.batches = batchesSent
            counters.sent = batchesSent
            counters.replayed = source.replayed
        default:
            break
        }
        toController.append((name, .heartbeat(counters)))
        lastHeartbeat[name] = now
    }

    /// The clock moves on a few milliseconds: the source and the controller see the time, and
    /// every process whose heartbeat is due reports.
    mutating func tick() {
        now += Double(rng.next() % 5 + 1) / 1000
        if sourceAssigned && !sourceFinished && !sourceCrashed { perform(source.handle(.tick(now: now))) }
        for name in reporting where now - (lastHeartbeat[name] ?? -.infinity) >= Simulation.liveness.heartbeatSeconds { heartbeat(name) }
        perform(controller.handle(.tick(now: now)))
    }

    // MARK: The run

    func steps() -> [Step] {
        var steps: [Step] = [.tick]
        let rebalancesWanted = movesStarted < movesWanted || growthsStarted < growthsWanted
        if source.readsInput && !inputEnded && !sourceCrashed {
            if windowsFed < inputRead {
                // A source started again reads at least as far as the one that died.
                steps.append(.feedWindow)
            } else if let inputLength {
                // A source started again reads the input it ended with, to its end.
                steps.append(windowsFed < inputLength ? .feedWindow : .endInput)
            } else {
                steps.append(.feedWindow)
                // The input ends once the moves are done: a move waits for batches made after its mark.
                // (A controller still rejoining does not know yet whether a move is left to finish.)
                if !rebalancesWanted && !isRebalancing && controller.phase != .rejoining { steps.append(.endInput) }
            }
        }
        if !sourceOutbox.isEmpty && !sourceFinished && !sourceCrashed { steps.append(.sourceSend) }
        for index in data.indices where !data[index].isEmpty && stages[index].bound { steps.append(.deliverData(index)) }
        for index in stages.indices where !stages[index].loads.isEmpty && !stages[index].finished && !stages[index].crashed {
            steps.append(.finishLoad(index))
        }
        if !toSink.isEmpty && !sinkFinished && !sinkCrashed { steps.append(.deliverToSink) }
        for name in roleNames where !(toRoles[name]?.isEmpty ?? true) { steps.append(.deliverControl(name)) }
        if !toController.isEmpty { steps.append(.deliverToController) }
        if controller.phase == .running && !inputEnded && !isRebalancing {
            if movesStarted < movesWanted { steps.append(.move) }
            if growthsStarted < growthsWanted { steps.append(.grow) }
        }
        return steps
    }

    /// One random step (now and then, a crash).
    mutating func step() {
        if crashes < crashesWanted, controller.phase == .running || controller.phase == .draining, rng.next() % 400 == 0 {
            crash()
            return
        }
        let choices = steps()
        switch choices[Int(rng.next() % UInt64(choices.count))] {
        case .tick: tick()
        case .feedWindow: feedWindow()
        case .endInput:
            inputEnded = true
            inputLength = windowsFed
            perform(source.handle(.inputEnded(samplesInNoWindow: 0)))
        case .sourceSend: sourceSend()
        case .deliverData(let index): deliverData(to: index)
        case .finishLoad(let index): finishLoad(stage: index)
        case .deliverToSink: deliverToSink()
        case .deliverControl(let name): deliverControl(to: name)
        case .deliverToController: deliverToController()
        case .move:
            let split = Simulation.randomSplit(layers: layers, stages: stageCount, rng: &rng)
            if split != coordinator?.ranges {
                movesStarted += 1
                perform(controller.move(to: split, reason: "random move"))
            }
        case .grow:
            // One or two more processes for a random stage, then a random move with them.
            guard var wanted = coordinator?.replicas else { return }
            wanted[Int(rng.next() % UInt64(stageCount))] += Int(rng.next() % 2) + 1
            growthsStarted += 1
            perform(controller.grow(to: wanted, then: Simulation.randomSplit(layers: layers, stages: stageCount, rng: &rng),
                                    reason: "random growth"))
        }
    }

    /// A random running stage process is killed: its state, its queue and every message to and
    /// from it are lost. Half the time the controller sees it exit at once; else it learns of
    /// it only from its silence.
    mutating func crash() {
        if crashesController, rng.next() % 3 == 0 {
            crashController()
            return
        }
        if crashesSourceAndSink, rng.next() % 3 == 0 {
            if rng.next() % 2 == 0 { crashSink() } else { crashSource() }
            return
        }
        let running = stages.indices.filter { stages[$0].machine.assignment != nil && !stages[$0].finished && !stages[$0].crashed }
        guard !running.isEmpty else { return }
        let index = running[Int(rng.next() % UInt64(running.count))]
        let name = stages[index].name
        crashes += 1
        trace("CRASH \(name)")
        if isRebalancing { crashesDuringMoves += 1 }
        stages[index].crashed = true
        stages[index].loads = []
        data[index] = []
        toRoles[name] = []
        toController.removeAll { $0.0 == name }
        // A process the controller is starting watches no clock of its own yet (loading its
        // weights may take longer than a heartbeat): its exit is always seen, as the controller
        // started it and waits on it. One that hangs instead fails the run at the restart limit.
        if controller.isRestarting(name) || rng.next() % 2 == 0 { perform(controller.handle(.roleExited(name, how: "killed"))) }
    }

    /// The controller is killed and started again: what it had not yet taken or sent is lost
    /// (a random part of what it sent, still in its socket), and the new one knows only the
    /// plan the run started with until the roles rejoin. The data keeps flowing meanwhile.
    mutating func crashController() {
        // One death at a time: not while a process it started is still coming up.
        let restarting = roleNames.contains { controller.isRestarting($0) }
        // Nor while a stage process died that the controller has not yet missed.
        let unnoticed = stages.contains { $0.crashed && controller.stageInstances.joined().contains($0.name) && !controller.isRestarting($0.name) }
        guard !restarting, !unnoticed, !(coordinator?.isGrowing ?? false) else { return }
        crashes += 1
        controllerCrashes += 1
        if isRebalancing { crashesDuringMoves += 1 }
        toController.removeAll()
        for name in toRoles.keys.sorted() {
            let kept = Int(rng.next() % UInt64((toRoles[name]?.count ?? 0) + 1))
            toRoles[name] = Array(toRoles[name]?.prefix(kept) ?? [])
        }
        controller = ControllerMachine(assignments: initialAssignments, liveness: Simulation.liveness, coordinator: initialCoordinator,
                                       replicaEndpoint: { $0 }, rejoining: true)
        perform(controller.handle(.tick(now: now)))
    }

    /// The sink is killed: what it wrote and had not yet written out is lost with it, and so
    /// is what waited in its queue. The controller sees it exit.
    mutating func crashSink() {
        // One death at a time: not while the source is starting again.
        guard sink.assignment != nil, !sinkFinished, !sinkCrashed, !controller.isRestarting("source") else { return }
        crashes += 1
        sinkCrashes += 1
        sinkCrashed = true
        released.removeLast(released.count - writtenOut)
        toSink = []
        toRoles["sink"] = []
        toController.removeAll { $0.0 == "sink" }
        perform(controller.handle(.roleExited("sink", how: "killed")))
    }

    /// The source is killed with what it had not sent; its successor reads the input anew.
    mutating func crashSource() {
        guard sourceAssigned, !sourceFinished, !sourceCrashed, !controller.isRestarting("sink") else { return }
        crashes += 1
        sourceCrashes += 1
        sourceCrashed = true
        sourceAssigned = false
        sourceOutbox = []
        sourceDone = nil
        inputRead = max(inputRead, windowsFed)
        windowsFed = 0
        inputEnded = false
        toRoles["source"] = []
        toController.removeAll { $0.0 == "source" }
        perform(controller.handle(.roleExited("source", how: "killed")))
    }

    /// The controller has finished; the shutdowns it sent still reach their processes, which exit.
    mutating func deliverShutdowns() {
        while let name = roleNames.first(where: { !(toRoles[$0]?.isEmpty ?? true) }) { deliverControl(to: name) }
    }

    /// The epoch batch `sequence` must carry: that of the last mark at or before it.
    func epoch(of sequence: UInt64, generation: UInt16) -> UInt32 {
        marks.last { $0.mark.firstBatch <= sequence && $0.generation <= generation }?.mark.epoch ?? Simulation.initialEpoch
    }
}

/// Runs one seed to its end and checks every property of the run; returns the moves completed
/// and the replicas that joined.
private func simulate(seed: UInt64, moves: Int = 20, crashes: Int = 0, crashesSourceAndSink: Bool = false,
                      crashesController: Bool = false) -> (moves: Int, joined: Int, simulation: Simulation) {
    var generator = SplitMix(seed: seed * 7919 + 1)
    let layers = Int(generator.next() % 10) + 3
    let stages = Int(generator.next() % UInt64(min(3, layers - 2))) + 2  // always more than one possible split
    var simulation = Simulation(layers: layers, stages: stages, moves: moves, growths: 3, crashes: crashes,
                                crashesSourceAndSink: crashesSourceAndSink, crashesController: crashesController, seed: seed)
    simulation.tracing = ProcessInfo.processInfo.environment["SLUICE_SIM_TRACE"] == "\(seed)"
    var steps = 0
    // A violation ends the seed at once: a lost batch would otherwise hold the last move open until the step limit.
    while simulation.violations.isEmpty, simulation.outcome == nil, steps < 400_000 {
        simulation.step()
        steps += 1
    }
    simulation.deliverShutdowns()
    let moves = Int((simulation.coordinator?.epoch ?? Simulation.initialEpoch) - Simulation.initialEpoch)
    #expect(simulation.violations.isEmpty, "seed \(seed): \(simulation.violations.prefix(3))")
    guard case .completed(let summary)? = simulation.outcome else {
        Issue.record("seed \(seed): the run ended \(simulation.outcome.map { "\($0)" } ?? "never") after \(steps) steps")
        return (moves, simulation.replicasJoined, simulation)
    }
    let made = simulation.batchesMade
    // A source started again reads at least what the dead one had; once every window is out,
    // the run may end before it finishes reading.
    let windows = max(simulation.windowsFed, simulation.inputRead)
    if simulation.sourceDone != nil || simulation.sourceCrashes == 0 {
        #expect(simulation.sourceDone == SourceDone(batches: made, windows: windows), "seed \(seed): the source counted otherwise")
    }
    #expect(summary == simulation.sinkDone, "seed \(seed): the run's summary is not the sink's")
    #expect(summary.batches == made && summary.windows == windows,
            "seed \(seed): the summary counts \(summary.batches) batches, \(summary.windows) windows of \(made), \(windows)")
    // Only the batches a dead source made, which its successor made again, may be dropped.
    #expect(summary.duplicates == 0 && (simulation.sourceCrashes > 0 ? !summary.drops.anyLoss : summary.drops.isEmpty),
            "seed \(seed): \(summary.drops.summary)")
    // A batch the output held part of when a sink took over is written in two parts, one run apart.
    let sequences = simulation.released.map(\.sequence).enumerated().filter { $0.offset == 0 || simulation.released[$0.offset - 1].sequence != $0.element }
    #expect(sequences.map(\.element).elementsEqual(0..<made), "seed \(seed): released out of order or incompletely")
    #expect(simulation.released.flatMap(\.keys).map { UInt64($0.start) }.elementsEqual(0..<windows), "seed \(seed): windows out of order")
    #expect(simulation.released.allSatisfy { batch in
        zip(batch.keys, batch.values).allSatisfy { $1 == Simulation.singleProcess(Int64($0.start), layers: layers) }
    }, "seed \(seed): a window differs from the single-process result")
    // A replayed batch carries the epoch in force when it was sent again.
    let wrongEpoch = simulation.released.first {
        $0.epoch != simulation.epoch(of: $0.sequence, generation: $0.generation) && simulation.resentEpochs[$0.sequence]?.contains($0.epoch) != true
    }
    #expect(wrongEpoch == nil, "seed \(seed): batch \(wrongEpoch?.sequence ?? 0) of generation \(wrongEpoch?.generation ?? 0) carries epoch \(wrongEpoch?.epoch ?? 0), not the one in force when it was made (marks \(simulation.marks.map { "\($0.mark.epoch)@\($0.mark.firstBatch)" }))")
    let live = simulation.stages.filter { !$0.crashed }
    // Every live process takes part in moves (a process killed as the run ended may not have been missed yet).
    let instances = Set(simulation.coordinator?.instances ?? [])
    #expect(instances.isSuperset(of: live.map(\.name)) && instances.isSubset(of: simulation.stages.map(\.name)),
            "seed \(seed): a replica never joined")
    #expect(simulation.coordinator?.isMoving == false, "seed \(seed): a move never finished")
    #expect(simulation.sourceFinished && simulation.sinkFinished && live.allSatisfy(\.finished),
            "seed \(seed): a process was not shut down")
    // After the last retire, every stage holds only its own range: memory follows its share.
    // (Not when a controller took over after the input ended: a move it found is left as it
    // was, both plans' weights held to the end.)
    for stage in live where simulation.movesLeftAtTakeover == 0 {
        #expect(stage.machine.layers?.held == stage.machine.layers?.range, "seed \(seed): \(stage.name) still holds old weights")
        if stage.loads.isEmpty {
            #expect(stage.loaded == stage.machine.layers?.held, "seed \(seed): \(stage.name) runs on weights it should not hold")
        }
    }
    return (moves, simulation.replicasJoined, simulation)
}

/// Stages run as one to three processes each (replicas), so batches also overtake each other,
/// and replicas join while batches flow, each followed by a move. Every run ends as a real one
/// does: the input ends, the pipeline drains, the sink says done, every role shuts down.
@Test func randomLiveMovesNeverLoseDuplicateReorderOrMiscomputeABatch() {
    var totalMoves = 0
    var totalJoined = 0
    for seed in 0..<60 as Range<UInt64> {
        let run = simulate(seed: seed)
        totalMoves += run.moves
        totalJoined += run.joined
    }
    #expect(totalMoves >= 1000, "only \(totalMoves) moves completed")
    #expect(totalJoined >= 200, "only \(totalJoined) replicas joined")
}

/// The same runs with stage processes killed at random points on top (a replica, whose
/// siblings carry on, or a stage's only process, started again): the source replays what the
/// sink had not released, and every batch still comes out exactly once, in order, equal to
/// the single-process result.
@Test func stageProcessesKilledAtRandomNeverLoseDuplicateReorderOrMiscomputeABatch() {
    var totalCrashes = 0
    var restarts = 0
    var replayed = 0
    var totalMoves = 0
    var duringMoves = 0
    var superseded = 0
    for seed in 0..<60 as Range<UInt64> {
        let run = simulate(seed: seed + 1000, moves: 6, crashes: 4)
        totalCrashes += run.simulation.crashes
        duringMoves += run.simulation.crashesDuringMoves
        superseded += run.simulation.superseded
        restarts += run.simulation.controller.recovery.restarts
        replayed += run.simulation.source.replayed
        totalMoves += run.moves
    }
    #expect(totalCrashes >= 200, "only \(totalCrashes) processes killed")
    #expect(duringMoves >= 50, "only \(duringMoves) processes killed while a move was in flight")
    #expect(restarts >= 20, "only \(restarts) stages restarted")
    #expect(superseded >= 50, "only \(superseded) old-plan copies dropped as superseded")
    #expect(replayed >= 2000, "only \(replayed) batches replayed")
    #expect(totalMoves >= 400, "only \(totalMoves) moves completed")
}

/// The same with the source, the sink and the controller killed too, each started again: a
/// new sink takes up its output where it ends, a new source makes every batch the sink has
/// not released again from the same input (the dead one's copies are dropped), and a new
/// controller rebuilds the run from what the roles say and finishes or undoes the move the
/// dead one left.
@Test func anyProcessKilledAtRandomNeverLosesDuplicatesReordersOrMiscomputesABatch() {
    var sinkCrashes = 0
    var sourceCrashes = 0
    var controllerCrashes = 0
    var totalCrashes = 0
    for seed in 0..<60 as Range<UInt64> {
        let run = simulate(seed: seed + 2000, moves: 6, crashes: 6, crashesSourceAndSink: true, crashesController: true)
        controllerCrashes += run.simulation.controllerCrashes
        sinkCrashes += run.simulation.sinkCrashes
        sourceCrashes += run.simulation.sourceCrashes
        totalCrashes += run.simulation.crashes
    }
    #expect(sinkCrashes >= 30, "only \(sinkCrashes) sinks killed")
    #expect(sourceCrashes >= 30, "only \(sourceCrashes) sources killed")
    #expect(controllerCrashes >= 30, "only \(controllerCrashes) controllers killed")
    #expect(totalCrashes >= 200, "only \(totalCrashes) processes killed")
}

/// More seeds than the suite runs, on demand: `SLUICE_SIM_SEEDS=5000..<5240 swift test --filter
/// moreSeeds` (stage processes killed), with `SLUICE_SIM_KILL=all` for every kind of process.
/// `SLUICE_SIM_TRACE=SEED` prints what the controller and the stages did in that seed.
@Test(.enabled(if: ProcessInfo.processInfo.environment["SLUICE_SIM_SEEDS"] != nil))
func moreSeedsOnDemand() throws {
    let bounds = (ProcessInfo.processInfo.environment["SLUICE_SIM_SEEDS"] ?? "").components(separatedBy: "..<").compactMap { UInt64($0) }
    guard bounds.count == 2, bounds[0] < bounds[1] else {
        Issue.record("SLUICE_SIM_SEEDS must read FIRST..<END")
        return
    }
    let all = ProcessInfo.processInfo.environment["SLUICE_SIM_KILL"] == "all"
    for seed in bounds[0]..<bounds[1] {
        _ = simulate(seed: seed, moves: 6, crashes: 6, crashesSourceAndSink: all, crashesController: all)
    }
}
