import Foundation
import SluiceConfig
import SluicePlan
import SluiceProtocol

/// The end-of-run summary, printed for people and written as JSON for scripts: a view of the
/// run's profile (its stages, the split, the measured costs, the moves) with what only the end
/// of a run knows (how it ended, what the sink counted, what was dropped, what the controller
/// last planned with).
public struct RunReport: Codable {
    public var pipeline: String
    public var outcome: String
    public var failure: String?
    public var windowsIn: UInt64?
    public var windowsOut: UInt64
    /// False when the run ended without the sink's own count (stopped at once, or failed):
    /// `windowsOut` is then its last heartbeat's, and it may have written more since. (Absent
    /// in reports written before it: their counts were taken as final.)
    public var windowsOutFinal: Bool?
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
    public var initialSplit: [LayerSpan]
    public var split: [LayerSpan]
    /// The profile's stages, as they stood at the end.
    public var stages: [StageProfile]
    public var rebalances: [RebalanceRecord]
    /// Measured compute seconds per window, per layer (nil: never measured).
    public var layerSecondsPerWindow: [Double?]
    /// Each stage's speed as a whole: its processes' measured speed (compute ÷ busy) times
    /// their number.
    public var stageSpeeds: [Double]
    /// The same two as the controller last planned with, when moves stopped (the drain that
    /// follows still moves the figures above); nil when it never planned.
    public var plannedLayerSecondsPerWindow: [Double?]?
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
    /// Peers each process's CURVE sockets turned away at the handshake, by reason ("controller"
    /// for its own socket); absent when none was. They never got a message in or out.
    public var refused: [String: [String: Int]]?
    /// Batches whose carried timestamps the sink found implausible: kept out of latency and
    /// throughput, counted here.
    public var implausibleStamps: Int?
    /// Processes that died during the run, what was started in their place, and what the
    /// source replayed; absent when none died.
    public var recovery: RecoveryCounts?
    /// The sink was started again and could not read back its output (standard output, a
    /// pipe): windows from this `window_seq` on, up to where the dead sink stopped, may be in it twice.
    public var windowsMayRepeatFrom: UInt64?
    /// Each stage's output link: what crossed it, its measured rate, and its narrowing.
    public var links: [LinkReport]?

    /// - Parameters:
    ///   - profile: the run's profile at its end.
    ///   - observed: what the controller saw of the run (every role's last counters, the sink's timeline).
    ///   - processes: every stage process by role name, replicas added live included.
    ///   - initialRanges, initialReplicas: the plan the run started with.
    ///   - startedAt: when the source was started, on the controller's clock.
    ///   - controllerDrops: what the controller dropped off its own socket.
    public init(profile: ProfileData, outcome: ControllerOutcome, observed: RunObserver, processes: [String],
                initialRanges: [Range<Int>], initialReplicas: [Int], lastPlanningModel: CostModel?, startedAt: Double?,
                controllerDrops: DropCounts, recovery: RecoveryCounts = RecoveryCounts(), controllerRefused: [String: Int] = [:]) {
        let counters = observed.counters
        pipeline = profile.pipeline
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
        windowsIn = profile.windowsIn
        windowsOut = profile.windowsOut
        windowsOutFinal = summary != nil
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
        if !controllerDrops.isEmpty { dropped["controller", default: DropCounts()].add(controllerDrops) }
        self.dropped = dropped
        var refused: [String: [String: Int]] = [:]
        for (name, roleCounters) in counters where !roleCounters.refusedPeers.isEmpty { refused[name] = roleCounters.refusedPeers }
        if !controllerRefused.isEmpty { refused["controller"] = controllerRefused }
        self.refused = refused.isEmpty ? nil : refused
        implausibleStamps = max(sink.implausibleStamps, counters["sink"]?.implausibleStamps ?? 0)
        windowsMayRepeatFrom = sink.mayRepeatFrom
        labelled = sink.labelled
        correct = sink.correct
        // From the first batch's creation at the source to the last output at the sink.
        seconds = sink.lastOutput > sink.firstCreated && sink.firstCreated > 0 ? Double(sink.lastOutput - sink.firstCreated) / 1e9 : 0
        windowsPerSecond = seconds > 0 ? Double(windowsOut) / seconds : 0
        latencyP50Milliseconds = sink.latencyP50Milliseconds
        latencyP99Milliseconds = sink.latencyP99Milliseconds
        initialSplit = initialRanges.map(LayerSpan.init)
        split = profile.costs.ranges.map(LayerSpan.init)
        stages = profile.stages
        rebalances = profile.rebalances
        layerSecondsPerWindow = profile.costs.layerSecondsPerWindow
        stageSpeeds = profile.costs.stageSpeeds
        plannedLayerSecondsPerWindow = lastPlanningModel?.layerSeconds
        plannedStageSpeeds = lastPlanningModel?.effectiveSpeeds
        batchesByProcess = Dictionary(uniqueKeysWithValues: processes.map { ($0, counters[$0]?.batches ?? 0) })
        self.initialReplicas = initialReplicas
        replicas = profile.stages.map(\.replicas)
        sinkTimeline = observed.sinkTimeline
        startedAtSeconds = startedAt
        links = LinkReport.links(stageCount: profile.stages.count, counters: counters, costs: profile.costs)
        if recovery != RecoveryCounts() {
            var counts = recovery
            counts.replayedBatches = max(counts.replayedBatches, counters["source"]?.replayed ?? 0)
            self.recovery = counts
        }
    }

