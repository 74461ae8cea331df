import Foundation
import SluiceProtocol
import SluicePlan
import SluiceConfig

/// The end-of-run summary: printed for people, written as JSON for scripts.
public struct RunReport: Codable {
    public struct StageReport: Codable {
        public var stage: Int
        public var layers: String
        public var batches: Int
        public var samples: Int
        public var busySeconds: Double
        public var idleSeconds: Double
        public var blockedSeconds: Double
        public var elapsedSeconds: Double
        public var rejected: Int
        /// Resident memory when the stage took its first assignment, and at the end.
        public var residentBytesAtStart: Int
        public var residentBytes: Int
        public var millisecondsPerBatch: Double { batches > 0 ? busySeconds * 1000 / Double(batches) : 0 }
        public var busyPercent: Double { elapsedSeconds > 0 ? 100 * busySeconds / elapsedSeconds : 0 }
    }

    public var pipeline: String
    public var outcome: String
    public var failure: String?
    public var windowsIn: UInt64?
    public var windowsOut: UInt64
    public var batchesOut: UInt64
    public var duplicatesDropped: Int
    public var rejected: Int
    public var labelled: UInt64
    public var correct: UInt64
    public var seconds: Double
    public var windowsPerSecond: Double
    public var latencyP50Milliseconds: Double
    public var latencyP99Milliseconds: Double
    /// The split the run started with, and the one it ended with.
    public var initialSplit: String
    public var split: String
    public var stages: [StageReport]
    public var rebalances: [RebalanceRecord]
    /// Measured compute seconds per sample, per layer (nil: never measured).
    public var layerSecondsPerSample: [Double?]
    /// Each stage's speed as a whole: its processes' measured speed (compute ÷ busy) times
    /// their number.
    public var stageSpeeds: [Double]
    /// The same two as the controller last planned with, when moves stopped (the drain that
    /// follows still moves the figures above); nil when it never planned.
    public var plannedLayerSecondsPerSample: [Double?]?
    public var plannedStageSpeeds: [Double]?
    /// Micro-batches each stage process computed, by role name (replicas share a stage's load).
    public var batchesByProcess: [String: Int]
    /// Processes per stage at the start and at the end (replicas added live show as a rise).
    /// (Optional so reports written before they existed still load for `sluice plan --measurements`.)
    public var initialReplicas: [Int]?
    public var replicas: [Int]?
    /// [seconds on the controller's clock, windows the sink had released], about once a
    /// heartbeat: the throughput before, during and after each move. Rebalance records'
    /// times are on the same clock; the source started at `startedAtSeconds`.
    public var sinkTimeline: [[Double]]?
    public var startedAtSeconds: Double?
    /// What each process dropped, by unit and reason ("controller" for its own socket); absent
    /// for a process that dropped nothing. (Optional so older reports still load.)
    public var dropped: [String: DropCounts]?
    /// Batches whose carried timestamps the sink found implausible: kept out of latency and
    /// throughput, counted here.
    public var implausibleStamps: Int?

    init(plan: PipelinePlan, outcome: ControllerOutcome, sourceDone: SourceDone?, counters: [String: RoleCounters],
         stageCounters: [Int: RoleCounters], coordinator: RebalanceCoordinator?, lastPlanningModel: CostModel? = nil) {
        pipeline = plan.config.name
        var summary: SinkSummary?
        switch outcome {
        case .completed(let sink):
            self.outcome = "completed"
            summary = sink
        case .stopped(let sink):
            self.outcome = "stopped"
            summary = sink
        case .failed(let message):
            self.outcome = "failed"
            failure = message
        }
        let sink = summary ?? SinkSummary()
        windowsIn = sourceDone?.windows
        windowsOut = summary?.windows ?? UInt64(counters["sink"]?.samples ?? 0)
        batchesOut = summary?.batches ?? UInt64(counters["sink"]?.batches ?? 0)
        duplicatesDropped = sink.duplicates
        rejected = counters.values.reduce(0) { $0 + $1.rejected }
        var dropped: [String: DropCounts] = [:]
        for (name, roleCounters) in counters where !roleCounters.drops.isEmpty { dropped[name] = roleCounters.drops }
        // Both are running totals: the summary may be ahead of the last heartbeat, and the final
        // heartbeat (after shutdown, with batches never released) ahead of the summary.
        var sinkDrops = DropCounts()
        let heartbeat = counters["sink"]?.drops ?? DropCounts()
        for entry in sink.drops.entries + heartbeat.entries where sinkDrops.count(entry.unit, entry.reason) < entry.count {
            sinkDrops.add(entry.count - sinkDrops.count(entry.unit, entry.reason), entry.unit, entry.reason)
        }
        if !sinkDrops.isEmpty { dropped["sink"] = sinkDrops }
        self.dropped = dropped
        implausibleStamps = max(sink.implausibleStamps, counters["sink"]?.implausibleStamps ?? 0)
        labelled = sink.labelled
        correct = sink.correct
        // From the first batch's creation at the source to the last output at the sink.
        seconds = sink.lastOutput > sink.firstCreated && sink.firstCreated > 0 ? Double(sink.lastOutput - sink.firstCreated) / 1e9 : 0
        windowsPerSecond = seconds > 0 ? Double(windowsOut) / seconds : 0
        latencyP50Milliseconds = sink.latencyP50Milliseconds
        latencyP99Milliseconds = sink.latencyP99Milliseconds
        initialSplit = plan.partition.description
        let ranges = coordinator?.ranges ?? plan.partition.ranges
        split = LayerSpan.describe(ranges)
        rebalances = coordinator?.history ?? []
        layerSecondsPerSample = coordinator?.rebalancer.model.layerSeconds ?? []
        stageSpeeds = coordinator?.rebalancer.model.effectiveSpeeds ?? []
        plannedLayerSecondsPerSample = lastPlanningModel?.layerSeconds
        plannedStageSpeeds = lastPlanningModel?.effectiveSpeeds
        batchesByProcess = Dictionary(uniqueKeysWithValues: (coordinator?.instances ?? plan.stageNames).map { ($0, counters[$0]?.batches ?? 0) })
        initialReplicas = plan.replicaCounts
        replicas = coordinator?.replicas ?? plan.replicaCounts
        stages = ranges.enumerated().map { index, range in
            let stage = stageCounters[index] ?? RoleCounters()
            return StageReport(stage: index, layers: LayerSpan(range).description,
                               batches: stage.batches, samples: stage.samples, busySeconds: stage.busySeconds,
                               idleSeconds: stage.idleSeconds, blockedSeconds: stage.blockedSeconds,
                               elapsedSeconds: stage.elapsedSeconds, rejected: stage.rejected,
                               residentBytesAtStart: stage.residentBytesAtStart, residentBytes: stage.residentBytes)
        }
    }

