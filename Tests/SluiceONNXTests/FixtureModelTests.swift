import Foundation
import SluiceONNX
import SluiceTensor
import Testing

/// The reference models and their onnxruntime outputs (Tests/Fixtures/README.md).
struct Fixture: CustomStringConvertible, Sendable {
    let model: String
    let input: String
    let expected: String
    let inputName: String
    let outputName: String

    var description: String { URL(fileURLWithPath: model).lastPathComponent }

    static let all = [
        Fixture(model: Paths.pipelineModel("basicmotions-cnn.onnx"), input: Paths.fixture("quickstart_input.npy"),
                expected: Paths.fixture("quickstart_expected.npy"), inputName: "window", outputName: "scores"),
        Fixture(model: Paths.pipelineModel("basicmotions-mlp.onnx"), input: Paths.fixture("mlp_input.npy"),
                expected: Paths.fixture("mlp_expected.npy"), inputName: "window", outputName: "scores"),
        Fixture(model: Paths.fixture("models/conv2d-small.onnx"), input: Paths.fixture("conv2d_input.npy"),
                expected: Paths.fixture("conv2d_expected.npy"), inputName: "image", outputName: "probs"),
        Fixture(model: Paths.fixture("models/tiny-mlp.onnx"), input: Paths.fixture("tiny_mlp_input.npy"),
                expected: Paths.fixture("tiny_mlp_expected.npy"), inputName: "x", outputName: "y"),
    ]
}

@Suite struct FixtureModelTests {
    /// Whole-graph outputs match onnxruntime within 1e-4 relative (max(1, |b|) in the denominator).
    @Test(arguments: Fixture.all)
    func matchesOnnxruntime(fixture: Fixture) throws {
        let model = try ONNXModel.load(path: fixture.model)
        let input = try NPY.read(path: fixture.input)
        let expected = try NPY.read(path: fixture.expected)
        let outputs = try model.run(inputs: [fixture.inputName: input])
        let scores = try #require(outputs[fixture.outputName])
        let error = maxRelativeError(scores, expected)
        print("max relative error vs onnxruntime, \(fixture): \(error)")
        #expect(scores.shape == expected.shape)
        #expect(error <= 1e-4, "\(fixture): max relative error \(error)")
    }

    /// Pipeline stages: split the node list at several points, one executor per piece, passing
    /// the values along, gives exactly the whole-graph result, bit for bit (fused kernels round
    /// as the separate nodes do).
    @Test(arguments: Fixture.all)
    func piecesMatchTheWholeGraph(fixture: Fixture) throws {
        let model = try ONNXModel.load(path: fixture.model)
        let input = try NPY.read(path: fixture.input)
        let whole = try #require(try model.run(inputs: [fixture.inputName: input])[fixture.outputName])
        let count = model.nodes.count
        var cutSets: [[Int]] = [[1], [count / 2], [1, 2, 3], [count - 1]]
        cutSets.append(Array(1..<count))  // every node on its own
        // Cuts inside every fusion group (a stage boundary between Conv and its BatchNormalization).
        cutSets.append(model.fusionGroups.map { $0.lowerBound + 1 })
        for cuts in cutSets {
            let bounds = [0] + cuts.filter { $0 > 0 && $0 < count } + [count]
            var values: [String: Tensor] = [fixture.inputName: input]
            for (lo, hi) in zip(bounds, bounds.dropFirst()) where lo < hi {
                let stage = try Executor(model: model, nodes: lo..<hi)
                try stage.run(lo..<hi, values: &values)
            }
            let piecewise = try #require(values[fixture.outputName])
            #expect(piecewise.floats == whole.floats, "\(fixture): cuts \(cuts) differ from the whole graph")
        }
    }

    /// One executor holding a range can also run any sub-range (a batch whose cursor is
    /// mid-range after a boundary moved).
    @Test(arguments: Fixture.all)
    func subRangesOfOneExecutor(fixture: Fixture) throws {
        let model = try ONNXModel.load(path: fixture.model)
        let input = try NPY.read(path: fixture.input)
        let whole = try #require(try model.run(inputs: [fixture.inputName: input])[fixture.outputName])
        let executor = try Executor(model: model, nodes: 0..<model.nodes.count)
        for cut in 1..<model.nodes.count {
            var values: [String: Tensor] = [fixture.inputName: input]
            try executor.run(0..<cut, values: &values)
            try executor.run(cut..<model.nodes.count, values: &values)
            #expect(values[fixture.outputName]?.floats == whole.floats, "\(fixture): cut at \(cut)")
        }
    }

    /// Micro-batches of 1, 3 and 16 rows give, row for row, what the full batch gives.
    @Test(arguments: Fixture.all)
    func batchSizesAgreeRowByRow(fixture: Fixture) throws {
        let model = try ONNXModel.load(path: fixture.model)
        let input = try NPY.read(path: fixture.input)
        let expected = try NPY.read(path: fixture.expected)
        let full = try #require(try model.run(inputs: [fixture.inputName: input])[fixture.outputName])
        let rows = input.shape[0]
        // Tile the input up to 16 rows so every batch size has data.
        var tiled: [Tensor] = []
        while tiled.reduce(0, { $0 + $1.shape[0] }) < 16 { tiled.append(input) }
        let big = Tensor.concatenatingRows(tiled).rows(0..<16)
        let bigOut = try #require(try model.run(inputs: [fixture.inputName: big])[fixture.outputName])
        for batch in [1, 3, 16] {
            var start = 0
            while start < 16 {
                let end = min(start + batch, 16)
                let out = try #require(try model.run(inputs: [fixture.inputName: big.rows(start..<end)])[fixture.outputName])
                #expect(out.shape[0] == end - start)
                for r in start..<end {
                    let row = out.rows((r - start)..<(r - start + 1))
                    let reference = full.rows((r % rows)..<(r % rows + 1))
                    #expect(maxRelativeError(row, reference) <= 1e-5, "\(fixture): batch \(batch), row \(r)")
                    #expect(maxRelativeError(row, expected.rows((r % rows)..<(r % rows + 1))) <= 1e-4)
                }
                start = end
            }
        }
        #expect(maxRelativeError(bigOut.rows(0..<rows), full) <= 1e-5)
    }

