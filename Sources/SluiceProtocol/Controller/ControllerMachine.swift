import SluiceConfig
import SluicePlan

/// What happens to the controller: a message from a role, the clock moving on, or an operator's
/// request to stop (SIGINT/SIGTERM).
public enum ControllerEvent: Equatable, Sendable {
    case received(from: String, ControlMessage)
    case tick(now: Double)
    case stopRequested
    /// The process of role `name` is gone (the shell saw its pid exit); `how` says what it saw.
    case roleExited(String, how: String)
}

public enum ControllerOutcome: Equatable, Sendable {
    /// Every expected batch reached the sink.
    case completed(SinkSummary)
    /// Stopped on request, after the pipeline drained what it had.
    case stopped(SinkSummary?)
    case failed(String)
}

public enum ControllerAction: Equatable, Sendable {
    case send(to: String, ControlMessage)
    case log(String)
    /// The coordinator asks for one more process of a stage; the controller machine turns it
    /// into `spawn` (the shell never sees it).
    case addReplica(stage: Int)
    /// Start a stage process with this role name (it registers like any role).
    case spawn(role: String)
    /// Kill the process running as this role, if it still runs: it was declared dead for its
    /// silence, and one stopped or cut off that came back would act as the role beside the
    /// process started in its place (comes before that `spawn`).
    case fence(role: String)
    /// The run is over; shutdown has already been sent to every role.
    case finish(ControllerOutcome)
}

/// The controller's protocol logic, free of sockets and clocks: events in, actions out.
/// Phases: registering → preparing (assignments out, waiting for ready) → running → draining
/// (source done, waiting for the sink) → closing (shutdown sent, collecting each role's final
/// counters) → finished. A controller started in place of a dead one begins with rejoining
/// (every role says where it stands) and goes on from the phase the run was in.
public struct ControllerMachine {
    public enum Phase: Equatable, Sendable { case registering, rejoining, preparing, running, draining, closing, finished }

    public private(set) var phase: Phase = .registering
    /// Latest counters per role, from heartbeats.
    public private(set) var counters: [String: RoleCounters] = [:]
    public private(set) var runStarted: Double?

    private var assignments: [String: ControlMessage]
    /// Where a stage process added during the run binds its PULL, by role name; nil: no replicas are added.
    private let replicaEndpoint: ((String) -> String)?
    /// Replicas spawned and not yet ready: their stage, and when they were asked for.
    private var pendingReplicas: [String: (stage: Int, since: Double)] = [:]
    /// The endpoints each role's PUSH connects to, so a new replica is announced once to each.
    private var connected: [String: Set<String>] = [:]
    private let sourceName: String
    private let sinkName: String
    private let liveness: Liveness
    private var registered: Set<String> = []
    private var ready: Set<String> = []
    private var lastHeard: [String: Double] = [:]
    private var lastPing: Double = -.infinity
    private var phaseStarted: Double?
    private var now: Double = 0
    private var stopRequested = false
    private var sinkProgress: (batches: Int, at: Double) = (0, 0)
    /// Per role, its processes' deaths in a row after they were ready, with no batch released
    /// between them, and the sink's count at the first.
    private var fruitlessDeaths: [String: (count: Int, released: Int, since: Double)] = [:]
    /// So many such deaths of one role, within `fruitlessDeathWindowSeconds`, are a process
    /// that fails, not bad luck: a batch that crashes every stage that runs it comes back with
    /// every replay. The run fails naming it, rather than start processes for ever.
    public static let fruitlessDeathLimit = 5
    public static let fruitlessDeathWindowSeconds = 60.0
    /// What the source had sent by its last report when the sink last released a batch: a sink
    /// that releases nothing while the source sends nothing is idle, not stalled.
    private var sourceSentAtSinkProgress = 0
    /// The sink stalled and a replay was asked for; cleared when it releases again.
    private var replayedOnStall = false
    private var pendingOutcome: ControllerOutcome?
    private var finalReports: Set<String> = []
    /// Stage processes that died and that nothing replaces (replicas whose siblings carry on):
    /// their names stay taken, and nothing they still send counts.
    private var departed: Set<String> = []
    /// Roles whose process died (a stage's only process, or the sink): a process under the same
    /// name is starting in its place, since the time given.
    private var restarting: [String: Double] = [:]
    /// The source's counts, once its input ended: a sink started in place of a dead one is told them again.
    private var sourceDone: SourceDone?
    /// Sources started in place of dead ones so far (`BatchHeader.sourceGeneration`), and where
    /// the sink said the one starting now takes up the stream (nil: not said yet).
    private var sourceGeneration: UInt16 = 0
    private var sourceResume: SourceResume?
    /// A live source died: the sink is told once the batches it made stopped arriving.
    private var liveSourceLoss: (generation: UInt16, made: SourceDone, diedAt: Double)?
    /// When a stage process or the sink last reported taking or handling a batch.
    private var pipelineProgressAt = 0.0
    /// What processes that died had dropped, by role name: one started in place of a dead one
    /// counts from zero, and the run's counts must still hold the dead one's.
    private var droppedByDead: [String: DropCounts] = [:]
    /// Restarted processes that said hello while a move was switching plans: told their
    /// assignment once it has switched.
    private var helloDeferred: Set<String> = []
    /// Stage deaths handled, replacements started and replays asked of the source, for the report.
    public private(set) var recovery = RecoveryCounts()
    /// Rejoining: where each role said it stands, when the first said it, and when each was last asked.
    private var rejoined: [String: RoleState] = [:]
    private var firstRejoined: Double?
    private var askedToRejoin: [String: Double] = [:]
    /// What rejoined roles said after they rejoined (their input may have ended meanwhile):
    /// taken in order once the run is taken over.
    private var saidAfterRejoining: [(name: String, message: ControlMessage)] = []
    /// Live rebalancing, when the pipeline has stages to rebalance.
    public private(set) var coordinator: RebalanceCoordinator?
    /// The cost model the controller last planned with, kept when moves stopped (the source
    /// finished, or a stop was asked for). Later heartbeats still update the live model, with
    /// the drain's sparse batches.
    public private(set) var lastPlanningModel: CostModel?

