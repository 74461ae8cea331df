import Foundation
import SluiceConfig
import SluicePlan

/// Runs live boundary moves for the controller, free of sockets: prepare on every stage (each
/// loads the weights it will need, keeping the old), commit everywhere, mark the first batch
/// the source creates after that, and retire the old weights once the sink has released every
/// batch before the mark. Only one move is in flight at a time.
public struct RebalanceCoordinator: Sendable {
    public private(set) var ranges: [Range<Int>]
    public private(set) var epoch: UInt32
    public private(set) var rebalancer: Rebalancer

    enum Step: Equatable, Sendable {
        case preparing(waiting: Set<String>)
        case committing(waiting: Set<String>)
        case marking
        case retiring(firstBatch: UInt64)
    }

    struct MoveInFlight: Sendable {
        var epoch: UInt32
        var ranges: [Range<Int>]
        var step: Step
        var started: Double
    }

    /// Replicas asked for and not yet joined, and the ranges to move to once they have.
    struct Growth: Sendable {
        var waiting: Int
        var ranges: [Range<Int>]
        var reason: String
    }

    private var move: MoveInFlight?
    private var growth: Growth?
    private let sourceName: String
    /// Every stage process (replicas included): each must prepare and commit.
    public private(set) var instances: [String]
    private var sinkTotals: [(time: Double, windows: Int)] = []
    private var settledAt: Double?
    private var now = 0.0

    /// `instances`: the role names of every stage process; by default one per stage.
    public init(ranges: [Range<Int>], epoch: UInt32, rebalancer: Rebalancer, sourceName: String = "source",
                instances: [String]? = nil) {
        self.ranges = ranges
        self.epoch = epoch
        self.rebalancer = rebalancer
        self.sourceName = sourceName
        self.instances = instances ?? ranges.indices.map { StageInstance.name(stage: $0, replica: 0) }
    }

    public var isMoving: Bool { move != nil }
    /// A move is between prepare and mark: stages may run different plans, so a process that
    /// starts now could not be told one range.
    public var isSwitching: Bool {
        guard let move else { return false }
        if case .retiring = move.step { return false }
        return true
    }
    public var isGrowing: Bool { growth != nil }
    public var history: [RebalanceRecord] { rebalancer.history }

    /// Processes per stage as they stand.
    public var replicas: [Int] { rebalancer.model.replicas }

    /// A replica asked for by `.addReplica` is running and connected: from now on it takes
    /// part in moves, and the cost model counts it. Once every replica asked for has joined,
    /// the move planned with them starts (unless `startMove` is false: the stream is ending).
    public mutating func joined(_ name: String, stage: Int, startMove: Bool = true) -> [ControllerAction] {
        guard !instances.contains(name) else { return [] }
        instances.append(name)
        rebalancer.addReplica(stage: stage)
        guard var current = growth else { return [.log("\(name) joined stage \(stage)")] }
        current.waiting -= 1
        guard current.waiting <= 0 else {
            growth = current
            return [.log("\(name) joined stage \(stage); waiting for \(current.waiting) more")]
        }
        growth = nil
        let joinedLog = ControllerAction.log("\(name) joined stage \(stage); replicas now \(replicas.map(String.init).joined(separator: ","))")
        guard current.ranges != ranges, startMove else {
            // Replicas alone: the plan is in force now; its gain is measured from here.
            settledAt = now
            rebalancer.recordSettled(at: now)
            return [joinedLog]
        }
        return [joinedLog] + begin(current.ranges, reason: current.reason)
    }

    /// A stage process died. A move in flight completes without it (the survivors prepare and
    /// commit as asked; rolling back a commit some have made would need a step of its own);
    /// a process started in its place takes the plan in force once the switch is done
    /// (`rejoined`), and batches it cannot run are replayed. `replaced`: a process takes its
    /// place under its name, so the stage keeps its count of processes.
    public mutating func lost(_ name: String, stage: Int, replaced: Bool) -> [ControllerAction] {
        guard let index = instances.firstIndex(of: name) else { return [] }
        instances.remove(at: index)
        if !replaced { rebalancer.removeReplica(stage: stage) }
        guard let current = move else { return [] }
        // What the dead process owed the move counts as given.
        switch current.step {
        case .preparing(let waiting) where waiting.contains(name): return received(.prepared(epoch: current.epoch), from: name)
        case .committing(let waiting) where waiting.contains(name): return received(.committed(epoch: current.epoch), from: name)
        default: return []
        }
    }

    /// A process started in place of a dead one is ready, on the plan in force: it takes part
    /// in moves again.
    public mutating func rejoined(_ name: String) {
        if !instances.contains(name) { instances.append(name) }
    }

