import Foundation
import SluiceConfig
import SluicePlan
import SluiceProtocol
import SluiceWire

/// Everything `sluice profile` knows about one run, in one value: what the controller
/// measured per stage and per layer, what the sink saw per micro-batch, and what the analysis
/// concluded from it. Every renderer (text, Chrome trace, SVG, JSON) reads only this.
///
/// Build it with `ProfileData.make(...)`, which also runs the analysis (bottleneck, latency
/// split, recommendation), so the JSON form carries the conclusions as well as the numbers.
public struct ProfileData: Codable, Equatable, Sendable {
    public var pipeline: String
    /// Wall-clock seconds the measurement covers (first to last output, or the profile window).
    public var durationSeconds: Double
    /// Windows the source produced (nil when it did not report) and windows the sink released.
    public var windowsIn: UInt64?
    public var windowsOut: UInt64
    /// windowsOut / durationSeconds: the pipeline's measured throughput.
    public var windowsPerSecond: Double
    public var stages: [StageProfile]
    public var layers: [LayerProfile]
    /// Per micro-batch timestamps (a sample of them on long runs; see `TraceSampler`).
    public var traces: [BatchTrace]
    public var rebalances: [RebalanceRecord]
    /// What the recommendation was computed from, kept so scripts can redo it.
    public var costs: CostInput
    public var bottleneck: Bottleneck
    /// End-to-end latency and its split; nil when no trace was collected.
    public var latency: LatencySummary?
    public var recommendation: Recommendation

    public init(pipeline: String, durationSeconds: Double, windowsIn: UInt64?, windowsOut: UInt64, windowsPerSecond: Double,
                stages: [StageProfile], layers: [LayerProfile], traces: [BatchTrace], rebalances: [RebalanceRecord],
                costs: CostInput, bottleneck: Bottleneck, latency: LatencySummary?, recommendation: Recommendation) {
        self.pipeline = pipeline; self.durationSeconds = durationSeconds; self.windowsIn = windowsIn; self.windowsOut = windowsOut
        self.windowsPerSecond = windowsPerSecond; self.stages = stages; self.layers = layers; self.traces = traces
        self.rebalances = rebalances; self.costs = costs; self.bottleneck = bottleneck; self.latency = latency
        self.recommendation = recommendation
    }

    /// Assembles the profile from what the controller and the sink hold at the end of a run.
    /// - Parameters:
    ///   - cut: the model's layers (ops, FLOPs, bytes).
    ///   - ranges: the split in force at the end (half-open layer ranges, one per stage).
    ///   - stageCounters: each stage's last `RoleCounters`, by stage index.
    ///   - traces: micro-batch timestamps collected at the sink.
    ///   - costs: measured per-layer seconds per window, stage speeds and boundary bytes.
    ///   - queueDepths: input queue depth per stage index, where known.
    ///   - replicas: replica count per stage index (1 where absent).
    public static func make(pipeline: String, cut: LayerCut, ranges: [Range<Int>], stageCounters: [Int: RoleCounters],
                            traces: [BatchTrace], costs: CostInput, rebalances: [RebalanceRecord], windowsIn: UInt64?,
                            windowsOut: UInt64, durationSeconds: Double, queueDepths: [Int: Int] = [:], replicas: [Int: Int] = [:],
                            rule: BottleneckRule = BottleneckRule()) -> ProfileData {
        let inStage = InStageTimes(traces: traces)
        let stages = ranges.enumerated().map { index, range in
            let counters = stageCounters[index] ?? RoleCounters()
            return StageProfile(index: index, layers: range, replicas: replicas[index] ?? 1, counters: counters,
                                queueDepth: queueDepths[index],
                                // Live, before any trace reached the sink, the stage's own recent figures.
                                inStageP50Seconds: inStage.percentile(stage: index, 50) ?? counters.inStageP50Seconds,
                                inStageP99Seconds: inStage.percentile(stage: index, 99) ?? counters.inStageP99Seconds)
        }
        var layers: [LayerProfile] = []
        for layer in cut.layers {
            let stage = ranges.firstIndex { $0.contains(layer.index) } ?? -1
            let seconds = layer.index < costs.layerSecondsPerWindow.count ? costs.layerSecondsPerWindow[layer.index] : nil
            var share: Double?
            if stage >= 0, let seconds {
                let stageSeconds = ranges[stage].reduce(0.0) { total, index in
                    total + (index < costs.layerSecondsPerWindow.count ? costs.layerSecondsPerWindow[index] ?? 0 : 0)
                }
                share = stageSeconds > 0 ? seconds / stageSeconds : nil
            }
            layers.append(LayerProfile(index: layer.index, opTypes: layer.opTypes, flopsPerWindow: layer.flopsPerWindow,
                                       parameterBytes: layer.parameterBytes, outputBytesPerWindow: layer.outputBytesPerWindow,
                                       secondsPerWindow: seconds, stage: stage, shareOfStage: share))
        }
        let bottleneck = Bottleneck.find(stages: stages, rule: rule)
        let splits = traces.map {
            LatencySplit(trace: $0, boundaryBytesPerWindow: costs.boundaryBytesPerWindow, ranges: ranges,
                         secondsPerByte: costs.secondsPerByte)
        }
        let latency = splits.isEmpty ? nil : LatencySummary(splits)
        var costs = costs
        costs.ranges = ranges
        let recommendation = Recommendation.make(bottleneck: bottleneck, stages: stages, costs: costs)
        return ProfileData(pipeline: pipeline, durationSeconds: durationSeconds, windowsIn: windowsIn, windowsOut: windowsOut,
                           windowsPerSecond: durationSeconds > 0 ? Double(windowsOut) / durationSeconds : 0,
                           stages: stages, layers: layers, traces: traces, rebalances: rebalances, costs: costs,
                           bottleneck: bottleneck, latency: latency, recommendation: recommendation)
    }

