import Foundation
import SluiceONNX
import SluiceTensor
import Testing

@Suite struct LoaderTests {
    @Test func unsupportedOpFixtureNamesOpNodeAndOpset() throws {
        let path = Paths.fixture("models/unsupported-op.onnx")
        let error = try #require(throws: ModelError.self) { try ONNXModel.load(path: path) }
        #expect(error.kind == .unsupportedOp)
        #expect(error.description == "\(path): node 'weird_node': unsupported op DynamicQuantizeLinear (opset 17)")
    }

    @Test func everyUnsupportedOpIsListed() throws {
        var b = ModelBuilder()
        b.input("x", [nil, 5])
        b.node("DynamicQuantizeLinear", ["x"], ["values"], name: "weird_node")
        b.node("Fancy", ["values"], ["y"], name: "custom", domain: "com.example")
        b.output("y")
        let error = try #require(throws: ModelError.self) { try b.load() }
        #expect(error.kind == .unsupportedOp)
        #expect(error.description.contains("node 'weird_node': unsupported op DynamicQuantizeLinear (opset 17)"))
        #expect(error.description.contains("node 'custom': unsupported op com.example.Fancy (opset 0)"))
    }

    @Test func opsetOutsideAnOpsRangeIsUnsupported() throws {
        var b = ModelBuilder()
        b.opset = 10
        b.input("x", [2])
        b.node("Range", ["x", "x", "x"], ["y"], name: "old_range")
        b.output("y")
        let error = try #require(throws: ModelError.self) { try b.load() }
        #expect(error.kind == .unsupportedOp)
        #expect(error.description.contains("node 'old_range': unsupported op Range (opset 10)"))
        #expect(error.description.contains("opsets 11 to"))
    }

    @Test func missingAndUnreadableFilesSaySo() throws {
        let missing = "/nonexistent/sluice/model.onnx"
        let error = try #require(throws: ModelError.self) { try ONNXModel.load(path: missing) }
        #expect(error.kind == .fileNotReadable)
        #expect(error.description == "\(missing): cannot open the model: no such file")

        let directory = try Paths.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let garbage = directory.appendingPathComponent("garbage.onnx")
        try Data([0xFF, 0xFF, 0xFF, 0xFF, 0x0F, 0x01]).write(to: garbage)
        let parse = try #require(throws: ModelError.self) { try ONNXModel.load(path: garbage.path) }
        #expect(parse.kind == .notAModel)
        #expect(parse.description.hasPrefix("\(garbage.path): not an ONNX model"))
        let empty = directory.appendingPathComponent("empty.onnx")
        try Data().write(to: empty)
        let noGraph = try #require(throws: ModelError.self) { try ONNXModel.load(path: empty.path) }
        #expect(noGraph.kind == .notAModel)
        #expect(throws: ModelError.self) { try ONNXModel.load(path: directory.path) }
    }

    /// x[N, 4] → Gemm(W, B) → Reshape([-1, 3]) → Add(Constant) → y, with weights stored in
    /// different ways.
    static func linearModel(weight: Onnx_TensorProto, bias: Onnx_TensorProto, shape: Onnx_TensorProto) -> ModelBuilder {
        var b = ModelBuilder()
        b.input("x", [nil, 4])
        b.initializers = [weight, bias, shape]
        b.node("Gemm", ["x", "W", "B"], ["g"], name: "fc")
        b.node("Reshape", ["g", "shape"], ["r"], name: "reshape")
        b.node("Constant", [], ["offset"], name: "offset", ["value_floats": [Float(1), 2, 3]])
        b.node("Add", ["r", "offset"], ["y"], name: "add")
        b.output("y", [nil, 3])
        return b
    }

    static let weight = (0..<12).map { Float($0) / 10 - 0.5 }
    static let bias: [Float] = [0.25, -0.5, 1]

