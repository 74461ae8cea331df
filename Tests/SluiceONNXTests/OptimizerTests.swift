import Foundation
@testable import SluiceONNX
import SluiceTensor
import Testing

/// The executor's optimisation pass, one step at a time: fusions found, weights packed,
/// buffers planned.
@Suite struct OptimizerTests {
    /// x[N, 4] · w[4, 3] + b → Relu → Gemm by v[3, 2] → Sigmoid → y; `alsoOutput` is handed
    /// back too.
    static func linearModel(alsoOutput: String? = nil) throws -> ONNXModel {
        var rng = SeededGenerator(seed: 8)
        var b = ModelBuilder()
        b.input("x", [nil, 4])
        b.initializer("w", rng.tensor([4, 3]))
        b.initializer("b", rng.tensor([3]))
        b.initializer("v", rng.tensor([3, 2]))
        b.node("MatMul", ["x", "w"], ["m"])
        b.node("Add", ["m", "b"], ["a"])
        b.node("Relu", ["a"], ["r"])
        b.node("Gemm", ["r", "v"], ["g"])
        b.node("Sigmoid", ["g"], ["y"])
        b.output("y")
        if let alsoOutput { b.output(alsoOutput) }
        return try b.load()
    }

    static func fusions(_ model: ONNXModel) -> [Fusion] {
        Fusion.find(graph: model.graph, operators: model.operators, initializers: model.initializers, types: model.types,
                    graphOutputs: Set(model.outputs.map(\.name)))
    }

    @Test func fusionFindingJoinsEachProductWithWhatFollowsIt() throws {
        let fusions = Self.fusions(try Self.linearModel())
        #expect(fusions.map(\.nodes) == [0..<3, 3..<5])
        #expect(fusions.map(\.add) == [1, nil])
        #expect(fusions.map(\.activation) == [2, 4])

        // The sum is handed back, so the Relu cannot overwrite it in place of its input.
        let kept = Self.fusions(try Self.linearModel(alsoOutput: "a"))
        #expect(kept.map(\.nodes) == [0..<2, 3..<5])
        #expect(kept.map(\.activation) == [nil, 4])
    }

    @Test func weightPackingStoresEachWeightAsItsKernelReadsIt() throws {
        var rng = SeededGenerator(seed: 9)
        let deep = rng.tensor([2, Kernels.packedMinimumDepth])
        let shallow = rng.tensor([5, 2])
        var b = ModelBuilder()
        b.input("x", [nil, Kernels.packedMinimumDepth])
        b.initializer("deep", deep)
        b.initializer("shallow", shallow)
        b.node("Gemm", ["x", "deep"], ["h"], ["transB": 1])
        b.node("Gemm", ["h", "shallow"], ["y"], ["transB": 1])
        b.output("y")
        let model = try b.load()

        var weights = try OptimizedGraph.decodeWeights(readBy: model.graph, in: model)
        let planned = WeightPacking.pack(model.graph.map { PlannedNode(op: model.operators[$0.index], inputs: $0.inputs) },
                                         weights: &weights)
        // Deep enough: Bᵀ packed in column panels.
        let packed = try #require(planned[0].op as? GemmOperator)
        #expect(packed.packed == PackedShape(k: Kernels.packedMinimumDepth, n: 2) && !packed.transB)
        #expect(planned[0].inputs[1] == WeightPacking.internalKey("packedT", "deep"))
        #expect(weights[planned[0].inputs[1]]?.floats == Kernels.packColumns(Kernels.transpose(deep, perm: [1, 0])).floats)
        // Too shallow to pack: stored transposed once.
        let transposed = try #require(planned[1].op as? GemmOperator)
        #expect(transposed.packed == nil && !transposed.transB)
        #expect(weights[planned[1].inputs[1]]?.floats == Kernels.transpose(shallow, perm: [1, 0]).floats)

        // The pass keeps only the copies the steps read.
        let optimized = try OptimizedGraph(model: model, nodes: 0..<2)
        #expect(Set(optimized.weights.keys) == [planned[0].inputs[1], planned[1].inputs[1]])
    }

    @Test func bufferPlanningNeverGivesTwoLiveValuesTheSameBytes() throws {
        var b = ModelBuilder()
        b.input("x", [nil, 64])
        let chain = ["Relu", "Sigmoid", "Tanh", "Relu", "Sigmoid", "Tanh"]
        for (k, op) in chain.enumerated() {
            b.node(op, [k == 0 ? "x" : "v\(k)"], [k == chain.count - 1 ? "y" : "v\(k + 1)"])
        }
        b.output("y")
        let model = try b.load()
        let optimized = try OptimizedGraph(model: model, nodes: 0..<chain.count)

        let values = try #require(try PlannedValues(optimized.singles, values: ["x": Tensor(zeros: .float32, shape: [3, 64])],
                                                    weights: optimized.weights, file: model.path))
        let y = try #require(values.ids["y"])
        let lifetimes = Lifetimes(values.steps, valueCount: values.types.count, escaping: [y])
        let layout = BufferLayout(values.steps, types: values.types, lifetimes: lifetimes)
        // The result is handed back, so it gets bytes of its own each run.
        #expect({ if case .fresh? = layout.sources[y] { return true } else { return false } }())

        var placed: [(bytes: Range<Int>, live: ClosedRange<Int>)] = []
        for (k, step) in values.steps.enumerated() {
            for i in step.outputs {
                guard case .arena(let offset)? = layout.sources[i], let type = values.types[i] else { continue }
                placed.append((offset..<(offset + BufferLayout.bytes(type)), k...lifetimes.lastUse[i]))
            }
        }
        #expect(placed.count == chain.count - 1)
        for (n, a) in placed.enumerated() {
            for other in placed[(n + 1)...] where a.live.overlaps(other.live) {
                #expect(!a.bytes.overlaps(other.bytes), "\(a) and \(other) are live at once in the same bytes")
            }
        }
        // Bytes are reused once their reader has run: two buffers serve the whole chain.
        #expect(layout.arenaBytes == 2 * ArenaLayout.aligned(3 * 64 * 4))
    }
}
