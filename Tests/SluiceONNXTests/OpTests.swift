import Foundation
import SluiceONNX
import SluiceTensor
import Testing

/// Op semantics that differ between opsets, and fusion variants, beyond ONNX's node tests.
@Suite struct OpTests {
    static func runSingle(_ b: ModelBuilder, _ x: Tensor) throws -> Tensor {
        try #require(try b.load().run(inputs: ["x": x])["y"])
    }

    @Test func softmaxBeforeOpset13NormalizesTheFlattenedTail() throws {
        var rng = SeededGenerator(seed: 4)
        let x = rng.tensor([2, 3, 4], in: -3...3)
        var old = ModelBuilder()
        old.opset = 11
        old.input("x", [nil, 3, 4])
        old.node("Softmax", ["x"], ["y"])  // axis defaults to 1: rows of 12
        old.output("y")
        let y = try Self.runSingle(old, x)
        let expected = ReferenceKernels.softmax(x.reshaped([2, 12]), axis: 1).reshaped([2, 3, 4])
        #expect(maxRelativeError(y, expected) <= 1e-6)

        var new = old
        new.opset = 13  // axis defaults to −1
        #expect(maxRelativeError(try Self.runSingle(new, x), ReferenceKernels.softmax(x, axis: 2)) <= 1e-6)
    }

    @Test func clipBoundsAreAttributesBeforeOpset11AndInputsAfter() throws {
        let x = Tensor(shape: [1, 4], floats: [-2, -0.25, 0.25, 2])
        var old = ModelBuilder()
        old.opset = 6
        old.input("x", [nil, 4])
        old.node("Clip", ["x"], ["y"], ["min": Float(-0.5), "max": Float(0.5)])
        old.output("y")
        #expect(try Self.runSingle(old, x).floats == [-0.5, -0.25, 0.25, 0.5])

        var new = ModelBuilder()
        new.opset = 13
        new.input("x", [nil, 4])
        new.initializer("hi", Tensor(shape: [], floats: [1]))
        new.node("Clip", ["x", "", "hi"], ["y"])
        new.output("y")
        #expect(try Self.runSingle(new, x).floats == [-2, -0.25, 0.25, 1])
    }

    @Test func squeezeAndUnsqueezeAxesAttributesBeforeOpset13() throws {
        var b = ModelBuilder()
        b.opset = 11
        b.input("x", [nil, 3])
        b.node("Unsqueeze", ["x"], ["u"], ["axes": [0, -1]])
        b.node("Squeeze", ["u"], ["y"], ["axes": [0]])
        b.output("y")
        let model = try b.load()
        #expect(model.tensorInfo("u")?.shape == [1, nil, 3, 1])
        #expect(model.outputs[0].shape == [nil, 3, 1])
        let y = try #require(try model.run(inputs: ["x": Tensor(shape: [2, 3], floats: [1, 2, 3, 4, 5, 6])])["y"])
        #expect(y.shape == [2, 3, 1] && y.floats == [1, 2, 3, 4, 5, 6])
    }

    @Test func reshapeCopiesZerosUnlessAllowZero() throws {
        var b = ModelBuilder()
        b.opset = 14
        b.input("x", [nil, 4, 5])
        b.initializer("shape", Tensor(shape: [2], int64s: [0, -1]))
        b.node("Reshape", ["x", "shape"], ["y"], name: "flatten")
        b.output("y")
        #expect(try b.load().outputs[0].shape == [nil, 20])

        b.nodes[0].attribute = [ModelBuilder.attribute("allowzero", 1)]
        let error = try #require(throws: ModelError.self) { try b.load() }
        #expect(error.kind == .shapeMismatch && error.description.contains("node 'flatten' (Reshape): cannot reshape"))
    }