    @Test func typedFieldsAndRawDataGiveTheSameModel() throws {
        var w = Onnx_TensorProto()
        w.name = "W"; w.dataType = 1; w.dims = [4, 3]; w.floatData = Self.weight
        var bias = Onnx_TensorProto()
        bias.name = "B"; bias.dataType = 1; bias.dims = [3]; bias.floatData = Self.bias
        var shape = Onnx_TensorProto()
        shape.name = "shape"; shape.dataType = 7; shape.dims = [2]; shape.int64Data = [-1, 3]
        let typed = try Self.linearModel(weight: w, bias: bias, shape: shape).load()
        let raw = try Self.linearModel(weight: ModelBuilder.proto("W", Tensor(shape: [4, 3], floats: Self.weight)),
                                       bias: ModelBuilder.proto("B", Tensor(shape: [3], floats: Self.bias)),
                                       shape: ModelBuilder.proto("shape", Tensor(shape: [2], int64s: [-1, 3]))).load()
        var rng = SeededGenerator(seed: 3)
        let x = rng.tensor([5, 4])
        let expected = ReferenceKernels.binary(.add,
            ReferenceKernels.gemm(x, Tensor(shape: [4, 3], floats: Self.weight), c: Tensor(shape: [3], floats: Self.bias)),
            Tensor(shape: [3], floats: [1, 2, 3]))
        for model in [typed, raw] {
            let y = try #require(try model.run(inputs: ["x": x])["y"])
            #expect(maxRelativeError(y, expected) <= 1e-6)
        }
        #expect(typed.nodes.map(\.opType) == ["Gemm", "Reshape", "Add"])
        #expect(typed.isInitializer("offset"))
        #expect(typed.nodes[2].parameterBytes == 12)
    }

