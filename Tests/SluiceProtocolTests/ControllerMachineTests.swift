import Testing
import SluiceConfig
import SluicePlan
@testable import SluiceProtocol

private let liveness = Liveness(heartbeatSeconds: 0.5, timeoutSeconds: 5)
private let roles = ["stage-0", "stage-1", "source", "sink"]

/// `source`: the source's assignment, where it matters what kind of source it is.
private func machine(source: SourceAssignment? = nil) -> ControllerMachine {
    var assignments: [String: ControlMessage] = [:]
    for name in roles { assignments[name] = .shutdown(reason: "assignment of \(name)") }  // any distinct message will do
    if let source { assignments["source"] = .assignSource(source) }
    return ControllerMachine(assignments: assignments, liveness: liveness)
}

private func sends(_ actions: [ControllerAction]) -> [String] {
    actions.compactMap { if case .send(let to, let message) = $0 { return "\(to):\(message.type)" } else { return nil } }
}

private func outcome(_ actions: [ControllerAction]) -> ControllerOutcome? {
    actions.compactMap { if case .finish(let outcome) = $0 { return outcome } else { return nil } }.first
}

/// Drives the machine to the running phase and returns it.
private func running(source: SourceAssignment? = nil) -> ControllerMachine {
    var controller = machine(source: source)
    _ = controller.handle(.tick(now: 0))
    for name in roles { _ = controller.handle(.received(from: name, .hello(Hello(role: .stage, name: name, pid: 1, host: "h")))) }
    for name in roles { _ = controller.handle(.received(from: name, .ready)) }
    return controller
}

@Test func assignsOnlyOnceEveryRoleRegistered() {
    var controller = machine()
    _ = controller.handle(.tick(now: 0))
    var actions: [ControllerAction] = []
    for name in roles.dropLast() {
        actions += controller.handle(.received(from: name, .hello(Hello(role: .stage, name: name, pid: 1, host: "h"))))
    }
    #expect(sends(actions).isEmpty)
    let last = controller.handle(.received(from: "sink", .hello(Hello(role: .sink, name: "sink", pid: 1, host: "h"))))
    #expect(Set(sends(last)) == Set(roles.map { "\($0):shutdown" }))   // the stand-in assignments
    #expect(controller.phase == .preparing)
}

@Test func startsTheSourceWhenAllAreReadyAndFinishesWhenTheSinkIsDone() {
    var controller = machine()
    _ = controller.handle(.tick(now: 0))
    for name in roles { _ = controller.handle(.received(from: name, .hello(Hello(role: .stage, name: name, pid: 1, host: "h")))) }
    var start: [ControllerAction] = []
    for name in roles { start += controller.handle(.received(from: name, .ready)) }
    #expect(sends(start) == ["source:start"])
    #expect(controller.phase == .running)

    let done = controller.handle(.received(from: "source", .sourceDone(SourceDone(batches: 10, windows: 77))))
    #expect(sends(done) == ["sink:expect"])
    #expect(controller.phase == .draining)

    var summary = SinkSummary()
    summary.windows = 77
    let closing = controller.handle(.received(from: "sink", .sinkDone(summary)))
    #expect(Set(sends(closing)) == Set(roles.map { "\($0):shutdown" }))
    #expect(outcome(closing) == nil)
    #expect(controller.phase == .closing)

    // A periodic heartbeat sent before a role took the shutdown, with counters from the middle
    // of the run, may arrive now: it is not the role's last word.
    var early = RoleCounters()
    early.batches = 3
    var stale: [ControllerAction] = []
    for name in roles { stale += controller.handle(.received(from: name, .heartbeat(early))) }
    #expect(outcome(stale) == nil)
    #expect(controller.phase == .closing)

    // Each role answers shutdown with its final counters; the report waits for all of them.
    var final = RoleCounters()
    final.batches = 10
    final.final = true
    var finish: [ControllerAction] = []
    for name in roles { finish += controller.handle(.received(from: name, .heartbeat(final))) }
    #expect(outcome(finish) == .completed(summary))
    // Each exit heartbeat is answered: the role waits for that before its process ends, or the
    // heartbeat could be lost with it.
    #expect(Set(sends(finish)) == Set(roles.map { "\($0):shutdown" }))
    #expect(controller.counters["stage-1"]?.batches == 10)
    #expect(controller.phase == .finished)
    #expect(controller.handle(.tick(now: 100)).isEmpty)
}

@Test func aRoleThatExitsWithoutFinalCountersDoesNotHoldTheRun() {
    var controller = running()
    _ = controller.handle(.received(from: "source", .sourceDone(SourceDone(batches: 1, windows: 1))))
    _ = controller.handle(.received(from: "sink", .sinkDone(SinkSummary())))
    #expect(outcome(controller.handle(.tick(now: 1.9))) == nil)
    #expect(outcome(controller.handle(.tick(now: 2.1))) == .completed(SinkSummary()))
}

@Test func stopDrainsBeforeShuttingDown() {
    var controller = running()
    #expect(sends(controller.handle(.stopRequested)) == ["source:stop"])
    _ = controller.handle(.received(from: "source", .sourceDone(SourceDone(batches: 3, windows: 3))))
    _ = controller.handle(.received(from: "sink", .sinkDone(SinkSummary())))
    var finish: [ControllerAction] = []
    var final = RoleCounters()
    final.final = true
    for name in roles { finish += controller.handle(.received(from: name, .heartbeat(final))) }
    #expect(outcome(finish) == .stopped(SinkSummary()))
}