    /// A report as `sluice run --report` wrote it, in this version or an earlier one (see
    /// `legacyKeys`), from the JSON bytes.
    public static func read(_ data: Data) throws -> RunReport {
        try JSONDecoder().decode(RunReport.self, from: upgraded(data))
    }

    /// Keys reports used before one word took one meaning: a window was called a sample.
    public static let legacyKeys = [
        "samples": "windows",
        "layerSecondsPerSample": "layerSecondsPerWindow",
        "plannedLayerSecondsPerSample": "plannedLayerSecondsPerWindow",
        "predictedOldSamplesPerSecond": "predictedOldWindowsPerSecond",
        "predictedNewSamplesPerSecond": "predictedNewWindowsPerSecond",
        "measuredBeforeSamplesPerSecond": "measuredBeforeWindowsPerSecond",
        "measuredAfterSamplesPerSecond": "measuredAfterWindowsPerSecond",
        "samplesPerSecond": "windowsPerSecond",
    ]

    /// The JSON with every legacy key renamed, at any depth; the bytes as they were when they
    /// are not a JSON object (the decoder then says what is wrong with them).
    static func upgraded(_ data: Data) -> Data {
        guard let object = try? JSONSerialization.jsonObject(with: data) else { return data }
        func rename(_ value: Any) -> Any {
            if let dictionary = value as? [String: Any] {
                var renamed = dictionary.filter { legacyKeys[$0.key] == nil }.mapValues(rename)
                // A key of this version wins over its legacy twin.
                for (key, inner) in dictionary {
                    if let new = legacyKeys[key], renamed[new] == nil { renamed[new] = rename(inner) }
                }
                return renamed
            }
            if let array = value as? [Any] { return array.map(rename) }
            return value
        }
        return (try? JSONSerialization.data(withJSONObject: rename(object))) ?? data
    }

