import Foundation
import Testing
import SluiceONNX
import SluiceTensor
import SluiceTestSupport

/// scikit-learn models as skl2onnx exports them, through the built binary: `inspect`, `infer`,
/// `validate`, and a sensor pipeline whose classes come from the model's label output.
@Suite struct ScikitLearnTests {
    static let forest = packageRoot.appendingPathComponent("pipelines/models/basicmotions-forest.onnx").path

    /// The strings of a NumPy '<U' array file, as `sluice infer` writes string outputs.
    static func unicodeStrings(_ path: String) throws -> [String] {
        let data = try #require(FileManager.default.contents(atPath: path))
        let bytes = [UInt8](data)
        let headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
        let header = String(decoding: bytes[10..<(10 + headerLength)], as: UTF8.self)
        let descr = try #require(header.range(of: "'<U").map { header[$0.upperBound...].prefix { $0.isNumber } })
        let width = try #require(Int(descr))
        let body = Array(bytes[(10 + headerLength)...])
        return stride(from: 0, to: body.count, by: width * 4).map { start in
            let scalars = (0..<width).compactMap { i -> Unicode.Scalar? in
                let o = start + i * 4
                let value = UInt32(body[o]) | UInt32(body[o + 1]) << 8 | UInt32(body[o + 2]) << 16 | UInt32(body[o + 3]) << 24
                return value == 0 ? nil : Unicode.Scalar(value)
            }
            return String(String.UnicodeScalarView(scalars))
        }
    }

    @Test func inspectSaysWhichOutputsTheSinkUsesAndWhy() throws {
        let result = try sluice("inspect", Self.forest)
        #expect(result.status == 0, "\(result.stderr)")
        for expected in ["ai.onnx.ml.TreeEnsembleClassifier", "ai.onnx.ml.ZipMap", "unsupported: none",
                         "inputs:  X: float32[N, 600]", "outputs: output_label: string[N], output_probability: float32[N, 4]",
                         "sink uses: scores from 'output_probability' (class scores; model.output picks another)",
                         "  class from 'output_label' (one label per window)",
                         "  classes Badminton, Running, Standing, Walking (the model's class labels; model.classes renames them)"] {
            #expect(result.stdout.contains(expected), "missing '\(expected)' in \(result.stdout)")
        }
    }

    /// `sluice infer` on a default export with string labels: the labels onnxruntime gave, as a
    /// NumPy unicode array, and the ZipMap's probabilities as float rows.
    @Test func inferWritesTheLabelsOnnxruntimeGives() throws {
        let folder = fixture("ml/rf_str3")
        let data = try #require(FileManager.default.contents(atPath: folder + "/expected.json"))
        let json = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let inputs = try #require(json["inputs"] as? [String: [String: Any]])
        let outputs = try #require(json["outputs"] as? [String: [String: Any]])
        let input = temporaryPath("rf-input.npy"), output = temporaryPath("rf-out")
        try NPY.write(try FixtureTensor.decode(try #require(inputs["X"])), path: input)
        let result = try sluice("infer", folder + "/model.onnx", "--input", "X=\(input)", "--output", output)
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("output_label: string[7]"), "\(result.stdout)")
        let expectedLabels = try FixtureTensor.decode(try #require(outputs["output_label"])).strings
        #expect(try Self.unicodeStrings(output + "/output_label.npy") == expectedLabels)
        let probabilities = try NPY.read(path: output + "/output_probability.npy")
        let expected = try FixtureTensor.decode(try #require(outputs["output_probability"]))
        #expect(probabilities.shape == [7, 3])
        #expect(zip(probabilities.floats, expected.floats).allSatisfy { abs($0 - $1) <= 1e-5 })
    }

    /// A flattened window must hold the model's features: a length that does not fit is
    /// refused naming the key, with what would fit.
    @Test func validateChecksTheFlattenedWindowAgainstTheModel() throws {
        func pipeline(length: Int) throws -> String {
            try writePipeline("""
            name: forest
            model:
              path: \(Self.forest)
            source:
              type: recording
              path: {root}/pipelines/data/basicmotions-test.csv
            window:
              length: \(length)
            stages:
              count: 1
            sink:
              type: jsonl
              path: "-"
            """)
        }
        let fits = try sluice("validate", try pipeline(length: 100))
        #expect(fits.status == 0, "\(fits.stderr)")
        let short = try sluice("validate", try pipeline(length: 90))
        #expect(short.status == 2)
        #expect(short.stderr.contains("window.length: is 90 samples of 6 channel(s), 540 values flattened, but model input 'X' takes [600] per window"),
                "\(short.stderr)")
        let cnn = try writePipeline("""
        name: cnn
        model:
          path: {root}/pipelines/models/basicmotions-cnn.onnx
        source:
          type: zmq
          endpoint: tcp://127.0.0.1:9
          channels: 7
        window:
          length: 100
        stages:
          count: 1
        sink:
          type: jsonl
          path: "-"
        """)
        let sevenChannels = try sluice("validate", cnn)
        #expect(sevenChannels.status == 2)
        #expect(sevenChannels.stderr.contains("source.channels: gives 7 channel(s), but model input 'window' takes [6, 100] per window"),
                "\(sevenChannels.stderr)")
    }
}

extension MultiProcess {
    /// Every default skl2onnx classifier export of Tests/Fixtures/ml, in a pipeline: its rows fed
    /// by a tensors source, two stages where the model has two layers, each window's class and
    /// scores as onnxruntime gave them.
    @Suite struct ScikitLearnExportPipelineTests {
        static let classifiers = ["logreg", "linearsvc", "svc", "svcprob", "rf", "extratrees", "gb", "knn", "mlp", "pipeline"]
            .flatMap { ["\($0)_str3", "\($0)_int2"] }

