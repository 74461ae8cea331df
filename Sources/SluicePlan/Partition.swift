import SluiceConfig
/// Costs of a pipeline to be split: per-layer compute, per-boundary transfer, per-stage speed.
/// Units are arbitrary but shared (FLOPs before anything is measured, seconds once it is).
public struct PartitionCosts: Sendable, Equatable {
    public var layerCosts: [Double]
    /// transferCosts[b] is the cost of sending the boundary after layer b-1 (b = 1...layers);
    /// the stage that ends at b pays it. Index 0 (the source's send) is not charged to a stage.
    public var transferCosts: [Double]
    /// Per stage, what its output link multiplies transfer costs by (a slow link, or one that
    /// carries narrowed activations); nil or missing entries: 1.
    public var linkFactors: [Double]?

    public init(layerCosts: [Double], transferCosts: [Double]? = nil, linkFactors: [Double]? = nil) {
        self.layerCosts = layerCosts
        self.transferCosts = transferCosts ?? Array(repeating: 0, count: layerCosts.count + 1)
        self.linkFactors = linkFactors
        precondition(self.transferCosts.count == layerCosts.count + 1, "one transfer cost per boundary")
    }

    /// What stage `stage` pays to send the boundary after layer `boundary - 1` on its link.
    public func transfer(stage: Int, boundary: Int) -> Double {
        let factor = linkFactors.flatMap { $0.indices.contains(stage) ? $0[stage] : nil } ?? 1
        return transferCosts[boundary] * factor
    }
}

/// Why a pipeline cannot be planned as asked.
public struct PlanError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(description: String) { self.description = description }
    public init(_ description: String) { self.description = description }
}

/// Contiguous layer ranges, one per stage, with each stage's predicted time per window.
public struct Partition: Sendable, Equatable, CustomStringConvertible {
    public var ranges: [Range<Int>]
    public var stageTimes: [Double]

    public init(ranges: [Range<Int>], stageTimes: [Double]) {
        self.ranges = ranges
        self.stageTimes = stageTimes
    }

    public var bottleneck: Double { stageTimes.max() ?? 0 }
    public var bottleneckStage: Int { stageTimes.firstIndex(of: bottleneck) ?? 0 }

    /// "0-3,4-9,10-11", the form `stages.split` takes in a pipeline file.
    public var description: String {
        LayerSpan.describe(ranges)
    }

    /// The time of each stage under `costs` when stage s runs at `speeds[s]`.
    public static func stageTimes(of ranges: [Range<Int>], costs: PartitionCosts, speeds: [Double]) -> [Double] {
        ranges.enumerated().map { stage, range in
            range.reduce(0) { $0 + costs.layerCosts[$1] } / speeds[stage] + costs.transfer(stage: stage, boundary: range.upperBound)
        }
    }

    /// The split of `costs.layerCosts` into `stages` contiguous, non-empty ranges that minimizes the
    /// slowest stage's time. Exact: a dynamic program over (stage, first layer not yet placed),
    /// O(stages × layers²). `speeds[s]` divides stage s's compute (2 = twice as fast); transfer
    /// is not divided, since the link, not the core, carries it. Ties go to the split whose
    /// total time is smaller, then to the earlier cut, so the answer is deterministic.
    public static func optimal(costs: PartitionCosts, stages: Int, speeds: [Double]? = nil) throws -> Partition {
        let layerCount = costs.layerCosts.count
        let speeds = speeds ?? Array(repeating: 1, count: stages)
        guard stages >= 1 else { throw PlanError(description: "a pipeline needs at least one stage") }
        guard speeds.count == stages, speeds.allSatisfy({ $0 > 0 }) else {
            throw PlanError(description: "need one positive speed factor per stage (\(stages)), got \(speeds)")
        }
        guard layerCount >= stages else {
            throw PlanError(description: "cannot split \(layerCount) layers over \(stages) stages: every stage needs a layer")
        }
        var prefix = [0.0]
        for cost in costs.layerCosts { prefix.append(prefix.last! + cost) }
        func time(_ stage: Int, _ start: Int, _ end: Int) -> Double {
            (prefix[end] - prefix[start]) / speeds[stage] + costs.transfer(stage: stage, boundary: end)
        }
        struct Best { var bottleneck: Double; var total: Double; var cut: Int }
        // best[s][j]: stages 0..<s cover layers 0..<j.
        var best = Array(repeating: Array(repeating: Best(bottleneck: .infinity, total: .infinity, cut: -1), count: layerCount + 1),
                         count: stages + 1)
        best[0][0] = Best(bottleneck: 0, total: 0, cut: 0)
        for stage in 1...stages {
            // Leave at least one layer for each later stage.
            for end in stage...(layerCount - (stages - stage)) {
                for start in (stage - 1)..<end where best[stage - 1][start].bottleneck.isFinite {
                    let previous = best[stage - 1][start]
                    let stageTime = time(stage - 1, start, end)
                    let candidate = Best(bottleneck: max(previous.bottleneck, stageTime), total: previous.total + stageTime, cut: start)
                    let current = best[stage][end]
                    if candidate.bottleneck < current.bottleneck
                        || (candidate.bottleneck == current.bottleneck && candidate.total < current.total) {
                        best[stage][end] = candidate
                    }
                }
            }
        }
        var ranges: [Range<Int>] = []
        var end = layerCount
        for stage in stride(from: stages, through: 1, by: -1) {
            let start = best[stage][end].cut
            ranges.insert(start..<end, at: 0)
            end = start
        }
        return Partition(ranges: ranges, stageTimes: stageTimes(of: ranges, costs: costs, speeds: speeds))
    }
}
