import SluiceConfig

/// The controller's live model of the pipeline, built from stage heartbeats: what each layer
/// costs per window, and how fast each stage runs relative to its own compute.
public struct CostModel: Sendable, Equatable {
    /// Seconds of compute per window, per layer (EWMA); nil until measured.
    public private(set) var layerSeconds: [Double?]
    /// compute / busy per stage: 1 for a stage that only computes, below 1 for one that loses
    /// time to anything else (other load on its machine, the `slowdown` knob).
    public private(set) var stageSpeeds: [Double]
    /// Boundary bytes per window after each layer (index 0: the model input), for transfer cost.
    public let boundaryBytes: [Int]
    public var secondsPerByte: Double
    /// Processes per stage: a stage of r replicas takes r batches at a time.
    public private(set) var replicas: [Int]
    /// Per stage, its output link's measured seconds per byte (nil: not measured, taken to be
    /// `secondsPerByte`); see `observeTraffic`.
    public private(set) var linkSecondsPerByte: [Double?]
    /// Per stage, how its output is narrowed for its link.
    public private(set) var compression: [Compression]

    private struct InstanceLayer: Hashable, Sendable { var instance: String; var layer: Int }
    private var lastLayerTotals: [InstanceLayer: LayerTiming] = [:]
    private var lastBusyTotals: [String: Double] = [:]
    private var measuredSpeeds: Set<Int> = []
    private let smoothing = 0.5
    private struct Traffic: Sendable, Equatable { var elapsed = 0.0, receivedBytes = 0, blocked = 0.0, idle = 0.0 }
    private struct Share: Sendable, Equatable { var blocked = 0.0, idle = 0.0, bytesPerSecond = 0.0 }
    private var lastTraffic: [String: Traffic] = [:]
    /// Per position (a stage's index, or the stage count for the sink), each process's last
    /// report interval: its share of it waiting for room and for input, and what it received.
    private var recent: [Int: [String: Share]] = [:]
    /// A link counts as saturated when its senders wait for room and its receivers for input,
    /// each at least this share of the time: then what crossed it is what it can carry.
    public static let saturation = 0.25
    /// Seconds of traffic each link sample spans.
    public static let trafficInterval = 1.0

    /// PUSH→PULL over tcp on one machine: a link nothing has measured is taken to be this fast.
    public static let defaultSecondsPerByte = 1 / 2.5e9

    public init(cut: LayerCut, stages: Int, replicas: [Int]? = nil, secondsPerByte: Double = CostModel.defaultSecondsPerByte,
                compression: [Compression]? = nil) {
        layerSeconds = Array(repeating: nil, count: cut.layers.count)
        stageSpeeds = Array(repeating: 1, count: stages)
        boundaryBytes = [cut.inputBytesPerWindow] + cut.layers.map(\.outputBytesPerWindow)
        self.secondsPerByte = secondsPerByte
        self.replicas = replicas ?? Array(repeating: 1, count: stages)
        linkSecondsPerByte = Array(repeating: nil, count: stages)
        self.compression = compression ?? Array(repeating: .none, count: stages)
    }

    /// Stage `stage`'s output link narrowed this way from now on.
    public mutating func setCompression(_ new: Compression, stage: Int) {
        guard compression.indices.contains(stage) else { return }
        compression[stage] = new
    }

    /// How much dearer each stage's output link is per byte of float32 than the default link:
    /// its measured cost over `secondsPerByte`, times what its narrowing leaves of each byte.
    public var linkFactors: [Double] {
        Self.linkFactors(measured: linkSecondsPerByte, compression: compression, secondsPerByte: secondsPerByte)
    }

    public static func linkFactors(measured: [Double?], compression: [Compression], secondsPerByte: Double) -> [Double] {
        measured.indices.map { stage in
            let narrowing = compression.indices.contains(stage) ? compression[stage] : .none
            return (measured[stage] ?? secondsPerByte) / secondsPerByte * narrowing.floatBytesRatio
        }
    }

