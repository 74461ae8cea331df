/// How many processes run a stage, and how many compute threads each uses.
public struct StageShape: Sendable, Equatable, Codable, CustomStringConvertible {
    public var replicas: Int
    public var threads: Int

    public init(replicas: Int = 1, threads: Int = 1) {
        self.replicas = replicas
        self.threads = threads
    }

    public var cores: Int { replicas * threads }

    public var description: String { "\(replicas)×\(threads)" }
}

/// A split of the layers over stages, with each stage's processes and threads: what the
/// planner chooses under a core budget.
public struct CorePlan: Sendable, Equatable, CustomStringConvertible {
    public var ranges: [Range<Int>]
    public var shapes: [StageShape]
    /// Predicted time per window of each stage as a whole (its replicas together).
    public var stageTimes: [Double]

    public init(ranges: [Range<Int>], shapes: [StageShape], stageTimes: [Double]) {
        self.ranges = ranges
        self.shapes = shapes
        self.stageTimes = stageTimes
    }

    public var bottleneck: Double { stageTimes.max() ?? 0 }
    public var throughput: Double { bottleneck > 0 ? 1 / bottleneck : 0 }
    public var cores: Int { shapes.reduce(0) { $0 + $1.cores } }
    public var replicas: [Int] { shapes.map(\.replicas) }
    public var threads: [Int] { shapes.map(\.threads) }
    public var split: String { Partition(ranges: ranges, stageTimes: []).description }

    /// "0-1 ×2, 2, 3-5 (4 cores)": a stage's replicas after ×, its threads after t.
    public var description: String {
        let stages = zip(ranges, shapes).map { range, shape in
            Partition(ranges: [range], stageTimes: []).description
                + (shape.replicas > 1 ? " ×\(shape.replicas)" : "") + (shape.threads > 1 ? " t\(shape.threads)" : "")
        }
        return stages.joined(separator: ", ") + " (\(cores) core\(cores == 1 ? "" : "s"))"
    }
}

/// Chooses stages, their layer ranges, replicas and threads together so that the slowest stage
/// is as fast as a core budget allows. Exact for its cost model: a dynamic program over
/// (stage, layers placed, cores spent), not a heuristic.
///
/// The cost model: a stage's time per window is its layers' compute, each layer sped up by its
/// threads (Amdahl's law over the layer's parallel fraction, each extra thread worth
/// `threadEfficiency` of a core) and by the stage's speed factor,
/// divided by its replicas (each takes every r-th batch), plus the transfer of its output
/// boundary (the link carries that, so neither threads nor replicas shrink it).
public struct CorePlanner: Sendable {
    public var costs: PartitionCosts
    /// Per layer, the share of its compute that more threads speed up (0 when none does).
    public var parallelFractions: [Double]
    /// What each thread past the first adds to a product's speed, as a share of a core. Products
    /// of micro-batch size split poorly over threads: onnxruntime with 8 threads runs a
    /// Gemm-bound MLP 4.9–5.3× as fast as with one (measured on a 16-core machine), ≈ 1 + 7 × 0.6.
    public var threadEfficiency = 0.6
    /// A core is only spent for at least this much more throughput: a replica costs memory
    /// (a copy of its range's weights) and a process, so 1% is not worth one.
    public var minimumGainPerCore = 0.02

    public init(costs: PartitionCosts, parallelFractions: [Double]? = nil) {
        self.costs = costs
        self.parallelFractions = parallelFractions ?? Array(repeating: 0, count: costs.layerCosts.count)
        precondition(self.parallelFractions.count == costs.layerCosts.count, "one parallel fraction per layer")
    }

    /// What the planner may choose. Fixed parts constrain it; nil leaves them open.
    public struct Constraints: Sendable, Equatable {
        /// Stage count; nil: any from 1 to the number of layers (and of cores).
        public var stages: Int?
        /// Fixed ranges (stage count follows); nil: the planner cuts.
        public var ranges: [Range<Int>]?
        /// Per stage, the fewest replicas allowed (live: replicas already running are never removed).
        public var minimumReplicas: [Int]?
        /// Per stage, fixed replicas; nil (for all, or for one stage): the planner chooses.
        public var replicas: [Int?]?
        /// Per stage, fixed threads; nil (for all, or for one stage): the planner chooses.
        public var threads: [Int?]?
        /// Per stage, its processes' speed factor (measured live; 1 before).
        public var speeds: [Double]?

