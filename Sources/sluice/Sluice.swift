import ArgumentParser
import Foundation
import SluiceConfig
import SluiceONNX
import SluiceRoles
import SluiceTensor

@main
struct Sluice: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sluice",
        abstract: "Pipeline-parallel stream processing for ONNX models over sensor data.",
        discussion: """
        Examples:
          sluice run pipelines/quickstart.yaml
          sluice profile pipelines/rebalance-demo.yaml --duration 10s
          sluice validate pipelines/quickstart.yaml
          sluice plan pipelines/imu-mlp-3stage.yaml
          sluice infer model.onnx --input window=x.npy --output out/
          sluice inspect model.onnx
          sluice bench model.onnx --batch 1,8,32
        """,
        subcommands: [Run.self, Profile.self, Validate.self, Plan.self, Infer.self, Inspect.self, Bench.self, Controller.self,
                      Stage.self, Source.self, Sink.self])

    static func main() {
        restartWithBetterBLASKernels()
        main(nil)
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
        FileHandle.standardError.write(Data("sluice: error: \(error)\n".utf8))
        switch error {
        case is ConfigError: return ExitCode(2)
        case is ModelError: return ExitCode(3)
        default: return ExitCode(1)
        }
    }
}

/// Loads and checks a pipeline file and its model, or exits with the matching code.
func loadPlan(_ file: String) throws -> PipelinePlan {
    do {
        return try PipelinePlan.make(config: try PipelineConfig.load(path: file))
    } catch {
        throw ExitCodes.report(error)
    }
}