    /// Folds in a process's running traffic totals. `position` is its stage's index, or the
    /// stage count for the sink. The link into position p + 1 (stage p's output) is measured
    /// where it is saturated (see `saturation`), by what its receivers took off it: bytes a
    /// sender hands on may still sit in socket buffers, bytes received have crossed. An
    /// unsaturated link carried less than it can, so a rate above the one measured only shows
    /// the link is faster than thought.
    public mutating func observeTraffic(instance: String, position: Int, elapsedSeconds: Double, receivedBytes: Int,
                                        blockedSeconds: Double, idleSeconds: Double) {
        guard position >= 0, position <= replicas.count else { return }
        let previous = lastTraffic[instance] ?? Traffic()
        let interval = elapsedSeconds - previous.elapsed
        // A shorter interval catches bursts (a receiver reading what piled up while it was busy);
        // one that ran backwards is a new process under the name.
        guard interval >= Self.trafficInterval || interval < 0 else { return }
        lastTraffic[instance] = Traffic(elapsed: elapsedSeconds, receivedBytes: receivedBytes, blocked: blockedSeconds, idle: idleSeconds)
        guard interval > 0, receivedBytes >= previous.receivedBytes else { return }
        func share(_ seconds: Double) -> Double { min(1, max(0, seconds / interval)) }
        recent[position, default: [:]][instance] = Share(blocked: share(blockedSeconds - previous.blocked), idle: share(idleSeconds - previous.idle),
                                                         bytesPerSecond: Double(receivedBytes - previous.receivedBytes) / interval)
        let link = position - 1
        guard link >= 0, let receivers = recent[position]?.values, let senders = recent[link]?.values, !senders.isEmpty else { return }
        let rate = receivers.reduce(0) { $0 + $1.bytesPerSecond }
        guard rate > 0 else { return }
        let blocked = senders.reduce(0) { $0 + $1.blocked } / Double(senders.count)
        let idle = receivers.reduce(0) { $0 + $1.idle } / Double(receivers.count)
        if blocked >= Self.saturation, idle >= Self.saturation {
            linkSecondsPerByte[link] = linkSecondsPerByte[link].map { smoothing / rate + (1 - smoothing) * $0 } ?? 1 / rate
        } else if let known = linkSecondsPerByte[link], 1 / rate < known {
            linkSecondsPerByte[link] = 1 / rate
        }
    }

    /// Speed of each stage as a whole: its processes' speed times how many there are.
    public var effectiveSpeeds: [Double] { zip(stageSpeeds, replicas).map { $0 * Double($1) } }

    public var isComplete: Bool { layerSeconds.allSatisfy { $0 != nil } }

    /// A replica of `stage` joined: the stage takes one more batch at a time.
    public mutating func addReplica(stage: Int) {
        guard replicas.indices.contains(stage) else { return }
        replicas[stage] += 1
    }

    /// A replica died and none takes its place; a stage keeps at least one process.
    public mutating func removeReplica(stage: Int) {
        guard replicas.indices.contains(stage), replicas[stage] > 1 else { return }
        replicas[stage] -= 1
    }

    /// Folds in a stage process's running totals (its seconds computing, and each layer's
    /// timing); differences since its last report are what count.
    public mutating func observe(instance: String, stage: Int, busySeconds: Double, layers: [LayerTiming]) {
        guard stage < stageSpeeds.count else { return }
        var computeDelta = 0.0
        for timing in layers where timing.layer < layerSeconds.count {
            // Totals are per process: a layer that moved counts afresh on its new stage.
            let key = InstanceLayer(instance: instance, layer: timing.layer)
            let previous = lastLayerTotals[key] ?? LayerTiming(layer: timing.layer, seconds: 0, windows: 0)
            let windows = timing.windows - previous.windows
            let seconds = timing.seconds - previous.seconds
            lastLayerTotals[key] = timing
            guard windows > 0, seconds >= 0 else { continue }
            computeDelta += seconds
            let perWindow = seconds / Double(windows)
            layerSeconds[timing.layer] = layerSeconds[timing.layer].map { smoothing * perWindow + (1 - smoothing) * $0 } ?? perWindow
        }
        let busyDelta = busySeconds - (lastBusyTotals[instance] ?? 0)
        lastBusyTotals[instance] = busySeconds
        if busyDelta > 1e-4, computeDelta > 0 {
            let speed = min(1, computeDelta / busyDelta)
            // The first measurement replaces the assumed 1 outright: a slow stage is slow from the start.
            stageSpeeds[stage] = measuredSpeeds.contains(stage) ? smoothing * speed + (1 - smoothing) * stageSpeeds[stage] : speed
            measuredSpeeds.insert(stage)
        }
    }

