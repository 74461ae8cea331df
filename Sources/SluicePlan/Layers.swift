/// What planning needs to know of one graph node.
public struct PlanNode: Sendable, Equatable {
    public var name: String
    public var opType: String
    public var inputs: [String]
    public var outputs: [String]
    public var flopsPerWindow: Double
    public var parameterBytes: Int

    public init(name: String, opType: String, inputs: [String], outputs: [String], flopsPerWindow: Double, parameterBytes: Int) {
        self.name = name
        self.opType = opType
        self.inputs = inputs
        self.outputs = outputs
        self.flopsPerWindow = flopsPerWindow
        self.parameterBytes = parameterBytes
    }
}

/// A graph reduced to what planning needs: nodes in topological order, which names are
/// constants (weights travel with their layer, never between stages), and tensor sizes.
public struct PlanGraph: Sendable {
    public var nodes: [PlanNode]
    public var inputs: [String]
    public var outputs: [String]
    public var constants: Set<String>
    public var bytesPerWindow: [String: Int]
    /// Node ranges that must stay in one layer (the executor fuses them, e.g. Conv+BN+Relu).
    public var unsplittable: [Range<Int>]

    public init(nodes: [PlanNode], inputs: [String], outputs: [String], constants: Set<String>, bytesPerWindow: [String: Int],
                unsplittable: [Range<Int>] = []) {
        self.nodes = nodes
        self.inputs = inputs
        self.outputs = outputs
        self.constants = constants
        self.bytesPerWindow = bytesPerWindow
        self.unsplittable = unsplittable
    }

    /// The activations live at each position between nodes: position p lies before node p,
    /// so live[0] holds the graph inputs and live[nodes.count] the graph outputs. Order is
    /// deterministic (first production), so every process agrees on a boundary's tensor list.
    public func liveTensors() -> [[String]] {
        var lastUse: [String: Int] = [:]
        for (index, node) in nodes.enumerated() {
            for input in node.inputs where !input.isEmpty && !constants.contains(input) {
                lastUse[input] = index
            }
        }
        for output in outputs { lastUse[output] = nodes.count }
        // Every activation with the position it appears at: graph inputs before node 0.
        var produced: [(name: String, position: Int)] = inputs.map { ($0, 0) }
        for (index, node) in nodes.enumerated() {
            produced += node.outputs.filter { !$0.isEmpty }.map { ($0, index + 1) }
        }
        return (0...nodes.count).map { position in
            produced.filter { $0.position <= position && (lastUse[$0.name] ?? -1) >= position }.map(\.name)
        }
    }
}

/// The smallest unit that moves between stages: a run of consecutive nodes.
public struct Layer: Codable, Sendable, Equatable {
    public var index: Int
    public var nodeStart: Int
    public var nodeEnd: Int
    public var opTypes: [String]
    public var flopsPerWindow: Double
    public var parameterBytes: Int
    /// Activations this layer hands on (the boundary after it), in a fixed order.
    public var outputs: [String]
    public var outputBytesPerWindow: Int

    public var nodes: Range<Int> { nodeStart..<nodeEnd }

    public init(index: Int, nodeStart: Int, nodeEnd: Int, opTypes: [String], flopsPerWindow: Double, parameterBytes: Int, outputs: [String], outputBytesPerWindow: Int) {
        self.index = index; self.nodeStart = nodeStart; self.nodeEnd = nodeEnd; self.opTypes = opTypes; self.flopsPerWindow = flopsPerWindow; self.parameterBytes = parameterBytes; self.outputs = outputs; self.outputBytesPerWindow = outputBytesPerWindow
    }
}

/// A model cut into layers, plus the boundary before the first layer.
public struct LayerCut: Codable, Sendable, Equatable {
    public var layers: [Layer]
    public var inputs: [String]
    public var inputBytesPerWindow: Int

    /// The tensors that travel into layer `index` (`index == layers.count`: the graph outputs).
    public func boundary(before index: Int) -> [String] {
        index == 0 ? inputs : layers[index - 1].outputs
    }

    /// Cuts `graph` at every position where at most `maxLiveTensors` activations are live and no
    /// unsplittable range would be cut, raising the limit until at least `minimumLayers` layers
    /// result (or none can be made).
    public static func cut(_ graph: PlanGraph, maxLiveTensors: Int = 1, minimumLayers: Int = 1) -> LayerCut {
        let live = graph.liveTensors()
        var limit = maxLiveTensors
        var cuts: [Int] = []
        let widest = live.map(\.count).max() ?? 1
        repeat {
            cuts = (1..<max(graph.nodes.count, 1)).filter { position in
                live[position].count <= limit
                    && !graph.unsplittable.contains { $0.lowerBound < position && position < $0.upperBound }
            }
            limit += 1
        } while cuts.count + 1 < minimumLayers && limit <= widest
        let bounds = [0] + cuts + [graph.nodes.count]
        var layers: [Layer] = []
        for index in 0..<(bounds.count - 1) where bounds[index] < bounds[index + 1] {
            let range = bounds[index]..<bounds[index + 1]
            let nodes = graph.nodes[range]
            let outputs = live[range.upperBound]
            layers.append(Layer(
                index: layers.count, nodeStart: range.lowerBound, nodeEnd: range.upperBound,
                opTypes: nodes.map(\.opType),
                flopsPerWindow: nodes.reduce(0) { $0 + $1.flopsPerWindow },
                parameterBytes: nodes.reduce(0) { $0 + $1.parameterBytes },
                outputs: outputs,
                outputBytesPerWindow: outputs.reduce(0) { $0 + (graph.bytesPerWindow[$1] ?? 0) }))
        }
        let inputs = live[0]
        return LayerCut(layers: layers, inputs: inputs,
                        inputBytesPerWindow: inputs.reduce(0) { $0 + (graph.bytesPerWindow[$1] ?? 0) })
    }

    public init(layers: [Layer], inputs: [String], inputBytesPerWindow: Int) {
        self.layers = layers; self.inputs = inputs; self.inputBytesPerWindow = inputBytesPerWindow
    }
}
