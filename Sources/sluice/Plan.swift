import ArgumentParser
import Foundation
import SluicePlan
import SluiceProfile
import SluiceProtocol
import SluiceRoles
import SluiceConfig

extension Sluice {
    struct Plan: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show a pipeline's layers (ops, FLOPs, parameters, boundary sizes) and how they split over stages.",
            discussion: """
            Costs are estimated from FLOPs and boundary bytes until stages have been measured; \
            give a run's report (`sluice run --report`) to predict from its measured per-layer \
            times and stage speeds instead.

            Examples:
              sluice plan pipelines/imu-mlp-3stage.yaml
              sluice run pipelines/rebalance-demo.yaml --report run.json
              sluice plan pipelines/rebalance-demo.yaml --measurements run.json --what-if 0-2,3,4-5
              sluice plan pipelines/imu-mlp-3stage.yaml --cores 8
            """)

        @Argument(help: "The pipeline file (YAML).")
        var pipeline: String

        @Option(name: .customLong("what-if"), help: "A split to predict, as layer ranges per stage, e.g. 0-3,4-9,10-11 (repeatable).")
        var whatIf: [String] = []

        @Option(help: "A run report (JSON from `sluice run --report`) whose measurements to predict from.")
        var measurements: String?

        @Option(help: "Plan stages, replicas and threads together for this many cores (default: the pipeline's `cores`).")
        var cores: Int?

        func run() throws {
            let plan = try loadPlan(pipeline)
            let model = URL(fileURLWithPath: plan.config.model.path).lastPathComponent
            print("pipeline \(plan.config.name): model \(model) (opset \(plan.model.opset)), input '\(plan.inputName)' \(plan.windowShape) per window, output '\(plan.outputName)'")
            print("")
            print(row(["layer", "nodes", "ops", "MFLOP/window", "params", "boundary out"], widths: [5, 7, 36, 12, 10, 14]))
            for layer in plan.cut.layers {
                let nodes = layer.nodes.count == 1 ? "\(layer.nodeStart)" : "\(layer.nodeStart)-\(layer.nodeEnd - 1)"
                print(row(["\(layer.index)", nodes, summarize(layer.opTypes), String(format: "%.4f", layer.flopsPerWindow / 1e6),
                           bytes(layer.parameterBytes), bytes(layer.outputBytesPerWindow)], widths: [5, 7, 36, 12, 10, 14]))
            }
            let total = plan.cut.layers.reduce(0) { $0 + $1.flopsPerWindow }
            print("")
            let source = plan.config.stages.plansShapes ? "planned for \(plan.config.coreBudget) cores"
                : plan.config.stages.split == nil ? "balanced by estimated FLOPs and transfer" : "as given in stages.split"
            print("split over \(plan.partition.ranges.count) stages (\(source)): \(plan.partition)")
            print(row(["stage", "layers", "MFLOP/window", "share", "params", "processes", "threads", "est. cost"], widths: [5, 8, 12, 7, 10, 9, 7, 10]))
            for (index, range) in plan.partition.ranges.enumerated() {
                let layers = plan.cut.layers[range]
                let flops = layers.reduce(0) { $0 + $1.flopsPerWindow }
                print(row(["\(index)", LayerSpan(range).description,
                           String(format: "%.4f", flops / 1e6), String(format: "%.0f%%", total > 0 ? 100 * flops / total : 0),
                           bytes(layers.reduce(0) { $0 + $1.parameterBytes }), "\(plan.shapes[index].replicas)", "\(plan.shapes[index].threads)",
                           String(format: "%.4f", plan.partition.stageTimes[index] / 1e6)], widths: [5, 8, 12, 7, 10, 9, 7, 10]))
            }
            print("bottleneck: stage \(plan.partition.bottleneckStage) (est. cost: MFLOP per window plus \(Int(PipelinePlan.flopsPerTransferredByte)) FLOP per byte it sends on, divided by the stage's processes)")
            if let cores { guard cores >= 1 else { throw ValidationError("--cores must be at least 1") } }
            if !whatIf.isEmpty || measurements != nil { try predict(plan) }
            if cores != nil || plan.config.stages.plansShapes { try planCores(plan) }
        }

        /// Costs per layer and stage speeds: measured ones from a run report, or FLOP estimates.
        /// Costs per layer and stage speeds: measured ones from a run report (as the controller
        /// last planned with them), or FLOP estimates. `speeds` are whole stages', replicas
        /// counted; `processSpeeds` each process's.
        private func costModel(_ plan: PipelinePlan) throws -> (costs: PartitionCosts, speeds: [Double]?, processSpeeds: [Double]?, measured: Bool) {
            guard let measurements else { return (PipelinePlan.estimatedCosts(plan.cut), nil, nil, false) }
            let report: RunReport
            do {
                report = try RunReport.read(Data(contentsOf: URL(fileURLWithPath: measurements)))
            } catch {
                throw ExitCodes.report(RoleError("\(measurements): not a run report from `sluice run --report`: \(error)"))
            }
            let layerSeconds = report.plannedLayerSecondsPerWindow ?? report.layerSecondsPerWindow
            guard layerSeconds.count == plan.cut.layers.count, layerSeconds.allSatisfy({ $0 != nil }) else {
                throw ExitCodes.report(RoleError("\(measurements): its measurements cover \(layerSeconds.count) layers, not all \(plan.cut.layers.count) of this pipeline's"))
            }
            let costs = PartitionCosts(layerCosts: layerSeconds.map { $0! },
                                       transferCosts: CostModel(cut: plan.cut, stages: 1).partitionCosts.transferCosts)
            let speeds = report.plannedStageSpeeds ?? report.stageSpeeds
            guard speeds.count == plan.partition.ranges.count else { return (costs, nil, nil, true) }
            let replicas = report.replicas ?? Array(repeating: 1, count: speeds.count)
            let processSpeeds = replicas.count == speeds.count ? zip(speeds, replicas).map { $0 / Double(max($1, 1)) } : nil
            return (costs, speeds, processSpeeds, true)
        }

        /// The plan the core budget gives, against one process on one core and on all of them.
        private func planCores(_ plan: PipelinePlan) throws {
            let budget = cores ?? plan.config.coreBudget
            let model = try costModel(plan)
            let planner = CorePlanner(costs: model.costs, parallelFractions: CorePlanner.parallelFractions(cut: plan.cut, graph: plan.graph))
            let chosen: CorePlan
            do {
                // A fixed stage count in the file stays fixed; `count: auto` leaves it to the planner.
                chosen = try planner.plan(cores: budget, constraints: .init(stages: plan.config.stages.count, speeds: model.processSpeeds))
            } catch {
                throw ExitCodes.report(RoleError("cannot plan for \(budget) cores: \(error)"))
            }
            let all = 0..<plan.cut.layers.count
            let oneCore = planner.stageTime(all, shape: StageShape())
            let threaded = planner.stageTime(all, shape: StageShape(replicas: 1, threads: budget))
            let configured = planner.stageTimes(plan.partition.ranges, shapes: plan.shapes).max() ?? 0
            func speedup(_ time: Double) -> String { String(format: "%.2f×", time > 0 ? oneCore / time : 0) }
            print("")
            print("under a budget of \(budget) cores (\(model.measured ? "measured" : "FLOP-estimated") costs; speed-ups over one process on one core):")
            print("  planned       \(chosen)   \(speedup(chosen.bottleneck))")
            print("  this file     \(CorePlan(ranges: plan.partition.ranges, shapes: plan.shapes, stageTimes: []))   \(speedup(configured))")
            print("  one process   \(budget) threads   \(speedup(threaded)) (only convolutions and products use more than one thread)")
            let split = chosen.ranges.map { "\"\(LayerSpan($0).description)\"" }.joined(separator: ", ")
            let replicas = chosen.replicas.enumerated().filter { $0.element > 1 }.map { "\($0.offset): \($0.element)" }.joined(separator: ", ")
            let threads = chosen.threads.enumerated().filter { $0.element > 1 }.map { "\($0.offset): \($0.element)" }.joined(separator: ", ")
            print("  as stages:    {count: \(chosen.ranges.count), split: [\(split)], replicas: {\(replicas)}, threads: {\(threads)}}")
        }

        /// Predicted throughput of the configured, the asked-for and the optimal splits.
        private func predict(_ plan: PipelinePlan) throws {
            let stages = plan.partition.ranges.count
            let model = try costModel(plan)
            let costs = model.costs
            let speeds = model.speeds ?? Array(repeating: 1.0, count: stages)
            let unit = model.measured ? "measured" : "FLOP-estimated"
            func line(_ label: String, _ ranges: [Range<Int>]) {
                let times = Partition.stageTimes(of: ranges, costs: costs, speeds: speeds)
                let bottleneck = times.max() ?? 0
                let rate = measurements != nil && bottleneck > 0 ? String(format: "%.0f windows/s", 1 / bottleneck)
                    : String(format: "%.4f MFLOP-eq/window at the bottleneck", bottleneck / 1e6)
                print("\(label.padding(toLength: 10, withPad: " ", startingAt: 0)) \(LayerSpan.describe(ranges).padding(toLength: 16, withPad: " ", startingAt: 0)) \(rate) (bottleneck stage \(times.firstIndex(of: bottleneck) ?? 0))")
            }
            print("")
            print("predictions (\(unit) costs\(measurements != nil ? ", stage speeds " + speeds.map { String(format: "%.2f", $0) }.joined(separator: "/") : "")):")
            line("current", plan.partition.ranges)
            for split in whatIf {
                guard let ranges = LayerSpan.split(parsing: split)?.map(\.layers), ranges.count == stages, ranges.last?.upperBound == plan.cut.layers.count else {
                    throw ExitCodes.report(RoleError("--what-if \(split): give \(stages) contiguous layer ranges covering layers 0-\(plan.cut.layers.count - 1), e.g. \(plan.partition)"))
                }
                line("what-if", ranges)
            }
            if let best = try? Partition.optimal(costs: costs, stages: stages, speeds: speeds) { line("optimal", best.ranges) }
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
