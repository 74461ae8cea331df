import ArgumentParser
import Foundation
import SluiceConfig
import SluiceRoles
import SluicePlan

extension Sluice {
    struct Validate: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check pipeline files and their models without running anything.",
            discussion: """
            Reports every problem as FILE:LINE: KEY: MESSAGE. Exit status: 0 valid, 2 invalid \
            pipeline file, 3 the model cannot be loaded.

            Example:
              sluice validate pipelines/*.yaml
            """)

        @Argument(help: "Pipeline files (YAML).")
        var pipelines: [String]

        func run() throws {
            var worst: ExitCode?
            for file in pipelines {
                do {
                    let plan = try PipelinePlan.make(config: try PipelineConfig.load(path: file))
                    print("\(file): valid: \(plan.cut.layers.count) layers over \(plan.partition.ranges.count) stages (\(plan.partition)), "
                          + "model \(URL(fileURLWithPath: plan.config.model.path).lastPathComponent), \(plan.config.source.kind) source")
                } catch {
                    let code = ExitCodes.report(error)
                    worst = worst.map { max($0.rawValue, code.rawValue) }.map { ExitCode($0) } ?? code
                }
            }
            if let worst { throw worst }
        }
    }
}