    /// Costs in seconds per window, for the partitioner.
    public var partitionCosts: PartitionCosts {
        PartitionCosts(layerCosts: layerSeconds.map { $0 ?? 0 },
                       transferCosts: boundaryBytes.map { Double($0) * secondsPerByte }, linkFactors: linkFactors)
    }

    /// Predicted seconds per window of each stage under `ranges`.
    public func stageTimes(_ ranges: [Range<Int>]) -> [Double] {
        Partition.stageTimes(of: ranges, costs: partitionCosts, speeds: effectiveSpeeds)
    }

    /// Predicted windows per second of the pipeline under `ranges` (its slowest stage).
    public func throughput(_ ranges: [Range<Int>]) -> Double {
        let bottleneck = stageTimes(ranges).max() ?? 0
        return bottleneck > 0 ? 1 / bottleneck : 0
    }
}

/// One rebalancing decision, kept for the log, the report and `sluice profile --json`.
public struct RebalanceRecord: Codable, Equatable, Sendable {
    public var atSeconds: Double
    public var epoch: UInt32
    public var oldSplit: [LayerSpan]
    public var newSplit: [LayerSpan]
    public var predictedOldWindowsPerSecond: Double
    public var predictedNewWindowsPerSecond: Double
    /// Measured at the sink over the interval before the move, and after it settled.
    public var measuredBeforeWindowsPerSecond: Double?
    public var measuredAfterWindowsPerSecond: Double?
    /// When the move was complete everywhere (old weights released, or the replicas asked for
    /// joined), on the same clock as `atSeconds`.
    public var settledAtSeconds: Double?
    /// False under the `recommend` policy: the split was only proposed.
    public var applied: Bool
    /// Processes per stage before and after, when the decision adds replicas (nil: unchanged).
    public var oldReplicas: [Int]?
    public var newReplicas: [Int]?
    /// Each stage's output-link compression before and after, when the decision narrows a
    /// link (nil: unchanged).
    public var oldCompression: [Compression]?
    public var newCompression: [Compression]?

    /// The plan moved to, in words: "0-1,2,3-5", "0-1,2 ×2,3-5" when replicas were added, and
    /// "0-1 fp16,2-5" when stage 0's output crosses its link in half precision.
    public var newPlan: String { Rebalancer.describe(newSplit, replicas: newReplicas, compression: newCompression) }
    public var oldPlan: String { Rebalancer.describe(oldSplit, replicas: oldReplicas, compression: oldCompression) }

    /// What the decision changes, in words: "moves the cut", "narrows stage 1's link to fp16", or both.
    public var change: String {
        var parts: [String] = []
        if oldSplit != newSplit { parts.append("moves the cut") }
        if let newReplicas, newReplicas != oldReplicas { parts.append("adds replicas") }
        if let old = oldCompression, let new = newCompression {
            for (stage, pair) in zip(old, new).enumerated() where pair.0 != pair.1 {
                parts.append("narrows stage \(stage)'s link to \(pair.1.rawValue)")
            }
        }
        return parts.joined(separator: " and ")
    }