    /// A source started in place of a dead one is streaming. If the dead one was asked to mark
    /// and never answered, the new one is asked: it stamps the epoch in force already, and names
    /// its next batch as the first of it.
    public func sourceRestarted() -> [ControllerAction] {
        guard let move, case .marking = move.step else { return [] }
        return [.send(to: sourceName, .mark(epoch: move.epoch))]
    }

    /// A controller started in place of a dead one takes the plan over from what the stage
    /// processes say (`rejoined`) and finishes or undoes the move the dead one left: if any
    /// process committed its epoch, every process prepared it, so the rest commit too; if some
    /// only prepared one, the move is undone by a move to the ranges in force; a move every
    /// process committed is marked, or retired once the sink is past the source's next batch.
    /// Throws a reason when the processes' states cannot come from one run of this protocol.
    public mutating func recover(from states: [String: StageState], source: SourceState, now time: Double) throws -> [ControllerAction] {
        now = time
        // The processes that rejoined are the stage's now: replicas the dead controller added
        // count, and processes of the plan that died before it did not.
        for name in instances where states[name] == nil {
            if let stage = StageInstance.stage(of: name) { rebalancer.removeReplica(stage: stage) }
        }
        for (name, state) in states.sorted(by: { $0.key < $1.key }) where !instances.contains(name) {
            rebalancer.addReplica(stage: state.assignment.stageIndex)
        }
        instances = states.keys.sorted()
        guard let newest = states.values.map(\.assignment.epoch).max() else { throw RecoveryError("no stage process rejoined") }
        guard newest < UInt32.max else { throw RecoveryError("a stage says it runs epoch \(newest), past the last a run can reach") }
        var ranges: [Range<Int>?] = Array(repeating: nil, count: self.ranges.count)
        var behind: Set<String> = []
        for (name, state) in states {
            let index = state.assignment.stageIndex
            guard ranges.indices.contains(index) else { throw RecoveryError("\(name) says it is stage \(index) of \(ranges.count)") }
            var span = state.assignment.layers
            if state.assignment.epoch < newest {
                guard let prepared = state.preparing, prepared.epoch == newest else {
                    throw RecoveryError("\(name) runs epoch \(state.assignment.epoch) and has not prepared epoch \(newest), which others run")
                }
                behind.insert(name)
                span = prepared.layers
            }
            let range = span.start..<span.end
            if let known = ranges[index], known != range { throw RecoveryError("the processes of stage \(index) run different layers") }
            ranges[index] = range
        }
        let inForce = ranges.compactMap { $0 }
        guard inForce.count == ranges.count, inForce.first?.lowerBound == 0,
              zip(inForce, inForce.dropFirst()).allSatisfy({ $0.upperBound == $1.lowerBound }) else {
            throw RecoveryError("the stages' layer ranges \(inForce.map { LayerSpan($0).description }) do not cut the model in order")
        }
        self.ranges = inForce
        // Links the dead controller narrowed stay narrowed: the processes say how they send.
        var compression = rebalancer.model.compression
        for state in states.values where compression.indices.contains(state.assignment.stageIndex) {
            compression[state.assignment.stageIndex] = state.assignment.compression
        }
        rebalancer.applyCompression(compression)
        let unfinished = !behind.isEmpty || source.epoch < newest || states.values.contains { $0.preparing != nil || $0.held != $0.assignment.layers }
        if source.done != nil {
            // The input ended: whatever the move left, every batch still runs (a process holds
            // the layers of both plans until retired), and the old weights go with the processes.
            epoch = newest
            return unfinished ? [.log("the input has ended: the move the dead controller left is not finished; the stages keep both plans' weights to the end")] : []
        }
        if !behind.isEmpty {
            epoch = newest - 1
            move = MoveInFlight(epoch: newest, ranges: inForce, step: .committing(waiting: behind), started: now)
            return [.log("completing the move to epoch \(newest) (\(LayerSpan.describe(inForce))): \(behind.sorted().joined(separator: ", ")) commit it")]
                + behind.sorted().map { .send(to: $0, .commit(epoch: newest)) }
        }
        epoch = newest
        if states.values.contains(where: { $0.preparing != nil }) {
            // Prepared, committed by none: undone by a move to the ranges in force.
            let undo = Move(epoch: newest + 1, ranges: inForce.map(LayerSpan.init))
            move = MoveInFlight(epoch: newest + 1, ranges: inForce, step: .preparing(waiting: Set(instances)), started: now)
            return [.log("undoing the move the dead controller had prepared: every process prepares epoch \(newest + 1) on the ranges in force")]
                + instances.map { .send(to: $0, .prepare(undo)) }
        }
        if source.epoch < newest {
            move = MoveInFlight(epoch: newest, ranges: inForce, step: .marking, started: now)
            return [.log("completing the move to epoch \(newest): the source marks it"), .send(to: sourceName, .mark(epoch: newest))]
        }
        if states.values.contains(where: { $0.held != $0.assignment.layers }) {
            let firstBatch = source.lastMark.map { $0.epoch == newest ? $0.firstBatch : source.nextBatch } ?? source.nextBatch
            move = MoveInFlight(epoch: newest, ranges: inForce, step: .retiring(firstBatch: firstBatch), started: now)
            return [.log("completing the move to epoch \(newest): old weights go once the sink is past batch \(firstBatch)")]
        }
        return []
    }