    /// Conv+BatchNorm+Clip, depthwise Conv+LeakyRelu, Conv+Sigmoid, MatMul+Add(bias first)+Tanh
    /// and Gemm+Relu: fused whole-graph results equal node-by-node results bit for bit.
    /// Past Int64.max a uint64 is still a large positive number to Mod, Max and BitShift.
    @Test func unsignedOpsUseTheFullUInt64Range() throws {
        func run(_ op: String, _ a: [UInt64], _ b: [UInt64], _ attributes: [String: Any] = [:]) throws -> [UInt64] {
            var builder = ModelBuilder()
            builder.input("a", [a.count], .uint64)
            builder.input("b", [b.count], .uint64)
            builder.node(op, ["a", "b"], ["y"], attributes)
            builder.output("y", nil, .uint64)
            func tensor(_ values: [UInt64]) -> Tensor {
                Tensor(dtype: .uint64, shape: [values.count], int64Values: values.map { Int64(bitPattern: $0) })
            }
            let y = try #require(try builder.load().run(inputs: ["a": tensor(a), "b": tensor(b)])["y"])
            return y.withUnsafeBufferPointer(as: UInt64.self) { Array($0) }
        }
        let big: UInt64 = 0xF000_0000_0000_0007
        #expect(try run("Mod", [big, big, 9], [10, 0, 4]) == [big % 10, 0, 1])
        #expect(try run("Max", [big, 1], [1, big]) == [big, big])
        #expect(try run("BitShift", [big, big, big], [60, 64, 0], ["direction": "RIGHT"]) == [15, 0, big])
        #expect(try run("BitShift", [big, 1], [4, 63], ["direction": "LEFT"]) == [0x70, 1 << 63])
        // And to Abs and Sign (ReduceMax and ReduceMin refuse uint64 at load).
        func unary(_ op: String, _ a: [UInt64]) throws -> [UInt64] {
            var builder = ModelBuilder()
            builder.input("a", [a.count], .uint64)
            builder.node(op, ["a"], ["y"])
            builder.output("y", nil, .uint64)
            let x = Tensor(dtype: .uint64, shape: [a.count], int64Values: a.map { Int64(bitPattern: $0) })
            let y = try #require(try builder.load().run(inputs: ["a": x])["y"])
            return y.withUnsafeBufferPointer(as: UInt64.self) { Array($0) }
        }
        #expect(try unary("Abs", [big, 2]) == [big, 2])
        #expect(try unary("Sign", [big, 0]) == [1, 0])
    }

    /// Opset 20 renamed bilinear and bicubic to linear and cubic; each opset takes its own names.
    @Test func gridSampleModeNamesFollowTheOpset() throws {
        func model(opset: Int, mode: String, grid: [Int] = [1, 2, 2, 2]) -> ModelBuilder {
            var b = ModelBuilder()
            b.opset = opset
            b.input("x", [1, 1, 2, 2])
            b.input("grid", grid)
            b.node("GridSample", ["x", "grid"], ["y"], name: "warp", ["mode": mode, "align_corners": 1])
            b.output("y")
            return b
        }
        let x = Tensor(shape: [1, 1, 2, 2], floats: [1, 2, 3, 4])
        let grid = Tensor(shape: [1, 2, 2, 2], floats: [-1, -1, 1, 1, 0, 0, 1, -1])
        for (opset, mode) in [(16, "bilinear"), (20, "linear")] {
            let y = try #require(try model(opset: opset, mode: mode).load().run(inputs: ["x": x, "grid": grid])["y"])
            #expect(y.shape == [1, 1, 2, 2] && y.floats == [1, 4, 2.5, 2])
        }
        for (opset, mode) in [(16, "linear"), (20, "bicubic")] {
            let error = try #require(throws: ModelError.self) { try model(opset: opset, mode: mode).load() }
            #expect(error.message.contains("node 'warp' (GridSample): mode '\(mode)'"), "\(error)")
        }
        let badGrid = try #require(throws: ModelError.self) { try model(opset: 16, mode: "nearest", grid: [1, 2, 2, 3]).load() }
        #expect(badGrid.message.contains("node 'warp' (GridSample): grid [1, 2, 2, 3] must be [N, Hout, Wout, 2]"), "\(badGrid)")
    }

