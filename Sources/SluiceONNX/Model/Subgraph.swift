import SluiceTensor

/// A graph held by a node's attribute (If's branches, Loop's and Scan's bodies), read at load
/// like the main graph: Constant nodes folded into constants, nodes sorted, every op configured
/// (so an unsupported op fails the load). Its node runs it whenever the node runs, with the
/// enclosing graph's values in scope; shapes are inferred from the actual values each time.
final class Subgraph: @unchecked Sendable {
    let inputs: [String]
    let outputs: [String]
    /// Each output's element type and shape as the file declares them, where it does.
    let declaredOutputs: [(dtype: DType?, shape: [Int]?)]
    private let nodes: [Node]
    private let operators: [any Operator]
    private let constants: [String: Tensor]

    init(_ graph: Onnx_GraphProto, opset: Int) throws {
        var constants: [String: Tensor] = [:]
        for tensor in graph.initializer {
            do { constants[tensor.name] = try TensorDecoder.decode(tensor, name: tensor.name, baseDirectory: nil) } catch let e as OpError {
                throw OpError("initializer '\(tensor.name)' of subgraph '\(graph.name)' \(e.message)", kind: e.kind)
            }
        }
        var pending: [Node] = []
        for (index, proto) in graph.node.enumerated() {
            let node = ModelLoader.makeNode(proto, index: index)
            guard (node.domain.isEmpty || node.domain == "ai.onnx") && node.opType == "Constant" else {
                pending.append(node)
                continue
            }
            constants[node.outputs[0]] = try Self.inContext(node) { try ConstantOperator.checked(OpContext(node: node, opset: opset)).value }
        }
        inputs = graph.input.map(\.name)
        outputs = graph.output.map(\.name)
        declaredOutputs = graph.output.map { value in
            guard case .tensorType(let type)? = value.type.value else { return (nil, nil) }
            let dims = type.shape.dim.map { dim -> Int? in
                if case .dimValue(let v)? = dim.value, v >= 0 { return Int(v) }
                return nil
            }
            let fixed = dims.compactMap { $0 }
            return (TensorDecoder.dtype(onnx: type.elemType), type.hasShape && fixed.count == dims.count ? fixed : nil)
        }
        // Names read from the enclosing graph are there before anything here runs.
        let outer = Set(Self.outerNames(of: [graph]))
        let order = try ModelLoader.topologicalOrder(pending, available: Set(inputs).union(constants.keys).union(outer))
        nodes = order.map { pending[$0] }
        operators = try nodes.map { node in
            try Self.inContext(node) {
                switch OpRegistry.schema(for: node, opset: opset) {
                case .success(let schema): return try schema.make(OpContext(node: node, opset: opset))
                case .failure(let reason): throw reason
                }
            }
        }
        self.constants = constants
    }

    /// Runs the graph on `arguments` (its inputs, in order), reading names it does not define
    /// from `scope`; returns its outputs in order.
    func run(_ arguments: [Tensor], scope: [String: Tensor], scratch: Scratch) throws -> [Tensor] {
        guard arguments.count == inputs.count else {
            throw OpError.invalid("its subgraph takes \(inputs.count) inputs, given \(arguments.count)")
        }
        var values = constants
        for (name, value) in zip(inputs, arguments) { values[name] = value }
        func value(_ name: String) throws -> Tensor {
            guard let found = values[name] ?? scope[name] else { throw OpError.invalid("its subgraph reads '\(name)', which has no value") }
            return found
        }
        for (node, op) in zip(nodes, operators) {
            let results = try Self.inContext(node) {
                try op.compute(try node.inputs.map { $0.isEmpty ? nil : try value($0) }, scratch: scratch)
            }
            for (name, result) in zip(node.outputs, results) where !name.isEmpty { values[name] = result }
        }
        return try outputs.map(value)
    }

    /// Errors from inside a subgraph, prefixed with the inner node, so the message (which its
    /// own node completes) says where the problem is.
    private static func inContext<T>(_ node: Node, _ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let e as OpError {
            var error = OpError("in its subgraph, node '\(node.name)' (\(node.qualifiedOp)): \(e.message)", kind: e.kind)
            error.dataDependent = e.dataDependent
            throw error
        } catch let e as ShapeError {
            throw OpError("in its subgraph, node '\(node.name)' (\(node.qualifiedOp)): \(e.message)")
        }
    }

    /// The graphs an attribute holds.
    static func graphs(_ attribute: Onnx_AttributeProto) -> [Onnx_GraphProto] {
        switch attribute.type {
        case .graph: return [attribute.g]
        case .graphs: return attribute.graphs
        default: return attribute.hasG ? [attribute.g] : []
        }
    }

    /// Names `graphs` (and the graphs nested in them) read but do not define, in first-read order:
    /// the values they need from the enclosing graph.
    static func outerNames(of graphs: [Onnx_GraphProto]) -> [String] {
        var result: [String] = []
        var seen: Set<String> = []
        for graph in graphs {
            var defined = Set(graph.input.map(\.name)).union(graph.initializer.map(\.name))
            for node in graph.node { defined.formUnion(node.output) }
            func read(_ name: String) {
                if !name.isEmpty && !defined.contains(name) && seen.insert(name).inserted { result.append(name) }
            }
            for node in graph.node {
                node.input.forEach(read)
                outerNames(of: node.attribute.flatMap(Self.graphs)).forEach(read)
            }
            graph.output.map(\.name).forEach(read)
        }
        return result
    }
}