    /// A replica asked for could not start: the move planned with it is dropped, and no
    /// replica is asked for again in this run.
    public mutating func abandonGrowth(reason: String) -> [ControllerAction] {
        guard growth != nil else { return [] }
        growth = nil
        rebalancer.stopAddingReplicas()
        return [.log("not adding replicas for the rest of the run: \(reason)")]
    }


    /// Windows per second the sink released over the last rebalancing interval.
    public var measuredWindowsPerSecond: Double? {
        let window = rebalancer.config.intervalSeconds
        guard let last = sinkTotals.last, let first = sinkTotals.first(where: { last.time - $0.time <= window }),
              last.time - first.time > window / 2 else { return nil }
        return Double(last.windows - first.windows) / (last.time - first.time)
    }

    public mutating func heartbeat(from name: String, counters: RoleCounters, sinkName: String) -> [ControllerAction] {
        if let stage = StageInstance.stage(of: name) {
            rebalancer.observe(instance: name, stage: stage, busySeconds: counters.busySeconds, layers: counters.layers)
            rebalancer.observeTraffic(instance: name, position: stage, elapsedSeconds: counters.elapsedSeconds,
                                      receivedBytes: counters.receivedBytes, blockedSeconds: counters.blockedSeconds, idleSeconds: counters.idleSeconds)
            return []
        }
        guard name == sinkName else { return [] }
        rebalancer.observeTraffic(instance: name, position: ranges.count, elapsedSeconds: counters.elapsedSeconds,
                                  receivedBytes: counters.receivedBytes, blockedSeconds: 0, idleSeconds: counters.idleSeconds)
        sinkTotals.append((now, counters.windows))
        sinkTotals.removeAll { now - $0.time > 2 * rebalancer.config.intervalSeconds }
        guard let move, case .retiring(let firstBatch) = move.step, counters.batches >= Int(firstBatch) else { return [] }
        // Every batch any stage handled under an older range has reached the sink.
        self.move = nil
        settledAt = now
        rebalancer.recordSettled(at: now)
        return [.log("rebalance to \(LayerSpan.describe(move.ranges)) complete (epoch \(move.epoch)); old weights released")]
            + instances.map { .send(to: $0, .retire(epoch: move.epoch)) }
    }

    public mutating func received(_ message: ControlMessage, from name: String) -> [ControllerAction] {
        guard var current = move else { return [] }
        switch (message, current.step) {
        case (.prepared(let acked), .preparing(var waiting)) where acked == current.epoch:
            waiting.remove(name)
            guard waiting.isEmpty else {
                current.step = .preparing(waiting: waiting)
                move = current
                return []
            }
            return commit(current)
        case (.committed(let acked), .committing(var waiting)) where acked == current.epoch:
            waiting.remove(name)
            guard waiting.isEmpty else {
                current.step = .committing(waiting: waiting)
                move = current
                return []
            }
            return switchPlans(current)
        case (.marked(let mark), .marking) where mark.epoch == current.epoch:
            current.step = .retiring(firstBatch: mark.firstBatch)
            move = current
            return []
        default:
            return [.log("ignoring \(message.type) from \(name) during a move to epoch \(current.epoch)")]
        }
    }

    /// Every process prepared the move: each commits it. With none running (every one died and
    /// is starting again, on the plan in force once the switch is done) there is nobody to
    /// wait for.
    private mutating func commit(_ prepared: MoveInFlight) -> [ControllerAction] {
        guard !instances.isEmpty else { return switchPlans(prepared) }
        var current = prepared
        current.step = .committing(waiting: Set(instances))
        move = current
        return instances.map { .send(to: $0, .commit(epoch: current.epoch)) }
    }