    /// How many boxes NonMaxSuppression keeps is known only from the scores: the model loads
    /// with that output's shape open and runs at any count.
    @Test func nonMaxSuppressionOutputShapeComesFromTheScores() throws {
        var b = ModelBuilder()
        b.opset = 11
        b.input("boxes", [1, 3, 4])
        b.input("scores", [1, 1, 3])
        b.initializer("limit", Tensor(shape: [1], int64s: [5]))
        b.initializer("iou", Tensor(shape: [1], floats: [0.5]))
        b.node("NonMaxSuppression", ["boxes", "scores", "limit", "iou"], ["y"], name: "nms")
        b.output("y", [nil, 3], .int64)
        let model = try b.load()
        #expect(model.outputs[0].shape == [nil, nil])
        let boxes = Tensor(shape: [1, 3, 4], floats: [0, 0, 1, 1, 0, 0, 1, 1.1, 2, 2, 3, 3])
        let y = try #require(try model.run(inputs: ["boxes": boxes, "scores": Tensor(shape: [1, 1, 3], floats: [0.6, 0.9, 0.1])])["y"])
        #expect(y.shape == [2, 3] && y.int64s == [0, 0, 1, 0, 0, 2])
        let error = try #require(throws: ModelError.self) {
            try model.run(inputs: ["boxes": boxes, "scores": Tensor(shape: [1, 1, 2], floats: [0.6, 0.9])])
        }
        #expect(error.message.contains("scores"), "\(error)")
    }

    @Test func roiAlignRejectsABatchIndexOutsideX() throws {
        var b = ModelBuilder()
        b.opset = 16
        b.input("x", [2, 1, 4, 4])
        b.initializer("rois", Tensor(shape: [1, 4], floats: [0, 0, 2, 2]))
        b.initializer("batch", Tensor(shape: [1], int64s: [2]))
        b.node("RoiAlign", ["x", "rois", "batch"], ["y"], name: "pool")
        b.output("y")
        let error = try #require(throws: ModelError.self) { try b.load() }
        #expect(error.message.contains("node 'pool' (RoiAlign): batch index 2 is outside X's batch of 2"), "\(error)")
    }

    /// Indices and boxes computed at run time are checked when the node runs: a bad one would
    /// read outside X or trap, so the run fails with the node's name instead.
    @Test func roiAlignChecksComputedIndicesAndBoxes() throws {
        var b = ModelBuilder()
        b.opset = 16
        b.input("x", [2, 1, 4, 4])
        b.input("rois", [1, 4])
        b.input("batch", [1], .int64)
        b.node("RoiAlign", ["x", "rois", "batch"], ["y"], name: "pool")
        b.output("y")
        let model = try b.load()
        let x = Tensor(zeros: .float32, shape: [2, 1, 4, 4])
        func run(_ box: [Float], _ index: Int64) throws -> Tensor? {
            try model.run(inputs: ["x": x, "rois": Tensor(shape: [1, 4], floats: box), "batch": Tensor(shape: [1], int64s: [index])])["y"]
        }
        let outside = try #require(throws: (any Error).self) { try run([0, 0, 2, 2], 2) }
        #expect("\(outside)".contains("pool") && "\(outside)".contains("batch index 2 is outside X's batch of 2"), "\(outside)")
        let notFinite = try #require(throws: (any Error).self) { try run([0, .nan, 2, 2], 0) }
        #expect("\(notFinite)".contains("roi 0 has a non-finite coordinate"), "\(notFinite)")
        // An inverted box samples nothing, as onnxruntime does, rather than trapping.
        #expect(try run([3, 3, 0, 0], 1)?.shape == [1, 1, 1, 1])
    }

    /// The conformance cases cover TF only: IDF and TFIDF, with and without weights, here.
    @Test func tfIdfVectorizerWeighsCountsByMode() throws {
        func run(_ mode: String, weights: [Float]?, pool: String = "pool_int64s") throws -> [Float] {
            var b = ModelBuilder()
            b.opset = 9
            b.input("x", [8], .int64)
            var attributes: [String: Any] = ["mode": mode, "min_gram_length": 1, "max_gram_length": 2, "max_skip_count": 0,
                                             "ngram_counts": [0, 4], "ngram_indexes": Array(0..<7),
                                             "pool_int64s": [2, 3, 5, 4, 5, 6, 7, 8, 6, 7]]
            if let weights { attributes["weights"] = weights }
            b.node("TfIdfVectorizer", ["x"], ["y"], name: "tfidf", attributes)
            b.output("y")
            let x = Tensor(shape: [8], int64s: [2, 3, 5, 6, 7, 5, 6, 2])
            return try #require(try b.load().run(inputs: ["x": x])["y"]).floats
        }
        let w: [Float] = [0.5, 1, 1.5, 2, 2.5, 3, 3.5]
        #expect(try run("TF", weights: nil) == [2, 1, 2, 0, 2, 0, 1])
        #expect(try run("IDF", weights: w) == [0.5, 1, 1.5, 0, 2.5, 0, 3.5])
        #expect(try run("IDF", weights: nil) == [1, 1, 1, 0, 1, 0, 1])
        #expect(try run("TFIDF", weights: w) == [1, 1, 3, 0, 5, 0, 3.5])

        var strings = ModelBuilder()
        strings.input("x", [2], .int64)
        var node = Onnx_NodeProto()
        node.opType = "TfIdfVectorizer"
        node.name = "words"
        node.input = ["x"]
        node.output = ["y"]
        var pool = Onnx_AttributeProto()
        pool.name = "pool_strings"; pool.type = .strings; pool.strings = [Data("a".utf8)]
        node.attribute = [ModelBuilder.attribute("mode", "TF"), ModelBuilder.attribute("min_gram_length", 1),
                          ModelBuilder.attribute("max_gram_length", 1), ModelBuilder.attribute("ngram_counts", [0]),
                          ModelBuilder.attribute("ngram_indexes", [0]), pool]
        strings.nodes.append(node)
        strings.output("y")
        let error = try #require(throws: ModelError.self) { try strings.load() }
        #expect(error.message.contains("node 'words' (TfIdfVectorizer): pool_strings: string tensors are not supported"), "\(error)")
    }

    @Test func fusedRunsEqualNodeByNodeRuns() throws {
        var rng = SeededGenerator(seed: 12)
        var b = ModelBuilder()
        b.opset = 13
        b.input("x", [nil, 3, 12])
        b.initializer("w1", rng.tensor([6, 3, 3]))
        b.initializer("b1", rng.tensor([6]))
        for name in ["scale", "shift", "mean"] { b.initializer(name, rng.tensor([6])) }
        b.initializer("var", rng.tensor([6], in: 0.5...2))
        b.initializer("lo", Tensor(shape: [], floats: [0]))
        b.initializer("hi", Tensor(shape: [], floats: [0.6]))
        b.initializer("w2", rng.tensor([6, 1, 5]))
        b.initializer("w3", rng.tensor([4, 6, 1]))
        b.initializer("m", rng.tensor([48, 10]))
        b.initializer("mb", rng.tensor([10]))
        b.initializer("g", rng.tensor([10, 5]))
        b.initializer("gb", rng.tensor([5]))
        b.node("Conv", ["x", "w1", "b1"], ["c1"], name: "conv1", ["auto_pad": "SAME_UPPER"])
        b.node("BatchNormalization", ["c1", "scale", "shift", "mean", "var"], ["n1"], name: "bn1")
        b.node("Clip", ["n1", "lo", "hi"], ["a1"], name: "relu6")
        b.node("Conv", ["a1", "w2"], ["c2"], name: "depthwise", ["group": 6, "pads": [2, 2], "dilations": [1]])
        b.node("LeakyRelu", ["c2"], ["a2"], name: "leaky", ["alpha": Float(0.1)])
        b.node("Conv", ["a2", "w3"], ["c3"], name: "pointwise")
        b.node("Sigmoid", ["c3"], ["a3"], name: "gate")
        b.node("Flatten", ["a3"], ["f"], name: "flatten")
        b.node("MatMul", ["f", "m"], ["mm"], name: "fc1")
        b.node("Add", ["mb", "mm"], ["s"], name: "fc1_bias")
        b.node("Tanh", ["s"], ["t"], name: "tanh")
        b.node("Gemm", ["t", "g", "gb"], ["l"], name: "fc2")
        b.node("Relu", ["l"], ["y"], name: "relu")
        b.output("y")
        let model = try b.load()
        #expect(model.fusionGroups == [0..<3, 3..<5, 5..<7, 8..<11, 11..<13])
        #expect(model.outputs[0].shape == [nil, 5])
        let x = rng.tensor([3, 3, 12])
        let fused = try #require(try model.run(inputs: ["x": x])["y"])
        let executor = try Executor(model: model, nodes: 0..<model.nodes.count)
        var stepwise = ["x": x]
        for i in 0..<model.nodes.count { try executor.run(i..<(i + 1), values: &stepwise) }
        #expect(stepwise["y"]?.floats == fused.floats)
        #expect(fused.floats.contains { $0 > 0 })
    }

    /// Fusion never swallows a tensor that something else reads or that the graph outputs.
    @Test func sharedIntermediatesAreNotFused() throws {
        var b = ModelBuilder()
        b.input("x", [nil, 4])
        b.initializer("w", Tensor(shape: [4, 4], floats: (0..<16).map { Float($0) / 8 - 1 }))
        b.node("Gemm", ["x", "w"], ["g"], name: "fc")
        b.node("Relu", ["g"], ["r"], name: "relu")
        b.node("Add", ["r", "g"], ["y"], name: "skip")
        b.output("y")
        b.output("g")
        let model = try b.load()
        #expect(model.fusionGroups.isEmpty)
        let out = try model.run(inputs: ["x": Tensor(shape: [1, 4], floats: [1, 2, 3, 4])])
        let g = try #require(out["g"])
        #expect(out["y"]?.floats == g.floats.map { max($0, 0) + $0 })
    }
}
