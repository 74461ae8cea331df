import Testing
import SluiceTestSupport
import SluiceConfig
import SluicePlan
import SluiceWire
@testable import SluiceProtocol

/// A whole pipeline as pure state machines — source, stages, sink, controller — with every
/// data and control message delivered in a random order, while the controller moves layer
/// boundaries at random. Every stage process and the sink run the machines the real processes
/// run (`StageMachine`, `SinkMachine`); the simulation plays only their shells' I/O and each
/// stage's background loader, which finishes loads later, one at a time, in the order asked.
/// Layers are exact integer functions, so the single-process result of every batch is known,
/// and any lost, duplicated, reordered or mis-computed batch shows.
private struct Simulation {
    static let modulus: Int64 = 1_000_003

    static func layer(_ index: Int, _ value: Int64) -> Int64 { (value * 31 + Int64(index) * 7 + 1) % modulus }

    static func singleProcess(_ value: Int64, layers: Int) -> Int64 {
        (0..<layers).reduce(value) { layer($1, $0) }
    }

    struct DataMessage { var sequence: UInt64; var value: Int64; var cursor: Int; var epoch: UInt32 }

    /// One stage process; a stage with replicas has several.
    struct Stage {
        var stage: Int
        var name: String
        var machine = StageMachine()
        /// Layers whose weights are loaded (what the installed executor holds).
        var loaded: Range<Int>?
        /// The background loader's queue: loads asked for and not yet finished, oldest first.
        var loads: [(layers: Range<Int>, acking: UInt32?)] = []
        /// Whether the hop before it sends to it (a replica added live is not yet connected).
        var connected = true

        init(stage: Int, name: String, connected: Bool = true) {
            self.stage = stage; self.name = name; self.connected = connected
        }
    }

    let layers: Int
    var rng: SplitMix
    let stageCount: Int
    /// Every stage process, replicas included.
    var stages: [Stage]
    var coordinator: RebalanceCoordinator
    /// data[p] feeds stage process p (each has its own pipe, as PUSH peers do).
    var data: [[DataMessage]]
    var toSink: [DataMessage] = []
    var toRoles: [String: [ControlMessage]] = [:]
    var toController: [(String, ControlMessage)] = []
    var sourceEpoch: UInt32 = 1
    var nextSequence: UInt64 = 0
    let cut: LayerCut
    var sink = SinkMachine<DataMessage>()
    var released: [DataMessage] = []
    /// What the sink reported when it said the run was done.
    var sinkDone: SinkSummary?
    var violations: [String] = []
    var movesStarted = 0
    var growthsStarted = 0
    var replicasJoined = 0

    init(layers: Int, stages count: Int, seed: UInt64) {
        self.layers = layers
        stageCount = count
        rng = SplitMix(seed: seed)
        let initial = Simulation.randomSplit(layers: layers, stages: count, rng: &rng)
        cut = LayerCut(layers: (0..<layers).map {
            Layer(index: $0, nodeStart: $0, nodeEnd: $0 + 1, opTypes: ["F"], flopsPerWindow: 1, parameterBytes: 4,
                  outputs: ["x"], outputBytesPerWindow: 8)
        }, inputs: ["x"], inputBytesPerWindow: 8)
        var processes: [Stage] = []
        for stage in initial.indices {
            for replica in 0..<(Int(rng.next() % 3) + 1) {
                processes.append(Stage(stage: stage, name: StageInstance.name(stage: stage, replica: replica)))
            }
        }
        stages = processes
        coordinator = RebalanceCoordinator(ranges: initial, epoch: 1,
                                           rebalancer: Rebalancer(config: RebalanceConfig(policy: .off), cut: cut, stages: count),
                                           instances: processes.map(\.name))
        data = Array(repeating: [], count: processes.count)
        for (index, process) in processes.enumerated() { assign(index, range: initial[process.stage], epoch: 1) }
        let liveness = Liveness(heartbeatSeconds: 1, timeoutSeconds: 5)
        let sinkAssignment = SinkAssignment(sink: SinkConfig(kind: .jsonl, path: "-"), pullEndpoint: "sink", outputName: "x", classes: [],
                                            layerCount: layers, liveness: liveness)
        perform(sink.handle(.control(.assignSink(sinkAssignment))))
        perform(sink.handle(.assignmentTaken(at: Simulation.created)))
    }