    /// Every process runs the new plan: the source marks the first batch made under it.
    private mutating func switchPlans(_ committed: MoveInFlight) -> [ControllerAction] {
        var current = committed
        ranges = current.ranges
        epoch = current.epoch
        current.step = .marking
        move = current
        return [.send(to: sourceName, .mark(epoch: current.epoch))]
    }

    /// Considers a move (when allowed) and records the measured gain of the last one.
    /// `streamingSince`: when the source started, on the same clock (moves wait out the warm-up).
    public mutating func tick(now time: Double, allowNewMoves: Bool, streamingSince: Double? = nil) -> [ControllerAction] {
        now = time
        if let settled = settledAt, now - settled >= rebalancer.config.intervalSeconds, let rate = measuredWindowsPerSecond {
            rebalancer.recordMeasuredAfter(rate)
            settledAt = nil
        }
        guard allowNewMoves, move == nil, growth == nil,
              now - (streamingSince ?? now) >= rebalancer.config.warmupSeconds else { return [] }
        guard let record = rebalancer.proposal(current: ranges, now: now, epoch: epoch + 1,
                                               measuredWindowsPerSecond: measuredWindowsPerSecond) else { return [] }
        let gain = record.predictedOldWindowsPerSecond > 0 ? 100 * (record.predictedNewWindowsPerSecond / record.predictedOldWindowsPerSecond - 1) : 0
        let summary = String(format: "%@ -> %@ predicts %.0f -> %.0f windows/s (+%.0f%%)", record.oldPlan, record.newPlan,
                             record.predictedOldWindowsPerSecond, record.predictedNewWindowsPerSecond, gain)
        guard record.applied else { return [.log("recommend: \(summary), \(record.change) (policy is recommend: not moving)")] }
        let newRanges = record.newSplit.map(\.layers)
        guard !newRanges.isEmpty else { return [] }
        let narrowing = record.newCompression.map { narrow(to: $0, reason: "rebalance: \(summary): \(record.change)") } ?? []
        if let wanted = record.newReplicas { return narrowing + addReplicas(wanted, then: newRanges, reason: "rebalance: \(summary)") }
        guard newRanges != ranges else {
            // Narrowing alone takes effect at once: its gain is measured from here.
            settledAt = now
            rebalancer.recordSettled(at: now)
            return narrowing
        }
        return narrowing + begin(newRanges, reason: "rebalance: \(summary)")
    }

    /// Every process of each stage whose link changes narrows its output from now on. Needs no
    /// phases: every receiver widens whatever arrives narrowed.
    private mutating func narrow(to compression: [Compression], reason: String) -> [ControllerAction] {
        let old = rebalancer.model.compression
        rebalancer.applyCompression(compression)
        var actions: [ControllerAction] = [.log(reason)]
        for (stage, narrowing) in compression.enumerated() where stage >= old.count || old[stage] != narrowing {
            actions += instances.filter { StageInstance.stage(of: $0) == stage }.map { .send(to: $0, .compress(narrowing)) }
        }
        return actions
    }

    /// How each stage's output crosses its link now.
    public var compression: [Compression] { rebalancer.model.compression }

    /// Asks for processes until each stage has `wanted`, then moves to `newRanges` once they
    /// have joined. New replicas start on the ranges in force: no move is in flight, so every
    /// batch they can receive needs only those weights.
    public mutating func addReplicas(_ wanted: [Int], then newRanges: [Range<Int>], reason: String) -> [ControllerAction] {
        guard move == nil, growth == nil, wanted.count == ranges.count else { return [] }
        let added = zip(wanted, replicas).enumerated().flatMap { stage, counts in
            Array(repeating: ControllerAction.addReplica(stage: stage), count: max(0, counts.0 - counts.1))
        }
        guard !added.isEmpty else { return begin(newRanges, reason: reason) }
        growth = Growth(waiting: added.count, ranges: newRanges, reason: reason)
        return [.log("\(reason); adding \(added.count) replica\(added.count == 1 ? "" : "s") first")] + added
    }

    /// Starts a move to `newRanges` under the next epoch.
    public mutating func begin(_ newRanges: [Range<Int>], reason: String) -> [ControllerAction] {
        // While replicas are being added, the move planned with them waits until they joined.
        guard move == nil, growth == nil, newRanges.count == ranges.count, newRanges != ranges else { return [] }
        let next = epoch + 1
        move = MoveInFlight(epoch: next, ranges: newRanges, step: .preparing(waiting: Set(instances)), started: now)
        let plan = Move(epoch: next, ranges: newRanges.map(LayerSpan.init))
        return [.log("\(reason); preparing epoch \(next)")] + instances.map { .send(to: $0, .prepare(plan)) }
    }
}

/// Why the roles' states cannot be taken over.
public struct RecoveryError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