    @Test func pipelineModelsDescribeThemselves() throws {
        let cnn = try ONNXModel.load(path: Paths.pipelineModel("basicmotions-cnn.onnx"))
        #expect(cnn.opset == 17)
        #expect(cnn.inputs == [TensorInfo(name: "window", dtype: .float32, shape: [nil, 6, 100])])
        #expect(cnn.outputs == [TensorInfo(name: "scores", dtype: .float32, shape: [nil, 4])])
        #expect(cnn.nodes.map(\.opType) == ["BatchNormalization", "Conv", "BatchNormalization", "Relu", "MaxPool", "Conv",
                                            "BatchNormalization", "Relu", "GlobalAveragePool", "Flatten", "Gemm", "Softmax"])
        #expect(cnn.nodes.map(\.index) == Array(0..<12))
        #expect(cnn.metadata["classes"] == "Badminton,Running,Standing,Walking")
        #expect(cnn.isInitializer("conv1.weight") && !cnn.isInitializer("window") && !cnn.isInitializer("conv1_out"))
        // Per-sample sizes: conv1 makes 16×100 floats, pooling halves the time axis.
        #expect(cnn.bytesPerWindow(of: "window") == 6 * 100 * 4)
        #expect(cnn.bytesPerWindow(of: "conv1_out") == 16 * 100 * 4)
        #expect(cnn.bytesPerWindow(of: "pool1_out") == 16 * 50 * 4)
        #expect(cnn.bytesPerWindow(of: "conv2.weight") == 32 * 16 * 5 * 4)
        let conv1 = cnn.nodes[1]
        #expect(conv1.name == "conv1" && conv1.inputs == ["x_norm", "conv1.weight"] && conv1.outputs == ["conv1_out"])
        #expect(conv1.flopsPerWindow == 2 * 16 * 100 * 6 * 5)
        #expect(conv1.parameterBytes == 16 * 6 * 5 * 4)
        #expect(cnn.nodes[10].flopsPerWindow == 4 * (2 * 32 + 1))  // Gemm with bias
        #expect(cnn.nodes[2].parameterBytes == 4 * 16 * 4)
        // Conv+BN+Relu twice; the leading BatchNormalization has no Conv before it.
        #expect(cnn.fusionGroups == [1..<4, 5..<8])

        let mlp = try ONNXModel.load(path: Paths.pipelineModel("basicmotions-mlp.onnx"))
        #expect(mlp.nodes.map(\.name) == ["flatten", "fc1", "relu1", "fc2", "fc2_bias", "relu2", "fc3", "relu3", "fc4", "softmax"])
        #expect(mlp.nodes[1].flopsPerWindow == 1024 * (2 * 600 + 1))
        #expect(mlp.nodes[3].flopsPerWindow == 2 * 1024 * 1024)
        #expect(mlp.nodes[1].parameterBytes == (1024 * 600 + 1024) * 4)
        #expect(mlp.bytesPerWindow(of: "flat") == 600 * 4)
        #expect(mlp.fusionGroups == [1..<3, 3..<6, 6..<8])
        #expect(mlp.tensorInfo("fc2_out") == TensorInfo(name: "fc2_out", dtype: .float32, shape: [nil, 1024]))
    }

    @Test func conv2dModelInfersThroughReshape() throws {
        let model = try ONNXModel.load(path: Paths.fixture("models/conv2d-small.onnx"))
        #expect(model.tensorInfo("c1")?.shape == [nil, 8, 8, 8])
        #expect(model.tensorInfo("p")?.shape == [nil, 8, 4, 4])
        #expect(model.tensorInfo("flat")?.shape == [nil, 128])
        #expect(model.outputs == [TensorInfo(name: "probs", dtype: .float32, shape: [nil, 10])])
        #expect(model.fusionGroups == [0..<3, 3..<5, 7..<10])
    }

    /// A stage's executor decodes only its own nodes' weights.
    @Test func executorsHoldOnlyTheirWeights() throws {
        let model = try ONNXModel.load(path: Paths.pipelineModel("basicmotions-mlp.onnx"))
        let total = model.nodes.reduce(0) { $0 + $1.parameterBytes }
        let first = try Executor(model: model, nodes: 0..<3)
        let rest = try Executor(model: model, nodes: 3..<model.nodes.count)
        #expect(first.parameterBytes == model.nodes[1].parameterBytes)
        #expect(first.parameterBytes + rest.parameterBytes == total)
        #expect(try Executor(model: model, nodes: 0..<1).parameterBytes == 0)
        #expect(try Executor(model: model, nodes: 2..<2).parameterBytes == 0)
    }
}