    /// Every batch's stamps: plausible, so the sink never drops one for its timestamps.
    static let created: UInt64 = 1_000
    static let windowKey = WindowKey.encode([WindowKey(sensor: "s", start: 0)])

    /// What the controller assigns stage process `index`: the range and epoch in force. The
    /// simulation's shell takes it at once.
    mutating func assign(_ index: Int, range: Range<Int>, epoch: UInt32) {
        let assignment = StageAssignment(stageIndex: stages[index].stage, epoch: epoch, modelPath: "model.onnx", cut: cut,
                                         layers: LayerSpan(range), pullEndpoint: stages[index].name,
                                         pushEndpoints: [], slowdown: 0, liveness: Liveness(heartbeatSeconds: 1, timeoutSeconds: 5))
        for action in stages[index].machine.handle(.control(.assignStage(assignment))) {
            guard case .takeAssignment(_, let layers) = action else {
                violations.append("\(stages[index].name) did not take its assignment: \(action)")
                continue
            }
            stages[index].loaded = layers
            perform(stages[index].machine.handle(.assignmentTaken), stage: index)
        }
    }

    /// What a stage process's shell does with its machine's directives (batch answers are taken in `deliverData`).
    mutating func perform(_ actions: [StageAction], stage index: Int) {
        let name = stages[index].name
        for action in actions {
            switch action {
            case .send(.ready):
                break  // the controller machine's business, not the moves'
            case .send(let message):
                toController.append((name, message))
            case .loadWeights(let layers, let epoch):
                stages[index].loads.append((layers, epoch))
            case .install(let layers):
                stages[index].loaded = layers
            case .log(let level, let message) where level == .warning || level == .error:
                violations.append("\(name) logged: \(message)")
            case .finish, .takeAssignment, .run, .passThrough, .reject:
                violations.append("\(name) did \(action) out of turn")
            case .connect, .log:
                break
            }
        }
    }

    /// What the sink's shell does with its machine's directives.
    mutating func perform(_ actions: [SinkAction<DataMessage>]) {
        for action in actions {
            switch action {
            case .release(let release):
                released.append(release.payload)
            case .finishOutput:
                perform(sink.handle(.outputFinished))
            case .send(.sinkDone(let summary)):
                if sinkDone != nil { violations.append("the sink said done twice") }
                sinkDone = summary
                if released.count != Int(summary.batches) || summary.batches != nextSequence {
                    violations.append("the sink said done after \(summary.batches) batches with \(released.count) released of \(nextSequence) sent")
                }
            case .drop(_, _, let reason, let detail):
                violations.append("the sink dropped a batch (\(reason.rawValue)): \(detail)")
            case .log(let level, let message) where level == .warning || level == .error:
                violations.append("the sink logged: \(message)")
            case .send, .log, .takeAssignment, .closeOutput, .finish:
                break
            }
        }
    }

    static func randomSplit(layers: Int, stages: Int, rng: inout SplitMix) -> [Range<Int>] {
        var cuts = Set<Int>()
        while cuts.count < stages - 1 { cuts.insert(Int(rng.next() % UInt64(layers - 1)) + 1) }
        let bounds = [0] + cuts.sorted() + [layers]
        return (0..<stages).map { bounds[$0]..<bounds[$0 + 1] }
    }

    /// A PUSH to `stage` hands the message to one of its connected processes (the sink past the last stage).
    mutating func push(_ message: DataMessage, toStage stage: Int) {
        guard stage < stageCount else {
            toSink.append(message)
            return
        }
        let peers = stages.indices.filter { stages[$0].stage == stage && stages[$0].connected }
        data[peers[Int(rng.next() % UInt64(peers.count))]].append(message)
    }

    mutating func perform(_ actions: [ControllerAction]) {
        for action in actions {
            switch action {
            case .send(let name, let message):
                toRoles[name, default: []].append(message)
            case .addReplica(let stage):
                // What the controller machine assigns a new replica: the range and epoch in force.
                let replica = stages.filter { $0.stage == stage }.count
                stages.append(Stage(stage: stage, name: StageInstance.name(stage: stage, replica: replica), connected: false))
                data.append([])
                assign(stages.count - 1, range: coordinator.ranges[stage], epoch: coordinator.epoch)
            default:
                break
            }
        }
    }