@Test func aSecondStopShutsDownAtOnce() {
    var controller = running()
    _ = controller.handle(.stopRequested)
    let actions = controller.handle(.stopRequested)
    #expect(outcome(actions) == .stopped(nil))
    #expect(sends(actions).count == roles.count)
}

/// A sink silent past the timeout may be stopped or cut off rather than dead: it is fenced
/// (killed) before a sink is started in its place, which takes up the stream after its output.
@Test func aSilentSinkIsFencedThenStartedAgain() {
    var controller = running()
    var actions: [ControllerAction] = []
    for second in 1...5 {
        actions += controller.handle(.tick(now: Double(second)))
        for name in roles where name != "sink" { _ = controller.handle(.received(from: name, .heartbeat(RoleCounters()))) }
    }
    actions += controller.handle(.tick(now: 5.5))
    #expect(outcome(actions) == nil, "\(actions)")
    let fence = actions.firstIndex(of: .fence(role: "sink"))
    let spawn = actions.firstIndex(of: .spawn(role: "sink"))
    #expect(fence != nil && spawn != nil && fence! < spawn!, "fenced before one is started in its place: \(actions)")
    #expect(controller.recovery.deaths == 1 && controller.recovery.restarts == 1)
}

private func spawns(_ actions: [ControllerAction]) -> [String] {
    actions.compactMap { if case .spawn(let role) = $0 { return role } else { return nil } }
}

@Test func aStageWhoseOnlyProcessDiesIsStartedAgainThenTheSourceReplaysWhatTheSinkHasNot() {
    for seenBy in ["exit", "silence"] {
        var controller = running()
        var died: [ControllerAction] = []
        if seenBy == "exit" {
            died = controller.handle(.roleExited("stage-1", how: "killed"))
        } else {
            for second in 1...6 {
                for name in roles where name != "stage-1" { _ = controller.handle(.received(from: name, .heartbeat(RoleCounters()))) }
                died += controller.handle(.tick(now: Double(second)))
            }
        }
        #expect(outcome(died) == nil, "\(seenBy): \(died)")
        #expect(spawns(died) == ["stage-1"], "\(seenBy)")
        #expect(died.contains(.fence(role: "stage-1")) == (seenBy == "silence"), "only one declared dead for its silence is fenced: \(died)")
        // The new process registers, takes the assignment in force, and once ready the sink
        // names where the replay starts, and the source replays from there.
        let hello = controller.handle(.received(from: "stage-1", .hello(Hello(role: .stage, name: "stage-1", pid: 2, host: "h"))))
        #expect(sends(hello) == ["stage-1:shutdown"], "\(seenBy)")  // the stand-in assignment
        #expect(sends(controller.handle(.received(from: "stage-1", .ready))) == ["sink:replay_needed"], "\(seenBy)")
        #expect(sends(controller.handle(.received(from: "sink", .replay(from: 7)))) == ["source:replay"], "\(seenBy)")
        #expect(controller.recovery.deaths == 1 && controller.recovery.restarts == 1 && controller.recovery.replays == 1, "\(seenBy)")
    }
}

/// A stage that dies each time it is started, with nothing released in between (a batch that
/// crashes it comes back with every replay), fails the run naming it at the fifth death; one
/// that dies as often while batches keep coming out is started again every time.
@Test func aStageThatDiesAgainAndAgainWithNothingReleasedFailsTheRun() {
    for progress in [false, true] {
        var controller = running()
        var released = 0
        var finished: ControllerOutcome?
        for death in 1...8 {
            _ = controller.handle(.tick(now: Double(death)))
            if progress {
                released += 3
                var sink = RoleCounters()
                sink.batches = released
                _ = controller.handle(.received(from: "sink", .heartbeat(sink)))
            }
            let died = controller.handle(.roleExited("stage-1", how: "its process 42 exited"))
            if let outcome = outcome(died) {
                finished = outcome
                #expect(death == ControllerMachine.fruitlessDeathLimit && !progress, "death \(death)")
                break
            }
            #expect(spawns(died) == ["stage-1"], "death \(death)")
            _ = controller.handle(.received(from: "stage-1", .hello(Hello(role: .stage, name: "stage-1", pid: 2, host: "h"))))
            _ = controller.handle(.received(from: "stage-1", .ready))
        }
        if progress {
            #expect(finished == nil)
        } else {
            guard case .failed(let message)? = finished else { Issue.record("the run went on: \(String(describing: finished))"); continue }
            #expect(message.contains("stage-1 died (its process 42 exited), its 5th process in 4 s to die once ready with no batch released in between"), "\(message)")
        }
    }
}

@Test func aDeadReplicaLeavesItsSiblingsToCarryOnAndIsFencedOff() {
    let names = ["stage-0", StageInstance.name(stage: 0, replica: 1), "source", "sink"]
    var assignments: [String: ControlMessage] = [:]
    for name in names { assignments[name] = .shutdown(reason: "assignment of \(name)") }
    var controller = ControllerMachine(assignments: assignments, liveness: liveness)
    _ = controller.handle(.tick(now: 0))
    for name in names { _ = controller.handle(.received(from: name, .hello(Hello(role: .stage, name: name, pid: 1, host: "h")))) }
    for name in names { _ = controller.handle(.received(from: name, .ready)) }
    let died = controller.handle(.roleExited(names[1], how: "killed"))
    #expect(outcome(died) == nil && spawns(died).isEmpty, "\(died)")
    #expect(sends(died) == ["sink:replay_needed"])
    #expect(controller.stageInstances == [["stage-0"]])
    // Anything it still sends is refused.
    #expect(sends(controller.handle(.received(from: names[1], .heartbeat(RoleCounters())))) == ["\(names[1]):shutdown"])
}

