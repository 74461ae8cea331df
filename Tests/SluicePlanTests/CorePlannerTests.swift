import Testing
import SluiceTestSupport
@testable import SluicePlan

/// Every plan there is for a small model: stage counts, contiguous splits, and replicas ×
/// threads per stage within the budget. The slowest stage of the best one.
private func bruteForceBottleneck(_ planner: CorePlanner, cores: Int) -> Double {
    let layers = planner.costs.layerCosts.count
    var best = Double.infinity
    func place(from start: Int, coresLeft: Int, worst: Double) {
        if start == layers {
            best = min(best, worst)
            return
        }
        for end in (start + 1)...layers {
            for threads in 1...max(1, coresLeft) {
                for replicas in 1...max(1, coresLeft / threads) where replicas * threads <= coresLeft {
                    let time = planner.stageTime(start..<end, shape: StageShape(replicas: replicas, threads: threads))
                    place(from: end, coresLeft: coresLeft - replicas * threads, worst: max(worst, time))
                }
            }
        }
    }
    place(from: 0, coresLeft: cores, worst: 0)
    return best
}

private func randomPlanner(_ rng: inout SplitMix, layers: Int) -> CorePlanner {
    let costs = (0..<layers).map { _ in Double(rng.next() % 100 + 1) }
    let transfers = (0...layers).map { _ in Double(rng.next() % 20) }
    let fractions = (0..<layers).map { _ in Double(rng.next() % 11) / 10 }
    var planner = CorePlanner(costs: PartitionCosts(layerCosts: costs, transferCosts: transfers), parallelFractions: fractions)
    planner.minimumGainPerCore = 0  // compare the bottleneck alone
    return planner
}

@Test func corePlanMatchesBruteForceOnRandomModels() throws {
    var rng = SplitMix(seed: 42)
    for _ in 0..<60 {
        let layers = Int(rng.next() % 5) + 1
        let cores = Int(rng.next() % 6) + 1
        let planner = randomPlanner(&rng, layers: layers)
        let plan = try planner.plan(cores: cores)
        let expected = bruteForceBottleneck(planner, cores: cores)
        #expect(abs(plan.bottleneck - expected) <= 1e-9 * expected, "layers \(planner.costs.layerCosts), cores \(cores): \(plan) vs \(expected)")
        #expect(plan.cores <= cores)
        #expect(plan.ranges.first?.lowerBound == 0 && plan.ranges.last?.upperBound == layers)
        #expect(zip(plan.ranges, plan.ranges.dropFirst()).allSatisfy { $0.upperBound == $1.lowerBound })
    }
}

@Test func aLayerHeavierThanTheRestTogetherIsReplicated() throws {
    // Layer 1 alone costs more than the others together: no split helps, replicas do.
    let planner = CorePlanner(costs: PartitionCosts(layerCosts: [10, 80, 10]))
    let plan = try planner.plan(cores: 4, constraints: .init(stages: 3))
    #expect(plan.ranges == [0..<1, 1..<2, 2..<3])
    #expect(plan.replicas == [1, 2, 1])
    #expect(plan.bottleneck == 40)
}

@Test func coresAreSpentOnlyWhereTheyBuyThroughput() throws {
    // The boundary after layer 0 costs more than any compute: replicas cannot shrink a transfer,
    // so a budget of 8 is not all used.
    let planner = CorePlanner(costs: PartitionCosts(layerCosts: [4, 4], transferCosts: [0, 0, 500]))
    let plan = try planner.plan(cores: 8)
    #expect(plan.cores == 1)
    #expect(plan.bottleneck == 508)
}

@Test func replicasBeatThreadsForThroughputAndThreadsFillFixedReplicas() throws {
    let planner = CorePlanner(costs: PartitionCosts(layerCosts: [100]), parallelFractions: [1])
    let free = try planner.plan(cores: 4)
    #expect(free.shapes == [StageShape(replicas: 4, threads: 1)])
    let fixed = try planner.plan(cores: 4, constraints: .init(replicas: [1]))
    #expect(fixed.shapes == [StageShape(replicas: 1, threads: 4)])
    #expect(fixed.bottleneck == 100 / (1 + 3 * planner.threadEfficiency))
}

@Test func liveConstraintsKeepStagesRangesAndReplicasAlreadyRunning() throws {
    let planner = CorePlanner(costs: PartitionCosts(layerCosts: [30, 30, 30, 30]))
    let plan = try planner.plan(cores: 6, constraints: .init(stages: 2, minimumReplicas: [1, 3], threads: [1, 1], speeds: [1, 0.5]))
    #expect(plan.ranges.count == 2)
    #expect(plan.replicas[1] >= 3)
    #expect(plan.threads == [1, 1])
    let fixedRanges = try planner.plan(cores: 3, constraints: .init(ranges: [0..<3, 3..<4]))
    #expect(fixedRanges.ranges == [0..<3, 3..<4] && fixedRanges.replicas == [2, 1])
}

@Test func aBudgetTooSmallForFixedShapesIsAnError() {
    let planner = CorePlanner(costs: PartitionCosts(layerCosts: [1, 1]))
    #expect(throws: PlanError.self) { try planner.plan(cores: 2, constraints: .init(stages: 2, replicas: [2, 2])) }
}