    /// ONNX keeps 16-bit types in int32_data and uint32/uint64 in uint64_data.
    @Test func typedFieldsOfTheNarrowAndUnsignedTypes() throws {
        func decode(_ dtype: DType, int32s: [Int32] = [], uint64s: [UInt64] = []) throws -> Tensor {
            var proto = Onnx_TensorProto()
            proto.dataType = Int32(dtype.rawValue)
            proto.dims = [Int64(max(int32s.count, uint64s.count))]
            proto.int32Data = int32s
            proto.uint64Data = uint64s
            let decoded = try ONNXTensor.decode(try proto.serializedData()).tensor
            #expect(decoded.dtype == dtype)
            return decoded
        }
        #expect(try decode(.int16, int32s: [-3, 32767]).int64Values == [-3, 32767])
        #expect(try decode(.uint16, int32s: [65535, 2]).int64Values == [65535, 2])
        #expect(try decode(.bfloat16, int32s: [0x3FC0]).doubles == [1.5])
        #expect(try decode(.uint32, uint64s: [4_294_967_295]).int64Values == [4_294_967_295])
        try decode(.uint64, uint64s: [UInt64.max]).withUnsafeBufferPointer(as: UInt64.self) { #expect(Array($0) == [.max]) }
        #expect(throws: ModelError.self) { try decode(.uint32, int32s: [1]) }
    }

    @Test func externalDataIsReadRelativeToTheModel() throws {
        let directory = try Paths.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let weightBytes = Self.weight.withUnsafeBytes { Data($0) }
        // 16 bytes of something else first, to exercise the offset.
        try (Data(repeating: 0xAB, count: 16) + weightBytes).write(to: directory.appendingPathComponent("weights.bin"))
        var w = Onnx_TensorProto()
        w.name = "W"; w.dataType = 1; w.dims = [4, 3]
        w.dataLocation = .external
        w.externalData = [("location", "weights.bin"), ("offset", "16"), ("length", "\(weightBytes.count)")].map {
            var entry = Onnx_StringStringEntryProto()
            entry.key = $0.0
            entry.value = $0.1
            return entry
        }
        let builder = Self.linearModel(weight: w, bias: ModelBuilder.proto("B", Tensor(shape: [3], floats: Self.bias)),
                                       shape: ModelBuilder.proto("shape", Tensor(shape: [2], int64s: [-1, 3])))
        let path = try builder.write(to: directory)
        let model = try ONNXModel.load(path: path)
        #expect(model.bytesPerWindow(of: "W") == 48)
        let x = Tensor(shape: [1, 4], floats: [1, 0, 0, 0])
        let y = try #require(try model.run(inputs: ["x": x])["y"])
        // Row 0 of W plus the bias plus the constant.
        let expected: [Float] = [-0.5 + 0.25 + 1, -0.4 - 0.5 + 2, -0.3 + 1 + 3]
        #expect(maxRelativeError(y, Tensor(shape: [1, 3], floats: expected)) < 1e-6)

        // Truncated, then missing: both fail the load, naming the file.
        try Data(repeating: 0, count: 40).write(to: directory.appendingPathComponent("weights.bin"))
        let short = try #require(throws: ModelError.self) { try ONNXModel.load(path: path) }
        #expect(short.kind == .fileNotReadable && short.description.contains("weights.bin"))
        try FileManager.default.removeItem(at: directory.appendingPathComponent("weights.bin"))
        let missing = try #require(throws: ModelError.self) { try ONNXModel.load(path: path) }
        #expect(missing.kind == .fileNotReadable)
        #expect(missing.description.contains("initializer 'W'") && missing.description.contains("weights.bin"))
    }

    @Test func sortsNodesStably() throws {
        // Two branches interleaved in a valid file order keep exactly that order.
        var b = ModelBuilder()
        b.input("x", [nil, 2])
        b.node("Relu", ["x"], ["p"], name: "a1")
        b.node("Sigmoid", ["x"], ["q"], name: "b1")
        b.node("Tanh", ["p"], ["r"], name: "a2")
        b.node("Relu", ["q"], ["s"], name: "b2")
        b.node("Concat", ["r", "s"], ["y"], name: "join", ["axis": 1])
        b.output("y")
        #expect(try b.load().nodes.map(\.name) == ["a1", "b1", "a2", "b2", "join"])
        // Reversed, producers move ahead of their consumers.
        b.nodes.reverse()
        let sorted = try b.load()
        #expect(sorted.nodes.map(\.name) == ["a1", "a2", "b1", "b2", "join"])
        #expect(sorted.nodes.map(\.index) == Array(0..<5))
        let y = try #require(try sorted.run(inputs: ["x": Tensor(shape: [1, 2], floats: [-1, 2])])["y"])
        #expect(maxRelativeError(y, Tensor(shape: [1, 4], floats: [0, Float(tanh(2.0)), 1 / (1 + Float(exp(1.0))), 1 / (1 + Float(exp(-2.0)))])) < 1e-6)
    }

    @Test func cyclesAndDanglingNamesAreGraphErrors() throws {
        var cycle = ModelBuilder()
        cycle.input("x", [2])
        cycle.node("Add", ["x", "b"], ["a"], name: "first")
        cycle.node("Relu", ["a"], ["b"], name: "second")
        cycle.output("b")
        let cycleError = try #require(throws: ModelError.self) { try cycle.load() }
        #expect(cycleError.kind == .invalidGraph && cycleError.description.contains("cycle"))

        var dangling = ModelBuilder()
        dangling.input("x", [2])
        dangling.node("Add", ["x", "ghost"], ["y"], name: "haunted")
        dangling.output("y")
        let danglingError = try #require(throws: ModelError.self) { try dangling.load() }
        #expect(danglingError.kind == .invalidGraph)
        #expect(danglingError.description.contains("node 'haunted' (Add) reads 'ghost'"))

        var twice = ModelBuilder()
        twice.input("x", [2])
        twice.node("Relu", ["x"], ["y"], name: "one")
        twice.node("Tanh", ["x"], ["y"], name: "two")
        twice.output("y")
        let twiceError = try #require(throws: ModelError.self) { try twice.load() }
        #expect(twiceError.description.contains("produced by both node 'one' and node 'two'"))
    }

    @Test func inconsistentShapesNameNodeOpAndReason() throws {
        var b = ModelBuilder()
        b.input("x", [nil, 32])
        b.initializer("W", Tensor(zeros: .float32, shape: [30, 8]))
        b.node("Gemm", ["x", "W"], ["y"], name: "fc")
        b.output("y")
        let error = try #require(throws: ModelError.self) { try b.load() }
        #expect(error.kind == .shapeMismatch)
        #expect(error.description.contains("node 'fc' (Gemm): Gemm inner dimensions differ"))

        var wrongOutput = ModelBuilder()
        wrongOutput.input("x", [nil, 3])
        wrongOutput.node("Relu", ["x"], ["y"])
        wrongOutput.output("y", [nil, 4])
        // A declared size the computation contradicts gives way to the computation, as in
        // onnxruntime (skl2onnx declares a two-target regressor [N, 1]); a declared rank does not.
        #expect(try wrongOutput.load().outputs.first?.shape == [nil, 3])
        var wrongRank = ModelBuilder()
        wrongRank.input("x", [nil, 3])
        wrongRank.node("Relu", ["x"], ["y"])
        wrongRank.output("y", [nil, 3, 1])
        let outputError = try #require(throws: ModelError.self) { try wrongRank.load() }
        #expect(outputError.description.contains("graph output 'y' is declared [N, 3, 1] but inference gives [N, 3]"))

        var badAttribute = ModelBuilder()
        badAttribute.input("x", [1, 2, 8])
        badAttribute.initializer("w", Tensor(zeros: .float32, shape: [2, 2, 3]))
        badAttribute.node("Conv", ["x", "w"], ["y"], name: "conv", ["group": "two"])
        badAttribute.output("y")
        let attributeError = try #require(throws: ModelError.self) { try badAttribute.load() }
        #expect(attributeError.kind == .invalidGraph)
        #expect(attributeError.description.contains("node 'conv' (Conv): attribute 'group' must be int"))
    }

    @Test func unnamedNodesAreNamedByOpAndIndex() throws {
        var b = ModelBuilder()
        b.input("x", [nil, 2])
        b.node("Relu", ["x"], ["a"])
        b.node("Constant", [], ["c"], ["value_float": Float(2)])
        b.node("Mul", ["a", "c"], ["y"])
        b.output("y")
        let model = try b.load()
        #expect(model.nodes.map(\.name) == ["Relu_0", "Mul_1"])
        #expect(model.nodes[1].inputs == ["a", "c"] && model.isInitializer("c"))
    }

    /// Shape → Gather → Unsqueeze → Concat → Reshape, as older PyTorch exports flatten: the
    /// shape is resolved at load for batch 1 and recomputed at run time for each batch.
    @Test func shapeComputationsFeedReshapeAtAnyBatch() throws {
        var b = ModelBuilder()
        b.opset = 13
        b.input("x", [nil, 4, 5])
        b.initializer("zero", Tensor(shape: [], int64s: [0]))
        b.initializer("axes", Tensor(shape: [1], int64s: [0]))
        b.initializer("rest", Tensor(shape: [1], int64s: [-1]))
        b.node("Shape", ["x"], ["s"])
        b.node("Gather", ["s", "zero"], ["n"], ["axis": 0])
        b.node("Unsqueeze", ["n", "axes"], ["n1"])
        b.node("Concat", ["n1", "rest"], ["target"], ["axis": 0])
        b.node("Reshape", ["x", "target"], ["flat"])
        b.node("Relu", ["flat"], ["y"])
        b.output("y")
        let model = try b.load()
        #expect(model.outputs == [TensorInfo(name: "y", dtype: .float32, shape: [nil, 20])])
        #expect(model.tensorInfo("target") == TensorInfo(name: "target", dtype: .int64, shape: [2]))
        #expect(model.bytesPerWindow(of: "flat") == 80)
        var rng = SeededGenerator(seed: 9)
        for batch in [1, 3] {
            let x = rng.tensor([batch, 4, 5])
            let y = try #require(try model.run(inputs: ["x": x])["y"])
            #expect(y.shape == [batch, 20])
            #expect(y.floats == x.floats.map { max($0, 0) })
        }
    }

    @Test func fixedBatchModelsRejectOtherBatchSizes() throws {
        var b = ModelBuilder()
        b.input("x", [2, 3])
        b.node("Relu", ["x"], ["y"], name: "act")
        b.output("y")
        let model = try b.load()
        #expect(model.inputs == [TensorInfo(name: "x", dtype: .float32, shape: [2, 3])])
        let error = try #require(throws: ModelError.self) {
            try model.run(inputs: ["x": Tensor(zeros: .float32, shape: [3, 3])])
        }
        #expect(error.kind == .invalidInput)
        #expect(error.description.contains("node 'act' (Relu): input 'x' is float32[3, 3], expected float32[2, 3]"))
    }