    mutating func addControllerDrops(_ drops: DropCounts) {
        guard !drops.isEmpty else { return }
        var all = dropped ?? [:]
        all["controller", default: DropCounts()].add(drops)
        dropped = all
    }

    /// Nothing was dropped anywhere for a reason that loses data, every window that went in came
    /// out, and the run completed: the one case the summary may say "none lost".
    public var nothingLost: Bool {
        outcome == "completed" && windowsIn == windowsOut && rejected == 0
            && !(dropped ?? [:]).values.contains { $0.anyLoss }
    }

    public var text: String {
        var lines: [String] = []
        let inText = windowsIn.map(String.init) ?? "?"
        let intact = nothingLost && duplicatesDropped == 0
        lines.append("sluice: \(pipeline) \(outcome): \(inText) windows in, \(windowsOut) out\(intact ? " (in order, none lost or duplicated)" : "")")
        if let failure { lines.append("  error        \(failure)") }
        if let windowsIn, windowsIn > windowsOut {
            lines.append("  lost         \(windowsIn - windowsOut) of the \(windowsIn) windows the source sent never came out")
        }
        for (name, drops) in (dropped ?? [:]).sorted(by: { $0.key < $1.key }) {
            lines.append("  dropped      \(name): \(drops.summary)")
        }
        if rejected > 0, (dropped ?? [:]).isEmpty {
            lines.append("  dropped      \(rejected) malformed or misrouted messages")
        }
        if let implausibleStamps, implausibleStamps > 0 {
            lines.append("  timestamps   \(implausibleStamps) batches carried implausible timestamps: left out of latency and throughput")
        }
        if labelled > 0 {
            lines.append(String(format: "  accuracy     %llu/%llu = %.1f%% against the recording's labels", correct, labelled,
                                100 * Double(correct) / Double(labelled)))
        }
        if seconds > 0 {
            lines.append(String(format: "  throughput   %.1f windows/s (%llu windows from the first batch sent to the last output, %.3f s)",
                                windowsPerSecond, windowsOut, seconds))
        } else if windowsOut > 0 {
            lines.append("  throughput   not measured: no released batch carried plausible timestamps")
        }
        lines.append(String(format: "  latency      p50 %.2f ms, p99 %.2f ms (source to sink, per batch)", latencyP50Milliseconds, latencyP99Milliseconds))
        for record in rebalances {
            let measured = [record.measuredBeforeSamplesPerSecond, record.measuredAfterSamplesPerSecond]
                .map { $0.map { String(format: "%.0f", $0) } ?? "?" }
            let verb = record.applied ? "rebalanced" : "recommended"
            lines.append("  \(verb) at \(String(format: "%.1f", record.atSeconds)) s: \(record.oldPlan) -> \(record.newPlan), predicted "
                + String(format: "%.0f -> %.0f", record.predictedOldSamplesPerSecond, record.predictedNewSamplesPerSecond)
                + " samples/s, measured \(measured[0]) -> \(measured[1])")
        }
        lines.append("  stage  layers   procs    batches    busy s  ms/batch   busy %   idle %  blocked %")
        for stage in stages {
            let elapsed = max(stage.elapsedSeconds, 1e-9)
            let processes = replicas.flatMap { $0.indices.contains(stage.stage) ? $0[stage.stage] : nil } ?? 1
            lines.append("  " + String(stage.stage).padding(toLength: 6, withPad: " ", startingAt: 0) + " "
                + stage.layers.padding(toLength: 8, withPad: " ", startingAt: 0)
                + String(format: " %5d", processes)
                + String(format: "%8d %9.3f %9.3f %8.1f %8.1f %10.1f", stage.batches, stage.busySeconds, stage.millisecondsPerBatch,
                         stage.busyPercent, 100 * stage.idleSeconds / elapsed, 100 * stage.blockedSeconds / elapsed))
        }
        return lines.joined(separator: "\n")
    }

    public func json() -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return (try? encoder.encode(self)) ?? Data()
    }
}
