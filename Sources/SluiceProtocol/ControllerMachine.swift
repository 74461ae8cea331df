import SluiceConfig

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

    private let assignments: [String: ControlMessage]
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

    /// `assignments` maps every role's name to its assignment message; the run starts once all
    /// of them have said hello and ready.
    public init(assignments: [String: ControlMessage], sourceName: String = "source", sinkName: String = "sink",
                liveness: Liveness, coordinator: RebalanceCoordinator? = nil) {
        self.assignments = assignments
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

    private var roleNames: [String] { assignments.keys.sorted() }

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
            } else if registered.count == assignments.count {
                phase = .preparing
                phaseStarted = now
                actions.append(.log("all \(assignments.count) roles registered; sending assignments"))
                actions += roleNames.map { .send(to: $0, assignments[$0]!) }
            }
            return actions
        case .ready:
            ready.insert(name)
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
            var moveActions = coordinator?.heartbeat(from: name, counters: roleCounters, sinkName: sinkName) ?? []
            if phase == .closing { moveActions = [] }
            if phase == .closing {
                finalReports.insert(name)
                if finalReports.count == assignments.count, let outcome = pendingOutcome {
                    phase = .finished
                    return [.finish(outcome)]
                }
            }
            return moveActions
        case .prepared, .committed, .marked:
            return coordinator?.received(message, from: name) ?? []
        case .sourceDone(let done):
            guard phase == .running else { return [] }
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
            return finish(.failed("\(name): \(reason)"), reason: "\(name) failed")
        case .assignStage, .assignSource, .assignSink, .start, .expect, .stop, .shutdown, .ping, .prepare, .commit, .mark, .retire:
            return [.log("ignoring \(message.type) from \(name): only the controller sends it")]
        }
    }

    /// A role's assignment as the plan stands now: a stage that registers again (restarted)
    /// gets the range and epoch in force, not those the run started with.
    private func currentAssignment(_ name: String) -> ControlMessage? {
        guard case .assignStage(var stage)? = assignments[name], let coordinator,
              coordinator.ranges.indices.contains(stage.stageIndex) else { return assignments[name] }
        let range = coordinator.ranges[stage.stageIndex]
        stage.layers = LayerRange(start: range.lowerBound, end: range.upperBound)
        stage.epoch = coordinator.epoch
        return .assignStage(stage)
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
            actions += coordinator?.tick(now: now, allowNewMoves: phase == .running && !stopRequested) ?? []
            let silent = roleNames.filter { now - (lastHeard[$0] ?? started) > liveness.timeoutSeconds }
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
            if let sink = counters[sinkName], sink.received - sink.rejected > sink.batches,
               now - sinkProgress.at > liveness.timeoutSeconds {
                return actions + finish(.failed("batch \(sink.batches) never reached the sink; \(sink.received - sink.rejected - sink.batches) later batches wait behind it for \(liveness.timeoutSeconds) s"),
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

    private mutating func finish(_ outcome: ControllerOutcome, reason: String) -> [ControllerAction] {
        phase = .finished
        return roleNames.map { .send(to: $0, .shutdown(reason: reason)) } + [.finish(outcome)]
    }
}