    /// `assignments` maps every role's name to its assignment message; the run starts once all
    /// of them have said hello and ready.
    /// `rejoining`: this controller starts in place of a dead one, with the roles running.
    public init(assignments: [String: ControlMessage], sourceName: String = "source", sinkName: String = "sink",
                liveness: Liveness, coordinator: RebalanceCoordinator? = nil, replicaEndpoint: ((String) -> String)? = nil,
                rejoining: Bool = false) {
        if rejoining { phase = .rejoining }
        self.assignments = assignments
        self.replicaEndpoint = replicaEndpoint
        self.sourceName = sourceName
        self.sinkName = sinkName
        self.liveness = liveness
        self.coordinator = coordinator
    }

    /// New moves start only while the stream runs, and not while a stage is being restarted:
    /// the process starting would miss the move's prepare.
    /// A replica still starting was assigned the plan in force when it registered: a move that
    /// began before it joined would not count it among those that prepare, yet ask it to commit.
    private var movesAllowed: Bool { phase == .running && !stopRequested && restarting.isEmpty && pendingReplicas.isEmpty }

    /// Starts a move by hand (tests, operators); the coordinator does the rest.
    public mutating func move(to ranges: [Range<Int>], reason: String) -> [ControllerAction] {
        guard phase == .running, restarting.isEmpty, pendingReplicas.isEmpty else { return [] }
        return coordinator?.begin(ranges, reason: reason) ?? []
    }

    /// Adds replicas by hand (tests, operators) until each stage has `wanted` processes, then
    /// moves to `ranges` once they have joined; the processes to start come out as `spawn`.
    public mutating func grow(to wanted: [Int], then ranges: [Range<Int>], reason: String) -> [ControllerAction] {
        guard phase == .running, restarting.isEmpty, pendingReplicas.isEmpty else { return [] }
        return coordinated(coordinator?.addReplicas(wanted, then: ranges, reason: reason) ?? [])
    }

    /// Role names of every live stage process, replicas (and those still starting) included.
    public var stageInstances: [[String]] { stageNames(including: false) }

    private func stageNames(including departed: Bool) -> [[String]] {
        var byStage: [[String]] = Array(repeating: [], count: coordinator?.ranges.count ?? 0)
        for name in roleNames where departed || !self.departed.contains(name) {
            guard let stage = StageInstance.stage(of: name) else { continue }
            while byStage.count <= stage { byStage.append([]) }
            byStage[stage].append(name)
        }
        return byStage
    }

    /// Turns the coordinator's requests for replicas into processes to start. A mark waits for
    /// a source starting in place of a dead one: it is asked once it streams.
    private mutating func coordinated(_ actions: [ControllerAction]) -> [ControllerAction] {
        actions.flatMap { action -> [ControllerAction] in
            if case .send(sourceName, .mark) = action, restarting[sourceName] != nil { return [] }
            guard case .addReplica(let stage) = action else { return [action] }
            guard let replicaEndpoint, case .assignStage(var assignment)? = assignments[StageInstance.name(stage: stage, replica: 0)] else {
                return coordinator?.abandonGrowth(reason: "this controller cannot start processes") ?? []
            }
            // Names of dead replicas stay taken: nothing they still send can pass for the new one's.
            // (Past the highest number known: a controller that took over may not know of a replica that died.)
            let highest = stageNames(including: true)[stage].compactMap(StageInstance.replica(of:)).max() ?? 0
            let name = StageInstance.name(stage: stage, replica: highest + 1)
            assignment.pullEndpoint = replicaEndpoint(name)
            assignments[name] = .assignStage(assignment)
            pendingReplicas[name] = (stage, now)
            lastHeard[name] = now
            return [.log("starting \(name), a replica of stage \(stage), at \(assignment.pullEndpoint)"), .spawn(role: name)]
        }
    }

    /// A replica is ready: the processes before it connect to it, and the coordinator counts it.
    private mutating func replicaJoined(_ name: String, stage: Int) -> [ControllerAction] {
        guard case .assignStage(let assignment)? = assignments[name] else { return [] }
        let upstream = stage == 0 ? [sourceName] : stageInstances[stage - 1]
        var actions: [ControllerAction] = []
        for role in upstream where !(connected[role]?.contains(assignment.pullEndpoint) ?? false) {
            connected[role, default: []].insert(assignment.pullEndpoint)
            actions.append(.send(to: role, .connect(endpoint: assignment.pullEndpoint)))
        }
        let startMove = movesAllowed
        return actions + coordinated(coordinator?.joined(name, stage: stage, startMove: startMove) ?? [])
    }

    private var roleNames: [String] { assignments.keys.sorted() }
    /// Every role but the dead stage processes nothing replaces.
    private var liveRoleNames: [String] { roleNames.filter { !departed.contains($0) } }

    /// Whether a process is starting in place of the dead one named `name`.
    public func isRestarting(_ name: String) -> Bool { restarting[name] != nil }

    /// Stage processes of the plan that have not registered while the run waits for them: places
    /// for processes that join the pool.
    public var unregisteredStages: [String] {
        guard phase == .registering else { return [] }
        return assignments.keys.filter { StageInstance.stage(of: $0) != nil && !registered.contains($0) }.sorted()
    }

    /// Whether a process is wanted under `name` now: one in place of a dead one, or a replica.
    public func awaitsProcess(_ name: String) -> Bool { restarting[name] != nil || pendingReplicas[name] != nil }

    /// Where the stage process `name` binds, as planned (replicas added live included).
    public func pullEndpoint(of name: String) -> String? {
        if case .assignStage(let assignment)? = assignments[name] { return assignment.pullEndpoint }
        return nil
    }

    /// Whether `name` is a role of this pipeline (replicas added live included).
    public func knows(_ name: String) -> Bool {
        // Rejoining, a replica the dead controller started is known by its name's shape.
        assignments[name] != nil || (phase == .rejoining && StageInstance.stage(of: name) != nil)
    }