    /// Reads a report of this version or of an earlier one, whose stages named their index
    /// `stage` and left out their layer bounds (their `layers` text gives them) and process
    /// count (the report's `replicas` gives it).
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        pipeline = try c.decode(String.self, forKey: .pipeline)
        outcome = try c.decode(String.self, forKey: .outcome)
        failure = try c.decodeIfPresent(String.self, forKey: .failure)
        windowsIn = try c.decodeIfPresent(UInt64.self, forKey: .windowsIn)
        windowsOut = try c.decode(UInt64.self, forKey: .windowsOut)
        windowsOutFinal = try c.decodeIfPresent(Bool.self, forKey: .windowsOutFinal)
        batchesOut = try c.decode(UInt64.self, forKey: .batchesOut)
        duplicatesDropped = try c.decode(Int.self, forKey: .duplicatesDropped)
        rejected = try c.decode(Int.self, forKey: .rejected)
        labelled = try c.decode(UInt64.self, forKey: .labelled)
        correct = try c.decode(UInt64.self, forKey: .correct)
        seconds = try c.decode(Double.self, forKey: .seconds)
        windowsPerSecond = try c.decode(Double.self, forKey: .windowsPerSecond)
        latencyP50Milliseconds = try c.decode(Double.self, forKey: .latencyP50Milliseconds)
        latencyP99Milliseconds = try c.decode(Double.self, forKey: .latencyP99Milliseconds)
        initialSplit = try c.decodeSplit(forKey: .initialSplit)
        split = try c.decodeSplit(forKey: .split)
        rebalances = try c.decode([RebalanceRecord].self, forKey: .rebalances)
        layerSecondsPerWindow = try c.decode([Double?].self, forKey: .layerSecondsPerWindow)
        stageSpeeds = try c.decode([Double].self, forKey: .stageSpeeds)
        plannedLayerSecondsPerWindow = try c.decodeIfPresent([Double?].self, forKey: .plannedLayerSecondsPerWindow)
        plannedStageSpeeds = try c.decodeIfPresent([Double].self, forKey: .plannedStageSpeeds)
        batchesByProcess = try c.decode([String: Int].self, forKey: .batchesByProcess)
        initialReplicas = try c.decodeIfPresent([Int].self, forKey: .initialReplicas)
        replicas = try c.decodeIfPresent([Int].self, forKey: .replicas)
        sinkTimeline = try c.decodeIfPresent([[Double]].self, forKey: .sinkTimeline)
        startedAtSeconds = try c.decodeIfPresent(Double.self, forKey: .startedAtSeconds)
        dropped = try c.decodeIfPresent([String: DropCounts].self, forKey: .dropped)
        implausibleStamps = try c.decodeIfPresent(Int.self, forKey: .implausibleStamps)
        recovery = try c.decodeIfPresent(RecoveryCounts.self, forKey: .recovery)
        windowsMayRepeatFrom = try c.decodeIfPresent(UInt64.self, forKey: .windowsMayRepeatFrom)
        links = try c.decodeIfPresent([LinkReport].self, forKey: .links)
        var entries = try c.nestedUnkeyedContainer(forKey: .stages)
        var stages: [StageProfile] = []
        while !entries.isAtEnd {
            let position = stages.count
            stages.append(try StageProfile(from: entries.superDecoder(),
                                           replicasIfAbsent: replicas.flatMap { $0.indices.contains(position) ? $0[position] : nil } ?? 1))
        }
        self.stages = stages
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
        let intact = nothingLost && duplicatesDropped == 0 && windowsMayRepeatFrom == nil
        let final = windowsOutFinal ?? true
        let outText = final ? "\(windowsOut)" : "at least \(windowsOut)"
        lines.append("sluice: \(pipeline) \(outcome): \(inText) windows in, \(outText) out\(intact ? " (in order, none lost or duplicated)" : "")")
        if let failure { lines.append("  error        \(failure)") }
        if let windowsIn, windowsIn > windowsOut {
            lines.append(final
                ? "  lost         \(windowsIn - windowsOut) of the \(windowsIn) windows the source sent never came out"
                : "  unknown      \(windowsIn - windowsOut) of the \(windowsIn) windows the source sent were not reported out before the run ended (the output itself says which came out)")
        }
        for (name, drops) in (dropped ?? [:]).sorted(by: { $0.key < $1.key }) {
            lines.append("  dropped      \(name): \(drops.summary)")
        }
        for (name, reasons) in (refused ?? [:]).sorted(by: { $0.key < $1.key }) {
            let parts = reasons.sorted { $0.key < $1.key }.map { "\($0.value) peer\($0.value == 1 ? "" : "s") \($0.key)" }
            lines.append("  refused      \(name): \(parts.joined(separator: ", ")) (nothing of theirs got in)")
        }
        if rejected > 0, (dropped ?? [:]).isEmpty {
            lines.append("  dropped      \(rejected) malformed or misrouted messages")
        }
        if let windowsMayRepeatFrom {
            lines.append("  repeated?    the sink was started again and cannot read back its output: windows from window_seq \(windowsMayRepeatFrom) on, up to where the dead sink stopped, may be in it twice")
        }
        if let recovery {
            if recovery.controllerRestarts > 0 {
                lines.append("  recovered    the controller died and was started again; the roles rejoined it (what the dead one saw is not in this summary)")
            }
            if recovery.deaths > 0 {
                lines.append("  recovered    \(recovery.deaths) process\(recovery.deaths == 1 ? "" : "es") died: \(recovery.restarts) restarted, "
                    + "\(recovery.replays) replay\(recovery.replays == 1 ? "" : "s") of \(recovery.replayedBatches) batches from the source")
            }
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
            let measured = [record.measuredBeforeWindowsPerSecond, record.measuredAfterWindowsPerSecond]
                .map { $0.map { String(format: "%.0f", $0) } ?? "?" }
            let verb = record.applied ? "rebalanced" : "recommended"
            lines.append("  \(verb) at \(String(format: "%.1f", record.atSeconds)) s: \(record.oldPlan) -> \(record.newPlan), predicted "
                + String(format: "%.0f -> %.0f", record.predictedOldWindowsPerSecond, record.predictedNewWindowsPerSecond)
                + " windows/s, measured \(measured[0]) -> \(measured[1])")
        }
        for link in links ?? [] where link.measuredBytesPerSecond != nil || link.compression != .none {
            lines.append("  link         \(link.text)")
        }
        lines.append("  stage  layers   procs    batches    busy s  ms/batch   busy %   idle %  blocked %")
        for stage in stages {
            let elapsed = max(stage.elapsedSeconds, 1e-9)
            let busyPercent = stage.elapsedSeconds > 0 ? 100 * stage.busySeconds / stage.elapsedSeconds : 0
            lines.append("  " + String(stage.index).padding(toLength: 6, withPad: " ", startingAt: 0) + " "
                + stage.layers.padding(toLength: 8, withPad: " ", startingAt: 0)
                + String(format: " %5d", stage.replicas)
                + String(format: "%8d %9.3f %9.3f %8.1f %8.1f %10.1f", stage.batches, stage.busySeconds, stage.millisecondsPerBatch,
                         busyPercent, 100 * stage.idleSeconds / elapsed, 100 * stage.blockedSeconds / elapsed))
        }
        return lines.joined(separator: "\n")
    }

    /// The machine-readable report, written as the profile's JSON is.
    public func json() -> Data {
        reportJSON(self)
    }
}

