import Testing
import SluiceTestSupport
@testable import SluicePlan

private func node(_ name: String, _ op: String, _ inputs: [String], _ outputs: [String], flops: Double = 1) -> PlanNode {
    PlanNode(name: name, opType: op, inputs: inputs, outputs: outputs, flopsPerWindow: flops, parameterBytes: 4)
}

/// x → conv → relu → (residual add with the conv output) → gemm → y
private let residualGraph = PlanGraph(
    nodes: [
        node("conv", "Conv", ["x", "w"], ["c"], flops: 10),
        node("relu", "Relu", ["c"], ["r"]),
        node("add", "Add", ["r", "c"], ["s"]),
        node("gemm", "Gemm", ["s", "w2"], ["y"], flops: 5),
    ],
    inputs: ["x"], outputs: ["y"], constants: ["w", "w2"],
    bytesPerWindow: ["x": 100, "c": 40, "r": 40, "s": 40, "y": 8])

@Test func liveTensorsFollowProducersAndLastUses() {
    #expect(residualGraph.liveTensors() == [["x"], ["c"], ["c", "r"], ["s"], ["y"]])
}

@Test func cutsOnlyWhereFewTensorsAreLive() {
    let cut = LayerCut.cut(residualGraph)
    #expect(cut.layers.map(\.nodes) == [0..<1, 1..<3, 3..<4])
    #expect(cut.layers.map(\.outputs) == [["c"], ["s"], ["y"]])
    #expect(cut.layers.map(\.flopsPerWindow) == [10, 2, 5])
    #expect(cut.layers.map(\.outputBytesPerWindow) == [40, 40, 8])
    #expect(cut.inputs == ["x"] && cut.inputBytesPerWindow == 100)
    #expect(cut.boundary(before: 1) == ["c"] && cut.boundary(before: 3) == ["y"])
}

@Test func neverCutsInsideAnUnsplittableRange() {
    var graph = residualGraph
    graph.unsplittable = [0..<2]
    #expect(LayerCut.cut(graph).layers.map(\.nodes) == [0..<3, 3..<4])
}

@Test func raisesTheLiveLimitToReachTheMinimumLayerCount() {
    let cut = LayerCut.cut(residualGraph, minimumLayers: 4)
    #expect(cut.layers.count == 4)
    #expect(cut.layers[1].outputs == ["c", "r"])
}

@Test func optimalPartitionMatchesBruteForce() throws {
    var generator = SplitMix(seed: 7)
    for _ in 0..<300 {
        let layers = Int(generator.next() % 9) + 1
        let stages = Int(generator.next() % UInt64(layers)) + 1
        let costs = PartitionCosts(layerCosts: (0..<layers).map { _ in Double(generator.next() % 100) + 1 },
                                   transferCosts: (0...layers).map { _ in Double(generator.next() % 20) })
        let speeds = (0..<stages).map { _ in [0.5, 1, 2][Int(generator.next() % 3)] }
        let partition = try Partition.optimal(costs: costs, stages: stages, speeds: speeds)
        #expect(partition.ranges.count == stages)
        #expect(partition.ranges.first?.lowerBound == 0 && partition.ranges.last?.upperBound == layers)
        #expect(zip(partition.ranges, partition.ranges.dropFirst()).allSatisfy { $0.upperBound == $1.lowerBound && !$0.isEmpty })
        let bruteForce = allSplits(layers: layers, stages: stages)
            .map { Partition.stageTimes(of: $0, costs: costs, speeds: speeds).max()! }.min()!
        #expect(abs(partition.bottleneck - bruteForce) < 1e-9, "costs \(costs) speeds \(speeds)")
    }
}

@Test func fasterStagesGetMoreWork() throws {
    let costs = PartitionCosts(layerCosts: Array(repeating: 1, count: 9))
    let partition = try Partition.optimal(costs: costs, stages: 2, speeds: [2, 1])
    #expect(partition.ranges == [0..<6, 6..<9])
    #expect(partition.description == "0-5,6-8")
}

@Test func rejectsMoreStagesThanLayers() {
    #expect(throws: PlanError.self) { try Partition.optimal(costs: PartitionCosts(layerCosts: [1, 2]), stages: 3) }
}

private func allSplits(layers: Int, stages: Int) -> [[Range<Int>]] {
    if stages == 1 { return [[0..<layers]] }
    var result: [[Range<Int>]] = []
    for end in (stages - 1)..<layers {
        for prefix in allSplits(layers: end, stages: stages - 1) { result.append(prefix + [end..<layers]) }
    }
    return result
}
