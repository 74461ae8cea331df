import SluiceConfig
import SluicePlan

/// What happens to the controller: a message from a role, the clock moving on, or an operator's
/// request to stop (SIGINT/SIGTERM).
public enum ControllerEvent: Equatable, Sendable {
    case received(from: String, ControlMessage)
    case tick(now: Double)
    case stopRequested
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
    /// The run is over; shutdown has already been sent to every role.
    case finish(ControllerOutcome)
}

/// The controller's protocol logic, free of sockets and clocks: events in, actions out.
/// Phases: registering → preparing (assignments out, waiting for ready) → running → draining
/// (source done, waiting for the sink) → closing (shutdown sent, collecting each role's final
/// counters) → finished.
public struct ControllerMachine {
    public enum Phase: Equatable, Sendable { case registering, preparing, running, draining, closing, finished }

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
    private var pendingOutcome: ControllerOutcome?
    private var finalReports: Set<String> = []
    /// Live rebalancing, when the pipeline has stages to rebalance.
    public private(set) var coordinator: RebalanceCoordinator?
    /// The cost model the controller last planned with, kept when moves stopped (the source
    /// finished, or a stop was asked for). Later heartbeats still update the live model, with
    /// the drain's sparse batches.
    public private(set) var lastPlanningModel: CostModel?

    /// `assignments` maps every role's name to its assignment message; the run starts once all
    /// of them have said hello and ready.
    public init(assignments: [String: ControlMessage], sourceName: String = "source", sinkName: String = "sink",
                liveness: Liveness, coordinator: RebalanceCoordinator? = nil, replicaEndpoint: ((String) -> String)? = nil) {
        self.assignments = assignments
        self.replicaEndpoint = replicaEndpoint
        self.sourceName = sourceName
        self.sinkName = sinkName
        self.liveness = liveness
        self.coordinator = coordinator
    }

    /// Starts a move by hand (tests, operators); the coordinator does the rest.
    public mutating func move(to ranges: [Range<Int>], reason: String) -> [ControllerAction] {
        guard phase == .running else { return [] }
        return coordinator?.begin(ranges, reason: reason) ?? []
    }

    /// Adds replicas by hand (tests, operators) until each stage has `wanted` processes, then
    /// moves to `ranges` once they have joined; the processes to start come out as `spawn`.
    public mutating func grow(to wanted: [Int], then ranges: [Range<Int>], reason: String) -> [ControllerAction] {
        guard phase == .running else { return [] }
        return coordinated(coordinator?.addReplicas(wanted, then: ranges, reason: reason) ?? [])
    }

    /// Role names of every stage process, replicas (and those still starting) included.
    public var stageInstances: [[String]] {
        var byStage: [[String]] = Array(repeating: [], count: coordinator?.ranges.count ?? 0)
        for name in roleNames {
            guard let stage = StageInstance.stage(of: name) else { continue }
            while byStage.count <= stage { byStage.append([]) }
            byStage[stage].append(name)
        }
        return byStage
    }