@Test func aSourceThatDiesBeforeTheRunStartsFailsItAtOnce() {
    var controller = machine()
    _ = controller.handle(.tick(now: 0))
    for name in roles { _ = controller.handle(.received(from: name, .hello(Hello(role: .stage, name: name, pid: 1, host: "h")))) }
    guard case .failed(let message)? = outcome(controller.handle(.roleExited("source", how: "killed"))) else {
        Issue.record("no failure"); return
    }
    #expect(message.contains("source died"))
}

@Test func missingRolesAreNamedWhenRegistrationTimesOut() {
    var controller = machine()
    _ = controller.handle(.tick(now: 0))
    _ = controller.handle(.received(from: "source", .hello(Hello(role: .source, name: "source", pid: 1, host: "h"))))
    #expect(outcome(controller.handle(.tick(now: 14))) == nil)
    guard case .failed(let message)? = outcome(controller.handle(.tick(now: 16))) else { Issue.record("did not time out"); return }
    #expect(message == "sink, stage-0, stage-1 did not register within 15 s")
}

@Test func aFailingRoleStopsThePipelineWithItsMessage() {
    var controller = running()
    let actions = controller.handle(.received(from: "stage-1", .failed(message: "cannot load model")))
    #expect(outcome(actions) == .failed("stage-1: cannot load model"))
    #expect(sends(actions).count == roles.count)
}

@Test func unknownRolesAreToldToLeave() {
    var controller = machine()
    let actions = controller.handle(.received(from: "stage-9", .hello(Hello(role: .stage, name: "stage-9", pid: 1, host: "h"))))
    #expect(sends(actions) == ["stage-9:shutdown"])
}

@Test func pingsEveryRoleEachHeartbeat() {
    var controller = running()
    #expect(sends(controller.handle(.tick(now: 0.6))).sorted() == roles.map { "\($0):ping" }.sorted())
    #expect(sends(controller.handle(.tick(now: 0.7))).isEmpty)
}

@Test func aBatchThatNeverArrivesIsReplayedOnceThenFailsTheRunInsteadOfStallingIt() {
    var controller = running()
    var sink = RoleCounters()
    sink.received = 5
    sink.batches = 2  // batch 2 is missing; 3 more wait behind it
    var outcomeSeen: ControllerOutcome?
    var replaysAsked = 0
    for second in 1...12 {
        for name in roles where name != "sink" { _ = controller.handle(.received(from: name, .heartbeat(RoleCounters()))) }
        _ = controller.handle(.received(from: "sink", .heartbeat(sink)))
        let actions = controller.handle(.tick(now: Double(second)))
        replaysAsked += sends(actions).filter { $0 == "sink:replay_needed" }.count
        outcomeSeen = outcome(actions) ?? outcomeSeen
        if outcomeSeen != nil { break }
    }
    #expect(replaysAsked == 1)
    guard case .failed(let message)? = outcomeSeen else { Issue.record("no failure"); return }
    #expect(message.contains("batch 2 never reached the sink"), "\(message)")
}

