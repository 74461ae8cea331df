import Foundation
import SluiceONNX
import SluiceTensor
import Testing

/// ONNX's own backend test cases (Debian package libonnx-testdata).
enum BackendTestData {
    static let root = "/usr/share/libonnx-testdata/data/node"
    static var available: Bool { FileManager.default.fileExists(atPath: root) }

    enum Outcome: Equatable { case pass, loadError(String), runError(String), mismatch(String) }

    /// Loads `case`, feeds every test_data_set_*, and compares with the expected outputs
    /// (|a − b| ≤ 1e-4 · max(1, |b|) for floats, exact otherwise).
    static func run(_ name: String) -> Outcome {
        let directory = "\(root)/\(name)"
        let model: ONNXModel
        do { model = try ONNXModel.load(path: "\(directory)/model.onnx") } catch { return .loadError("\(error)") }
        let sets = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [])
            .filter { $0.hasPrefix("test_data_set_") }.sorted()
        for set in sets {
            let folder = "\(directory)/\(set)"
            do {
                var inputs: [String: Tensor] = [:]
                for (i, info) in model.inputs.enumerated() {
                    inputs[info.name] = try ONNXTensor.read(path: "\(folder)/input_\(i).pb").tensor
                }
                let outputs = try model.run(inputs: inputs)
                for (i, info) in model.outputs.enumerated() {
                    let expected = try ONNXTensor.read(path: "\(folder)/output_\(i).pb").tensor
                    guard let actual = outputs[info.name] else { return .mismatch("\(set): no output \(info.name)") }
                    guard actual.dtype == expected.dtype, actual.shape == expected.shape else {
                        return .mismatch("\(set): \(info.name) is \(actual) expected \(expected)")
                    }
                    if actual.dtype == .float32 {
                        let error = maxRelativeError(actual, expected)
                        if !(error <= 1e-4) { return .mismatch("\(set): \(info.name) max relative error \(error)") }
                    } else if Data(bytes: actual.storage.bytes, count: actual.byteCount)
                        != Data(bytes: expected.storage.bytes, count: expected.byteCount) {
                        return .mismatch("\(set): \(info.name) differs")
                    }
                }
            } catch {
                return .runError("\(set): \(error)")
            }
        }
        return .pass
    }
}

@Suite(.enabled(if: BackendTestData.available, "libonnx-testdata is not installed"))
struct ConformanceTests {
    @Test(arguments: ConformanceCases.mustPass)
    func passes(name: String) {
        let outcome = BackendTestData.run(name)
        #expect(outcome == .pass, "\(name): \(outcome)")
    }

    /// A skipped case that starts passing belongs in `mustPass`.
    @Test(arguments: ConformanceCases.skipped.keys.sorted())
    func skippedCasesStillFail(name: String) {
        #expect(BackendTestData.run(name) != .pass, "\(name) passes now: move it to ConformanceCases.mustPass")
    }

    /// Every case in neither list must fail to load because of an unsupported op, so that no
    /// case of a supported op goes unaccounted for.
    @Test func everyOtherCaseUsesAnUnsupportedOp() throws {
        let listed = Set(ConformanceCases.mustPass).union(ConformanceCases.skipped.keys)
        let all = try FileManager.default.contentsOfDirectory(atPath: BackendTestData.root)
        #expect(all.count > 900)
        for name in all.sorted() where !listed.contains(name) {
            do {
                _ = try ONNXModel.load(path: "\(BackendTestData.root)/\(name)/model.onnx")
                Issue.record("\(name) loads: add it to ConformanceCases.mustPass or .skipped")
            } catch let error as ModelError {
                #expect(error.kind == .unsupportedOp, "\(name): \(error)")
            }
        }
    }
}
