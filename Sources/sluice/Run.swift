import ArgumentParser
import Foundation
import SluiceRoles

extension Sluice {
    struct Run: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run a pipeline: a controller, one process per stage, a source and a sink, on this machine.",
            discussion: """
            Predictions go to the sink (JSON lines on standard output by default); logs and the run
            summary go to standard error. Ctrl-C drains the pipeline and stops; a second Ctrl-C stops at once.

            Example:
              sluice run pipelines/quickstart.yaml > predictions.jsonl
              sluice run pipelines/quickstart.yaml --report run.json
              sluice run pipelines/rebalance-demo.yaml --live --metrics-port 9464
            """)

        @Argument(help: "The pipeline file (YAML).")
        var pipeline: String

        @Option(help: "Also write the run summary as JSON to this file.")
        var report: String?

        @OptionGroup var observe: ObserveOptions

        func run() throws {
            let plan = try loadPlan(pipeline)
            StopSignal.install(managed: false)
            let launcher = Launcher(pipelineFile: pipeline, plan: plan,
                                    controllerOptions: (report.map { ["--report", $0] } ?? []) + observe.controllerArguments)
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

/// Watching a run while it goes: the stage table in the terminal, Prometheus metrics over HTTP.
struct ObserveOptions: ParsableArguments {
    @Flag(help: "Print the stage table (busy/idle/blocked, rates, bottleneck) to standard error every second.")
    var live = false

    @Option(help: "Serve Prometheus metrics at http://0.0.0.0:PORT/metrics from the controller.")
    var metricsPort: UInt16?

    var controllerArguments: [String] {
        (live ? ["--live"] : []) + (metricsPort.map { ["--metrics-port", String($0)] } ?? [])
    }
}
