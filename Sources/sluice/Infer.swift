import ArgumentParser
import Foundation
import SluiceONNX
import SluiceTensor

extension Sluice {
    struct Infer: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run a model in this process on .npy inputs and write its outputs as .npy files.",
            discussion: """
            Each output is written to DIR/NAME.npy. Use it to check a model against reference \
            outputs before putting it in a pipeline.

            Example:
              sluice infer pipelines/models/basicmotions-cnn.onnx --input window=Tests/Fixtures/quickstart_input.npy --output out/
            """)

        @Argument(help: "The model (.onnx).")
        var model: String

        @Option(name: .customLong("input"), help: "NAME=FILE.npy for each graph input.")
        var inputs: [String] = []

        @Option(help: "Folder for the outputs (created if missing).")
        var output: String

        func run() throws {
            do {
                let loaded = try ONNXModel.load(path: model)
                var values: [String: Tensor] = [:]
                for pair in inputs {
                    let parts = pair.split(separator: "=", maxSplits: 1).map(String.init)
                    guard parts.count == 2 else { throw ValidationError("--input takes NAME=FILE.npy, not '\(pair)'") }
                    values[parts[0]] = try NPY.read(path: parts[1])
                }
                let missing = loaded.inputs.map(\.name).filter { values[$0] == nil }
                guard missing.isEmpty else {
                    throw ValidationError("missing --input for \(missing.joined(separator: ", ")) (the model's inputs: \(loaded.inputs.map(\.name).joined(separator: ", ")))")
                }
                let results = try loaded.run(inputs: values)
                try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: true)
                for info in loaded.outputs {
                    guard let tensor = results[info.name] else { continue }
                    let path = URL(fileURLWithPath: output).appendingPathComponent("\(info.name).npy").path
                    try NPY.write(tensor, path: path)
                    print("\(info.name): \(tensor.dtype)\(tensor.shape) -> \(path)")
                }
            } catch let error as ValidationError {
                throw error
            } catch {
                throw ExitCodes.report(error)
            }
        }
    }
}