    public init(atSeconds: Double, epoch: UInt32, oldSplit: [LayerSpan], newSplit: [LayerSpan], predictedOldWindowsPerSecond: Double,
                predictedNewWindowsPerSecond: Double, measuredBeforeWindowsPerSecond: Double? = nil,
                measuredAfterWindowsPerSecond: Double? = nil, settledAtSeconds: Double? = nil, applied: Bool,
                oldReplicas: [Int]? = nil, newReplicas: [Int]? = nil, oldCompression: [Compression]? = nil,
                newCompression: [Compression]? = nil) {
        self.atSeconds = atSeconds; self.epoch = epoch; self.oldSplit = oldSplit; self.newSplit = newSplit
        self.predictedOldWindowsPerSecond = predictedOldWindowsPerSecond; self.predictedNewWindowsPerSecond = predictedNewWindowsPerSecond
        self.measuredBeforeWindowsPerSecond = measuredBeforeWindowsPerSecond; self.measuredAfterWindowsPerSecond = measuredAfterWindowsPerSecond
        self.settledAtSeconds = settledAtSeconds; self.applied = applied; self.oldReplicas = oldReplicas; self.newReplicas = newReplicas
        self.oldCompression = oldCompression; self.newCompression = newCompression
    }

    private enum CodingKeys: String, CodingKey {
        case atSeconds, epoch, oldSplit, newSplit, predictedOldWindowsPerSecond, predictedNewWindowsPerSecond
        case measuredBeforeWindowsPerSecond, measuredAfterWindowsPerSecond, settledAtSeconds, applied, oldReplicas, newReplicas
        case oldCompression, newCompression
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(atSeconds: try c.decode(Double.self, forKey: .atSeconds), epoch: try c.decode(UInt32.self, forKey: .epoch),
                  oldSplit: try c.decodeSplit(forKey: .oldSplit), newSplit: try c.decodeSplit(forKey: .newSplit),
                  predictedOldWindowsPerSecond: try c.decode(Double.self, forKey: .predictedOldWindowsPerSecond),
                  predictedNewWindowsPerSecond: try c.decode(Double.self, forKey: .predictedNewWindowsPerSecond),
                  measuredBeforeWindowsPerSecond: try c.decodeIfPresent(Double.self, forKey: .measuredBeforeWindowsPerSecond),
                  measuredAfterWindowsPerSecond: try c.decodeIfPresent(Double.self, forKey: .measuredAfterWindowsPerSecond),
                  settledAtSeconds: try c.decodeIfPresent(Double.self, forKey: .settledAtSeconds),
                  applied: try c.decode(Bool.self, forKey: .applied),
                  oldReplicas: try c.decodeIfPresent([Int].self, forKey: .oldReplicas),
                  newReplicas: try c.decodeIfPresent([Int].self, forKey: .newReplicas),
                  oldCompression: try c.decodeIfPresent([Compression].self, forKey: .oldCompression),
                  newCompression: try c.decodeIfPresent([Compression].self, forKey: .newCompression))
    }

}

/// Decides when a better split is worth a move: a predicted gain above the threshold, no
/// sooner than one interval after the last move, and never straight back to the split just
/// left unless that is predicted to gain twice the threshold (no oscillation on noise).
public struct Rebalancer: Sendable {
    public let config: RebalanceConfig
    public private(set) var model: CostModel
    /// Compute threads the stage processes may use together; spare ones go to new replicas.
    public private(set) var cores: Int
    /// Threads of each process, per stage (fixed for the run).
    public let threads: [Int]
    /// Per layer, the share of compute more threads speed up (see `CorePlanner`).
    public let parallelFractions: [Double]?
    public private(set) var history: [RebalanceRecord] = []
    private var lastDecisionAt: Double?
    private var previousSplit: [Range<Int>]?
    private var lastRecommended: (ranges: [Range<Int>], replicas: [Int])?
    private var lastEvaluatedAt: Double?
    /// The cost model as it was at the last evaluation: what the controller last planned with.
    public private(set) var plannedWith: CostModel?
    /// Per stage, what the pipeline asks for on its output link (`stages.compress`).
    public let compressionSettings: [CompressionSetting]

