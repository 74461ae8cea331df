import Foundation
import Testing
import SluiceTensor

@Test(arguments: ["run", "profile", "validate", "plan", "infer", "inspect", "bench", "controller", "stage", "source", "sink"])
func everySubcommandHelpShowsAnExample(subcommand: String) throws {
    let result = try sluice(subcommand, "--help")
    #expect(result.status == 0)
    #expect(result.stdout.contains("Example") && result.stdout.contains("sluice \(subcommand)"), "\(result.stdout)")
}

@Test func validateAcceptsTheShippedPipelines() throws {
    let files = ["quickstart.yaml", "imu-mlp-3stage.yaml", "imu-live.yaml"].map(pipelineFile)
    let result = try Running(["validate"] + files).wait()
    #expect(result.status == 0, "\(result.stderr)")
    for file in files { #expect(result.stdout.contains("\(file): valid:"), "\(result.stdout)") }
}

@Test func validateNamesFileLineAndKeyAndExitsWith2() throws {
    let file = try writePipeline("""
    model:
      path: {root}/pipelines/models/basicmotions-cnn.onnx
    source:
      type: recording
      path: {root}/pipelines/data/basicmotions-test.csv
      rate: sometimes
    window:
      length: 100
    stages:
      count: 0
    """)
    let result = try sluice("validate", file)
    #expect(result.status == 2)
    #expect(result.stderr.contains("\(file):10: stages.count: must be >= 1"), "\(result.stderr)")
    #expect(result.stderr.contains("\(file):6: source.rate: must be 'max', 'real' or a speed-up"), "\(result.stderr)")
}

@Test func anUnsupportedOpFailsTheLoadWithOpNodeAndOpsetAndExitsWith3() throws {
    let file = try writePipeline("""
    model:
      path: {root}/Tests/Fixtures/models/unsupported-op.onnx
    source:
      type: tensors
      path: {root}/Tests/Fixtures/tiny_mlp_input.npy
    stages:
      count: 1
    """)
    for command in ["validate", "run"] {
        let result = try sluice(command, file)
        #expect(result.status == 3, "\(command): \(result.stderr)")
        #expect(result.stderr.contains("DynamicQuantizeLinear") && result.stderr.contains("weird_node") && result.stderr.contains("17"),
                "\(result.stderr)")
    }
}

@Test func planShowsLayersAndTheSplit() throws {
    let result = try sluice("plan", pipelineFile("quickstart.yaml"))
    #expect(result.status == 0, "\(result.stderr)")
    #expect(result.stdout.contains("input 'window' [6, 100] per window, output 'scores'"), "\(result.stdout)")
    for expected in ["MFLOP/window", "Conv", "BatchNormalization", "GlobalAveragePool", "Softmax", "split over 3 stages"] {
        #expect(result.stdout.contains(expected), "missing \(expected) in \(result.stdout)")
    }
}

@Test func inferWritesOutputsThatMatchOnnxruntime() throws {
    let output = temporaryPath("infer")
    let result = try sluice("infer", fixture("models/tiny-mlp.onnx"), "--input", "x=\(fixture("tiny_mlp_input.npy"))", "--output", output)
    #expect(result.status == 0, "\(result.stderr)")
    let files = try FileManager.default.contentsOfDirectory(atPath: output)
    #expect(files.count == 1)
    let produced = try NPY.read(path: "\(output)/\(files[0])")
    let expected = try NPY.read(path: fixture("tiny_mlp_expected.npy"))
    #expect(produced.shape == expected.shape)
    #expect(allClose(produced.floats, expected.floats))
}

@Test func inferRejectsAMissingInputWithItsName() throws {
    let result = try sluice("infer", fixture("models/tiny-mlp.onnx"), "--output", temporaryPath("x"))
    #expect(result.status != 0)
    #expect(result.stderr.contains("missing --input for x"), "\(result.stderr)")
}

/// numpy.allclose with rtol 1e-4 and atol 1e-6: |a - b| <= atol + rtol·|b| everywhere.
func allClose(_ actual: [Float], _ expected: [Float], rtol: Float = 1e-4, atol: Float = 1e-6) -> Bool {
    actual.count == expected.count && zip(actual, expected).allSatisfy { abs($0 - $1) <= atol + rtol * abs($1) }
}
