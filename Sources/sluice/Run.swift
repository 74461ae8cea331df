import ArgumentParser
import Foundation
import SluiceRoles

extension Sluice {
    struct Run: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run a pipeline: a controller, one process per stage, a source and a sink, on this machine.",
            discussion: """
            Predictions go where the pipeline's sink says (JSON lines on standard output by \
            default), or to --predictions FILE; logs and the run summary go to standard error. \
            A report never shares a stream or a file with the predictions: --report - (standard \
            output) needs the predictions sent elsewhere. Ctrl-C drains the pipeline and stops; \
            a second Ctrl-C stops at once.

            Examples:
              sluice run pipelines/quickstart.yaml > predictions.jsonl
              sluice run pipelines/quickstart.yaml --report run.json
              sluice run pipelines/quickstart.yaml --predictions predictions.jsonl --report - > run.json
              sluice run pipelines/imu-mlp-3stage.yaml --live --metrics-port 9464 > predictions.jsonl
            """)

        @Argument(help: "The pipeline file (YAML).")
        var pipeline: String

        @Option(help: "Also write the run summary as JSON to this file ('-': standard output, when the predictions go elsewhere).")
        var report: String?

        @OptionGroup var predictions: PredictionsOption

        @OptionGroup var observe: ObserveOptions

        func run() throws {
            let plan = try loadPlan(pipeline, predictions: predictions.path)
            if let report {
                try OutputStreams.check("--report", report, sink: plan.config.sink, pipeline: pipeline)
            }
            StopSignal.install(.byHand)
            let launcher = Launcher(pipelineFile: pipeline, plan: plan,
                                    controllerOptions: (report.map { ["--report", $0] } ?? []) + predictions.controllerArguments
                                        + observe.controllerArguments)
            let status: Int32
            do {
                status = try launcher.run()
            } catch {
                throw ExitCodes.report(error)
            }
            if status != 0 { throw ExitCode(status) }
        }
    }
}

/// `--predictions`: where the sink writes, in place of the pipeline's `sink.path`.
struct PredictionsOption: ParsableArguments {
    @Option(name: .customLong("predictions"),
            help: "Write the predictions to this file instead of the pipeline's sink.path ('-': standard output).")
    var path: String?

    /// The controller reads the pipeline file again and hands the sink its path.
    var controllerArguments: [String] {
        path.map { ["--predictions", $0 == "-" ? "-" : URL(fileURLWithPath: $0).standardizedFileURL.path] } ?? []
    }
}

/// Watching a run while it goes: the stage table in the terminal, Prometheus metrics over HTTP.
struct ObserveOptions: ParsableArguments {
    @Flag(help: "Print the stage table (busy/idle/blocked, rates, bottleneck) to standard error every second.")
    var live = false

    @Option(help: "Serve Prometheus metrics at http://HOST:PORT/metrics from the controller.")
    var metricsPort: UInt16?

    @Option(help: ArgumentHelp("The address the metrics endpoint listens on: this machine only by default; 0.0.0.0 (or ::) for every interface.",
                               valueName: "host"))
    var metricsHost = "127.0.0.1"

    var controllerArguments: [String] {
        (live ? ["--live"] : []) + (metricsPort.map { ["--metrics-port", String($0), "--metrics-host", metricsHost] } ?? [])
    }
}