    /// Turns the coordinator's requests for replicas into processes to start.
    private mutating func coordinated(_ actions: [ControllerAction]) -> [ControllerAction] {
        actions.flatMap { action -> [ControllerAction] in
            guard case .addReplica(let stage) = action else { return [action] }
            guard let replicaEndpoint, case .assignStage(var assignment)? = assignments[StageInstance.name(stage: stage, replica: 0)] else {
                return coordinator?.abandonGrowth(reason: "this controller cannot start processes") ?? []
            }
            let name = StageInstance.name(stage: stage, replica: stageInstances[stage].count)
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
        return actions + coordinated(coordinator?.joined(name, stage: stage, startMove: phase == .running && !stopRequested) ?? [])
    }

    private var roleNames: [String] { assignments.keys.sorted() }

    /// Whether `name` is a role of this pipeline (replicas added live included).
    public func knows(_ name: String) -> Bool { assignments[name] != nil }

    public mutating func handle(_ event: ControllerEvent) -> [ControllerAction] {
        guard phase != .finished else { return [] }
        switch event {
        case .tick(let time):
            now = time
            if phaseStarted == nil { phaseStarted = time }
            return checkTimers()
        case .stopRequested:
            return requestStop()
        case .received(let name, let message):
            guard assignments[name] != nil else {
                return [.log("ignoring \(message.type) from unknown role '\(name)'"),
                        .send(to: name, .shutdown(reason: "no role named '\(name)' in this pipeline"))]
            }
            lastHeard[name] = now
            return receive(message, from: name)
        }
    }

    private mutating func receive(_ message: ControlMessage, from name: String) -> [ControllerAction] {
        switch message {
        case .hello(let hello):
            let (inserted, _) = registered.insert(name)
            var actions: [ControllerAction] = []
            if !inserted { actions.append(.log("\(name) (\(hello.role.rawValue), pid \(hello.pid) on \(hello.host)) registered again")) }
            if phase != .registering, let assignment = currentAssignment(name) {
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
            if let pending = pendingReplicas.removeValue(forKey: name) {
                return phase == .running || phase == .draining ? replicaJoined(name, stage: pending.stage) : []
            }
            guard phase == .preparing, ready.count == assignments.count else { return [] }
            phase = .running
            phaseStarted = now
            runStarted = now
            if stopRequested { return finish(.stopped(nil), reason: "stopped before the run started") }
            return [.log("all roles ready; starting the source"), .send(to: sourceName, .start)]
        case .heartbeat(let roleCounters):
            counters[name] = roleCounters
            if name == sinkName, roleCounters.batches != sinkProgress.batches {
                sinkProgress = (roleCounters.batches, now)
            }
            var moveActions = coordinated(coordinator?.heartbeat(from: name, counters: roleCounters, sinkName: sinkName) ?? [])
            if phase == .closing { moveActions = [] }
            if phase == .closing {
                finalReports.insert(name)
                if Set(assignments.keys).subtracting(pendingReplicas.keys).isSubset(of: finalReports), let outcome = pendingOutcome {
                    phase = .finished
                    return [.finish(outcome)]
                }
            }
            return moveActions
        case .prepared, .committed, .marked:
            return coordinated(coordinator?.received(message, from: name) ?? [])
        case .sourceDone(let done):
            guard phase == .running else { return [] }
            if lastPlanningModel == nil { lastPlanningModel = coordinator.map { $0.rebalancer.plannedWith ?? $0.rebalancer.model } }
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
            return roleNames.map { .send(to: $0, .shutdown(reason: "done")) }
        case .failed(let reason):
            if pendingReplicas[name] != nil {
                return [.log("\(name) failed before it joined: \(reason)")] + giveUpReplica(name, because: "\(name) failed: \(reason)")
            }
            return finish(.failed("\(name): \(reason)"), reason: "\(name) failed")
        case .assignStage, .assignSource, .assignSink, .start, .expect, .stop, .shutdown, .ping, .prepare, .commit, .mark, .retire, .connect:
            return [.log("ignoring \(message.type) from \(name): only the controller sends it")]
        }
    }

    /// A role's assignment as the plan stands now: a stage that registers again (restarted)
    /// or joins as a replica gets the range and epoch in force; it and a restarted source get
    /// every process of the next hop that is ready (one still starting is announced by
    /// `connect` once it is: a PUSH peer that nobody has bound yet would hold batches).
    private func currentAssignment(_ name: String) -> ControlMessage? {
        switch assignments[name] {
        case .assignSource(var source)?:
            if let first = stageInstances.first { source.pushEndpoints = readyEndpoints(first) }
            return .assignSource(source)
        case .assignStage(var stage)?:
            guard let coordinator, coordinator.ranges.indices.contains(stage.stageIndex) else { return assignments[name] }
            let range = coordinator.ranges[stage.stageIndex]
            stage.layers = LayerSpan(range)
            stage.epoch = coordinator.epoch
            let next = stage.stageIndex + 1
            if next < stageInstances.count { stage.pushEndpoints = readyEndpoints(stageInstances[next]) }
            return .assignStage(stage)
        default:
            return assignments[name]
        }
    }

    /// Where the ready processes among `names` bind their PULL.
    private func readyEndpoints(_ names: [String]) -> [String] {
        names.compactMap {
            guard pendingReplicas[$0] == nil, case .assignStage(let peer)? = assignments[$0] else { return nil }
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
        case .registering, .preparing:
            // Loading a model can take a while; allow several timeouts before giving up.
            if now - started > liveness.timeoutSeconds * 3 {
                let waiting = phase == .registering ? Set(roleNames).subtracting(registered) : Set(roleNames).subtracting(ready)
                let verb = phase == .registering ? "register" : "become ready"
                return actions + finish(.failed("\(waiting.sorted().joined(separator: ", ")) did not \(verb) within \(Int(liveness.timeoutSeconds * 3)) s"),
                                        reason: "roles missing")
            }
        case .running, .draining:
            actions += coordinated(coordinator?.tick(now: now, allowNewMoves: phase == .running && !stopRequested, streamingSince: runStarted) ?? [])
            actions += abandonLateReplicas()
            let silent = roleNames.filter { pendingReplicas[$0] == nil && now - (lastHeard[$0] ?? started) > liveness.timeoutSeconds }
            if !silent.isEmpty {
                return actions + finish(.failed("\(silent.joined(separator: ", ")) stopped responding (silent for more than \(liveness.timeoutSeconds) s)"),
                                        reason: "role lost")
            }
            if phase == .draining, now - sinkProgress.at > liveness.timeoutSeconds {
                return actions + finish(.failed("the sink received no batch for \(liveness.timeoutSeconds) s while draining; batches were lost"),
                                        reason: "drain stalled")
            }
            // Batches wait at the sink behind a gap that does not fill: one was lost on the way
            // (replay from the source is not built yet), and nothing after it can be released.
            // (Duplicates were taken and dropped: they wait for nothing.)
            if let sink = counters[sinkName], sink.received - sink.rejected - sink.drops.count(.batch, .duplicate) > sink.batches,
               now - sinkProgress.at > liveness.timeoutSeconds {
                return actions + finish(.failed("batch \(sink.batches) never reached the sink; \(sink.received - sink.rejected - sink.drops.count(.batch, .duplicate) - sink.batches) later batches wait behind it for \(liveness.timeoutSeconds) s"),
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
        assignments[name] = nil
        registered.remove(name)
        return [.send(to: name, .shutdown(reason: "not ready in time"))] + (coordinator?.abandonGrowth(reason: reason) ?? [])
    }

    private mutating func finish(_ outcome: ControllerOutcome, reason: String) -> [ControllerAction] {
        phase = .finished
        return roleNames.map { .send(to: $0, .shutdown(reason: reason)) } + [.finish(outcome)]
    }
}