    mutating func sinkHeartbeat() {
        var counters = RoleCounters()
        counters.batches = sink.counters.batches
        perform(coordinator.heartbeat(from: "sink", counters: counters, sinkName: "sink"))
    }

    /// One random step; returns false when nothing could happen.
    mutating func step(batches: UInt64, moves: Int) -> Bool {
        var choices: [Int] = []
        if nextSequence < batches { choices.append(0) }
        for (index, queue) in data.enumerated() where !queue.isEmpty { choices.append(100 + index) }
        for (index, name) in toRoles.keys.sorted().enumerated() where !(toRoles[name]!.isEmpty) { choices.append(200 + index) }
        if !toController.isEmpty { choices.append(300) }
        for (index, stage) in stages.enumerated() where !stage.loads.isEmpty { choices.append(400 + index) }
        if !toSink.isEmpty { choices.append(150) }
        if !coordinator.isMoving && !coordinator.isGrowing && movesStarted < moves { choices.append(500) }
        if !coordinator.isMoving && !coordinator.isGrowing && growthsStarted < moves / 10 { choices.append(700) }
        for (index, stage) in stages.enumerated() where !stage.connected { choices.append(800 + index) }
        choices.append(600)  // sink heartbeat
        guard choices.count > 1 || nextSequence < batches || !data.allSatisfy(\.isEmpty) || !toSink.isEmpty
                || coordinator.isMoving || coordinator.isGrowing else { return false }
        let choice = choices[Int(rng.next() % UInt64(choices.count))]
        switch choice {
        case 0:
            push(DataMessage(sequence: nextSequence, value: Int64(nextSequence) * 7 + 3, cursor: 0, epoch: sourceEpoch), toStage: 0)
            nextSequence += 1
            if nextSequence == batches {
                toRoles["sink", default: []].append(.expect(SourceDone(batches: batches, windows: batches)))
            }
        case 150:
            let message = toSink.removeFirst()
            let header = BatchHeader(batchSequence: message.sequence, firstWindow: message.sequence, windowCount: 1, epoch: message.epoch,
                                     cursor: UInt16(message.cursor), created: Simulation.created, tensors: [])
            perform(sink.handle(.batch(SinkArrival(header: header, verifiedWindows: 1, outputRows: 1, metadata: Simulation.windowKey,
                                                   arrived: Simulation.created + 1, payload: message))))
        case 100..<150:
            deliverData(to: choice - 100)
        case 200..<300:
            let name = toRoles.keys.sorted()[choice - 200]
            deliverControl(toRoles[name]!.removeFirst(), to: name)
        case 300:
            let (name, message) = toController.removeFirst()
            perform(coordinator.received(message, from: name))
        case 400..<500:
            finishLoad(stage: choice - 400)
        case 500:
            let split = Simulation.randomSplit(layers: layers, stages: stageCount, rng: &rng)
            movesStarted += 1
            if split != coordinator.ranges { perform(coordinator.begin(split, reason: "random move")) }
        case 700:
            // One or two more processes for a random stage, then a random move with them.
            var wanted = coordinator.replicas
            wanted[Int(rng.next() % UInt64(stageCount))] += Int(rng.next() % 2) + 1
            growthsStarted += 1
            perform(coordinator.addReplicas(wanted, then: Simulation.randomSplit(layers: layers, stages: stageCount, rng: &rng),
                                            reason: "random growth"))
        case 800..<900:
            // The new replica is ready: the hop before it connects, and the coordinator counts it.
            let index = choice - 800
            stages[index].connected = true
            replicasJoined += 1
            perform(coordinator.joined(stages[index].name, stage: stages[index].stage))
        default:
            sinkHeartbeat()
        }
        return true
    }