/// A sink that releases nothing while the source sends nothing (a live source's sensors are
/// quiet) is idle: no replay is asked, and the run does not fail. Once the source sends a batch
/// that never comes out (the last one, lost on the way), the wait starts, and it is replayed.
@Test func anIdleSinkIsNotStalledButALostLastBatchIsReplayed() {
    var controller = running()
    var source = RoleCounters()
    source.sent = 2
    var sink = RoleCounters()
    sink.received = 2
    sink.batches = 2
    /// Every role reports, then a second passes.
    func beat(_ second: Int) -> [ControllerAction] {
        _ = controller.handle(.received(from: "source", .heartbeat(source)))
        for stage in ["stage-0", "stage-1"] { _ = controller.handle(.received(from: stage, .heartbeat(RoleCounters()))) }
        _ = controller.handle(.received(from: "sink", .heartbeat(sink)))
        return controller.handle(.tick(now: Double(second)))
    }
    let quiet = (1...20).flatMap(beat)
    #expect(!sends(quiet).contains("sink:replay_needed") && outcome(quiet) == nil, "\(quiet)")
    // The sink released batches 0 and 1 at second 1; now the source sends batch 2, which is lost.
    source.sent = 3
    var later: [ControllerAction] = []
    for second in 21...27 {
        let tick = beat(second)
        if second <= 25 { #expect(!sends(tick).contains("sink:replay_needed"), "asked at \(second) s, before the timeout passed since the send") }
        later += tick
    }
    #expect(sends(later).contains("sink:replay_needed"), "\(later)")
}

@Test func duplicatesTheSinkDroppedAreNoGapToWaitOn() {
    var controller = running()
    var sink = RoleCounters()
    sink.received = 5
    sink.batches = 2  // every batch released; three more copies of released ones were dropped
    sink.drops.add(3, .batch, .duplicate)
    for second in 1...12 {
        for name in roles where name != "sink" { _ = controller.handle(.received(from: name, .heartbeat(RoleCounters()))) }
        _ = controller.handle(.received(from: "sink", .heartbeat(sink)))
        #expect(outcome(controller.handle(.tick(now: Double(second)))) == nil, "second \(second)")
    }
}

@Test func aStageThatRegistersAgainGetsTheRangeInForceNow() {
    let cut = LayerCut(layers: (0..<4).map {
        Layer(index: $0, nodeStart: $0, nodeEnd: $0 + 1, opTypes: ["F"], flopsPerWindow: 1, parameterBytes: 4, outputs: ["x"], outputBytesPerWindow: 4)
    }, inputs: ["x"], inputBytesPerWindow: 4)
    let stage = StageAssignment(stageIndex: 0, epoch: 1, modelPath: "/m", cut: cut, layers: LayerSpan(start: 0, end: 2),
                                pullEndpoint: "a", pushEndpoints: ["b"], slowdown: 0, liveness: liveness)
    var coordinator = RebalanceCoordinator(ranges: [0..<2, 2..<4], epoch: 1,
                                           rebalancer: Rebalancer(config: RebalanceConfig(policy: .off), cut: cut, stages: 2))
    _ = coordinator.begin([0..<1, 1..<4], reason: "test")
    for name in ["stage-0", "stage-1"] { _ = coordinator.received(.prepared(epoch: 2), from: name) }
    for name in ["stage-0", "stage-1"] { _ = coordinator.received(.committed(epoch: 2), from: name) }
    var controller = ControllerMachine(assignments: ["stage-0": .assignStage(stage), "stage-1": .ping, "source": .ping, "sink": .ping],
                                       liveness: liveness, coordinator: coordinator)
    _ = controller.handle(.tick(now: 0))
    for name in ["stage-0", "stage-1", "source", "sink"] {
        _ = controller.handle(.received(from: name, .hello(Hello(role: .stage, name: name, pid: 1, host: "h"))))
    }
    let again = controller.handle(.received(from: "stage-0", .hello(Hello(role: .stage, name: "stage-0", pid: 2, host: "h"))))
    guard case .send(_, .assignStage(let resent))? = again.first(where: { if case .send = $0 { return true } else { return false } }) else {
        Issue.record("no assignment resent: \(again)")
        return
    }
    #expect(resent.layers == LayerSpan(start: 0, end: 1) && resent.epoch == 2)
}

/// Two stages, the second four times as heavy, a budget of three cores: the controller adds a
/// replica to the heavy stage while the run goes on.
private func growingController(timeout: Double = 5, warmup: Double = 0, cores: Int = 3, stageSeconds: [Double] = [1, 4]) -> ControllerMachine {
    let cut = LayerCut(layers: (0..<2).map {
        Layer(index: $0, nodeStart: $0, nodeEnd: $0 + 1, opTypes: ["F"], flopsPerWindow: 1, parameterBytes: 4, outputs: ["x"], outputBytesPerWindow: 4)
    }, inputs: ["x"], inputBytesPerWindow: 4)
    let alive = Liveness(heartbeatSeconds: 0.5, timeoutSeconds: timeout)
    func stage(_ index: Int) -> ControlMessage {
        .assignStage(StageAssignment(stageIndex: index, epoch: 1, modelPath: "/m", cut: cut, layers: LayerSpan(start: index, end: index + 1),
                                     pullEndpoint: "ipc://stage-\(index)", pushEndpoints: [index == 0 ? "ipc://stage-1" : "ipc://sink"],
                                     slowdown: 0, liveness: alive))
    }
    let rebalancer = Rebalancer(config: RebalanceConfig(policy: .auto, intervalSeconds: 0.1, threshold: 0.1, warmupSeconds: warmup), cut: cut, stages: 2,
                                replicas: [1, 1], threads: [1, 1], cores: cores)
    var controller = ControllerMachine(assignments: ["stage-0": stage(0), "stage-1": stage(1), "source": .ping, "sink": .ping],
                                       liveness: alive,
                                       coordinator: RebalanceCoordinator(ranges: [0..<1, 1..<2], epoch: 1, rebalancer: rebalancer),
                                       replicaEndpoint: { "ipc://\($0)" })
    _ = controller.handle(.tick(now: 0))
    for name in roles { _ = controller.handle(.received(from: name, .hello(Hello(role: .stage, name: name, pid: 1, host: "h")))) }
    for name in roles { _ = controller.handle(.received(from: name, .ready)) }
    for (stage, seconds) in stageSeconds.enumerated() {
        var counters = RoleCounters()
        counters.busySeconds = seconds
        counters.layers = [LayerTiming(layer: stage, seconds: seconds, windows: 1000)]
        _ = controller.handle(.received(from: "stage-\(stage)", .heartbeat(counters)))
    }
    return controller
}

@Test func aStageThatOneLayerHoldsBackGetsAReplicaWhileTheRunGoesOn() {
    var controller = growingController()
    let decision = controller.handle(.tick(now: 1))
    #expect(decision.contains(.spawn(role: "stage-1.1")), "\(decision)")
    #expect(controller.stageInstances == [["stage-0"], ["stage-1", "stage-1.1"]])

    let hello = controller.handle(.received(from: "stage-1.1", .hello(Hello(role: .stage, name: "stage-1.1", pid: 2, host: "h"))))
    guard case .send("stage-1.1", .assignStage(let assignment))? = hello.first(where: { if case .send = $0 { return true } else { return false } }) else {
        Issue.record("no assignment for the new replica: \(hello)")
        return
    }
    #expect(assignment.pullEndpoint == "ipc://stage-1.1" && assignment.pushEndpoints == ["ipc://sink"])
    #expect(assignment.layers == LayerSpan(start: 1, end: 2) && assignment.epoch == 1)
    #expect(controller.coordinator?.replicas == [1, 1], "counted before it is ready")

    let ready = controller.handle(.received(from: "stage-1.1", .ready))
    #expect(sends(ready) == ["stage-0:connect"], "\(ready)")
    #expect(ready.contains(.send(to: "stage-0", .connect(endpoint: "ipc://stage-1.1"))))
    #expect(controller.coordinator?.replicas == [1, 2])
    #expect(controller.coordinator?.instances.contains("stage-1.1") == true)
    #expect(controller.coordinator?.history.last?.newReplicas == [1, 2])
    #expect(controller.coordinator?.history.last?.settledAtSeconds == 1, "a replica-only plan is in force once the replica joined")
    // The budget is spent: no further replica, and no move (the split was already the best).
    #expect(!controller.handle(.tick(now: 2)).contains { if case .spawn = $0 { return true } else { return false } })
    #expect(controller.phase == .running)
}

@Test func aReplicaThatNeverStartsIsGivenUpWithoutFailingTheRun() {
    var controller = growingController(timeout: 1)
    #expect(controller.handle(.tick(now: 1)).contains(.spawn(role: "stage-1.1")))
    var actions: [ControllerAction] = []
    for tenth in 11...45 {
        // The roles that exist keep answering; the new one never does.
        for name in roles { _ = controller.handle(.received(from: name, .heartbeat(RoleCounters()))) }
        actions += controller.handle(.tick(now: Double(tenth) / 10))
    }
    #expect(outcome(actions) == nil, "\(actions)")
    #expect(actions.contains(.send(to: "stage-1.1", .shutdown(reason: "not ready in time"))))
    #expect(controller.coordinator?.isGrowing == false && controller.coordinator?.replicas == [1, 1])
    #expect(controller.stageInstances == [["stage-0"], ["stage-1"]])
}

@Test func noMoveStartsWhileAReplicaIsStillStarting() {
    func stage(_ index: Int) -> ControlMessage {
        .assignStage(StageAssignment(stageIndex: index, epoch: 1, modelPath: "/m", cut: fourLayers, layers: LayerSpan(start: 2 * index, end: 2 * index + 2),
                                     pullEndpoint: "ipc://stage-\(index)", pushEndpoints: [index == 0 ? "ipc://stage-1" : "ipc://sink"],
                                     slowdown: 0, liveness: liveness))
    }
    var controller = ControllerMachine(assignments: ["stage-0": stage(0), "stage-1": stage(1), "source": .ping, "sink": .ping], liveness: liveness,
                                       coordinator: RebalanceCoordinator(ranges: [0..<2, 2..<4], epoch: 1,
                                                                         rebalancer: Rebalancer(config: RebalanceConfig(policy: .off), cut: fourLayers, stages: 2)),
                                       replicaEndpoint: { "ipc://\($0)" })
    _ = controller.handle(.tick(now: 0))
    for name in roles { _ = controller.handle(.received(from: name, .hello(Hello(role: .stage, name: name, pid: 1, host: "h")))) }
    for name in roles { _ = controller.handle(.received(from: name, .ready)) }
    #expect(controller.grow(to: [1, 2], then: [0..<1, 1..<4], reason: "by hand").contains(.spawn(role: "stage-1.1")))
    _ = controller.handle(.received(from: "stage-1.1", .hello(Hello(role: .stage, name: "stage-1.1", pid: 2, host: "h"))))
    // It was assigned the plan in force: a move begun now would ask it to commit an epoch it never prepared.
    #expect(sends(controller.move(to: [0..<3, 3..<4], reason: "by hand")).isEmpty)
    #expect(controller.coordinator?.isMoving == false)
    // Once it joined, the move planned with it starts, with it among those that prepare.
    let joined = controller.handle(.received(from: "stage-1.1", .ready))
    #expect(joined.contains(.send(to: "stage-1.1", .prepare(Move(epoch: 2, ranges: [LayerSpan(start: 0, end: 1), LayerSpan(start: 1, end: 4)])))),
            "\(joined)")
}