    /// `cores`: the budget; nil means no more than the processes started with (no replicas added).
    public init(config: RebalanceConfig, cut: LayerCut, stages: Int, replicas: [Int]? = nil, threads: [Int]? = nil,
                cores: Int? = nil, parallelFractions: [Double]? = nil, compression: [CompressionSetting]? = nil) {
        self.config = config
        compressionSettings = compression ?? Array(repeating: .none, count: stages)
        model = CostModel(cut: cut, stages: stages, replicas: replicas, compression: compressionSettings.map(\.initial))
        self.threads = threads ?? Array(repeating: 1, count: stages)
        self.cores = cores ?? 0
        self.parallelFractions = parallelFractions
    }

    public mutating func addReplica(stage: Int) { model.addReplica(stage: stage) }

    public mutating func removeReplica(stage: Int) { model.removeReplica(stage: stage) }

    /// No more replicas for the rest of the run (one could not be started; others would fail alike).
    public mutating func stopAddingReplicas() { cores = 0 }

    private var coresInUse: Int { zip(model.replicas, threads).reduce(0) { $0 + $1.0 * $1.1 } }

    /// The best ranges for the stages as they are, or, with spare cores, the best ranges and
    /// replicas (never fewer than now), each stage's processes running at their measured speed;
    /// with the predicted throughput of that plan and of the current one, on the same model.
    func bestPlan(current: [Range<Int>], model: CostModel) -> (ranges: [Range<Int>], replicas: [Int], throughput: Double, currentThroughput: Double)? {
        guard cores > coresInUse else {
            guard let best = try? Partition.optimal(costs: model.partitionCosts, stages: current.count, speeds: model.effectiveSpeeds) else {
                return nil
            }
            return (best.ranges, model.replicas, model.throughput(best.ranges), model.throughput(current))
        }
        // Layers were timed at their stage's threads; the planner applies threads itself.
        var costs = model.partitionCosts
        let measured = CorePlanner(costs: costs, parallelFractions: parallelFractions)
        for (stage, range) in current.enumerated() {
            for layer in range { costs.layerCosts[layer] /= measured.threadFactor(layer: layer, threads: threads[stage]) }
        }
        let planner = CorePlanner(costs: costs, parallelFractions: parallelFractions)
        let constraints = CorePlanner.Constraints(stages: current.count, minimumReplicas: model.replicas,
                                                  threads: threads.map { $0 }, speeds: model.stageSpeeds)
        guard let plan = try? planner.plan(cores: cores, constraints: constraints) else { return nil }
        let shapes = zip(model.replicas, threads).map { StageShape(replicas: $0, threads: $1) }
        let now = planner.stageTimes(current, shapes: shapes, speeds: model.stageSpeeds).max() ?? 0
        return (plan.ranges, plan.replicas, plan.throughput, now > 0 ? 1 / now : 0)
    }

    public mutating func observe(instance: String, stage: Int, busySeconds: Double, layers: [LayerTiming]) {
        model.observe(instance: instance, stage: stage, busySeconds: busySeconds, layers: layers)
    }

    public mutating func observeTraffic(instance: String, position: Int, elapsedSeconds: Double, receivedBytes: Int,
                                        blockedSeconds: Double, idleSeconds: Double) {
        model.observeTraffic(instance: instance, position: position, elapsedSeconds: elapsedSeconds, receivedBytes: receivedBytes,
                             blockedSeconds: blockedSeconds, idleSeconds: idleSeconds)
    }

    /// The decision to narrow links is carried out: the model plans with it from now on.
    public mutating func applyCompression(_ compression: [Compression]) {
        for (stage, narrowing) in compression.enumerated() { model.setCompression(narrowing, stage: stage) }
    }

    /// The model with every `auto` link that was measured saturated narrowed to fp16, if any is.
    private func narrowedModel() -> CostModel? {
        var narrowed = model
        var any = false
        for (stage, setting) in compressionSettings.enumerated()
        where setting == .auto && model.compression.indices.contains(stage) && model.compression[stage] == .none
            && model.linkSecondsPerByte[stage] != nil {
            narrowed.setCompression(.fp16, stage: stage)
            any = true
        }
        return any ? narrowed : nil
    }