        public init(stages: Int? = nil, ranges: [Range<Int>]? = nil, minimumReplicas: [Int]? = nil, replicas: [Int?]? = nil,
                    threads: [Int?]? = nil, speeds: [Double]? = nil) {
            self.stages = ranges?.count ?? stages
            self.ranges = ranges
            self.minimumReplicas = minimumReplicas
            self.replicas = replicas
            self.threads = threads
            self.speeds = speeds
        }
    }

    /// Compute of `range` per window at `threads` threads.
    public func compute(_ range: Range<Int>, threads: Int) -> Double {
        range.reduce(0) { $0 + costs.layerCosts[$1] * threadFactor(layer: $1, threads: threads) }
    }

    /// The share of its one-thread time `layer` takes at `threads` threads.
    public func threadFactor(layer: Int, threads: Int) -> Double {
        let fraction = min(max(parallelFractions[layer], 0), 1)
        return (1 - fraction) + fraction / (1 + threadEfficiency * Double(threads - 1))
    }

    /// Per layer, the FLOP share of its products (convolutions, Gemm, MatMul): the kernels that
    /// can use more than one thread. Everything else runs on one.
    public static func parallelFractions(cut: LayerCut, graph: PlanGraph) -> [Double] {
        let threaded: Set<String> = ["Conv", "ConvTranspose", "Gemm", "MatMul"]
        return cut.layers.map { layer in
            let nodes = graph.nodes[layer.nodes]
            let total = nodes.reduce(0) { $0 + $1.flopsPerWindow }
            let parallel = nodes.filter { threaded.contains($0.opType) }.reduce(0) { $0 + $1.flopsPerWindow }
            return total > 0 ? parallel / total : 0
        }
    }

    /// Time per window of a stage running `range` as `shape`; `stage` says whose link carries
    /// its output (nil: a link at the default cost).
    public func stageTime(_ range: Range<Int>, shape: StageShape, speed: Double = 1, stage: Int? = nil) -> Double {
        compute(range, threads: shape.threads) / speed / Double(shape.replicas) + costs.transfer(stage: stage ?? -1, boundary: range.upperBound)
    }

    /// Stage times of a given plan.
    public func stageTimes(_ ranges: [Range<Int>], shapes: [StageShape], speeds: [Double]? = nil) -> [Double] {
        ranges.indices.map { stageTime(ranges[$0], shape: shapes[$0], speed: speeds?[$0] ?? 1, stage: $0) }
    }

    public func plan(cores: Int, constraints: Constraints = Constraints()) throws -> CorePlan {
        let layerCount = costs.layerCosts.count
        guard cores >= 1 else { throw PlanError(description: "the core budget must be at least 1, got \(cores)") }
        guard layerCount >= 1 else { throw PlanError(description: "the model has no layers to place") }
        let stageCounts: [Int]
        if let fixed = constraints.stages {
            guard fixed >= 1, fixed <= layerCount else {
                throw PlanError(description: "cannot split \(layerCount) layers over \(fixed) stages: every stage needs a layer")
            }
            stageCounts = [fixed]
        } else {
            stageCounts = Array(1...min(layerCount, cores))
        }
        var best: CorePlan?
        for count in stageCounts {
            // With more stages than cores every stage still gets one process (oversubscribed).
            guard let candidate = plan(stages: count, cores: max(cores, count), constraints: constraints) else { continue }
            if let current = best, !Self.better(candidate, than: current, minimumGainPerCore: minimumGainPerCore) { continue }
            best = candidate
        }
        guard let best else {
            throw PlanError(description: "no plan fits \(cores) cores with the fixed replicas and threads (each stage needs replicas × threads cores)")
        }
        return best
    }

    /// Fewer cores unless more buy `minimumGainPerCore` per extra core; then fewer stages
    /// (fewer hops); then the lower bottleneck.
    static func better(_ candidate: CorePlan, than current: CorePlan, minimumGainPerCore: Double) -> Bool {
        let gain = current.bottleneck / candidate.bottleneck - 1
        let extraCores = candidate.cores - current.cores
        if extraCores > 0 { return gain > minimumGainPerCore * Double(extraCores) }
        if extraCores < 0 { return gain > -minimumGainPerCore * Double(-extraCores) }
        if candidate.bottleneck < current.bottleneck * (1 - 1e-9) { return true }
        return candidate.bottleneck <= current.bottleneck * (1 + 1e-9) && candidate.ranges.count < current.ranges.count
    }

