import Dispatch
import Foundation
import SluiceONNX
import SluiceTensor
import Testing

@Suite struct ExecutorTests {
    static let cnnPath = Paths.pipelineModel("basicmotions-cnn.onnx")

    static func window(_ batch: Int, seed: Int = 1) -> Tensor {
        var rng = SeededGenerator(seed: seed)
        return rng.tensor([batch, 6, 100])
    }

    @Test func missingInputNamesTheNode() throws {
        let model = try ONNXModel.load(path: Self.cnnPath)
        let executor = try Executor(model: model, nodes: 0..<model.nodes.count)
        var values: [String: Tensor] = [:]
        let error = try #require(throws: ModelError.self) { try executor.run(0..<model.nodes.count, values: &values) }
        #expect(error.kind == .invalidInput)
        #expect(error.description.contains("node 'in_bn' (BatchNormalization): input 'window' is missing"))

        // A later stage whose boundary tensor did not arrive.
        let stage = try Executor(model: model, nodes: 5..<model.nodes.count)
        let late = try #require(throws: ModelError.self) { try stage.run(5..<model.nodes.count, values: &values) }
        #expect(late.description.contains("node 'conv2' (Conv): input 'pool1_out' is missing"))
    }

    /// A bad batch is an error naming the node; the same executor then runs good batches.
    @Test func badBatchesAreErrorsNotCrashes() throws {
        let model = try ONNXModel.load(path: Self.cnnPath)
        let executor = try Executor(model: model, nodes: 0..<model.nodes.count)
        let bad: [(Tensor, String)] = [
            (Tensor(zeros: .int64, shape: [2, 6, 100]), "input 'window' is int64[2, 6, 100], expected float32[N, 6, 100]"),
            (Tensor(zeros: .float32, shape: [2, 6, 99]), "input 'window' is float32[2, 6, 99], expected float32[N, 6, 100]"),
            (Tensor(zeros: .float32, shape: [600]), "input 'window' is float32[600], expected float32[N, 6, 100]"),
            (Tensor(zeros: .float32, shape: [2, 5, 100]), "input 'window' is float32[2, 5, 100], expected float32[N, 6, 100]"),
        ]
        for (tensor, message) in bad {
            var values = ["window": tensor]
            let error = try #require(throws: ModelError.self) { try executor.run(0..<model.nodes.count, values: &values) }
            #expect(error.kind == .invalidInput)
            #expect(error.description.contains("node 'in_bn' (BatchNormalization): \(message)"), "\(error)")
        }
        // A stage in the middle checks what it receives too.
        let stage = try Executor(model: model, nodes: 5..<model.nodes.count)
        var values = ["pool1_out": Tensor(zeros: .float32, shape: [2, 16, 49])]
        let error = try #require(throws: ModelError.self) { try stage.run(5..<model.nodes.count, values: &values) }
        #expect(error.description.contains("node 'conv2' (Conv): input 'pool1_out' is float32[2, 16, 49], expected float32[N, 16, 50]"))

        var good = ["window": Self.window(2)]
        try executor.run(0..<model.nodes.count, values: &good)
        #expect(good["scores"]?.shape == [2, 4])
        let zeroRows = try model.run(inputs: ["window": Tensor(zeros: .float32, shape: [0, 6, 100])])
        #expect(zeroRows["scores"]?.shape == [0, 4])
    }

    @Test func rangesOutsideTheExecutorAreRejected() throws {
        let model = try ONNXModel.load(path: Self.cnnPath)
        #expect(throws: ModelError.self) { try Executor(model: model, nodes: 3..<20) }
        let executor = try Executor(model: model, nodes: 2..<5)
        #expect(executor.nodes == 2..<5)
        var values: [String: Tensor] = [:]
        let error = try #require(throws: ModelError.self) { try executor.run(0..<3, values: &values) }
        #expect(error.kind == .invalidRange)
        try executor.run(3..<3, values: &values)  // an empty range is fine
    }

