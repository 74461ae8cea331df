import Foundation
import SluiceONNX
import SluiceTensor
import Testing

/// One case of Tests/Fixtures/ml (made by tools/make_ml_fixtures.py): a scikit-learn export, a
/// single ai.onnx.ml node, or a random ensemble, with onnxruntime's outputs for its inputs.
struct MLCase: CustomStringConvertible, Sendable {
    let name: String
    var description: String { name }
    var folder: String { Paths.fixture("ml/\(name)") }

    static let all: [MLCase] = {
        guard let data = FileManager.default.contents(atPath: Paths.fixture("ml/cases.json")),
              let names = try? JSONSerialization.jsonObject(with: data) as? [String] else { return [] }
        return names.map(MLCase.init)
    }()

    /// A tensor as the fixture writes it: dtype, shape and flat values.
    static func tensor(_ json: [String: Any]) throws -> Tensor {
        let dtype = try #require(json["dtype"] as? String)
        let shape = try #require(json["shape"] as? [Int])
        let values = try #require(json["values"] as? [Any])
        switch dtype {
        case "string": return Tensor(shape: shape, strings: values.map { "\($0)" })
        case "float32", "float64", "int64", "int32":
            let numbers = values.map { value -> Double in
                if let number = value as? NSNumber { return number.doubleValue }
                return Double("\(value)") ?? .nan  // "NaN" and friends
            }
            let type: DType = dtype == "float32" ? .float32 : dtype == "float64" ? .float64 : dtype == "int64" ? .int64 : .int32
            return Tensor(dtype: type, shape: shape, doubles: numbers)
        default:
            throw MLCaseError(description: "unknown dtype \(dtype)")
        }
    }
}

struct MLCaseError: Error, CustomStringConvertible { let description: String }

@Suite struct MLModelTests {
    @Test func theFixturesAreThere() {
        #expect(MLCase.all.count >= 60, "Tests/Fixtures/ml/cases.json lists \(MLCase.all.count) cases")
    }

    /// Labels exactly, scores within 1e-5 (relative to max(1, |expected|): regressors' outputs
    /// are in the hundreds, where float32 itself has steps of 1e-5).
    @Test(arguments: MLCase.all)
    func matchesOnnxruntime(_ testCase: MLCase) throws {
        let data = try #require(FileManager.default.contents(atPath: testCase.folder + "/expected.json"))
        let json = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let inputs = try #require(json["inputs"] as? [String: [String: Any]])
        let outputs = try #require(json["outputs"] as? [String: [String: Any]])
        let model = try ONNXModel.load(path: testCase.folder + "/model.onnx")
        let given = try inputs.mapValues(MLCase.tensor)
        let results = try model.run(inputs: given)
        for (name, expectedJSON) in outputs {
            let expected = try MLCase.tensor(expectedJSON)
            let actual = try #require(results[name], "\(testCase): no output '\(name)'")
            #expect(actual.elementCount == expected.elementCount, "\(testCase) '\(name)': \(actual.shape) vs \(expected.shape)")
            guard actual.elementCount == expected.elementCount else { continue }
            switch expected.dtype {
            case .string:
                #expect(actual.dtype == .string && actual.strings == expected.strings, "\(testCase) '\(name)': labels differ")
            case .int64, .int32:
                #expect(actual.int64Values == expected.int64Values, "\(testCase) '\(name)': \(actual.int64Values) vs \(expected.int64Values)")
            default:
                let a = actual.doubles, e = expected.doubles
                var worst = 0.0
                for (x, y) in zip(a, e) {
                    if x.isNaN != y.isNaN { worst = .infinity; break }
                    if x.isNaN { continue }
                    worst = max(worst, abs(x - y) / max(1, abs(y)))
                }
                #expect(worst <= 1e-5, "\(testCase) '\(name)': max error \(worst)")
            }
        }
    }
}
