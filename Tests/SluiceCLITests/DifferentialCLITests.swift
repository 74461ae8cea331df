import Foundation
import SluiceONNX
import SluiceTensor
import SluiceTestSupport
import Testing

/// A few random graphs (tools/difftest.py cli-fixtures) through the built binary, compared with
/// onnxruntime's outputs: `sluice infer` at batch sizes 1, 3 and 8, and a two-stage pipeline
/// over the same rows (a tensors source, an npy sink). The in-process checks of many more graphs
/// are in SluiceONNXTests/DifferentialTests.swift.
@Suite struct DifferentialCLITests {
    static let folder = fixture("differential-cli")
    static let models: [String] = ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? [])
        .filter { $0.hasSuffix(".onnx") }.sorted()

    /// Batch size → (inputs, onnxruntime's outputs), from NAME.pb beside the model.
    static func data(_ model: String) throws -> [Int: (inputs: [String: Tensor], outputs: [String: Tensor])] {
        try DifferentialCase(model: URL(fileURLWithPath: folder).appendingPathComponent(model).path).runs
    }

    /// Within 2e-4 · max(1, |expected|), as the in-process comparison.
    static func close(_ got: Tensor, _ want: Tensor) -> Bool {
        got.dtype == .float32 && want.dtype == .float32 && got.shape == want.shape
            && zip(got.floats, want.floats).allSatisfy { abs($0 - $1) <= 2e-4 * max(1, abs($1)) }
    }

    @Test func fixturesArePresent() {
        #expect(Self.models.count >= 3, "\(Self.folder) holds \(Self.models.count) models")
    }

    @Test(arguments: models)
    func inferMatchesOnnxruntime(model: String) throws {
        let path = URL(fileURLWithPath: Self.folder).appendingPathComponent(model).path
        for (batch, run) in try Self.data(model).sorted(by: { $0.key < $1.key }) {
            let work = temporaryPath("difftest-\(batch)")
            try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: work) }
            var arguments = ["infer", path, "--output", work + "/out"]
            for (name, tensor) in run.inputs {
                let file = work + "/\(name).npy"
                try NPY.write(tensor, path: file)
                arguments += ["--input", "\(name)=\(file)"]
            }
            let result = try Running(arguments).wait()
            #expect(result.status == 0, "\(model) batch \(batch): \(result.stderr)")
            for (name, want) in run.outputs {
                let got = try NPY.read(path: work + "/out/\(name).npy")
                #expect(Self.close(got, want), "\(model) batch \(batch) output \(name) differs from onnxruntime")
            }
        }
    }

    @Test(arguments: models)
    func twoStagePipelineMatchesOnnxruntime(model: String) throws {
        let path = URL(fileURLWithPath: Self.folder).appendingPathComponent(model).path
        let runs = try Self.data(model).sorted { $0.key < $1.key }
        let loaded = try ONNXModel.load(path: path)
        let input = try #require(loaded.inputs.first?.name), output = try #require(loaded.outputs.first?.name)
        let rows = Tensor.concatenatingRows(try runs.map { try #require($0.value.inputs[input]) })
        let expected = Tensor.concatenatingRows(try runs.map { try #require($0.value.outputs[output]) })
        let rowsPath = temporaryPath("rows.npy"), outPath = temporaryPath("out.npy")
        try NPY.write(rows, path: rowsPath)
        defer {
            try? FileManager.default.removeItem(atPath: rowsPath)
            try? FileManager.default.removeItem(atPath: outPath)
        }
        let file = try writePipeline("""
        model:
          path: \(path)
        source:
          type: tensors
          path: \(rowsPath)
        batching:
          max_size: 5
          max_delay_ms: 5
        stages:
          count: 2
        sink:
          type: npy
          path: \(outPath)
        """)
        let result = try sluice("run", file)
        #expect(result.status == 0, "\(model): \(result.stderr)")
        let produced = try NPY.read(path: outPath)
        #expect(Self.close(produced, expected), "\(model): the two-stage pipeline's output differs from onnxruntime")
    }
}
