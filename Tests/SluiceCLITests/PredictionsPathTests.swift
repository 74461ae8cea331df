import Foundation
import Testing

/// A path given with --predictions is held to the same rules as the pipeline file's sink.path,
/// and every command that writes a file of its own refuses the file the predictions go to.
@Suite struct PredictionsPathTests {
    /// An npy sink rewrites its header in place at the end: a device cannot take that, so
    /// `--predictions /dev/null` is refused before any process starts, with the reason.
    @Test func anNpySinkRefusesADeviceGivenWithPredictions() throws {
        let file = try Outputs.tensorsPipeline(sink: "  type: npy\n  path: \(temporaryPath("scores.npy"))")
        let started = Date()
        let result = try sluice("run", file, "--predictions", "/dev/null", timeout: 60)
        #expect(result.status == 64, "\(result.stderr)")
        #expect(result.stderr.contains("--predictions /dev/null must be a regular file for an npy sink"), "\(result.stderr)")
        #expect(!result.stderr.contains("stage-0"), "no process may start: \(result.stderr.prefix(600))")
        #expect(Date().timeIntervalSince(started) < 20)
    }

    /// /dev/null drops a jsonl sink's predictions; an npy sink cannot write there, so its refusal
    /// must not suggest it.
    @Test func theDevNullHintIsGivenOnlyForJsonlSinks() throws {
        let npyPath = temporaryPath("scores.npy")
        let npy = try Outputs.tensorsPipeline(sink: "  type: npy\n  path: \(npyPath)")
        let refusedNpy = try sluice("run", npy, "--report", npyPath)
        #expect(refusedNpy.status == 64 && refusedNpy.stderr.contains("--predictions FILE"), "\(refusedNpy.stderr)")
        #expect(!refusedNpy.stderr.contains("/dev/null"), "\(refusedNpy.stderr)")
        let jsonlPath = temporaryPath("scores.jsonl")
        let jsonl = try Outputs.tensorsPipeline(sink: "  type: jsonl\n  path: \(jsonlPath)")
        let refusedJsonl = try sluice("run", jsonl, "--report", jsonlPath)
        #expect(refusedJsonl.status == 64 && refusedJsonl.stderr.contains("--predictions /dev/null drops them"), "\(refusedJsonl.stderr)")
    }

    /// `sluice controller` writes its report and profile itself: neither may land on the sink's file.
    @Test(arguments: ["--report", "--profile"])
    func theControllerRefusesTheSinksFile(option: String) throws {
        let predictions = temporaryPath("controller-scores.jsonl")
        let file = try Outputs.tensorsPipeline(sink: "  type: jsonl\n  path: \(predictions)")
        try Data("kept\n".utf8).write(to: URL(fileURLWithPath: predictions))
        let result = try sluice("controller", file, "--control", "ipc://\(temporaryPath("control.ipc"))",
                                option, predictions, timeout: 30)
        #expect(result.status == 64 && result.stderr.contains(option), "\(result.stderr)")
        #expect(String(decoding: FileManager.default.contents(atPath: predictions) ?? Data(), as: UTF8.self) == "kept\n")
    }
}