/// One stage's output link over a run.
public struct LinkReport: Codable, Equatable, Sendable {
    public var stage: Int
    /// Bytes its processes sent on it, as they crossed (narrowed, where it was).
    public var bytesSent: Int
    /// What it carried while saturated (its sender waiting for room, its receiver for input);
    /// nil when it never was, and so never limited the pipeline.
    public var measuredBytesPerSecond: Double?
    /// How the stage's output crossed it at the end of the run.
    public var compression: Compression
    /// Root of Σ(x − x̃)² over Σx² for the tensors narrowing changed (nil: none was narrowed).
    public var narrowingRelativeError: Double?

    public init(stage: Int, bytesSent: Int, measuredBytesPerSecond: Double?, compression: Compression, narrowingRelativeError: Double?) {
        self.stage = stage; self.bytesSent = bytesSent; self.measuredBytesPerSecond = measuredBytesPerSecond
        self.compression = compression; self.narrowingRelativeError = narrowingRelativeError
    }

    /// From the processes' last counters and the controller's cost model at the end.
    static func links(stageCount: Int, counters: [String: RoleCounters], costs: CostInput) -> [LinkReport] {
        (0..<stageCount).map { stage in
            let processes = counters.filter { StageInstance.stage(of: $0.key) == stage }.map(\.value)
            let combined = RoleCounters.combined(processes)
            let perByte = costs.linkSecondsPerByte.flatMap { $0.indices.contains(stage) ? $0[stage] : nil }
            let compression = costs.compression.flatMap { $0.indices.contains(stage) ? $0[stage] : nil } ?? .none
            return LinkReport(stage: stage, bytesSent: combined.sentBytes, measuredBytesPerSecond: perByte.map { 1 / $0 },
                              compression: compression, narrowingRelativeError: combined.narrowing?.relativeError)
        }
    }

    public var text: String {
        var parts = ["stage \(stage)'s output: \(bytes(bytesSent)) sent"]
        if let rate = measuredBytesPerSecond {
            // A report read back from a file may hold anything: no number traps the conversion.
            parts.append("saturated at \(rate.isFinite && abs(rate) < 1e18 ? bytes(Int(rate.rounded())) : "?")/s")
        }
        if compression != .none {
            let error = narrowingRelativeError.map { String(format: ", relative error %.1e", $0) } ?? ""
            parts.append("narrowed to \(compression.rawValue)\(error)")
        }
        return parts.joined(separator: ", ")
    }
}