    public mutating func handle(_ event: ControllerEvent) -> [ControllerAction] {
        guard phase != .finished else { return [] }
        switch event {
        case .tick(let time):
            now = time
            if phaseStarted == nil { phaseStarted = time }
            return checkTimers()
        case .stopRequested:
            return requestStop()
        case .roleExited(let name, let how):
            return roleDied(name, how: how)
        case .received(let name, let message) where phase == .rejoining:
            return rejoin(message, from: name)
        case .received(let name, let message):
            guard assignments[name] != nil else {
                return [.log("ignoring \(message.type) from unknown role '\(name)'"),
                        .send(to: name, .shutdown(reason: "no role named '\(name)' in this pipeline"))]
            }
            guard !departed.contains(name) else {
                // Declared dead and not replaced: it may not take part in the run again.
                return [.log("ignoring \(message.type) from \(name), declared dead"), .send(to: name, .shutdown(reason: "declared dead"))]
            }
            lastHeard[name] = now
            return receive(message, from: name)
        }
    }

    private mutating func receive(_ message: ControlMessage, from name: String) -> [ControllerAction] {
        switch message {
        case .hello(let hello) where !hello.speaksThisRevision:
            // Its messages would fail to decode here, or ours there: refuse it by name at once.
            let speaks = hello.revision.map { "control revision \($0)" } ?? "the control messages of a release before 0.2"
            let reason = "this controller speaks control revision \(ControlMessage.revision); \(name) speaks \(speaks): run the same Sluice release everywhere"
            return [.log("refusing \(name) (pid \(hello.pid) on \(hello.host)): \(reason)"), .send(to: name, .shutdown(reason: reason))]
        case .hello(let hello):
            let (inserted, _) = registered.insert(name)
            var actions: [ControllerAction] = []
            if !inserted { actions.append(.log("\(name) (\(hello.role.rawValue), pid \(hello.pid) on \(hello.host)) registered again")) }
            if name == sourceName, restarting[name] != nil, sourceResume == nil {
                actions.append(.log("\(name) registered; it takes up the stream once the sink says where"))
            } else if restarting[name] != nil, coordinator?.isSwitching == true {
                helloDeferred.insert(name)
                actions.append(.log("\(name) registered while a move switches plans; it takes the plan in force once the switch is done"))
            } else if phase != .registering, let assignment = currentAssignment(name) {
                actions.append(.send(to: name, assignment))
                noteConnections(name, assignment)
            } else if registered.count == assignments.count {
                phase = .preparing
                phaseStarted = now
                actions.append(.log("all \(assignments.count) roles registered; sending assignments"))
                actions += roleNames.map { .send(to: $0, assignments[$0]!) }
                for role in roleNames { noteConnections(role, assignments[role]!) }
            }
            return actions
        case .ready:
            ready.insert(name)
            if let diedAt = restarting.removeValue(forKey: name) {
                if name == sinkName { return sinkTookOver(diedAt: diedAt) }
                if name == sourceName {
                    sinkProgress.at = now
                    let from = sourceResume?.batch ?? 0
                    let what = sourceCanBeReadAgain ? "it makes every batch from \(from) on again" : "it numbers its batches on from \(from)"
                    return [.log(String(format: "%@ restarted, %.2f s after it died; %@", name, now - diedAt, what)), .send(to: sourceName, .start)]
                        + (stopRequested ? [.send(to: sourceName, .stop)] : []) + (coordinator?.sourceRestarted() ?? [])
                }
                coordinator?.rejoined(name)
                return [.log(String(format: "%@ restarted and ready on the plan in force, %.2f s after it died", name, now - diedAt))]
                    + askForReplay()
            }
            if let pending = pendingReplicas.removeValue(forKey: name) {
                return phase == .running || phase == .draining ? replicaJoined(name, stage: pending.stage) : []
            }
            guard phase == .preparing, ready.count == assignments.count else { return [] }
            phase = .running
            phaseStarted = now
            runStarted = now
            if stopRequested { return finish(.stopped(nil), reason: "stopped before the run started") }
            return [.log("all roles ready; starting the source"), .send(to: sourceName, .start)]
        case .heartbeat(let reported):
            let writtenBefore = counters[name]?.output?.batches ?? 0
            if name == sinkName || StageInstance.stage(of: name) != nil,
               counters[name].map({ $0.received != reported.received || $0.batches != reported.batches }) ?? true {
                pipelineProgressAt = now
            }
            var roleCounters = reported
            if let dead = droppedByDead[name] { roleCounters.drops.add(dead) }
            counters[name] = roleCounters
            var releases: [ControllerAction] = []
            if name == sinkName, roleCounters.batches != sinkProgress.batches {
                sinkProgress = (roleCounters.batches, now)
                sourceSentAtSinkProgress = counters[sourceName]?.sent ?? 0
                replayedOnStall = false
            }
            // The source may forget what the sink wrote out: it will never be replayed, and a
            // sink started in place of this one takes up the stream after it.
            if name == sinkName, phase == .running || phase == .draining, let output = roleCounters.output, output.batches > writtenBefore {
                releases.append(.send(to: sourceName, .released(upTo: output.batches)))
            }
            if name == sourceName { recovery.replayedBatches = roleCounters.replayed }
            var moveActions = releases + coordinated(coordinator?.heartbeat(from: name, counters: roleCounters, sinkName: sinkName) ?? [])
            if phase == .closing { moveActions = [] }
            // A role waits for this answer to its exit heartbeat before it exits: a message still
            // queued in a process that ends is lost, and the report would keep older counters.
            let acknowledged: [ControllerAction] = roleCounters.final == true ? [.send(to: name, .shutdown(reason: "final counters received"))] : []
            // Only a role's exit heartbeat is final: a periodic one sent before the shutdown
            // reached it may arrive now, with counters from the middle of the run.
            if phase == .closing, roleCounters.final == true {
                finalReports.insert(name)
                if Set(liveRoleNames).subtracting(pendingReplicas.keys).subtracting(restarting.keys).isSubset(of: finalReports),
                   let outcome = pendingOutcome {
                    phase = .finished
                    return acknowledged + [.finish(outcome)]
                }
            }
            return acknowledged + moveActions
        case .prepared, .committed, .marked:
            return coordinated(coordinator?.received(message, from: name) ?? []) + answerDeferredHellos()
        case .rejoined:
            return [.log("ignoring rejoined from \(name): the run was already taken over")]
        case .resumeSource(let resume, let written):
            guard name == sinkName, resume.generation == sourceGeneration, restarting[sourceName] != nil else {
                return [.log("ignoring resume_source from \(name)")]
            }
            sourceResume = resume
            // The new source makes nothing before `resume.batch`: a sink started later must take
            // up its output after it, whatever its last heartbeat said.
            if written.batches > counters[sinkName]?.output?.batches ?? 0 { counters[sinkName, default: RoleCounters()].output = written }
            guard registered.contains(sourceName), let assignment = currentAssignment(sourceName) else { return [] }
            noteConnections(sourceName, assignment)
            return [.send(to: sourceName, assignment)]
        case .replay(let from):
            guard name == sinkName, phase == .running || phase == .draining else { return [.log("ignoring replay from \(name)")] }
            recovery.replays += 1
            return [.log("the sink has released every batch before \(from); the source replays from there"),
                    .send(to: sourceName, .replay(from: from))]
        case .sourceDone(let done) where phase == .draining && sourceGeneration > 0:
            // A source started again while the pipeline drained: its counts replace the dead one's.
            sourceDone = done
            return [.log("source finished again: \(done.windows) windows in \(done.batches) batches"), .send(to: sinkName, .expect(done))]
        case .sourceDone(let done):
            guard phase == .running else { return [] }
            if lastPlanningModel == nil { lastPlanningModel = coordinator.map { $0.rebalancer.plannedWith ?? $0.rebalancer.model } }
            sourceDone = done
            phase = .draining
            phaseStarted = now
            sinkProgress.at = now
            return [.log("source finished: \(done.windows) windows in \(done.batches) batches; draining"),
                    .send(to: sinkName, .expect(done))]
        case .sinkDone(let summary):
            guard phase == .running || phase == .draining else { return [.log("ignoring sink_done before the run drained")] }
            // Roles answer shutdown with their final counters; the run report waits for them.
            phase = .closing
            phaseStarted = now
            pendingOutcome = stopRequested ? .stopped(summary) : .completed(summary)
            return liveRoleNames.map { .send(to: $0, .shutdown(reason: "done")) }
        case .failed(let reason):
            if pendingReplicas[name] != nil {
                return [.log("\(name) failed before it joined: \(reason)")] + giveUpReplica(name, because: "\(name) failed: \(reason)")
            }
            return finish(.failed("\(name): \(reason)"), reason: "\(name) failed")
        case .assignStage, .assignSource, .assignSink, .start, .expect, .stop, .shutdown, .ping, .prepare, .commit, .mark, .retire, .connect,
             .released, .replayNeeded, .sourceLost, .rejoin, .trust, .fetchModel, .modelPiece, .join, .named, .compress:
            return [.log("ignoring \(message.type) from \(name): only the controller sends it")]
        }
    }