    @Test func metadataOpsetAndSizes() throws {
        var b = ModelBuilder()
        b.opset = 13
        b.metadata = ["classes": "a,b", "window": "100"]
        b.input("x", [nil, 3, 10])
        b.initializer("w", Tensor(zeros: .float32, shape: [4, 3, 3]))
        b.node("Conv", ["x", "w"], ["c"], name: "conv", ["pads": [1, 1]])
        b.node("GlobalAveragePool", ["c"], ["g"], name: "gap")
        b.output("g")
        let model = try b.load()
        #expect(model.opset == 13)
        #expect(model.metadata == ["classes": "a,b", "window": "100"])
        #expect(model.bytesPerWindow(of: "x") == 120 && model.bytesPerWindow(of: "c") == 160)
        #expect(model.bytesPerWindow(of: "w") == 144 && model.bytesPerWindow(of: "nothing") == 0)
        #expect(model.nodes[0].flopsPerWindow == 2 * 4 * 10 * 3 * 3)
        #expect(model.nodes[0].parameterBytes == 144 && model.nodes[1].parameterBytes == 0)
        #expect(model.outputs == [TensorInfo(name: "g", dtype: .float32, shape: [nil, 4, 1])])
        #expect(ONNXModel.supportedOps.contains("Conv") && !ONNXModel.supportedOps.contains("DynamicQuantizeLinear"))
    }
}