/// Every process that was to prepare a move died (each is starting again, and takes the plan in
/// force once the switch is done): nobody is left to commit, so the plans switch at once
/// rather than wait for commits that never come.
@Test func aMoveWhoseEveryProcessDiedSwitchesPlansWithoutWaiting() {
    var coordinator = RebalanceCoordinator(ranges: [0..<2, 2..<4], epoch: 1,
                                           rebalancer: Rebalancer(config: RebalanceConfig(policy: .off), cut: fourLayers, stages: 2))
    _ = coordinator.begin([0..<1, 1..<4], reason: "test")
    #expect(coordinator.lost("stage-0", stage: 0, replaced: true).isEmpty)
    let last = coordinator.lost("stage-1", stage: 1, replaced: true)
    #expect(last == [.send(to: "source", .mark(epoch: 2))], "\(last)")
    #expect(coordinator.ranges == [0..<1, 1..<4] && coordinator.epoch == 2)
}

@Test func noMoveBeforeTheWarmUpIsOver() {
    var controller = growingController(timeout: 20, warmup: 5)
    for second in 1...4 {
        #expect(!controller.handle(.tick(now: Double(second))).contains(.spawn(role: "stage-1.1")), "moved at \(second) s")
    }
    #expect(controller.handle(.tick(now: 5.5)).contains(.spawn(role: "stage-1.1")))
}