    /// Where the stream stopped, from the last heartbeats: the hop nearest the sink whose
    /// processes took more batches than they handed on, or handed on more than the next hop
    /// took (" (…)"; empty when none is seen). Upstream of it, backpressure makes every hop
    /// look held up: the nearest one is where the batches stopped.
    private func stuckAt() -> String {
        let hops = [[sourceName]] + stageInstances + [[sinkName]]
        func batches(_ count: Int) -> String { count == 1 ? "1 batch" : "\(count) batches" }
        for (index, hop) in hops.enumerated().dropLast().reversed() {
            let taken = hop.compactMap { counters[$0] }
            let received = hop == [sourceName] ? taken.reduce(0) { $0 + $1.sent } : taken.reduce(0) { $0 + $1.received }
            let sent = taken.reduce(0) { $0 + $1.sent }
            let next = hops[index + 1]
            let nextReceived = next.compactMap { counters[$0]?.received }.reduce(0, +)
            if received > sent {
                return " (\(hop.joined(separator: ", ")) took \(batches(received)) and handed on \(sent): check the link to \(next.joined(separator: ", ")))"
            }
            if sent > nextReceived {
                return " (\(hop.joined(separator: ", ")) handed on \(batches(sent)) and \(next.joined(separator: ", ")) took \(nextReceived): check the link between them)"
            }
        }
        return ""
    }

    /// A role's assignment as the plan stands now: a stage that registers again (restarted)
    /// or joins as a replica gets the range and epoch in force; it and a restarted source get
    /// every process of the next hop that is ready (one still starting is announced by
    /// `connect` once it is: a PUSH peer that nobody has bound yet would hold batches).
    private func currentAssignment(_ name: String) -> ControlMessage? {
        switch assignments[name] {
        case .assignSource(var source)?:
            if let first = stageInstances.first { source.pushEndpoints = readyEndpoints(first) }
            if restarting[name] != nil {
                source.resume = sourceResume
                // A move may have switched plans since the run started: batches are made under the one in force.
                source.epoch = coordinator?.epoch ?? source.epoch
            }
            return .assignSource(source)
        case .assignStage(var stage)?:
            guard let coordinator, coordinator.ranges.indices.contains(stage.stageIndex) else { return assignments[name] }
            let range = coordinator.ranges[stage.stageIndex]
            stage.layers = LayerSpan(range)
            stage.epoch = coordinator.epoch
            if coordinator.compression.indices.contains(stage.stageIndex) { stage.compression = coordinator.compression[stage.stageIndex] }
            let next = stage.stageIndex + 1
            if next < stageInstances.count { stage.pushEndpoints = readyEndpoints(stageInstances[next]) }
            return .assignStage(stage)
        case .assignSink(var sink)? where restarting[name] != nil:
            sink.resume = counters[name]?.output ?? SinkOutputState()
            sink.sourceGeneration = sourceGeneration
            return .assignSink(sink)
        default:
            return assignments[name]
        }
    }

