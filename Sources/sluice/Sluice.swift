import ArgumentParser
import Foundation
import SluiceConfig
import SluiceONNX
import SluiceRoles
import SluiceTensor
import SluicePlan

@main
struct Sluice: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sluice",
        abstract: "Pipeline-parallel stream processing for ONNX models over sensor data.",
        discussion: """
        Examples:
          sluice run pipelines/quickstart.yaml
          sluice profile pipelines/rebalance-demo.yaml --duration 1s
          sluice validate pipelines/quickstart.yaml
          sluice plan pipelines/imu-mlp-3stage.yaml
          sluice infer pipelines/models/basicmotions-cnn.onnx --input window=Tests/Fixtures/quickstart_input.npy --output out/
          sluice inspect pipelines/models/basicmotions-cnn.onnx
          sluice bench pipelines/models/basicmotions-cnn.onnx --batch 1,8,32 --seconds 0.5
        """,
        version: SluiceVersion.current,
        subcommands: [Run.self, Profile.self, Validate.self, Plan.self, Infer.self, Inspect.self, Bench.self, Controller.self,
                      Stage.self, Source.self, Sink.self, Keys.self, Deploy.self])

    static func main() {
        restartWithBetterBLASKernels()
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            // Help is rendered unwrapped and wrapped once here (see HelpText). Other clean exits
            // (--version, completion scripts) print as the parser has them.
            if exitCode(for: error) == .success {
                let text = fullMessage(for: error, columns: HelpText.unwrapped)
                if text.hasPrefix("OVERVIEW: ") || text.hasPrefix("USAGE: ") {
                    print(HelpText.wrap(text, columns: HelpText.terminalColumns()))
                    exit(withError: ExitCode.success)
                }
            }
            exit(withError: error)
        }
    }

    /// OpenBLAS reads `OPENBLAS_CORETYPE` only as it loads, before any Swift code runs: when it
    /// fell back to baseline kernels on a vector CPU, run this same command again with the core
    /// type set. Every process `sluice run` starts inherits it.
    private static func restartWithBetterBLASKernels() {
        guard let coreType = Kernels.betterBLASCoreType() else { return }
        setenv("OPENBLAS_CORETYPE", coreType, 1)
        let arguments = CommandLine.unsafeArgv
        execv("/proc/self/exe", arguments)
        // exec failed (no /proc): carry on with the slower kernels.
    }
}

/// Exit codes: 1 the run failed, 2 the pipeline file is invalid, 3 the model cannot be loaded.
enum ExitCodes {
    static func report(_ error: Error) -> ExitCode {
        writeStandardError("sluice: error: \(error)\n")
        switch error {
        case is ConfigError: return ExitCode(2)
        case is ModelError: return ExitCode(3)
        case is UsageError: return ExitCode.validationFailure
        default: return ExitCode(1)
        }
    }
}

/// A command line that asks for what cannot be done (exit status 64, as the parser's own).
struct UsageError: Error, CustomStringConvertible {
    let description: String
}

/// Loads and checks a pipeline file and its model, or exits with the matching code.
/// `predictions` replaces the sink's path (`--predictions`).
func loadPlan(_ file: String, predictions: String? = nil) throws -> PipelinePlan {
    do {
        var config = try PipelineConfig.load(path: file)
        if let predictions {
            // A file in place of the network: the same JSON lines, for a look at what consumers get.
            if config.sink.kind == .zmq {
                config.sink.kind = .jsonl
                config.sink.network = nil
            }
            config.sink.path = predictions == "-" ? "-" : URL(fileURLWithPath: predictions).standardizedFileURL.path
        }
        if config.sink.kind == .npy && config.sink.path == "-" {
            throw UsageError(description: "an npy sink needs a file: --predictions FILE")
        }
        if let predictions, let problem = SinkConfig.pathProblem(kind: config.sink.kind, path: config.sink.path) {
            throw UsageError(description: "--predictions \(predictions) \(problem)")
        }
        return try PipelinePlan.make(config: config)
    } catch {
        throw ExitCodes.report(error)
    }
}