@Test func aReplicaIsNeverSentBatchesBeforeItIsReady() {
    // Both stages equally heavy and four cores: each gets a second process.
    var controller = growingController(cores: 4, stageSeconds: [4, 4])
    let decision = controller.handle(.tick(now: 1))
    #expect(decision.contains(.spawn(role: "stage-0.1")) && decision.contains(.spawn(role: "stage-1.1")), "\(decision)")
    let hello = controller.handle(.received(from: "stage-0.1", .hello(Hello(role: .stage, name: "stage-0.1", pid: 2, host: "h"))))
    guard case .send(_, .assignStage(let assignment))? = hello.first(where: { if case .send = $0 { return true } else { return false } }) else {
        Issue.record("no assignment: \(hello)")
        return
    }
    // stage-1.1 is still loading: a PUSH peer nobody has bound would hold batches.
    #expect(assignment.pushEndpoints == ["ipc://stage-1"])
    #expect(sends(controller.handle(.received(from: "stage-0.1", .ready))) == ["source:connect"])
    _ = controller.handle(.received(from: "stage-1.1", .hello(Hello(role: .stage, name: "stage-1.1", pid: 3, host: "h"))))
    let ready = controller.handle(.received(from: "stage-1.1", .ready))
    #expect(sends(ready).filter { $0.hasSuffix(":connect") }.sorted() == ["stage-0.1:connect", "stage-0:connect"], "\(ready)")
    #expect(controller.coordinator?.replicas == [2, 2])
}

@Test func aReplicaThatFailsToStartIsGivenUpWithoutFailingTheRun() {
    var controller = growingController()
    #expect(controller.handle(.tick(now: 1)).contains(.spawn(role: "stage-1.1")))
    let failed = controller.handle(.received(from: "stage-1.1", .failed(message: "cannot bind tcp://127.0.0.1:5607: address in use")))
    #expect(outcome(failed) == nil, "\(failed)")
    #expect(controller.phase == .running && controller.coordinator?.isGrowing == false)
    #expect(controller.stageInstances == [["stage-0"], ["stage-1"]])
}

/// A role of another release would misread the assignments, or be misread: it is refused by
/// name when it says hello, and the run waits for one that speaks this controller's messages.
@Test func aRoleOfAnotherReleaseIsRefusedAtHello() {
    var controller = machine()
    _ = controller.handle(.tick(now: 0))
    for name in roles.dropLast() { _ = controller.handle(.received(from: name, .hello(Hello(role: .stage, name: name, pid: 1, host: "h")))) }
    for old in [nil, ControlMessage.revision - 1, ControlMessage.revision + 1] as [Int?] {
        let refused = controller.handle(.received(from: "sink", .hello(Hello(role: .sink, name: "sink", pid: 7, host: "h", revision: old))))
        #expect(sends(refused) == ["sink:shutdown"], "revision \(String(describing: old))")
        #expect(refused.contains { if case .log(let text) = $0 { return text.contains("same Sluice release") } else { return false } })
        #expect(controller.phase == .registering)
    }
    let taken = controller.handle(.received(from: "sink", .hello(Hello(role: .sink, name: "sink", pid: 8, host: "h"))))
    #expect(Set(sends(taken)) == Set(roles.map { "\($0):shutdown" }))   // the stand-in assignments
    #expect(controller.phase == .preparing)
}

/// Two stages of a four-layer model, and a controller started in place of a dead one.
private let fourLayers = LayerCut(layers: (0..<4).map {
    Layer(index: $0, nodeStart: $0, nodeEnd: $0 + 1, opTypes: ["F"], flopsPerWindow: 1, parameterBytes: 4, outputs: ["x"], outputBytesPerWindow: 4)
}, inputs: ["x"], inputBytesPerWindow: 4)

private func stageState(_ index: Int, layers: Range<Int>, epoch: UInt32, held: Range<Int>? = nil, preparing: PreparedRange? = nil,
                        compression: Compression = .none) -> RoleState {
    let assignment = StageAssignment(stageIndex: index, epoch: epoch, modelPath: "/m", cut: fourLayers, layers: LayerSpan(layers),
                                     pullEndpoint: "ipc://stage-\(index)", pushEndpoints: [index == 0 ? "ipc://stage-1" : "ipc://sink"],
                                     slowdown: 0, liveness: liveness, compression: compression)
    return RoleState(stage: StageState(assignment: assignment, held: LayerSpan(held ?? layers), preparing: preparing))
}

/// Feeds the roles' `rejoined` answers (after each says hello) to a new controller and lets the
/// grace period pass; returns what it did on taking the run over.
private func takeOver(_ states: [String: RoleState]) -> (ControllerMachine, [ControllerAction]) {
    var controller = ControllerMachine(
        assignments: ["stage-0": .ping, "stage-1": .ping, "source": .ping, "sink": .ping], liveness: liveness,
        coordinator: RebalanceCoordinator(ranges: [0..<2, 2..<4], epoch: 1,
                                          rebalancer: Rebalancer(config: RebalanceConfig(policy: .off), cut: fourLayers, stages: 2)),
        rejoining: true)
    _ = controller.handle(.tick(now: 0))
    // A heartbeat from a role it does not know yet is answered with a request to rejoin.
    #expect(sends(controller.handle(.received(from: "stage-1", .heartbeat(RoleCounters())))) == ["stage-1:rejoin"])
    for (name, state) in states.sorted(by: { $0.key < $1.key }) {
        _ = controller.handle(.received(from: name, .hello(Hello(role: .stage, name: name, pid: 1, host: "h"))))
        _ = controller.handle(.received(from: name, .rejoined(state)))
    }
    #expect(controller.phase == .rejoining)
    let actions = controller.handle(.tick(now: 2)).filter { if case .send(_, .ping) = $0 { return false } else { return true } }
    return (controller, actions)
}

