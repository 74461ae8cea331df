import Foundation
import SluiceONNX
import SluicePlan
import SluiceTensor
import SluiceTestSupport
import Testing

/// A stage on another host is sent the weights of its layers only (`ONNXModel.weightsFile`):
/// for every contiguous layer range of real models, the file it gets is smaller, loads into the
/// same nodes and cut, and its executor computes exactly what the whole model's does.
@Suite struct WeightsFileTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let models = ["pipelines/models/basicmotions-mlp.onnx", "pipelines/models/basicmotions-cnn.onnx"]

    @Test(arguments: models)
    func aLayerRangesFileComputesWhatTheWholeModelDoes(model relative: String) throws {
        let path = Self.root.appendingPathComponent(relative).path
        let model = try ONNXModel.load(path: path)
        let cut = LayerCut.cut(PlanGraph(model: model))
        let whole = try Data(contentsOf: URL(fileURLWithPath: path)).count
        let folder = try FileNodes.temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        var rng = SplitMix(seed: 3)
        guard let input = model.inputs.first else { Issue.record("\(relative) has no input"); return }
        let shape = [2] + input.shape.dropFirst().map { $0 ?? 1 }
        let window = Tensor(shape: shape, floats: (0..<shape.reduce(1, *)).map { _ in Float.random(in: -2...2, using: &rng) })
        let everything = try Executor(model: model, nodes: 0..<model.nodes.count)
        for first in cut.layers.indices {
            for end in (first + 1)...cut.layers.count {
                let nodes = cut.layers[first].nodeStart..<cut.layers[end - 1].nodeEnd
                let file = "\(folder)/\(first)-\(end).onnx"
                let bytes = try model.weightsFile(for: nodes)
                try bytes.write(to: URL(fileURLWithPath: file))
                let part = try ONNXModel.load(path: file)
                #expect(part.nodes.map(\.opType) == model.nodes.map(\.opType) && part.nodes.map(\.name) == model.nodes.map(\.name))
                // What the file holds beyond the range's weights: the graph, and the small weights every file keeps.
                let weights = cut.layers[first..<end].reduce(0) { $0 + $1.parameterBytes }
                let rest = whole - cut.layers.reduce(0) { $0 + $1.parameterBytes }
                #expect(bytes.count <= whole && bytes.count <= weights + rest + 64 * 1024,
                        "\(relative) layers \(first)-\(end - 1): \(bytes.count) bytes for \(weights) bytes of weights, of \(whole)")
                // The boundary before the range, from the whole model; then the range both ways.
                var values = [input.name: window]
                if first > 0 { try everything.run(0..<cut.layers[first].nodeStart, values: &values) }
                var fromWhole = values
                var fromPart = values
                try everything.run(nodes, values: &fromWhole)
                try Executor(model: part, nodes: nodes).run(nodes, values: &fromPart)
                for name in cut.boundary(before: end) {
                    #expect(fromPart[name]?.floats == fromWhole[name]?.floats, "\(relative) layers \(first)-\(end - 1): \(name)")
                    #expect(fromPart[name] != nil)
                }
            }
        }
    }

    /// The MLP's middle layer holds 4 MiB of its 8.4: a stage running it alone is sent about half.
    @Test func aStageIsSentAboutItsShareOfTheWeights() throws {
        let path = Self.root.appendingPathComponent(Self.models[0]).path
        let model = try ONNXModel.load(path: path)
        let cut = LayerCut.cut(PlanGraph(model: model))
        let whole = try Data(contentsOf: URL(fileURLWithPath: path)).count
        let middle = cut.layers.firstIndex { $0.parameterBytes > 4_000_000 } ?? 0
        let bytes = try model.weightsFile(for: cut.layers[middle].nodes).count
        #expect(Double(bytes) < 0.52 * Double(whole) && bytes > cut.layers[middle].parameterBytes, "\(bytes) of \(whole)")
    }

    @Test func aRangeOutsideTheModelIsRefused() throws {
        let model = try ONNXModel.load(path: Self.root.appendingPathComponent(Self.models[0]).path)
        #expect(throws: ModelError.self) { try model.weightsFile(for: 0..<(model.nodes.count + 1)) }
    }
}
