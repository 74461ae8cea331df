import Foundation
import SluiceONNX
import SluiceTensor

/// One case of tools/difftest.py: NAME.onnx and NAME.pb, a GraphProto whose initializers are the
/// test data, named in/BATCH/INPUT and out/BATCH/OUTPUT (onnxruntime's outputs).
public struct DifferentialCase: CustomStringConvertible {
    public let name: String
    public let model: String
    /// Batch size → (inputs, onnxruntime's outputs).
    public private(set) var runs: [Int: (inputs: [String: Tensor], outputs: [String: Tensor])] = [:]

    public var description: String { name }

    public init(model: String) throws {
        self.model = model
        name = URL(fileURLWithPath: model).deletingPathExtension().lastPathComponent
        let dataPath = String(model.dropLast(".onnx".count)) + ".pb"
        guard let data = FileManager.default.contents(atPath: dataPath) else {
            throw ModelError(.fileNotReadable, "\(dataPath): missing test data")
        }
        let graph = try Onnx_GraphProto(serializedBytes: data)
        for proto in graph.initializer {
            let parts = proto.name.split(separator: "/", maxSplits: 2).map(String.init)
            guard parts.count == 3, let batch = Int(parts[1]) else { continue }
            let tensor = try ONNXTensor.decode(try proto.serializedData()).tensor
            var run = runs[batch] ?? (inputs: [:], outputs: [:])
            if parts[0] == "in" { run.inputs[parts[2]] = tensor } else { run.outputs[parts[2]] = tensor }
            runs[batch] = run
        }
    }

    /// Every NAME.onnx in `directory` (each with its NAME.pb), sorted by name.
    public static func models(in directory: String) -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.filter { $0.hasSuffix(".onnx") }.sorted().map { URL(fileURLWithPath: directory).appendingPathComponent($0).path }
    }
}
