import ArgumentParser
import Foundation
import SluiceONNX
import SluicePlan
import SluiceRoles

extension Sluice {
    struct Inspect: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show what a model holds: ops, unsupported ops, layer cut points, FLOPs and parameters.",
            discussion: """
            Answers "will my model run?" before any pipeline is written. A model with ops this \
            build cannot run is still inspected: the unsupported ops are listed with their nodes, \
            and the command exits with 3, as it does when the model fails to load (missing \
            external data, shapes that do not fit), naming the node, its op and the reason.

            Example:
              sluice inspect pipelines/models/basicmotions-cnn.onnx
            """)

        @Argument(help: "The model (.onnx).")
        var model: String

        @Option(help: "Cut layers where at most this many activations are live.")
        var maxLive: Int = 1

        /// The model's metadata (keys and values come from the file: shown cut short and with
        /// control characters escaped), and what a pipeline's sink takes from the model when the
        /// pipeline says nothing.
        private func printMetadata(_ loaded: ONNXModel) {
            let shown = loaded.metadata.keys.sorted().prefix(32)
            print("metadata: " + (shown.isEmpty ? "none" : "\(loaded.metadata.count) key\(loaded.metadata.count == 1 ? "" : "s")"))
            for key in shown { print("  \(printable(key, at: 40)) = \(printable(loaded.metadata[key] ?? "", at: 160))") }
            if loaded.metadata.count > shown.count { print("  … \(loaded.metadata.count - shown.count) more") }
            guard let chosen = try? PipelinePlan.outputsByMeaning(loaded, named: nil) else {
                print("sink uses: nothing: the model has no numeric output")
                return
            }
            let why = loaded.classLabels(of: chosen.scores) != nil ? "class scores"
                : loaded.outputs.count == 1 ? "the only output"
                : loaded.outputs.first(where: { $0.name == chosen.scores })?.dtype.isFloatingPoint == true ? "the first floating-point output" : "the first numeric output"
            print("sink uses: scores from '\(printable(chosen.scores, at: 80))' (\(why); model.output picks another)")
            if let label = chosen.label {
                print("  class from '\(printable(label, at: 80))' (one label per window)")
            }
            let modelLabels = loaded.classLabels(of: chosen.scores)
            if let classes = PipelinePlan.metadataClasses(of: loaded), !classes.isEmpty {
                print("  classes \(list(classes)) (metadata 'classes'; model.classes overrides)")
            } else if let modelLabels {
                print("  classes \(list(modelLabels)) (the model's class labels; model.classes renames them)")
            } else if chosen.label == nil {
                print("  classes none: windows get scores and no class name (model.classes, or metadata 'classes', names them)")
            }
        }

        private func list(_ names: [String]) -> String {
            names.prefix(16).map { printable($0, at: 40) }.joined(separator: ", ") + (names.count > 16 ? ", …" : "")
        }

        private func printable(_ text: String, at limit: Int) -> String {
            let escaped = text.unicodeScalars.map { $0.properties.generalCategory == .control ? $0.escaped(asASCII: true) : String($0) }.joined()
            return escaped.count <= limit ? escaped : String(escaped.prefix(limit)) + "…"
        }

        func run() throws {
            let survey: ModelSurvey
            do {
                survey = try ONNXModel.survey(path: model)
            } catch {
                throw ExitCodes.report(error)
            }
            print("model: \(model)")
            var header = ["opset \(survey.opset.map(String.init) ?? "none")", "IR \(survey.irVersion)"]
            if !survey.producer.isEmpty { header.append("producer \(survey.producer)") }
            print("  " + header.joined(separator: ", "))
            let histogram = survey.opHistogram
            print("ops: \(survey.nodes.count) nodes, \(histogram.count) op types")
            for (op, count) in histogram {
                let unsupported = survey.unsupported.contains { $0.op == op } ? "  (unsupported)" : ""
                print("  " + row([op, "\(count)"], widths: [34, 6]) + unsupported)
            }
            print("parameters: \(bytes(survey.parameterBytes)) in \(survey.initializerCount) initializers")
            if !survey.unsupported.isEmpty {
                print("unsupported: \(survey.unsupported.count) nodes")
                for item in survey.unsupported { print("  node '\(item.node)' (\(item.op)): \(item.reason)") }
                throw ExitCodes.report(ModelError(.unsupportedOp, "\(model): \(survey.unsupported.count) node(s) use ops this build cannot run (listed above)"))
            }
            print("unsupported: none")

            let loaded: ONNXModel
            do {
                loaded = try ONNXModel.load(path: model)
            } catch {
                throw ExitCodes.report(error)
            }
            print("inputs:  " + loaded.inputs.map(\.description).joined(separator: ", "))
            print("outputs: " + loaded.outputs.map(\.description).joined(separator: ", "))
            printMetadata(loaded)
            let flops = loaded.nodes.reduce(0) { $0 + $1.flopsPerWindow }
            print(String(format: "FLOPs: %.4f MFLOP per window", flops / 1e6))
            let fused = loaded.fusionGroups.map { range in
                "\(loaded.nodes[range].map(\.opType).joined(separator: "+")) at nodes \(range.lowerBound)-\(range.upperBound - 1)"
            }
            print("fused kernels: " + (fused.isEmpty ? "none" : "\(fused.count) (\(fused.joined(separator: ", ")))"))

            let cut = LayerCut.cut(PlanGraph(model: loaded), maxLiveTensors: maxLive)
            print("layers: \(cut.layers.count) (cut where at most \(maxLive) activation\(maxLive == 1 ? " is" : "s are") live)")
            let widths = [5, 9, 36, 12, 10, 14]
            print("  " + row(["layer", "nodes", "ops", "MFLOP/window", "params", "boundary out"], widths: widths))
            for layer in cut.layers {
                let nodes = layer.nodes.count == 1 ? "\(layer.nodeStart)" : "\(layer.nodeStart)-\(layer.nodeEnd - 1)"
                let ops = layer.opTypes.joined(separator: ",")
                print("  " + row(["\(layer.index)", nodes, ops.count <= 36 ? ops : String(ops.prefix(33)) + "...",
                                  String(format: "%.4f", layer.flopsPerWindow / 1e6), bytes(layer.parameterBytes),
                                  bytes(layer.outputBytesPerWindow)], widths: widths))
            }
            let points = cut.layers.dropFirst().map { "\($0.nodeStart)" }
            print("cut points: " + (points.isEmpty ? "none (one layer)" : "before nodes " + points.joined(separator: ", ")))
        }
    }
}