    /// `make` with the controller's live cost model as the source of layer costs and speeds.
    public static func make(pipeline: String, cut: LayerCut, ranges: [Range<Int>], stageCounters: [Int: RoleCounters],
                            traces: [BatchTrace], model: CostModel, rebalances: [RebalanceRecord], windowsIn: UInt64?,
                            windowsOut: UInt64, durationSeconds: Double, queueDepths: [Int: Int] = [:], replicas: [Int: Int] = [:],
                            rule: BottleneckRule = BottleneckRule()) -> ProfileData {
        make(pipeline: pipeline, cut: cut, ranges: ranges, stageCounters: stageCounters, traces: traces,
             costs: CostInput(model: model, ranges: ranges), rebalances: rebalances, windowsIn: windowsIn, windowsOut: windowsOut,
             durationSeconds: durationSeconds, queueDepths: queueDepths, replicas: replicas, rule: rule)
    }

    /// The machine-readable report: this value as pretty JSON with sorted keys.
    public func json() -> Data {
        reportJSON(self)
    }
}

/// Pretty JSON with sorted keys, for reports people diff and scripts read.
func reportJSON<Report: Encodable>(_ report: Report) -> Data {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    // Non-finite numbers would make the encoder throw; none is stored, but never lose the report over one.
    encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "Infinity", negativeInfinity: "-Infinity", nan: "NaN")
    return (try? encoder.encode(report)) ?? Data("{}".utf8)
}

/// One stage over the run. Busy + idle + blocked is the stage's wall time: busy is computing
/// (including the stage's own slowdowns), blocked is waiting for room downstream, idle the rest.
public struct StageProfile: Codable, Equatable, Sendable {
    public var index: Int
    /// Layers held at the end of the run, as text ("4-7") and as an inclusive pair of ints.
    public var layers: String
    public var firstLayer: Int
    public var lastLayer: Int
    public var replicas: Int
    public var elapsedSeconds: Double
    public var busySeconds: Double
    public var idleSeconds: Double
    public var blockedSeconds: Double
    /// The sum of the stage's per-layer compute times: busy time less anything else (slowdowns).
    public var layerComputeSeconds: Double
    public var batches: Int
    public var windows: Int
    public var rejected: Int
    /// Resident memory of the stage's processes when they took their first assignment, and at
    /// the end (0 where not reported).
    public var residentBytesAtStart: Int
    public var residentBytes: Int
    /// Micro-batches waiting at the stage's input, where the stage reports it.
    public var queueDepth: Int?
    /// Time a micro-batch spends in the stage, from its arrival to the start of its send
    /// (hop.sendStart − hop.received): decoding and compute, not the wait for room downstream.
    public var inStageP50Seconds: Double?
    public var inStageP99Seconds: Double?