private let sourceAt = RoleState(source: SourceState(epoch: 3, nextBatch: 40, generation: 0, done: nil, lastMark: Mark(epoch: 3, firstBatch: 30)))
private let sinkAt = RoleState(sink: SinkState(nextBatch: 25, output: SinkOutputState(batches: 20, windows: 160), sourceGeneration: 0, done: nil))

@Test func aControllerThatTakesOverGoesOnWithThePlanTheStagesRun() {
    let (controller, actions) = takeOver(["stage-0": stageState(0, layers: 0..<1, epoch: 3), "stage-1": stageState(1, layers: 1..<4, epoch: 3),
                                          "source": sourceAt, "sink": sinkAt])
    #expect(controller.phase == .running, "\(actions)")
    #expect(controller.coordinator?.ranges == [0..<1, 1..<4] && controller.coordinator?.epoch == 3)
    #expect(controller.coordinator?.isMoving == false && sends(actions).isEmpty, "\(actions)")
    #expect(controller.recovery.controllerRestarts == 1)
}

@Test func aControllerThatTakesOverKeepsTheLinksTheDeadOneNarrowed() {
    let (controller, _) = takeOver(["stage-0": stageState(0, layers: 0..<1, epoch: 3, compression: .fp16),
                                    "stage-1": stageState(1, layers: 1..<4, epoch: 3), "source": sourceAt, "sink": sinkAt])
    #expect(controller.coordinator?.compression == [.fp16, .none])
}

@Test func aControllerThatTakesOverFinishesAMoveSomeStagesCommitted() {
    // stage-0 committed epoch 4; stage-1 prepared it and never heard the commit.
    let (controller, actions) = takeOver([
        "stage-0": stageState(0, layers: 0..<2, epoch: 4, held: 0..<2),
        "stage-1": stageState(1, layers: 1..<4, epoch: 3, held: 1..<4, preparing: PreparedRange(epoch: 4, layers: LayerSpan(start: 2, end: 4))),
        "source": sourceAt, "sink": sinkAt])
    #expect(sends(actions) == ["stage-1:commit"], "\(actions)")
    #expect(controller.coordinator?.isSwitching == true)
}

@Test func aControllerThatTakesOverUndoesAMoveNoStageCommitted() {
    let (_, actions) = takeOver([
        "stage-0": stageState(0, layers: 0..<1, epoch: 3, held: 0..<2, preparing: PreparedRange(epoch: 4, layers: LayerSpan(start: 0, end: 2))),
        "stage-1": stageState(1, layers: 1..<4, epoch: 3),
        "source": sourceAt, "sink": sinkAt])
    let prepares = actions.compactMap { if case .send(let to, .prepare(let move)) = $0 { return (to, move) } else { return nil } }
    #expect(prepares.map(\.0).sorted() == ["stage-0", "stage-1"], "\(actions)")
    #expect(prepares.allSatisfy { $0.1 == Move(epoch: 4, ranges: [LayerSpan(start: 0, end: 1), LayerSpan(start: 1, end: 4)]) },
            "undone by a move to the ranges in force")
}

@Test func aControllerThatTakesOverMarksAMoveEveryStageCommitted() {
    var source = sourceAt
    source.source?.epoch = 2
    let (_, actions) = takeOver(["stage-0": stageState(0, layers: 0..<1, epoch: 3), "stage-1": stageState(1, layers: 1..<4, epoch: 3),
                                 "source": source, "sink": sinkAt])
    #expect(sends(actions) == ["source:mark"], "\(actions)")
}

@Test func aControllerThatTakesOverADrainingRunTellsTheSinkTheCountsAgain() {
    var source = sourceAt
    source.source?.done = SourceDone(batches: 50, windows: 400)
    let (controller, actions) = takeOver(["stage-0": stageState(0, layers: 0..<1, epoch: 3), "stage-1": stageState(1, layers: 1..<4, epoch: 3),
                                          "source": source, "sink": sinkAt])
    #expect(controller.phase == .draining && sends(actions) == ["sink:expect"], "\(actions)")
}

@Test func aControllerThatTakesOverRefusesStatesNoRunCouldLeave() {
    let (controller, actions) = takeOver(["stage-0": stageState(0, layers: 0..<2, epoch: 3), "stage-1": stageState(1, layers: 1..<4, epoch: 3),
                                          "source": sourceAt, "sink": sinkAt])
    guard case .failed(let reason)? = outcome(actions) else { Issue.record("took over overlapping ranges: \(actions)"); return }
    #expect(reason.contains("do not cut the model in order") && controller.phase == .finished, "\(reason)")
}

@Test func aControllerThatTakesOverStartsASourceTheDeadOneNeverStarted() {
    var source = sourceAt
    source.source?.streaming = false
    let (controller, actions) = takeOver(["stage-0": stageState(0, layers: 0..<1, epoch: 3), "stage-1": stageState(1, layers: 1..<4, epoch: 3),
                                          "source": source, "sink": sinkAt])
    #expect(controller.phase == .running && sends(actions) == ["source:start"], "\(actions)")
}

private func liveSourceController() -> ControllerMachine {
    running(source: SourceAssignment(
        source: .zmq(ZMQSource(endpoint: "tcp://127.0.0.1:1", channels: 1, idleTimeoutSeconds: 0)), window: nil,
        batching: BatchingConfig(maxSize: 4, maxDelayMilliseconds: 5), inputName: "x", windowShape: [1], epoch: 1, pushEndpoints: [], liveness: liveness))
}