    /// Where the ready processes among `names` bind their PULL (a stage being restarted binds
    /// where it did: upstream PUSH sockets reconnect to it by themselves).
    private func readyEndpoints(_ names: [String]) -> [String] {
        names.compactMap {
            guard pendingReplicas[$0] == nil, !departed.contains($0), case .assignStage(let peer)? = assignments[$0] else { return nil }
            return peer.pullEndpoint
        }
    }

    private mutating func noteConnections(_ name: String, _ assignment: ControlMessage) {
        switch assignment {
        case .assignStage(let stage): connected[name] = Set(stage.pushEndpoints)
        case .assignSource(let source): connected[name] = Set(source.pushEndpoints)
        default: break
        }
    }

    private mutating func requestStop() -> [ControllerAction] {
        if stopRequested {
            return finish(.stopped(nil), reason: "stopped at once on a second request")
        }
        stopRequested = true
        switch phase {
        case .registering:
            return finish(.stopped(nil), reason: "stopped before the run started")
        case .preparing:
            return [.log("stop requested; waiting for roles to be ready so none is left behind")]
        case .running:
            lastPlanningModel = coordinator.map { $0.rebalancer.plannedWith ?? $0.rebalancer.model }
            return [.log("stop requested: the source stops reading and the pipeline drains"), .send(to: sourceName, .stop)]
        case .rejoining:
            return [.log("stop requested while the roles rejoin; the source stops once the run is taken over")]
        case .draining, .closing, .finished:
            return [.log("stop requested while draining; waiting for the sink")]
        }
    }

    private mutating func checkTimers() -> [ControllerAction] {
        var actions: [ControllerAction] = []
        if now - lastPing >= liveness.heartbeatSeconds {
            lastPing = now
            actions += registered.sorted().map { .send(to: $0, .ping) }
        }
        let started = phaseStarted ?? now
        switch phase {
        case .rejoining:
            // The source, the sink and a process of every stage, and the other stage processes
            // heard from within a few heartbeats (each sends one per beat): one of the plan that
            // stays silent died before the controller did.
            var missing = Set([sourceName, sinkName]).subtracting(rejoined.keys)
            for (stage, names) in stageNames(including: true).enumerated() where !names.contains(where: { rejoined[$0] != nil }) {
                missing.insert(names.first ?? StageInstance.name(stage: stage, replica: 0))
            }
            // A process heard from but not rejoined may still be loading its first weights: it
            // gets until the timeout, then is told to leave.
            let unanswered = registered.union(askedToRejoin.keys).subtracting(rejoined.keys)
            if missing.isEmpty, let first = firstRejoined, now - first >= liveness.heartbeatSeconds * 3,
               unanswered.isEmpty || now - first >= liveness.timeoutSeconds {
                return actions + takeOver()
            }
            if now - started > liveness.timeoutSeconds * 3 {
                return actions + finish(.failed("\(missing.sorted().joined(separator: ", ")) did not rejoin within \(Int(liveness.timeoutSeconds * 3)) s of the controller's restart"),
                                        reason: "roles missing")
            }
        case .registering, .preparing:
            // Loading a model can take a while; allow several timeouts before giving up.
            if now - started > liveness.timeoutSeconds * 3 {
                let waiting = phase == .registering ? Set(roleNames).subtracting(registered) : Set(roleNames).subtracting(ready)
                let verb = phase == .registering ? "register" : "become ready"
                return actions + finish(.failed("\(waiting.sorted().joined(separator: ", ")) did not \(verb) within \(Int(liveness.timeoutSeconds * 3)) s"),
                                        reason: "roles missing")
            }
        case .running, .draining:
            let allowNewMoves = movesAllowed
            actions += coordinated(coordinator?.tick(now: now, allowNewMoves: allowNewMoves, streamingSince: runStarted) ?? [])
            actions += abandonLateReplicas()
            actions += answerDeferredHellos()
            actions += liveSourceLossSettled()
            if let late = restarting.first(where: { now - $0.value > liveness.timeoutSeconds * 3 }) {
                return actions + finish(.failed("\(late.key) was restarted but not ready within \(Int(liveness.timeoutSeconds * 3)) s"),
                                        reason: "restart failed")
            }
            let silent = liveRoleNames.filter {
                pendingReplicas[$0] == nil && restarting[$0] == nil && now - (lastHeard[$0] ?? started) > liveness.timeoutSeconds
            }
            // A silent process is taken for dead, fenced, and recovered from like one seen to exit.
            for name in silent {
                actions += [.fence(role: name)] + roleDied(name, how: "silent for more than \(liveness.timeoutSeconds) s")
                if phase == .finished { return actions }
            }
            // A stage being started again holds the stream up; its restart has its own time limit.
            // So may a stage process gone quiet: its own timeout decides whether it died.
            let quietStage = liveRoleNames.contains {
                StageInstance.stage(of: $0) != nil && pendingReplicas[$0] == nil && now - (lastHeard[$0] ?? now) > liveness.heartbeatSeconds * 3
            }
            guard restarting.isEmpty, !quietStage else { return actions }
            let stalled = now - sinkProgress.at > liveness.timeoutSeconds
            // Nothing to wait for (a live source's sensors quiet): no replay, no failure.
            let held = counters[sinkName].map { $0.received &- Self.accounted($0) } ?? 0
            guard held > 0 || (counters[sourceName]?.sent ?? 0) != sourceSentAtSinkProgress || phase == .draining else {
                // The wait for the sink starts once there is something to wait for.
                sinkProgress.at = now
                return actions
            }
            // A batch lost on the way (a stage process that died unseen, or its PUSH peer's queue)
            // leaves the sink waiting: the source replays once; a second stall ends the run.
            if stalled, !replayedOnStall {
                replayedOnStall = true
                sinkProgress.at = now
                return actions + [.log("the sink has released nothing for \(liveness.timeoutSeconds) s; the source sends again whatever the sink has not released")]
                    + askForReplay()
            }
            if phase == .draining, stalled {
                return actions + finish(.failed("the sink received no batch for \(liveness.timeoutSeconds) s while draining; batches were lost"
                                                + stuckAt()), reason: "drain stalled")
            }
            // Batches wait at the sink behind a gap that a replay did not fill, and nothing after
            // it can be released. (Duplicates and replayed copies were dropped: they wait for nothing.)
            // (Nor do copies a dead source made, superseded by its successor's, or those of a dead
            // live source that came too late.)
            if let sink = counters[sinkName], stalled, held > 0 {
                return actions + finish(.failed("batch \(sink.batches) never reached the sink; \(held) later batches wait behind it for \(liveness.timeoutSeconds) s"),
                                        reason: "batch lost")
            }
        case .closing:
            // Final counters are a courtesy; a role that exits without them does not hold the run.
            if now - started > liveness.heartbeatSeconds * 4, let outcome = pendingOutcome {
                phase = .finished
                return actions + [.finish(outcome)]
            }
        case .finished:
            break
        }
        return actions
    }