    public init(index: Int, layers: Range<Int>, replicas: Int = 1, elapsedSeconds: Double, busySeconds: Double, idleSeconds: Double,
                blockedSeconds: Double, layerComputeSeconds: Double = 0, batches: Int, windows: Int, rejected: Int = 0,
                residentBytesAtStart: Int = 0, residentBytes: Int = 0, queueDepth: Int? = nil, inStageP50Seconds: Double? = nil,
                inStageP99Seconds: Double? = nil) {
        self.index = index
        self.layers = LayerSpan(layers).description
        firstLayer = layers.lowerBound
        lastLayer = layers.upperBound - 1
        self.replicas = replicas
        self.elapsedSeconds = elapsedSeconds; self.busySeconds = busySeconds; self.idleSeconds = idleSeconds
        self.blockedSeconds = blockedSeconds; self.layerComputeSeconds = layerComputeSeconds
        self.batches = batches; self.windows = windows; self.rejected = rejected
        self.residentBytesAtStart = residentBytesAtStart; self.residentBytes = residentBytes
        self.queueDepth = queueDepth; self.inStageP50Seconds = inStageP50Seconds; self.inStageP99Seconds = inStageP99Seconds
    }

    public init(index: Int, layers: Range<Int>, replicas: Int = 1, counters: RoleCounters, queueDepth: Int? = nil,
                inStageP50Seconds: Double? = nil, inStageP99Seconds: Double? = nil) {
        self.init(index: index, layers: layers, replicas: replicas, elapsedSeconds: counters.elapsedSeconds,
                  busySeconds: counters.busySeconds, idleSeconds: counters.idleSeconds, blockedSeconds: counters.blockedSeconds,
                  layerComputeSeconds: counters.layers.reduce(0) { $0 + $1.seconds }, batches: counters.batches, windows: counters.windows,
                  rejected: counters.rejected, residentBytesAtStart: counters.residentBytesAtStart, residentBytes: counters.residentBytes,
                  queueDepth: queueDepth, inStageP50Seconds: inStageP50Seconds, inStageP99Seconds: inStageP99Seconds)
    }

    public var layerRange: Range<Int> { firstLayer..<(lastLayer + 1) }
    public var busyFraction: Double { fraction(busySeconds) }
    public var idleFraction: Double { fraction(idleSeconds) }
    public var blockedFraction: Double { fraction(blockedSeconds) }
    public var batchesPerSecond: Double { elapsedSeconds > 0 ? Double(batches) / elapsedSeconds : 0 }
    public var windowsPerSecond: Double { elapsedSeconds > 0 ? Double(windows) / elapsedSeconds : 0 }
    /// Busy time per micro-batch: what one batch costs the stage.
    public var millisecondsPerBatch: Double { batches > 0 ? 1000 * busySeconds / Double(batches) : 0 }

    private func fraction(_ seconds: Double) -> Double { elapsedSeconds > 0 ? seconds / elapsedSeconds : 0 }

    private enum CodingKeys: String, CodingKey {
        case index, layers, firstLayer, lastLayer, replicas, elapsedSeconds, busySeconds, idleSeconds, blockedSeconds
        case layerComputeSeconds, batches
        case windows, rejected, residentBytesAtStart, residentBytes, queueDepth, inStageP50Seconds, inStageP99Seconds
        // Derived, written for scripts and ignored when read back.
        case busyFraction, idleFraction, blockedFraction, batchesPerSecond, windowsPerSecond, millisecondsPerBatch
        /// The index, in run reports written before they were a view of the profile.
        case stage
    }

    public init(from decoder: Decoder) throws {
        try self.init(from: decoder, replicasIfAbsent: 1)
    }