    /// The best plan with exactly `stages` stages within `cores`, or nil if the fixed shapes do not fit.
    private func plan(stages: Int, cores: Int, constraints: Constraints) -> CorePlan? {
        let layerCount = costs.layerCosts.count
        let speeds = constraints.speeds ?? Array(repeating: 1, count: stages)
        guard speeds.count == stages, constraints.ranges.map({ $0.count == stages }) ?? true else { return nil }

        // The best shape for stage s over `range` within k cores, as (time, shape).
        func bestShape(_ stage: Int, _ range: Range<Int>, within k: Int) -> (time: Double, shape: StageShape)? {
            var found: (time: Double, shape: StageShape)?
            let fixedThreads: Int? = constraints.threads?[stage] ?? nil
            let fixedReplicas: Int? = constraints.replicas?[stage] ?? nil
            let threadChoices = fixedThreads.map { [$0] } ?? Array(1...k)
            for threads in threadChoices where threads <= k {
                let fewest = max(1, constraints.minimumReplicas?[stage] ?? 1)
                let replicaChoices = fixedReplicas.map { [$0] } ?? Array(fewest..<(max(fewest, k / threads) + 1))
                for replicas in replicaChoices where replicas * threads <= k {
                    let shape = StageShape(replicas: replicas, threads: threads)
                    let time = stageTime(range, shape: shape, speed: speeds[stage], stage: stage)
                    if found == nil || time < found!.time * (1 - 1e-12) { found = (time, shape) }
                }
            }
            return found
        }

        struct Cell { var bottleneck: Double; var total: Double; var start: Int; var cores: Int; var shape: StageShape }
        let unreachable = Cell(bottleneck: .infinity, total: .infinity, start: -1, cores: 0, shape: StageShape())
        // cell[s][j][c]: stages 0..<s cover layers 0..<j with at most c cores.
        var cell = Array(repeating: Array(repeating: Array(repeating: unreachable, count: cores + 1), count: layerCount + 1),
                         count: stages + 1)
        for c in 0...cores { cell[0][0][c] = Cell(bottleneck: 0, total: 0, start: 0, cores: 0, shape: StageShape()) }
        for stage in 1...stages {
            let ends = constraints.ranges.map { [$0[stage - 1].upperBound] } ?? Array(stage...(layerCount - (stages - stage)))
            for end in ends {
                let starts = constraints.ranges.map { [$0[stage - 1].lowerBound] } ?? Array((stage - 1)..<end)
                for start in starts {
                    for k in 1...cores {
                        guard let option = bestShape(stage - 1, start..<end, within: k), option.shape.cores == k else { continue }
                        for c in k...cores {
                            let previous = cell[stage - 1][start][c - k]
                            guard previous.bottleneck.isFinite else { continue }
                            let candidate = Cell(bottleneck: max(previous.bottleneck, option.time), total: previous.total + option.time,
                                                 start: start, cores: k, shape: option.shape)
                            let current = cell[stage][end][c]
                            if candidate.bottleneck < current.bottleneck
                                || (candidate.bottleneck == current.bottleneck && candidate.total < current.total) {
                                cell[stage][end][c] = candidate
                            }
                        }
                    }
                }
            }
        }
        // The fewest cores whose bottleneck is worth them, against the best any budget gives.
        var chosen: Int?
        for c in 1...cores where cell[stages][layerCount][c].bottleneck.isFinite {
            guard let current = chosen else { chosen = c; continue }
            let gain = cell[stages][layerCount][current].bottleneck / cell[stages][layerCount][c].bottleneck - 1
            if gain > minimumGainPerCore * Double(c - current) { chosen = c }
        }
        guard let budget = chosen else { return nil }
        var ranges: [Range<Int>] = []
        var shapes: [StageShape] = []
        var end = layerCount
        var c = budget
        for stage in stride(from: stages, through: 1, by: -1) {
            let step = cell[stage][end][c]
            ranges.insert(step.start..<end, at: 0)
            shapes.insert(step.shape, at: 0)
            c -= step.cores
            end = step.start
        }
        return CorePlan(ranges: ranges, shapes: shapes, stageTimes: stageTimes(ranges, shapes: shapes, speeds: speeds))
    }
}