        @Test(arguments: classifiers)
        func runsInAPipelineAsOnnxruntimeDoes(_ name: String) throws {
            let folder = fixture("ml/\(name)")
            let data = try #require(FileManager.default.contents(atPath: folder + "/expected.json"))
            let json = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
            let inputs = try #require(json["inputs"] as? [String: [String: Any]])
            let outputs = try #require(json["outputs"] as? [String: [String: Any]])
            let rows = temporaryPath("\(name).npy"), predictions = temporaryPath("\(name).jsonl")
            try NPY.write(try FixtureTensor.decode(try #require(inputs["X"])), path: rows)
            // What a user of the model means: the probabilities (the ZipMap's, or LinearSVC's
            // `probabilities`) are the scores, the label is the class.
            let scoresName = (json["zipmap"] as? [String: Any])?.keys.first ?? "probabilities"
            let labelName = outputs["output_label"] != nil ? "output_label" : "label"
            let pipeline = try writePipeline("""
            name: \(name.replacingOccurrences(of: "_", with: "-"))
            model:
              path: \(folder)/model.onnx
            source:
              type: tensors
              path: \(rows)
            batching:
              max_size: 3
              max_delay_ms: 5
            stages:
              count: 1
            sink:
              type: jsonl
              path: \(predictions)
            """)
            let result = try sluice("run", pipeline)
            #expect(result.status == 0, "\(result.stderr)")
            let lines = try String(contentsOfFile: predictions, encoding: .utf8).split(separator: "\n")
            let scores = try FixtureTensor.decode(try #require(outputs[scoresName]))
            let labelJSON = try #require(outputs[labelName])
            let labelValues: [Any] = try #require(labelJSON["values"] as? [Any])
            let labels: [String] = labelValues.map { "\($0)" }
            #expect(lines.count == labels.count)
            let width = scores.elementCount / max(1, labels.count)
            for (row, line) in lines.enumerated() where row < labels.count {
                let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
                #expect(object["class"] as? String == labels[row], "\(name) row \(row): \(line)")
                let written = try #require(object["scores"] as? [Double])
                let expected = scores.floats[(row * width)..<((row + 1) * width)].map(Double.init)
                #expect(written.count == width && zip(written, expected).allSatisfy { abs($0 - $1) <= 1e-5 * max(1, abs($1)) },
                        "\(name) row \(row): \(written) vs \(expected)")
            }
        }
    }

    /// The shipped forest pipeline: every window's class is the model's label for it (not an
    /// argmax the sink made up), its scores the ZipMap's probabilities.
    @Suite struct ScikitLearnPipelineTests {
        @Test func theForestPipelineNamesEachWindowByTheModelsLabel() throws {
            let output = temporaryPath("forest.jsonl")
            let pipeline = try writePipeline(try String(contentsOfFile: pipelineFile("imu-forest.yaml"), encoding: .utf8)
                .replacingOccurrences(of: "models/", with: "{root}/pipelines/models/")
                .replacingOccurrences(of: "data/", with: "{root}/pipelines/data/")
                .replacingOccurrences(of: "path: \"-\"", with: "path: \(output)"))
            let result = try sluice("run", pipeline)
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stderr.contains("72 windows in, 72 out (in order, none lost or duplicated)"), "\(result.stderr)")
            // onnxruntime's figure for the same windows (pipelines/models/ACCURACY.md).
            #expect(result.stderr.contains("accuracy     58/72 = 80.6%"), "\(result.stderr)")
            let lines = try String(contentsOfFile: output, encoding: .utf8).split(separator: "\n")
            #expect(lines.count == 72)
            // The same windows in this process: the model's label output for each, in order.
            let (keys, values) = try PipelineTests.recordingWindows(hop: 50)
            let model = try ONNXModel.load(path: ScikitLearnTests.forest)
            let labels = try #require(try model.run(inputs: ["X": Tensor(shape: [keys.count, 600], floats: values)])["output_label"]).strings
            for (line, label) in zip(lines, labels) {
                let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
                let scores = try #require(object["scores"] as? [Double])
                #expect(scores.count == 4 && abs(scores.reduce(0, +) - 1) < 1e-4, "\(line)")
                #expect(object["class"] as? String == label, "\(line)")
            }
        }
    }
}