    /// Reads a stage as the profile writes it, or as run reports wrote it before they were a view
    /// of the profile: the index under `stage`, the layer bounds only in `layers`, and no process
    /// count (the report's `replicas` gives it).
    init(from decoder: Decoder, replicasIfAbsent: Int) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        index = try c.decodeIfPresent(Int.self, forKey: .index) ?? c.decode(Int.self, forKey: .stage)
        layers = try c.decode(String.self, forKey: .layers)
        if c.contains(.firstLayer) {
            firstLayer = try c.decode(Int.self, forKey: .firstLayer)
            lastLayer = try c.decode(Int.self, forKey: .lastLayer)
        } else {
            guard let span = LayerSpan(parsing: layers) else {
                throw DecodingError.dataCorruptedError(forKey: .layers, in: c, debugDescription: "'\(layers)' is not a layer span such as '3-5' or '4'")
            }
            firstLayer = span.start
            lastLayer = span.end - 1
        }
        replicas = try c.decodeIfPresent(Int.self, forKey: .replicas) ?? replicasIfAbsent
        elapsedSeconds = try c.decode(Double.self, forKey: .elapsedSeconds)
        busySeconds = try c.decode(Double.self, forKey: .busySeconds)
        idleSeconds = try c.decode(Double.self, forKey: .idleSeconds)
        blockedSeconds = try c.decode(Double.self, forKey: .blockedSeconds)
        layerComputeSeconds = try c.decodeIfPresent(Double.self, forKey: .layerComputeSeconds) ?? 0
        batches = try c.decode(Int.self, forKey: .batches)
        windows = try c.decode(Int.self, forKey: .windows)
        rejected = try c.decode(Int.self, forKey: .rejected)
        residentBytesAtStart = try c.decodeIfPresent(Int.self, forKey: .residentBytesAtStart) ?? 0
        residentBytes = try c.decodeIfPresent(Int.self, forKey: .residentBytes) ?? 0
        queueDepth = try c.decodeIfPresent(Int.self, forKey: .queueDepth)
        inStageP50Seconds = try c.decodeIfPresent(Double.self, forKey: .inStageP50Seconds)
        inStageP99Seconds = try c.decodeIfPresent(Double.self, forKey: .inStageP99Seconds)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(index, forKey: .index)
        try c.encode(layers, forKey: .layers)
        try c.encode(firstLayer, forKey: .firstLayer)
        try c.encode(lastLayer, forKey: .lastLayer)
        try c.encode(replicas, forKey: .replicas)
        try c.encode(elapsedSeconds, forKey: .elapsedSeconds)
        try c.encode(busySeconds, forKey: .busySeconds)
        try c.encode(idleSeconds, forKey: .idleSeconds)
        try c.encode(blockedSeconds, forKey: .blockedSeconds)
        try c.encode(layerComputeSeconds, forKey: .layerComputeSeconds)
        try c.encode(batches, forKey: .batches)
        try c.encode(windows, forKey: .windows)
        try c.encode(rejected, forKey: .rejected)
        try c.encode(residentBytesAtStart, forKey: .residentBytesAtStart)
        try c.encode(residentBytes, forKey: .residentBytes)
        try c.encodeIfPresent(queueDepth, forKey: .queueDepth)
        try c.encodeIfPresent(inStageP50Seconds, forKey: .inStageP50Seconds)
        try c.encodeIfPresent(inStageP99Seconds, forKey: .inStageP99Seconds)
        try c.encode(busyFraction, forKey: .busyFraction)
        try c.encode(idleFraction, forKey: .idleFraction)
        try c.encode(blockedFraction, forKey: .blockedFraction)
        try c.encode(batchesPerSecond, forKey: .batchesPerSecond)
        try c.encode(windowsPerSecond, forKey: .windowsPerSecond)
        try c.encode(millisecondsPerBatch, forKey: .millisecondsPerBatch)
    }
}

/// One layer of the model: what the plan knows of it and what was measured.
public struct LayerProfile: Codable, Equatable, Sendable {
    public var index: Int
    public var opTypes: [String]
    public var flopsPerWindow: Double
    public var parameterBytes: Int
    /// Bytes per window of the boundary after this layer (what crosses a link if a stage ends here).
    public var outputBytesPerWindow: Int
    /// Measured compute seconds per window; nil when never measured.
    public var secondsPerWindow: Double?
    /// The stage holding the layer at the end of the run (-1: none).
    public var stage: Int
    /// This layer's part of its stage's measured compute per window (0…1).
    public var shareOfStage: Double?

