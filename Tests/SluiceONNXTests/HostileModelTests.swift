import Foundation
import SluiceONNX
import SluiceTensor
import Testing

/// A model file is input from outside: whatever it declares, loading ends in a model or in a
/// `ModelError` with its reason; no trap, no allocation the file's own bytes do not back, and
/// no file outside the model's folder read or described.
@Suite struct HostileModelTests {
    /// x[N, 4] + w → y, with `w` as given.
    static func adding(_ w: Onnx_TensorProto, input: [Int?] = [nil, 4]) -> ModelBuilder {
        var b = ModelBuilder()
        b.input("x", input)
        b.initializers = [w]
        b.node("Add", ["x", "w"], ["y"], name: "add")
        b.output("y")
        return b
    }

    static func declared(_ dims: [Int64], dtype: Int32 = 1) -> Onnx_TensorProto {
        var w = Onnx_TensorProto()
        w.name = "w"; w.dataType = dtype; w.dims = dims
        return w
    }

    @Test func initializerDimensionsAreCheckedBeforeAnythingIsAllocated() throws {
        // 2^40 × 2^40 overflowed the size computation; 2^30 × 2^10 with no data allocated 4 TiB.
        for dims: [Int64] in [[1 << 40, 1 << 40], [1 << 30, 1 << 10], [Int64.max, 2], [3, Int64.max / 2]] {
            let error = try #require(throws: ModelError.self, "\(dims)") { try Self.adding(Self.declared(dims)).load() }
            #expect(error.kind == .invalidGraph, "\(dims): \(error)")
            #expect(error.description.contains("initializer 'w'"), "\(error)")
        }
        // The survey `inspect` prints first sums the declared sizes without trusting them.
        let directory = try Paths.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        var two = Self.adding(Self.declared([1 << 30, 1 << 30]))
        var second = Self.declared([1 << 30, 1 << 30])
        second.name = "v"
        two.initializers.append(second)
        let survey = try ONNXModel.survey(path: try two.write(to: directory))
        #expect(survey.initializerCount == 2)
    }

    /// A Constant's value has no folder to read external data from: refused before its declared
    /// size (a terabyte here) is allocated, at load and when the model is surveyed.
    @Test func externalDataInAConstantIsRefusedBeforeAllocating() throws {
        var value = Self.declared([1 << 40])
        var location = Onnx_StringStringEntryProto()
        location.key = "location"
        location.value = "weights.bin"
        value.externalData = [location]
        value.dataLocation = .external
        var b = ModelBuilder()
        b.input("x", [nil, 4])
        b.node("Constant", [], ["c"], name: "huge", ["value": value])
        b.node("Add", ["x", "c"], ["y"], name: "add")
        b.output("y")
        let error = try #require(throws: ModelError.self) { try b.load() }
        #expect(error.description.contains("external data"), "\(error)")
    }

    @Test func graphInputsTooLargeForAnySampleAreRefused() throws {
        var w = Self.declared([4])
        w.floatData = [1, 2, 3, 4]
        let error = try #require(throws: ModelError.self) { try Self.adding(w, input: [nil, 1 << 40, 1 << 40]).load() }
        #expect(error.description.contains("graph input 'x'"), "\(error)")
    }

    /// A batch header holds each tensor's name with a 16-bit length: a longer name trapped the
    /// stage that sent it.
    @Test func tensorNamesLongerThanTheWireTakesAreRefused() throws {
        var b = ModelBuilder()
        b.input("x", [nil, 4])
        let long = String(repeating: "n", count: 70_000)
        b.node("Relu", ["x"], [long], name: "relu")
        b.node("Relu", [long], ["y"], name: "relu2")
        b.output("y")
        let error = try #require(throws: ModelError.self) { try b.load() }
        #expect(error.kind == .invalidGraph && error.description.contains("70000 bytes"), "\(error)")
    }

    @Test func inferredShapesTooLargeForAnySampleAreRefused() throws {
        // Expand to a constant shape of 2^40 × 2^40.
        var b = ModelBuilder()
        b.input("x", [nil, 1])
        b.initializer("shape", Tensor(shape: [2], int64s: [1 << 40, 1 << 40]))
        b.node("Expand", ["x", "shape"], ["y"], name: "expand")
        b.output("y")
        let error = try #require(throws: ModelError.self) { try b.load() }
        #expect(error.description.contains("node 'expand'"), "\(error)")
    }

    @Test func externalDataStaysInsideTheModelsFolder() throws {
        let directory = try Paths.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let outside = directory.appendingPathComponent("secret.bin")
        try Data(repeating: 7, count: 12_345).write(to: outside)
        let folder = directory.appendingPathComponent("model")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(at: folder.appendingPathComponent("link.bin"), withDestinationURL: outside)
        try FileManager.default.createDirectory(at: folder.appendingPathComponent("sub"), withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(at: folder.appendingPathComponent("sub/up"), withDestinationURL: directory)
        for location in ["../secret.bin", "../../../../../../..\(outside.path)", outside.path, "link.bin", "sub/up/secret.bin",
                         "sub/../../secret.bin"] {
            var w = Self.declared([4])
            w.dataLocation = .external
            var entry = Onnx_StringStringEntryProto()
            entry.key = "location"; entry.value = location
            w.externalData = [entry]
            let path = try Self.adding(w).write(to: folder, name: "m.onnx")
            let error = try #require(throws: ModelError.self, "\(location)") { try ONNXModel.load(path: path) }
            #expect(error.description.contains("outside the model's folder"), "\(location): \(error)")
            // Nothing about the outside file: not its size, not whether it is there.
            #expect(!error.description.contains("12345") && !error.description.contains("bytes"), "\(error)")
        }
    }

    /// A fixed-seed short run of tools/fuzz_models.py's byte mutations over the fixture models.
    @Test func mutatedModelFilesLoadOrFailWithAReason() throws {
        let directory = try Paths.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        var random = SeededGenerator(seed: 0xF422_0DE1)
        var outcomes = (loaded: 0, rejected: 0)
        for name in ["tiny-mlp.onnx", "conv2d-small.onnx"] {
            let original = try [UInt8](Data(contentsOf: URL(fileURLWithPath: Paths.fixture("models/\(name)"))))
            for round in 0..<60 {
                var bytes = original
                for _ in 0...(random.next() % 3) {
                    let at = Int(random.next() % UInt64(bytes.count))
                    switch random.next() % 3 {
                    case 0: bytes[at] = UInt8(truncatingIfNeeded: random.next())
                    case 1: bytes[at] = [0x00, 0xFF, 0x7F, 0x80][Int(random.next() % 4)]
                    default: bytes.removeSubrange(at..<min(bytes.count, at + Int(random.next() % 16)))
                    }
                }
                let path = directory.appendingPathComponent("\(round)-\(name)").path
                try Data(bytes).write(to: URL(fileURLWithPath: path))
                do {
                    _ = try ONNXModel.survey(path: path)
                    _ = try ONNXModel.load(path: path)
                    outcomes.loaded += 1
                } catch let error as ModelError {
                    outcomes.rejected += 1
                    #expect(error.description.hasPrefix(path), "\(error)")
                }
            }
        }
        #expect(outcomes.rejected > 0)
    }
}
