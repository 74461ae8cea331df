import Foundation
import SluiceONNX
import SluiceTensor
import SluiceTestSupport
import Testing

/// A model with inputs and onnxruntime's outputs for them, from a fixture set made by a tools/
/// script: Tests/Fixtures/ml (tools/make_ml_fixtures.py: scikit-learn exports, single ai.onnx.ml
/// nodes, random ensembles) or Tests/Fixtures/exporters (tools/make_exporter_fixtures.py: both
/// PyTorch exporters, Hugging Face encoders). `expected` names the JSON file of one batch.
struct MLCase: CustomStringConvertible, Sendable {
    let set: String
    let name: String
    var expected = "expected.json"
    var description: String { expected == "expected.json" ? name : "\(name) (\(expected))" }
    var folder: String { Paths.fixture("\(set)/\(name)") }

    static func cases(_ set: String) -> [String] {
        guard let data = FileManager.default.contents(atPath: Paths.fixture("\(set)/cases.json")),
              let names = try? JSONSerialization.jsonObject(with: data) as? [String] else { return [] }
        return names
    }

    static let all: [MLCase] = cases("ml").map { MLCase(set: "ml", name: $0) }

    /// Every exporter case at the batch of expected.json, and again at batch 1 where there is one.
    static let exporters: [MLCase] = cases("exporters").flatMap { name -> [MLCase] in
        let single = MLCase(set: "exporters", name: name, expected: "expected_b1.json")
        return [MLCase(set: "exporters", name: name)] + (FileManager.default.fileExists(atPath: single.folder + "/" + single.expected) ? [single] : [])
    }

    func tensor(_ json: [String: Any]) throws -> Tensor { try FixtureTensor.decode(json, folder: folder) }

    /// Runs the model on the case's inputs and checks every output: labels and integers
    /// exactly, floats within `tolerance` relative to max(1, |expected|).
    func check(tolerance: Double) throws {
        let data = try #require(FileManager.default.contents(atPath: folder + "/" + expected))
        let json = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let inputs = try #require(json["inputs"] as? [String: [String: Any]])
        let outputs = try #require(json["outputs"] as? [String: [String: Any]])
        let model = try ONNXModel.load(path: folder + "/model.onnx")
        let results = try model.run(inputs: try inputs.mapValues(tensor))
        for (name, expectedJSON) in outputs {
            let expected = try tensor(expectedJSON)
            let actual = try #require(results[name], "\(self): no output '\(name)'")
            #expect(actual.elementCount == expected.elementCount, "\(self) '\(name)': \(actual.shape) vs \(expected.shape)")
            guard actual.elementCount == expected.elementCount else { continue }
            switch expected.dtype {
            case .string:
                #expect(actual.dtype == .string && actual.strings == expected.strings, "\(self) '\(name)': labels differ")
            case .int64, .int32, .bool:
                #expect(actual.int64Values == expected.int64Values, "\(self) '\(name)': \(actual.int64Values) vs \(expected.int64Values)")
            default:
                var worst = 0.0
                for (x, y) in zip(actual.doubles, expected.doubles) {
                    if x.isNaN != y.isNaN { worst = .infinity; break }
                    if x.isNaN || x == y { continue }
                    worst = max(worst, abs(x - y) / max(1, abs(y)))
                }
                #expect(worst <= tolerance, "\(self) '\(name)': max error \(worst)")
            }
        }
    }
}

@Suite struct MLModelTests {
    @Test func theFixturesAreThere() {
        #expect(MLCase.all.count >= 60, "Tests/Fixtures/ml/cases.json lists \(MLCase.all.count) cases")
    }

    /// An empty batch is an answer of no rows, not a crash, for every kind of model.
    @Test(arguments: ["rf_str3", "gb_int2", "logreg_str3", "svcprob_str3", "knn_int2", "rfreg_2targets", "onehot_str"])
    func anEmptyBatchGivesNoRows(_ name: String) throws {
        let model = try ONNXModel.load(path: Paths.fixture("ml/\(name)/model.onnx"))
        let input = try #require(model.inputs.first)
        let shape = [0] + input.shape.dropFirst().map { $0 ?? 1 }
        let empty = input.dtype == .string ? Tensor(shape: shape, strings: []) : Tensor(zeros: input.dtype, shape: shape)
        let outputs = try model.run(inputs: [input.name: empty])
        #expect(outputs.values.allSatisfy { $0.shape.first == 0 }, "\(outputs.mapValues(\.shape))")
    }

    /// Labels exactly, scores within 1e-5 (relative to max(1, |expected|): regressors' outputs
    /// are in the hundreds, where float32 itself has steps of 1e-5).
    @Test(arguments: MLCase.all)
    func matchesOnnxruntime(_ testCase: MLCase) throws {
        try testCase.check(tolerance: 1e-5)
    }
}

/// What torch.onnx.export writes, with dynamo=False (TorchScript, opset 17) and dynamo=True
/// (torch.export, opset 20), and Hugging Face encoders with attention masks at batch 8 and 1.
@Suite struct ExporterModelTests {
    @Test func theFixturesAreThere() {
        #expect(MLCase.exporters.count >= 22, "Tests/Fixtures/exporters has \(MLCase.exporters.count) cases")
    }

    @Test(arguments: MLCase.exporters)
    func matchesOnnxruntime(_ testCase: MLCase) throws {
        try testCase.check(tolerance: 1e-4)
    }
}