    @Test func wholeGraphRunChecksInputNames() throws {
        let model = try ONNXModel.load(path: Self.cnnPath)
        let unknown = try #require(throws: ModelError.self) {
            try model.run(inputs: ["window": Self.window(1), "extra": Self.window(1)])
        }
        #expect(unknown.description.contains("'extra' is not an input of the model (inputs: window)"))
        let missing = try #require(throws: ModelError.self) { try model.run(inputs: [:]) }
        #expect(missing.description.contains("missing input 'window' (float32[N, 6, 100])"))
    }

    /// A stage's executor must not keep the model (and with it every other stage's weights).
    @Test func executorsDoNotRetainTheModel() throws {
        weak var weakModel: ONNXModel?
        let executor: Executor
        let expected: Tensor
        do {
            let model = try ONNXModel.load(path: Self.cnnPath)
            weakModel = model
            executor = try Executor(model: model, nodes: 0..<model.nodes.count)
            expected = try #require(try model.run(inputs: ["window": Self.window(3)])["scores"])
        }
        #expect(weakModel == nil)
        var values = ["window": Self.window(3)]
        try executor.run(0..<12, values: &values)
        #expect(values["scores"]?.floats == expected.floats)
    }

    @Test func concurrentRunsAgree() throws {
        let model = try ONNXModel.load(path: Self.cnnPath)
        let executor = try Executor(model: model, nodes: 0..<model.nodes.count)
        let inputs = (0..<8).map { Self.window(1 + $0 % 3, seed: $0) }
        let serial = try inputs.map { input -> [Float] in
            var values = ["window": input]
            try executor.run(0..<12, values: &values)
            return values["scores"]!.floats
        }
        let lock = NSLock()
        nonisolated(unsafe) var parallel = [[Float]](repeating: [], count: inputs.count)
        DispatchQueue.concurrentPerform(iterations: inputs.count) { i in
            var values = ["window": inputs[i]]
            try? executor.run(0..<12, values: &values)
            lock.lock()
            parallel[i] = values["scores"]?.floats ?? []
            lock.unlock()
        }
        #expect(parallel == serial)
    }

    /// A run hands back what nodes after it (or the graph's outputs) read; intermediates used
    /// only inside the range stay in the plan's buffers.
    @Test func producesWhatLaterNodesRead() throws {
        let model = try ONNXModel.load(path: Self.cnnPath)
        let executor = try Executor(model: model, nodes: 0..<model.nodes.count)
        #expect(executor.fusedRanges == [1..<4, 5..<8])
        var values = ["window": Self.window(2)]
        try executor.run(0..<12, values: &values)
        #expect(Set(values.keys) == ["window", "scores"])
        var firstHalf = ["window": Self.window(2)]
        try executor.run(0..<5, values: &firstHalf)
        #expect(Set(firstHalf.keys) == ["window", "pool1_out"])
        var stepwise = ["window": Self.window(2)]
        for i in 0..<12 { try executor.run(i..<(i + 1), values: &stepwise) }
        #expect(Set(stepwise.keys) == Set(["window"] + model.nodes.flatMap(\.outputs)))
        #expect(stepwise["scores"]?.floats == values["scores"]?.floats)
        // A stage holding part of a fusion group runs it unfused.
        #expect(try Executor(model: model, nodes: 2..<8).fusedRanges == [5..<8])
    }

    /// After the first run at a batch size, a run allocates only the tensors it hands back.
    @Test func steadyStateAllocatesOnlyTheResults() throws {
        let model = try ONNXModel.load(path: Self.cnnPath)
        let executor = try Executor(model: model, nodes: 0..<model.nodes.count)
        let input = Self.window(4)
        var first = ["window": input]
        try executor.run(0..<12, values: &first)
        let before = TensorStorage.allocationCount
        for _ in 0..<5 {
            var values = ["window": input]
            try executor.run(0..<12, values: &values)
            #expect(values["scores"]?.floats == first["scores"]?.floats)
        }
        #expect(TensorStorage.allocationCount - before == 5, "one allocation per run: the scores handed back")
    }

    /// The shape subgraph torch.onnx.export writes for a flatten with a symbolic batch
    /// (Shape → Gather → Unsqueeze → Concat → Reshape) runs at any batch size, and is folded
    /// into the plan: a steady-state run allocates nothing but its result.
    @Test(arguments: [1, 3, 7])
    func symbolicBatchShapeSubgraphRunsAtAnyBatchSize(batch: Int) throws {
        var b = ModelBuilder()
        b.opset = 13
        b.input("x", [nil, 6, 10])
        var rng = SeededGenerator(seed: 9)
        let w = rng.tensor([60, 3]), bias = rng.tensor([3])
        b.initializer("index0", Tensor(shape: [], int64s: [0]))
        b.initializer("axes0", Tensor(shape: [1], int64s: [0]))
        b.initializer("minus1", Tensor(shape: [1], int64s: [-1]))
        b.initializer("w", w)
        b.initializer("b", bias)
        b.node("Shape", ["x"], ["shape"])
        b.node("Gather", ["shape", "index0"], ["n"], ["axis": 0])
        b.node("Unsqueeze", ["n", "axes0"], ["n1"])
        b.node("Concat", ["n1", "minus1"], ["target"], ["axis": 0])
        b.node("Reshape", ["x", "target"], ["flat"])
        b.node("MatMul", ["flat", "w"], ["product"])
        b.node("Add", ["product", "b"], ["y"])
        b.output("y", [nil, 3])
        let model = try b.load()
        #expect(model.outputs[0].shape == [nil, 3])
        let executor = try Executor(model: model, nodes: 0..<model.nodes.count)
        let x = rng.tensor([batch, 6, 10])
        var values = ["x": x]
        try executor.run(0..<model.nodes.count, values: &values)
        let y = try #require(values["y"])
        #expect(y.shape == [batch, 3])
        let xv = x.floats, wv = w.floats, bv = bias.floats
        var expected = [Float](repeating: 0, count: batch * 3)
        for r in 0..<batch {
            for j in 0..<3 {
                var sum = Double(bv[j])
                for k in 0..<60 { sum += Double(xv[r * 60 + k]) * Double(wv[k * 3 + j]) }
                expected[r * 3 + j] = Float(sum)
            }
        }
        #expect(maxRelativeError(y, Tensor(shape: [batch, 3], floats: expected)) < 1e-5)
        let before = TensorStorage.allocationCount
        var again = ["x": x]
        try executor.run(0..<model.nodes.count, values: &again)
        #expect(again["y"]?.floats == y.floats)
        #expect(TensorStorage.allocationCount - before == 1)
    }

    /// The fusions for transformer blocks (residual Add + LayerNormalization, MatMul + Add +
    /// Gelu written out, Transpose + MatMul + scale) give what the nodes give one by one.
    @Test func transformerFusionsMatchTheNodesRunOneByOne() throws {
        var b = ModelBuilder()
        var rng = SeededGenerator(seed: 21)
        b.input("x", [nil, 4, 8])
        b.input("r", [nil, 4, 8])
        b.initializer("w", rng.tensor([8, 8]))
        b.initializer("bias", rng.tensor([8]))
        b.initializer("scale", rng.tensor([8]))
        b.initializer("shift", rng.tensor([8]))
        b.initializer("sqrt2", Tensor(shape: [], floats: [1.4142135]))
        b.initializer("one", Tensor(shape: [], floats: [1]))
        b.initializer("half", Tensor(shape: [], floats: [0.5]))
        b.initializer("c", Tensor(shape: [], floats: [0.25]))
        b.node("Add", ["x", "r"], ["sum"])
        b.node("LayerNormalization", ["sum", "scale", "shift"], ["normed"], ["axis": -1, "epsilon": Float(1e-5)])
        b.node("MatMul", ["normed", "w"], ["h"])
        b.node("Add", ["h", "bias"], ["hb"])
        b.node("Div", ["hb", "sqrt2"], ["d"])
        b.node("Erf", ["d"], ["e"])
        b.node("Add", ["e", "one"], ["e1"])
        b.node("Mul", ["hb", "e1"], ["m"])
        b.node("Mul", ["m", "half"], ["g"])
        b.node("Transpose", ["g"], ["gt"], ["perm": [0, 2, 1]])
        b.node("MatMul", ["normed", "gt"], ["scores"])
        b.node("Mul", ["scores", "c"], ["y"])
        b.output("y", [nil, 4, 4])
        let model = try b.load()
        #expect(model.fusionGroups == [0..<2, 2..<9, 9..<12])
        let executor = try Executor(model: model, nodes: 0..<model.nodes.count)
        let inputs = ["x": rng.tensor([3, 4, 8]), "r": rng.tensor([3, 4, 8])]
        var whole = inputs
        try executor.run(0..<model.nodes.count, values: &whole)
        var stepwise = inputs
        for i in 0..<model.nodes.count { try executor.run(i..<(i + 1), values: &stepwise) }
        let fused = try #require(whole["y"]), separate = try #require(stepwise["y"])
        #expect(fused.shape == [3, 4, 4])
        #expect(maxRelativeError(fused, separate) < 1e-5)
    }

    /// A node that hands back its input unchanged (Cast to the same type, Identity) shares the
    /// input's bytes; the plan must keep those bytes until the node's output is last read, and
    /// hand the caller bytes no later run overwrites. skl2onnx starts every MLP with such a Cast.
    @Test(arguments: ["Cast", "Identity"])
    func nodesThatReturnTheirInputKeepItAlive(op: String) throws {
        var b = ModelBuilder()
        var rng = SeededGenerator(seed: 5)
        b.input("x", [nil, 16])
        b.initializer("w1", rng.tensor([16, 32]))
        b.initializer("b1", rng.tensor([32]))
        b.initializer("w2", rng.tensor([32, 4]))
        b.node("Relu", ["x"], ["r"])
        b.node(op, ["r"], ["c"], op == "Cast" ? ["to": 1] : [:])
        b.node("MatMul", ["c", "w1"], ["m"])
        b.node("Add", ["m", "b1"], ["a"])
        b.node("Relu", ["a"], ["h"])
        b.node("MatMul", ["h", "w2"], ["y"])
        b.output("y", [nil, 4])
        b.output("c", [nil, 16])
        let model = try b.load()
        let executor = try Executor(model: model, nodes: 0..<model.nodes.count)
        for batch in [1, 8, 13] {
            let x = rng.tensor([batch, 16], in: -2...2)
            var whole = ["x": x]
            try executor.run(0..<model.nodes.count, values: &whole)
            var stepwise = ["x": x]
            for i in 0..<model.nodes.count { try executor.run(i..<(i + 1), values: &stepwise) }
            let y = try #require(whole["y"]), c = try #require(whole["c"])
            #expect(maxRelativeError(y, try #require(stepwise["y"])) < 1e-5)
            #expect(c.floats == x.floats.map { max($0, 0) })
            // A second run must leave what the first handed back as it was.
            let kept = (y.floats, c.floats)
            var again = ["x": rng.tensor([batch, 16], in: -2...2)]
            try executor.run(0..<model.nodes.count, values: &again)
            #expect(y.floats == kept.0 && c.floats == kept.1)
        }
    }

    /// Add + LayerNormalization is fused even when the operands broadcast at run time, as the
    /// position embeddings [1, T, C] beside the activations [N, T, C] of every BERT export do.
    @Test(arguments: [[1, 4, 8], [8], [1, 1, 8], [4, 1]] as [[Int]])
    func residualNormBroadcasts(residual: [Int]) throws {
        var b = ModelBuilder()
        var rng = SeededGenerator(seed: 9)
        b.input("x", [nil, 4, 8])
        b.initializer("p", rng.tensor(residual))
        b.initializer("scale", rng.tensor([8]))
        b.initializer("shift", rng.tensor([8]))
        b.node("Add", ["x", "p"], ["sum"])
        b.node("LayerNormalization", ["sum", "scale", "shift"], ["y"], ["axis": -1, "epsilon": Float(1e-5)])
        b.output("y", [nil, 4, 8])
        let model = try b.load()
        #expect(model.fusionGroups == [0..<2])
        let executor = try Executor(model: model, nodes: 0..<model.nodes.count)
        for batch in [1, 3] {
            let x = rng.tensor([batch, 4, 8])
            var whole = ["x": x]
            try executor.run(0..<model.nodes.count, values: &whole)
            var stepwise = ["x": x]
            for i in 0..<model.nodes.count { try executor.run(i..<(i + 1), values: &stepwise) }
            let fused = try #require(whole["y"])
            #expect(fused.shape == [batch, 4, 8])
            #expect(maxRelativeError(fused, try #require(stepwise["y"])) < 1e-5)
        }
    }
}