    /// A replica that is not ready long after it was asked for (loading a model takes a while)
    /// is given up: the run goes on without it.
    private mutating func abandonLateReplicas() -> [ControllerAction] {
        pendingReplicas.filter { now - $0.value.since > liveness.timeoutSeconds * 3 }.keys.sorted().flatMap {
            giveUpReplica($0, because: "\($0) was not ready within \(Int(liveness.timeoutSeconds * 3)) s")
        }
    }

    private mutating func giveUpReplica(_ name: String, because reason: String) -> [ControllerAction] {
        pendingReplicas[name] = nil
        // Its name stays taken: a replica asked for later must not pass for it.
        departed.insert(name)
        registered.remove(name)
        return [.send(to: name, .shutdown(reason: "not ready in time"))] + (coordinator?.abandonGrowth(reason: reason) ?? [])
    }

    /// A role's process is gone. A stage process is recovered from while the stream runs: a
    /// replica's live siblings carry on; a stage's only process is started again under its
    /// name. Either way the batches lost with it are replayed from the first one the sink has
    /// not released. A dead sink is started again and takes up the stream after what it wrote
    /// out; a dead source is recovered from in `sourceDied`. A death before the run started, or
    /// a second one while the first is recovered from, ends the run.
    private mutating func roleDied(_ name: String, how: String) -> [ControllerAction] {
        guard assignments[name] != nil, !departed.contains(name), phase != .closing && phase != .finished else { return [] }
        guard phase == .running || phase == .draining else { return finish(.failed("\(name) died (\(how))"), reason: "role lost") }
        let released = counters[sinkName]?.batches ?? 0
        if ready.contains(name) {
            var deaths = fruitlessDeaths[name] ?? (0, released, now)
            if released != deaths.released || now - deaths.since > Self.fruitlessDeathWindowSeconds { deaths = (0, released, now) }
            deaths.count += 1
            fruitlessDeaths[name] = deaths
            if deaths.count >= Self.fruitlessDeathLimit {
                return finish(.failed(String(format: "%@ died (%@), its %dth process in %.0f s to die once ready with no batch released in between: "
                                                 + "it fails every time (a batch that crashes it comes back with every replay); its log says why",
                                             name, how, deaths.count, now - deaths.since)),
                              reason: "role lost")
            }
        }
        // A recording or tensors source started again counts its drops again from the input.
        if name != sourceName || !sourceCanBeReadAgain, let drops = counters[name]?.drops, !drops.isEmpty { droppedByDead[name] = drops }
        if name == sinkName { return sinkDied(how: how) }
        if name == sourceName { return sourceDied(how: how) }
        guard let stage = StageInstance.stage(of: name) else { return finish(.failed("\(name) died (\(how))"), reason: "role lost") }
        if pendingReplicas[name] != nil {
            return [.log("\(name) died before it joined (\(how))")] + giveUpReplica(name, because: "\(name) died before it joined")
        }
        recovery.deaths += 1
        registered.remove(name)
        ready.remove(name)
        helloDeferred.remove(name)
        let siblings = stageInstances[stage].filter {
            $0 != name && pendingReplicas[$0] == nil && restarting[$0] == nil
        }
        var actions: [ControllerAction] = [.log(String(format: "%@ (stage %d) died at %.3f s (%@)", name, stage, now - (runStarted ?? 0), how))]
        if !siblings.isEmpty {
            departed.insert(name)
            actions.append(.log("\(siblings.joined(separator: ", ")) carry stage \(stage) on"))
            actions += coordinated(coordinator?.lost(name, stage: stage, replaced: false) ?? [])
            return actions + askForReplay()
        }
        // A replacement that dies before it is ready is started again; the replay waits for it.
        let wasRestarting = restarting[name] != nil
        restarting[name] = now
        lastHeard[name] = now
        recovery.restarts += 1
        if !wasRestarting { actions += coordinated(coordinator?.lost(name, stage: stage, replaced: true) ?? []) }
        return actions + [.log("starting \(name) again in its place"), .spawn(role: name)]
    }

    /// The sink's process is gone: what it wrote out is safe (the source forgot only that), and
    /// what it held or had not yet written is still kept at the source. A new sink takes up the
    /// stream after the last batch it reported written (`currentAssignment`), and the source
    /// sends every batch it keeps again once that one is ready (`sinkTookOver`).
    private mutating func sinkDied(how: String) -> [ControllerAction] {
        // What the dead sink released and had not written out, a source starting now might no
        // longer make: one death at a time is recovered from.
        guard restarting[sourceName] == nil, liveSourceLoss == nil else {
            return finish(.failed(String(format: "the sink died at %.3f s (%@) while the source was starting again", now - (runStarted ?? 0), how)),
                          reason: "role lost")
        }
        let written = counters[sinkName]?.output ?? SinkOutputState()
        return [.log(String(format: "the sink died at %.3f s (%@), with %llu batches (%llu windows) written out", now - (runStarted ?? 0), how,
                            written.batches, written.windows))] + startAgain(sinkName)
    }