    public init(index: Int, opTypes: [String], flopsPerWindow: Double, parameterBytes: Int, outputBytesPerWindow: Int,
                secondsPerWindow: Double?, stage: Int, shareOfStage: Double?) {
        self.index = index; self.opTypes = opTypes; self.flopsPerWindow = flopsPerWindow; self.parameterBytes = parameterBytes
        self.outputBytesPerWindow = outputBytesPerWindow; self.secondsPerWindow = secondsPerWindow; self.stage = stage
        self.shareOfStage = shareOfStage
    }
}


/// What the recommendation is computed from: the split in force and the measured costs, as in
/// the controller's `CostModel`. Ranges are half-open ([lower, upper) in JSON).
public struct CostInput: Codable, Equatable, Sendable {
    public var ranges: [Range<Int>]
    /// Measured compute seconds per window per layer (nil: never measured).
    public var layerSecondsPerWindow: [Double?]
    /// compute / busy per stage position: below 1 for a stage that loses time to anything else.
    public var stageSpeeds: [Double]
    /// Bytes per window at each boundary; index 0 is the model input, index i the output of layer i-1.
    public var boundaryBytesPerWindow: [Int]
    /// Link cost used for transfer estimates (seconds per byte).
    public var secondsPerByte: Double
    /// Per stage, its output link's measured seconds per byte (nil: not measured; absent in
    /// profiles written before links were measured), and how its output was narrowed.
    public var linkSecondsPerByte: [Double?]?
    public var compression: [Compression]?

    public init(ranges: [Range<Int>], layerSecondsPerWindow: [Double?], stageSpeeds: [Double], boundaryBytesPerWindow: [Int],
                secondsPerByte: Double = 1 / 2.5e9, linkSecondsPerByte: [Double?]? = nil, compression: [Compression]? = nil) {
        self.ranges = ranges; self.layerSecondsPerWindow = layerSecondsPerWindow; self.stageSpeeds = stageSpeeds
        self.boundaryBytesPerWindow = boundaryBytesPerWindow; self.secondsPerByte = secondsPerByte
        self.linkSecondsPerByte = linkSecondsPerByte; self.compression = compression
    }

    public init(model: CostModel, ranges: [Range<Int>]) {
        self.init(ranges: ranges, layerSecondsPerWindow: model.layerSeconds, stageSpeeds: model.effectiveSpeeds,
                  boundaryBytesPerWindow: model.boundaryBytes, secondsPerByte: model.secondsPerByte,
                  linkSecondsPerByte: model.linkSecondsPerByte, compression: model.compression)
    }

    public var isComplete: Bool { !layerSecondsPerWindow.isEmpty && layerSecondsPerWindow.allSatisfy { $0 != nil } }

    /// Costs for `Partition`, exactly as `CostModel.partitionCosts` forms them.
    public var partitionCosts: PartitionCosts {
        let transfer = boundaryBytesPerWindow.count == layerSecondsPerWindow.count + 1
            ? boundaryBytesPerWindow.map { Double($0) * secondsPerByte }
            : Array(repeating: 0, count: layerSecondsPerWindow.count + 1)
        let factors = linkSecondsPerByte.map {
            CostModel.linkFactors(measured: $0, compression: compression ?? [], secondsPerByte: secondsPerByte)
        }
        return PartitionCosts(layerCosts: layerSecondsPerWindow.map { $0 ?? 0 }, transferCosts: transfer, linkFactors: factors)
    }

    /// Predicted windows per second under `ranges`: one over the slowest stage's time.
    public func throughput(_ ranges: [Range<Int>]) -> Double {
        let speeds = stageSpeeds.count == ranges.count ? stageSpeeds : Array(repeating: 1, count: ranges.count)
        let slowest = Partition.stageTimes(of: ranges, costs: partitionCosts, speeds: speeds).max() ?? 0
        return slowest > 0 ? 1 / slowest : 0
    }
}