    /// A better split (and, with spare cores, more replicas) for `current`, if one is worth
    /// moving to now.
    public mutating func proposal(current: [Range<Int>], now: Double, epoch: UInt32,
                                  measuredWindowsPerSecond: Double?) -> RebalanceRecord? {
        guard config.policy != .off, model.isComplete else { return nil }
        if let lastDecisionAt, now - lastDecisionAt < config.intervalSeconds { return nil }
        // The controller ticks every few milliseconds; planning a few times an interval is plenty.
        if let lastEvaluatedAt, now - lastEvaluatedAt < min(config.intervalSeconds / 2, 0.25) { return nil }
        lastEvaluatedAt = now
        plannedWith = model
        guard var best = bestPlan(current: current, model: model) else { return nil }
        var compression: [Compression]?
        // Narrowing costs precision, moving the cut does not: a link is narrowed only where that
        // predicts more than the threshold beyond the best the current links allow.
        if let narrowed = narrowedModel(), let withNarrowing = bestPlan(current: current, model: narrowed),
           withNarrowing.throughput > best.throughput * (1 + config.threshold) {
            best = (withNarrowing.ranges, withNarrowing.replicas, withNarrowing.throughput, best.currentThroughput)
            compression = narrowed.compression
        }
        let grows = best.replicas != model.replicas
        guard best.ranges != current || grows || compression != nil else { return nil }
        let oldThroughput = best.currentThroughput
        let newThroughput = best.throughput
        let gain = oldThroughput > 0 ? newThroughput / oldThroughput - 1 : 0
        let required = best.ranges == previousSplit && !grows && compression == nil ? 2 * config.threshold : config.threshold
        guard gain > required else { return nil }
        if config.policy == .recommend, let last = lastRecommended, last.ranges == best.ranges, last.replicas == best.replicas { return nil }
        let record = RebalanceRecord(atSeconds: now, epoch: epoch, oldSplit: current.map(LayerSpan.init), newSplit: best.ranges.map(LayerSpan.init),
                                     predictedOldWindowsPerSecond: oldThroughput, predictedNewWindowsPerSecond: newThroughput,
                                     measuredBeforeWindowsPerSecond: measuredWindowsPerSecond, measuredAfterWindowsPerSecond: nil,
                                     applied: config.policy == .auto,
                                     oldReplicas: grows ? model.replicas : nil, newReplicas: grows ? best.replicas : nil,
                                     oldCompression: compression != nil ? model.compression : nil, newCompression: compression)
        history.append(record)
        lastDecisionAt = now
        if config.policy == .auto {
            previousSplit = current
        } else {
            lastRecommended = (best.ranges, best.replicas)
        }
        return record
    }

    /// The last move is complete everywhere.
    public mutating func recordSettled(at seconds: Double) {
        guard let last = history.indices.last, history[last].applied, history[last].settledAtSeconds == nil else { return }
        history[last].settledAtSeconds = seconds
    }

    /// The sink's measured rate once the last move settled.
    public mutating func recordMeasuredAfter(_ windowsPerSecond: Double) {
        guard let last = history.indices.last, history[last].applied, history[last].measuredAfterWindowsPerSecond == nil else { return }
        history[last].measuredAfterWindowsPerSecond = windowsPerSecond
    }

    /// "0-1,2 ×2,3-5 fp16": a stage's processes after ×, when more than one, and how its output
    /// is narrowed for its link, when it is.
    public static func describe(_ spans: [LayerSpan], replicas: [Int]?, compression: [Compression]? = nil) -> String {
        spans.enumerated().map { stage, span in
            var text = span.description
            if let replicas, replicas.count == spans.count, replicas[stage] > 1 { text += " ×\(replicas[stage])" }
            if let compression, compression.count == spans.count, compression[stage] != .none { text += " \(compression[stage].rawValue)" }
            return text
        }.joined(separator: ",")
    }
}
