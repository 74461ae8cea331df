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
            """)

        @Argument(help: "The pipeline file (YAML).")
        var pipeline: String

        @Option(help: "Also write the run summary as JSON to this file.")
        var report: String?

        func run() throws {
            let plan = try loadPlan(pipeline)
            StopSignal.install(managed: false)
            let launcher = Launcher(pipelineFile: pipeline, plan: plan, reportPath: report)
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