    mutating func deliverData(to hop: Int) {
        var message = data[hop].removeFirst()
        let stage = stages[hop]
        for action in stages[hop].machine.handle(.batch(sequence: message.sequence, cursor: message.cursor)) {
            switch action {
            case .reject(_, let reason):
                violations.append("\(stage.name) rejected batch \(message.sequence): \(reason)")
                return
            case .run(let range):
                guard let loaded = stage.loaded, range.lowerBound >= loaded.lowerBound && range.upperBound <= loaded.upperBound else {
                    violations.append("\(stage.name) ran layers \(range) holding only \(stage.loaded.map { "\($0)" } ?? "none")")
                    return
                }
                for index in range { message.value = Simulation.layer(index, message.value) }
                message.cursor = range.upperBound
            case .passThrough:
                break
            default:
                violations.append("\(stage.name) answered batch \(message.sequence) with \(action)")
            }
        }
        push(message, toStage: stage.stage + 1)
    }

    mutating func deliverControl(_ message: ControlMessage, to name: String) {
        if name == "source" {
            if case .mark(let epoch) = message {
                sourceEpoch = epoch
                toController.append(("source", .marked(Mark(epoch: epoch, firstBatch: nextSequence))))
            }
            return
        }
        if name == "sink" {
            perform(sink.handle(.control(message)))
            return
        }
        guard let index = stages.firstIndex(where: { $0.name == name }) else { return }
        perform(stages[index].machine.handle(.control(message)), stage: index)
    }

    /// The oldest background load of stage process `index` finishes.
    mutating func finishLoad(stage index: Int) {
        let load = stages[index].loads.removeFirst()
        perform(stages[index].machine.handle(.weightsLoaded(layers: load.layers, acking: load.acking, failure: nil)), stage: index)
    }
}

/// Stages run as one to three processes each (replicas), so batches also overtake each other,
/// and replicas join while batches flow, each followed by a move.
@Test func randomLiveMovesNeverLoseDuplicateReorderOrMiscomputeABatch() {
    var totalMoves = 0
    var totalJoined = 0
    for seed in 0..<60 as Range<UInt64> {
        var generator = SplitMix(seed: seed * 7919 + 1)
        let layers = Int(generator.next() % 10) + 3
        let stages = Int(generator.next() % UInt64(min(3, layers - 2))) + 2  // always more than one possible split
        let batches: UInt64 = 300
        var simulation = Simulation(layers: layers, stages: stages, seed: seed)
        var steps = 0
        // A violation ends the seed at once: a lost batch would otherwise hold the last move open until the step limit.
        while simulation.violations.isEmpty, simulation.step(batches: batches, moves: 60), steps < 200_000 { steps += 1 }
        // Let the last move finish: the sink reports progress until old weights are retired.
        while simulation.violations.isEmpty && (simulation.coordinator.isMoving || simulation.coordinator.isGrowing) && steps < 250_000 {
            _ = simulation.step(batches: batches, moves: 0)
            steps += 1
        }
        totalMoves += simulation.coordinator.epoch > 1 ? Int(simulation.coordinator.epoch - 1) : 0
        totalJoined += simulation.replicasJoined
        #expect(simulation.coordinator.instances.count == simulation.stages.count, "seed \(seed): a replica never joined")
        #expect(simulation.violations.isEmpty, "seed \(seed): \(simulation.violations.prefix(3))")
        #expect(simulation.released.map(\.sequence) == Array(0..<batches), "seed \(seed): released out of order or incompletely")
        #expect(simulation.released.allSatisfy { $0.value == Simulation.singleProcess(Int64($0.sequence) * 7 + 3, layers: layers) },
                "seed \(seed): a batch differs from the single-process result")
        #expect(simulation.sinkDone?.batches == batches, "seed \(seed): the sink never said the run was done")
        #expect(simulation.sinkDone?.duplicates == 0)
        #expect(!simulation.coordinator.isMoving, "seed \(seed): a move never finished")
        // After the last retire, every stage holds only its own range: memory follows its share.
        for stage in simulation.stages where stage.loads.isEmpty {
            #expect(stage.machine.layers?.held == stage.machine.layers?.range)
            #expect(stage.loaded == stage.machine.layers?.held, "seed \(seed): \(stage.name) runs on weights it should not hold")
        }
    }
    #expect(totalMoves >= 1000, "only \(totalMoves) moves completed")
    #expect(totalJoined >= 200, "only \(totalJoined) replicas joined")
}
