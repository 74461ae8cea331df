import Foundation
import SluiceONNX
import SluiceTensor
import Testing

/// Paths relative to the package root, found from this file.
enum Paths {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static func fixture(_ name: String) -> String { root.appendingPathComponent("Tests/Fixtures/\(name)").path }
    static func pipelineModel(_ name: String) -> String { root.appendingPathComponent("pipelines/models/\(name)").path }

    /// A fresh temporary directory, removed by the caller.
    static func temporaryDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-onnx-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }
}

/// max |a − b| / max(1, |b|); infinity when shapes differ or a NaN appears on one side only.
func maxRelativeError(_ a: Tensor, _ b: Tensor) -> Float {
    guard a.shape == b.shape, a.dtype == .float32, b.dtype == .float32 else { return .infinity }
    var worst: Float = 0
    for (x, y) in zip(a.floats, b.floats) {
        if x.isNaN != y.isNaN { return .infinity }
        if x.isNaN { continue }
        worst = max(worst, abs(x - y) / max(1, abs(y)))
    }
    return worst
}

/// Deterministic random floats.
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64
    init(seed: Int) { state = UInt64(truncatingIfNeeded: seed) &+ 0x9E37_79B9_7F4A_7C15 }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func tensor(_ shape: [Int], in range: ClosedRange<Float> = -1...1) -> Tensor {
        Tensor(shape: shape, floats: (0..<Tensor.elementCount(of: shape)).map { _ in Float.random(in: range, using: &self) })
    }
}

/// Builds small ONNX models in memory for tests.
struct ModelBuilder {
    var opset = 17
    var irVersion: Int64 = 8
    var nodes: [Onnx_NodeProto] = []
    var initializers: [Onnx_TensorProto] = []
    var inputs: [Onnx_ValueInfoProto] = []
    var outputs: [Onnx_ValueInfoProto] = []
    var metadata: [String: String] = [:]

    static func valueInfo(_ name: String, _ dtype: DType, _ shape: [Int?]?) -> Onnx_ValueInfoProto {
        var info = Onnx_ValueInfoProto()
        info.name = name
        var tensorType = Onnx_TypeProto.Tensor()
        tensorType.elemType = Int32(dtype.rawValue)
        if let shape {
            var shapeProto = Onnx_TensorShapeProto()
            shapeProto.dim = shape.map { d in
                var dim = Onnx_TensorShapeProto.Dimension()
                if let d { dim.dimValue = Int64(d) } else { dim.dimParam = "N" }
                return dim
            }
            tensorType.shape = shapeProto
        }
        var type = Onnx_TypeProto()
        type.tensorType = tensorType
        info.type = type
        return info
    }

    mutating func input(_ name: String, _ shape: [Int?], _ dtype: DType = .float32) {
        inputs.append(Self.valueInfo(name, dtype, shape))
    }

    mutating func output(_ name: String, _ shape: [Int?]? = nil, _ dtype: DType = .float32) {
        outputs.append(Self.valueInfo(name, dtype, shape))
    }

    /// A tensor proto holding `tensor` as raw_data.
    static func proto(_ name: String, _ tensor: Tensor) -> Onnx_TensorProto {
        var t = Onnx_TensorProto()
        t.name = name
        t.dataType = Int32(tensor.dtype.rawValue)
        t.dims = tensor.shape.map { Int64($0) }
        t.rawData = Data(bytes: tensor.storage.bytes, count: tensor.byteCount)
        return t
    }

    mutating func initializer(_ name: String, _ tensor: Tensor) {
        initializers.append(Self.proto(name, tensor))
    }

    static func attribute(_ name: String, _ value: Any) -> Onnx_AttributeProto {
        var a = Onnx_AttributeProto()
        a.name = name
        switch value {
        case let v as Int: a.type = .int; a.i = Int64(v)
        case let v as Float: a.type = .float; a.f = v
        case let v as Double: a.type = .float; a.f = Float(v)
        case let v as String: a.type = .string; a.s = Data(v.utf8)
        case let v as [Int]: a.type = .ints; a.ints = v.map { Int64($0) }
        case let v as [Float]: a.type = .floats; a.floats = v
        case let v as Onnx_TensorProto: a.type = .tensor; a.t = v
        case let v as Onnx_GraphProto: a.type = .graph; a.g = v
        default: fatalError("unsupported attribute value \(value)")
        }
        return a
    }

    mutating func node(_ op: String, _ inputs: [String], _ outputs: [String], name: String = "",
                       domain: String = "", _ attributes: [String: Any] = [:]) {
        var n = Onnx_NodeProto()
        n.opType = op
        n.name = name
        n.domain = domain
        n.input = inputs
        n.output = outputs
        n.attribute = attributes.keys.sorted().map { Self.attribute($0, attributes[$0]!) }
        nodes.append(n)
    }

    /// The nodes, initializers, inputs and outputs as a graph (also a subgraph attribute's value).
    func graph(_ name: String = "test") -> Onnx_GraphProto {
        var graph = Onnx_GraphProto()
        graph.name = name
        graph.node = nodes
        graph.initializer = initializers
        graph.input = inputs
        graph.output = outputs
        return graph
    }

    var proto: Onnx_ModelProto {
        var model = Onnx_ModelProto()
        model.irVersion = irVersion
        var opsetID = Onnx_OperatorSetIdProto()
        opsetID.domain = ""
        opsetID.version = Int64(opset)
        model.opsetImport = [opsetID]
        model.graph = graph()
        model.metadataProps = metadata.keys.sorted().map { key in
            var entry = Onnx_StringStringEntryProto()
            entry.key = key
            entry.value = metadata[key]!
            return entry
        }
        return model
    }

    /// Writes the model to `directory/name` and returns its path.
    func write(to directory: URL, name: String = "model.onnx") throws -> String {
        let url = directory.appendingPathComponent(name)
        try proto.serializedData().write(to: url)
        return url.path
    }

    /// Writes the model to a temporary directory and loads it.
    func load() throws -> ONNXModel {
        let directory = try Paths.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        return try ONNXModel.load(path: try write(to: directory))
    }
}
