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
              sluice plan pipelines/rebalance-demo.yaml --measurements run.json --what-if "0-2 fp16,3,4-5"
              sluice plan pipelines/imu-mlp-3stage.yaml --cores 8
            """)

        @Argument(help: "The pipeline file (YAML).")
        var pipeline: String

        @Option(name: .customLong("what-if"), help: "A split to predict, as layer ranges per stage, e.g. 0-3,4-9,10-11 (repeatable); a range followed by fp16 or int8 (\"0-3 fp16,4-11\") predicts that stage's output narrowed for its link.")
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

        /// What predictions are made from: costs per layer, stage speeds and links, measured
        /// ones from a run report (as the controller last planned with them), or FLOP estimates.
        struct Costs {
            var costs: PartitionCosts
            /// Whole stages' speeds, replicas counted; each process's.
            var speeds: [Double]?
            var processSpeeds: [Double]?
            var measured: Bool
            /// Per stage, its output link's measured seconds per byte and its narrowing, from the report.
            var links: [Double?] = []
            var compression: [Compression] = []

            /// The costs with each stage's link as measured, narrowed as `narrowing` says
            /// (nil entries: as it was in the run).
            func narrowed(_ narrowing: [Compression?]) -> PartitionCosts {
                guard !links.isEmpty || narrowing.contains(where: { $0 != nil }) else { return costs }
                let count = max(links.count, narrowing.count)
                let measured = (0..<count).map { links.indices.contains($0) ? links[$0] : nil }
                let chosen = (0..<count).map { stage in
                    (narrowing.indices.contains(stage) ? narrowing[stage] : nil) ?? (compression.indices.contains(stage) ? compression[stage] : .none)
                }
                var costs = costs
                costs.linkFactors = CostModel.linkFactors(measured: measured, compression: chosen, secondsPerByte: CostModel.defaultSecondsPerByte)
                return costs
            }
        }

        private func costModel(_ plan: PipelinePlan) throws -> Costs {
            guard let measurements else { return Costs(costs: PipelinePlan.estimatedCosts(plan.cut), measured: false) }
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
            var costs = Costs(costs: PartitionCosts(layerCosts: layerSeconds.map { $0! },
                                                    transferCosts: CostModel(cut: plan.cut, stages: 1).partitionCosts.transferCosts),
                              measured: true)
            let speeds = report.plannedStageSpeeds ?? report.stageSpeeds
            guard speeds.count == plan.partition.ranges.count else { return costs }
            let replicas = report.replicas ?? Array(repeating: 1, count: speeds.count)
            costs.speeds = speeds
            costs.processSpeeds = replicas.count == speeds.count ? zip(speeds, replicas).map { $0 / Double(max($1, 1)) } : nil
            if let links = report.links, links.count == speeds.count {
                costs.links = links.map { $0.measuredBytesPerSecond.map { 1 / $0 } }
                costs.compression = links.map(\.compression)
                costs.costs = costs.narrowed([])
            }
            return costs
        }

        /// The plan the core budget gives, against one process on one core and on all of them.
        private func planCores(_ plan: PipelinePlan) throws {
            let budget = cores ?? plan.config.coreBudget
            let model = try costModel(plan)
            var costs = model.costs
            // Links were measured per stage of the run: they say nothing of another stage count.
            if plan.config.stages.count == nil { costs.linkFactors = nil }
            let planner = CorePlanner(costs: costs, parallelFractions: CorePlanner.parallelFractions(cut: plan.cut, graph: plan.graph))
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
            let speeds = model.speeds ?? Array(repeating: 1.0, count: stages)
            let unit = model.measured ? "measured" : "FLOP-estimated"
            func line(_ label: String, _ ranges: [Range<Int>], _ narrowing: [Compression?] = []) {
                let times = Partition.stageTimes(of: ranges, costs: model.narrowed(narrowing), speeds: speeds)
                let bottleneck = times.max() ?? 0
                let rate = measurements != nil && bottleneck > 0 ? String(format: "%.0f windows/s", 1 / bottleneck)
                    : String(format: "%.4f MFLOP-eq/window at the bottleneck", bottleneck / 1e6)
                let shown = ranges.indices.map { stage in
                    let narrowed = stage < narrowing.count ? narrowing[stage] : nil
                    return LayerSpan(ranges[stage]).description + (narrowed.map { $0 == .none ? "" : " \($0.rawValue)" } ?? "")
                }.joined(separator: ",")
                print("\(label.padding(toLength: 10, withPad: " ", startingAt: 0)) \(shown.padding(toLength: 16, withPad: " ", startingAt: 0)) \(rate) (bottleneck stage \(times.firstIndex(of: bottleneck) ?? 0))")
            }
            print("")
            print("predictions (\(unit) costs\(measurements != nil ? ", stage speeds " + speeds.map { String(format: "%.2f", $0) }.joined(separator: "/") : "")):")
            for (stage, perByte) in model.links.enumerated() {
                guard let perByte else { continue }
                let narrowing = model.compression.indices.contains(stage) && model.compression[stage] != .none ? ", narrowed to \(model.compression[stage].rawValue) in the run" : ""
                print(String(format: "  stage %d's output link measured at %.2f MB/s%@", stage, 1 / perByte / 1e6, narrowing))
            }
            line("current", plan.partition.ranges)
            for split in whatIf {
                guard let (ranges, narrowing) = Self.parseWhatIf(split), ranges.count == stages, ranges.last?.upperBound == plan.cut.layers.count else {
                    throw ExitCodes.report(RoleError("--what-if \(split): give \(stages) contiguous layer ranges covering layers 0-\(plan.cut.layers.count - 1), each optionally followed by fp16 or int8, e.g. \(plan.partition)"))
                }
                line("what-if", ranges, narrowing)
            }
            if let best = try? Partition.optimal(costs: model.costs, stages: stages, speeds: speeds) { line("optimal", best.ranges) }
        }

        /// "0-3 fp16,4-9,10-11": ranges per stage, each optionally with the narrowing of its output link.
        static func parseWhatIf(_ text: String) -> (ranges: [Range<Int>], narrowing: [Compression?])? {
            var spans: [LayerSpan] = []
            var narrowing: [Compression?] = []
            for part in text.split(separator: ",") {
                let words = part.split(separator: " ")
                guard let first = words.first, words.count <= 2, let span = LayerSpan(parsing: first),
                      span.start == (spans.last?.end ?? 0) else { return nil }
                var compression: Compression?
                if words.count == 2 {
                    guard let named = Compression(rawValue: String(words[1])) else { return nil }
                    compression = named
                }
                spans.append(span)
                narrowing.append(compression)
            }
            return spans.isEmpty ? nil : (spans.map(\.layers), narrowing)
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