    /// A process is started in place of the dead `name`, under its name (the sink's or the source's).
    private mutating func startAgain(_ name: String) -> [ControllerAction] {
        recovery.deaths += 1
        recovery.restarts += 1
        registered.remove(name)
        ready.remove(name)
        restarting[name] = now
        lastHeard[name] = now
        return [.log("starting \(name) again in its place"), .spawn(role: name)]
    }

    /// The source's process is gone. A recording or tensors source is started again: the sink
    /// drops what it holds of the dead one's and says where the stream stands (`resume_source`),
    /// and the new source makes every batch from there on again, from the same input. A live
    /// source cannot make again what it took from its sensors: a new one is started at once (not
    /// if its input had ended), and the sink is told once the dead one's batches stopped
    /// arriving (`liveSourceLossSettled`).
    private mutating func sourceDied(how: String) -> [ControllerAction] {
        let died = String(format: "the source died at %.3f s (%@)", now - (runStarted ?? 0), how)
        guard restarting[sinkName] == nil else { return finish(.failed("\(died) while the sink was starting again"), reason: "role lost") }
        guard sourceGeneration < UInt16.max else { return finish(.failed("\(died), and it was started again too often"), reason: "role lost") }
        guard !sourceCanBeReadAgain else {
            sourceGeneration += 1
            sourceResume = nil
            return [.log(died), .send(to: sinkName, .sourceLost(generation: sourceGeneration))] + startAgain(sourceName)
        }
        // What it made: its own counts, on from where it was started (a heartbeat old at most),
        // or exactly, if it had ended its input.
        let sent = counters[sourceName]
        let made = sourceDone ?? SourceDone(batches: (sourceResume?.batch ?? 0) + UInt64(clamping: sent?.batches ?? 0),
                                            windows: (sourceResume?.window ?? 0) + UInt64(clamping: sent?.windows ?? 0))
        sourceGeneration += 1
        sourceResume = nil
        liveSourceLoss = (sourceGeneration, made, now)
        guard phase == .running else {
            // Its input had ended: a new one would wait for senders that are done. The sink
            // releases what reaches it and the run ends.
            recovery.deaths += 1
            departed.insert(sourceName)
            return [.log("\(died) after its input ended; the sink releases what reaches it of what it made")]
        }
        // The next process counts from zero; what this one dropped stays in the run's counts.
        var kept = RoleCounters()
        kept.drops = droppedByDead[sourceName] ?? DropCounts()
        counters[sourceName] = kept
        return [.log("\(died); a live source is started again: its sensors' messages wait in their sockets meanwhile, and what it held is lost")]
            + startAgain(sourceName)
    }

    /// Batches the sink took that wait for nothing: released, or dropped as copies or as a dead
    /// source's. The counts come from a heartbeat: wrapping arithmetic, so no count traps the
    /// controller.
    private static func accounted(_ sink: RoleCounters) -> Int {
        [sink.rejected, sink.drops.count(.batch, .duplicate), sink.drops.count(.batch, .superseded),
         sink.drops.count(.batch, .lostWithSource), sink.replayed, sink.batches].reduce(0, &+)
    }

    private var sourceCanBeReadAgain: Bool {
        guard case .assignSource(let assignment)? = assignments[sourceName] else { return false }
        return assignment.source.canBeReadAgain
    }

    /// The batches a dead live source made have stopped arriving (no stage process and not the
    /// sink reported a batch for three heartbeats): the sink releases what reached it, counts
    /// the rest lost, and says where the new source numbers on from.
    private mutating func liveSourceLossSettled() -> [ControllerAction] {
        guard let loss = liveSourceLoss, now - max(loss.diedAt, pipelineProgressAt) >= liveness.heartbeatSeconds * 3 else { return [] }
        liveSourceLoss = nil
        return [.log("the batches of the live source that died stopped arriving: the sink releases what reached it"),
                .send(to: sinkName, .sourceLost(generation: loss.generation, made: loss.made))]
    }

    /// The new sink is ready, after what its output holds: every batch the source keeps is sent
    /// again, and it is told the source's counts if the input already ended.
    private mutating func sinkTookOver(diedAt: Double) -> [ControllerAction] {
        let from = counters[sinkName]?.output?.batches ?? 0
        recovery.replays += 1
        sinkProgress.at = now
        var actions: [ControllerAction] = [
            .log(String(format: "%@ restarted, %.2f s after it died; it takes up the stream at batch %llu, which the source replays from",
                         sinkName, now - diedAt, from))]
        if phase == .draining, let sourceDone { actions.append(.send(to: sinkName, .expect(sourceDone))) }
        return actions + [.send(to: sourceName, .replay(from: from))]
    }

    /// The sink names the first batch it has not released, and the source replays from there
    /// (`receive(.replay)`): asking the sink first means it knows of the replay before any copy.
    private mutating func askForReplay() -> [ControllerAction] {
        // The sink's wait for what is replayed starts now.
        sinkProgress.at = now
        return [.send(to: sinkName, .replayNeeded)]
    }

    /// Rejoining: a role heard from says where it stands; any other message is answered with a
    /// request to (once a heartbeat: more of its messages may be queued).
    private mutating func rejoin(_ message: ControlMessage, from name: String) -> [ControllerAction] {
        let replica = StageInstance.stage(of: name) != nil && (coordinator?.ranges.indices.contains(StageInstance.stage(of: name) ?? -1) ?? false)
        guard assignments[name] != nil || replica else {
            return [.log("ignoring \(message.type) from unknown role '\(name)'"), .send(to: name, .shutdown(reason: "no role named '\(name)' in this pipeline"))]
        }
        lastHeard[name] = now
        switch message {
        case .hello(let hello) where !hello.speaksThisRevision:
            return [.send(to: name, .shutdown(reason: "this controller speaks control revision \(ControlMessage.revision): run the same Sluice release everywhere"))]
        case .hello:
            registered.insert(name)
            return []
        case .rejoined(let state):
            let fits = (name == sourceName && state.source != nil) || (name == sinkName && state.sink != nil)
                || (state.stage.map { StageInstance.stage(of: name) == $0.assignment.stageIndex } ?? false)
            guard fits else { return [.log("ignoring rejoined from \(name): its state is not one of its role")] }
            if let stage = state.stage { assignments[name] = .assignStage(stage.assignment) }
            rejoined[name] = state
            registered.insert(name)
            if firstRejoined == nil { firstRejoined = now }
            return [.log("\(name) rejoined")]
        default:
            if rejoined[name] != nil {
                saidAfterRejoining.append((name, message))
                return []
            }
            guard now - (askedToRejoin[name] ?? -.infinity) >= liveness.heartbeatSeconds else { return [] }
            askedToRejoin[name] = now
            return [.send(to: name, .rejoin)]
        }
    }