/// A live source that dies after its input ended is not replaced (a new one would wait for
/// senders that are done): the sink is told what it made, exactly, and the run drains.
@Test func aLiveSourceThatDiesAfterItsInputEndedIsNotReplaced() {
    var controller = liveSourceController()
    let done = SourceDone(batches: 9, windows: 30)
    _ = controller.handle(.received(from: "source", .sourceDone(done)))
    let died = controller.handle(.roleExited("source", how: "killed"))
    #expect(spawns(died).isEmpty && outcome(died) == nil, "\(died)")
    var later: [ControllerAction] = []
    for tenth in 1...20 { later += controller.handle(.tick(now: Double(tenth) / 10)) }
    #expect(later.contains(.send(to: "sink", .sourceLost(generation: 1, made: done))), "\(later)")
    let closing = controller.handle(.received(from: "sink", .sinkDone(SinkSummary())))
    #expect(!sends(closing).contains("source:shutdown") && sends(closing).contains("sink:shutdown"), "\(closing)")
}

/// The sink dying before it was told of a live source's death would lose what only it held of
/// that source's batches: two deaths at once, which end the run clearly rather than stall it.
@Test func aSinkThatDiesBeforeALiveSourcesLossSettlesEndsTheRun() {
    var controller = liveSourceController()
    _ = controller.handle(.roleExited("source", how: "killed"))
    guard case .failed(let message)? = outcome(controller.handle(.roleExited("sink", how: "killed"))) else {
        Issue.record("the run went on"); return
    }
    #expect(message.contains("while the source was starting again"), "\(message)")
}

/// A live source dies: it is started again at once, and the sink is told only once the batches
/// the dead one made stopped arriving, with how far it had got; the new one takes up the
/// stream where the sink says, and what the dead one dropped stays in the run's counts.
@Test func aDeadLiveSourceIsStartedAgainAndTheSinkToldOnceItsBatchesStoppedComing() {
    var controller = liveSourceController()
    var sent = RoleCounters()
    sent.batches = 5
    sent.windows = 20
    sent.drops.add(3, .chunk, .malformed)
    _ = controller.handle(.received(from: "source", .heartbeat(sent)))

    let died = controller.handle(.roleExited("source", how: "killed"))
    #expect(died.contains(.spawn(role: "source")) && outcome(died) == nil, "\(died)")
    #expect(!sends(died).contains("sink:source_lost"), "not while its batches may still be in the stages")
    // Batches still reach the sink for a while.
    var sink = RoleCounters()
    var tellings: [ControllerAction] = []
    for tenth in 1...30 {
        if tenth <= 10 { sink.received += 1 }
        tellings += controller.handle(.received(from: "sink", .heartbeat(sink)))
        for stage in ["stage-0", "stage-1"] { tellings += controller.handle(.received(from: stage, .heartbeat(RoleCounters()))) }
        let tick = controller.handle(.tick(now: Double(tenth) / 10))
        if tenth <= 20 { #expect(!sends(tick).contains("sink:source_lost"), "told at \(tenth) tenths, 3 heartbeats after the last batch is 25") }
        tellings += tick
    }
    #expect(tellings.contains(.send(to: "sink", .sourceLost(generation: 1, made: SourceDone(batches: 5, windows: 20)))), "\(tellings)")
    _ = controller.handle(.received(from: "source", .hello(Hello(role: .source, name: "source", pid: 2, host: "h"))))
    let resume = SourceResume(batch: 5, window: 20, generation: 1)
    let assigned = controller.handle(.received(from: "sink", .resumeSource(resume, written: SinkOutputState(batches: 5, windows: 20))))
    guard case .send("source", .assignSource(let assignment))? = assigned.first else {
        Issue.record("no assignment for the new source: \(assigned)")
        return
    }
    #expect(assignment.resume == resume)
    _ = controller.handle(.received(from: "source", .heartbeat(RoleCounters())))
    #expect(controller.counters["source"]?.drops.count(.chunk, .malformed) == 3, "the dead one's drops are kept")
}

/// A drain that stalls names where the batches stopped: the hop nearest the sink that took more
/// than it handed on (upstream of it, backpressure makes every hop look held up).
@Test func aStalledDrainNamesTheHopWhereBatchesStopped() {
    var controller = running()
    func beat(_ name: String, received: Int, sent: Int, at now: Double) {
        var counters = RoleCounters()
        counters.received = received
        counters.sent = sent
        _ = controller.handle(.received(from: name, .heartbeat(counters)))
    }
    _ = controller.handle(.received(from: "source", .sourceDone(SourceDone(batches: 9, windows: 72))))
    var failure: ControllerOutcome?
    var now = 0.0
    while failure == nil, now < 60 {
        now += 0.5
        beat("source", received: 0, sent: 9, at: now)
        beat("stage-0", received: 3, sent: 3, at: now)
        beat("stage-1", received: 2, sent: 0, at: now)
        beat("sink", received: 0, sent: 0, at: now)
        failure = outcome(controller.handle(.tick(now: now)))
    }
    guard case .failed(let message)? = failure else {
        Issue.record("the drain never failed: \(String(describing: failure))")
        return
    }
    #expect(message.hasSuffix("(stage-1 took 2 batches and handed on 0: check the link to sink)"), "\(message)")
}
