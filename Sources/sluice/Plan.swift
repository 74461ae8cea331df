import ArgumentParser
import Foundation
import SluicePlan
import SluiceRoles

extension Sluice {
    struct Plan: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show a pipeline's layers (ops, FLOPs, parameters, boundary sizes) and how they split over stages.",
            discussion: """
            Costs are estimated from FLOPs and boundary bytes until stages have been measured.

            Example:
              sluice plan pipelines/imu-mlp-3stage.yaml
            """)

        @Argument(help: "The pipeline file (YAML).")
        var pipeline: String

        func run() throws {
            let plan = try loadPlan(pipeline)
            let model = URL(fileURLWithPath: plan.config.model.path).lastPathComponent
            print("pipeline \(plan.config.name): model \(model) (opset \(plan.model.opset)), input '\(plan.inputName)' \(plan.sampleShape) per sample, output '\(plan.outputName)'")
            print("")
            print(row(["layer", "nodes", "ops", "MFLOP/sample", "params", "boundary out"], widths: [5, 7, 36, 12, 10, 14]))
            for layer in plan.cut.layers {
                let nodes = layer.nodes.count == 1 ? "\(layer.nodeStart)" : "\(layer.nodeStart)-\(layer.nodeEnd - 1)"
                print(row(["\(layer.index)", nodes, summarize(layer.opTypes), String(format: "%.4f", layer.flopsPerSample / 1e6),
                           bytes(layer.parameterBytes), bytes(layer.outputBytesPerSample)], widths: [5, 7, 36, 12, 10, 14]))
            }
            let total = plan.cut.layers.reduce(0) { $0 + $1.flopsPerSample }
            print("")
            let source = plan.config.stages.split == nil ? "balanced by estimated FLOPs and transfer" : "as given in stages.split"
            print("split over \(plan.partition.ranges.count) stages (\(source)): \(plan.partition)")
            print(row(["stage", "layers", "MFLOP/sample", "share", "params"], widths: [5, 8, 12, 7, 10]))
            for (index, range) in plan.partition.ranges.enumerated() {
                let layers = plan.cut.layers[range]
                let flops = layers.reduce(0) { $0 + $1.flopsPerSample }
                print(row(["\(index)", range.count == 1 ? "\(range.lowerBound)" : "\(range.lowerBound)-\(range.upperBound - 1)",
                           String(format: "%.4f", flops / 1e6), String(format: "%.0f%%", total > 0 ? 100 * flops / total : 0),
                           bytes(layers.reduce(0) { $0 + $1.parameterBytes })], widths: [5, 8, 12, 7, 10]))
            }
            let estimate = plan.partition.stageTimes.max() ?? 0
            print(String(format: "bottleneck: stage %d, %.0f%% of the pipeline's estimated per-sample cost is the slowest stage's",
                         plan.partition.bottleneckStage, (plan.partition.stageTimes.reduce(0, +) > 0 ? 100 * estimate / plan.partition.stageTimes.reduce(0, +) : 0)))
        }

        private func summarize(_ ops: [String]) -> String {
            let text = ops.joined(separator: ",")
            return text.count <= 36 ? text : String(text.prefix(33)) + "..."
        }
    }
}

func row(_ cells: [String], widths: [Int]) -> String {
    zip(cells, widths).map { $0.padding(toLength: max($1, $0.count), withPad: " ", startingAt: 0) }.joined(separator: " ")
        .trimmingCharacters(in: .whitespaces)
}

func bytes(_ count: Int) -> String {
    switch count {
    case ..<1024: return "\(count) B"
    case ..<(1024 * 1024): return String(format: "%.1f KiB", Double(count) / 1024)
    default: return String(format: "%.1f MiB", Double(count) / 1024 / 1024)
    }
}