    /// Every role rejoined: the run is rebuilt from what they said and goes on where it was.
    private mutating func takeOver() -> [ControllerAction] {
        guard let source = rejoined[sourceName]?.source, let sink = rejoined[sinkName]?.sink else {
            return finish(.failed("the source or the sink rejoined without its state"), reason: "rejoin failed")
        }
        var actions: [ControllerAction] = []
        let stages = rejoined.compactMapValues(\.stage)
        if var coordinator {
            do {
                actions += try coordinator.recover(from: stages, source: source, now: now)
            } catch {
                return finish(.failed("cannot take the run over: \(error)"), reason: "rejoin failed")
            }
            self.coordinator = coordinator
        }
        ready = Set(rejoined.keys)
        // Processes of the plan that did not rejoin died before the controller, and those heard
        // from that did not are told to leave: nothing they send counts, and their names stay taken.
        let left = registered.union(askedToRejoin.keys).subtracting(rejoined.keys)
        for name in left where assignments[name] == nil {
            if let stage = StageInstance.stage(of: name), case .assignStage(let peer)? = assignments[StageInstance.name(stage: stage, replica: 0)] {
                assignments[name] = .assignStage(peer)
            }
        }
        departed = Set(roleNames).subtracting(rejoined.keys)
        actions += left.sorted().map { .send(to: $0, .shutdown(reason: "it did not rejoin")) }
        for name in rejoined.keys.sorted() {
            if let assignment = assignments[name] { noteConnections(name, assignment) }
        }
        // Every process of a hop that rejoined was announced to the hop before it.
        for (index, names) in stageInstances.enumerated() {
            let upstream = index == 0 ? [sourceName] : stageInstances[index - 1]
            for role in upstream { connected[role, default: []].formUnion(readyEndpoints(names)) }
        }
        sourceGeneration = source.generation
        counters[sinkName, default: RoleCounters()].output = sink.output
        counters[sinkName, default: RoleCounters()].batches = Int(clamping: sink.nextBatch)
        sinkProgress = (Int(clamping: sink.nextBatch), now)
        runStarted = now
        phaseStarted = now
        recovery.controllerRestarts += 1
        let moves = coordinator.map { "plan epoch \($0.epoch), layers \(LayerSpan.describe($0.ranges))" } ?? "no stages"
        actions.insert(.log("took the run over from a dead controller: \(rejoined.count) roles rejoined; \(moves); the sink has released \(sink.nextBatch) batches"), at: 0)
        if let summary = sink.done {
            phase = .closing
            pendingOutcome = stopRequested ? .stopped(summary) : .completed(summary)
            return actions + liveRoleNames.map { .send(to: $0, .shutdown(reason: "done")) }
        }
        if let done = source.done {
            phase = .draining
            sourceDone = done
            return actions + [.send(to: sinkName, .expect(done))] + takeWhatWasSaidMeanwhile()
        }
        phase = .running
        // The dead controller may have died before it started the source.
        if !source.streaming { actions.append(.send(to: sourceName, .start)) }
        if stopRequested { actions.append(.send(to: sourceName, .stop)) }
        return actions + takeWhatWasSaidMeanwhile()
    }

    private mutating func takeWhatWasSaidMeanwhile() -> [ControllerAction] {
        let said = saidAfterRejoining
        saidAfterRejoining = []
        return said.flatMap { receive($0.message, from: $0.name) }
    }

    /// Restarted processes that registered during a switch, told the plan in force now that it is done.
    private mutating func answerDeferredHellos() -> [ControllerAction] {
        guard !helloDeferred.isEmpty, coordinator?.isSwitching != true else { return [] }
        let names = helloDeferred.sorted()
        helloDeferred.removeAll()
        return names.flatMap { name -> [ControllerAction] in
            guard let assignment = currentAssignment(name) else { return [] }
            noteConnections(name, assignment)
            return [.send(to: name, assignment)]
        }
    }

    private mutating func finish(_ outcome: ControllerOutcome, reason: String) -> [ControllerAction] {
        phase = .finished
        return liveRoleNames.map { .send(to: $0, .shutdown(reason: reason)) } + [.finish(outcome)]
    }
}

/// What the controller did about dead processes in a run.
public struct RecoveryCounts: Codable, Equatable, Sendable {
    /// Processes seen to die (or declared dead by silence): stage processes, the sink, the source.
    public var deaths = 0
    /// Processes started in place of dead ones (a replica whose siblings carry on is not).
    public var restarts = 0
    /// Replays asked of the source, and the batches it sent again in all.
    public var replays = 0
    public var replayedBatches = 0
    /// Controllers started in place of a dead one (this one counts only its own start: what the
    /// dead one counted died with it).
    public var controllerRestarts = 0
    public init() {}

    private enum CodingKeys: String, CodingKey { case deaths, restarts, replays, replayedBatches, controllerRestarts }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        deaths = try c.decode(Int.self, forKey: .deaths)
        restarts = try c.decode(Int.self, forKey: .restarts)
        replays = try c.decode(Int.self, forKey: .replays)
        replayedBatches = try c.decode(Int.self, forKey: .replayedBatches)
        // Reports of 0.2 before controllers were started again have none.
        controllerRestarts = try c.decodeIfPresent(Int.self, forKey: .controllerRestarts) ?? 0
    }
}
