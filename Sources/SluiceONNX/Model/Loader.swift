import Foundation
import SluiceTensor
import SwiftProtobuf

/// Reads an .onnx file into an `ONNXModel`: parse, convert Constant nodes, sort, check every op,
/// infer shapes, find fusions (the first step of the executor's optimisation pass, done here
/// because stage cuts must keep fusions whole).
struct ModelLoader {
    let path: String

    private func fail(_ kind: ModelError.Kind, _ message: String) -> ModelError {
        ModelError(kind, "\(path): \(message)")
    }

    func load() throws -> ONNXModel {
        let proto = try readProto()
        guard proto.hasGraph else { throw fail(.notAModel, "not an ONNX model: it has no graph") }
        // A model of custom-domain ops only may import no default opset; it then fails in
        // `schemas` naming its first unsupported op.
        let importedOpset = defaultOpset(proto)
        let opset = importedOpset ?? 0
        let graph = proto.graph
        var initializers = try readInitializers(graph)
        // Graph inputs that initializers also list (IR < 4 style) are weights, not inputs.
        let graphInputs = graph.input.filter { initializers[$0.name] == nil }
        let inputNames = Set(graphInputs.map(\.name))
        let pending = try foldConstantNodes(graph, opset: importedOpset, inputNames: inputNames, into: &initializers)
        let nodes = try sortedNodes(pending, available: inputNames.union(initializers.keys))
        try checkNameLengths(nodes.flatMap(\.outputs) + graph.input.map(\.name) + graph.output.map(\.name))
        let schemas = try self.schemas(for: nodes, proto: proto, importedOpset: importedOpset)
        let inputInfos = try graphInputs.map(inputInfo)
        let operators = try configure(nodes, schemas: schemas, opset: opset)
        let inference = try inferTypes(nodes, operators: operators, inputs: inputInfos, initializers: initializers)
        let outputInfos = try graph.output.map { try outputInfo($0, inference) }
        let fusions = Fusion.find(graph: nodes, operators: operators, initializers: initializers, types: inference.types,
                                  graphOutputs: Set(outputInfos.map(\.name)))
        return ONNXModel(path: path, opset: opset, inputs: inputInfos, outputs: outputInfos,
                         nodes: nodeInfos(nodes, operators: operators, types: inference.types, initializers: initializers),
                         metadata: Dictionary(proto.metadataProps.map { ($0.key, $0.value) }, uniquingKeysWith: { $1 }),
                         graph: nodes, operators: operators, initializers: initializers,
                         types: inference.types, symbolic: inference.symbolic, fusions: fusions)
    }

    /// The graph's initializers by name, each read (not yet decoded) and checked.
    func readInitializers(_ graph: Onnx_GraphProto) throws -> [String: Initializer] {
        let baseDirectory = URL(fileURLWithPath: path).deletingLastPathComponent().path
        var initializers: [String: Initializer] = [:]
        for tensor in graph.initializer {
            guard !tensor.name.isEmpty else { throw fail(.invalidGraph, "an initializer has no name") }
            guard initializers[tensor.name] == nil else { throw fail(.invalidGraph, "initializer '\(tensor.name)' is defined twice") }
            do {
                initializers[tensor.name] = try Initializer(name: tensor.name, proto: tensor, baseDirectory: baseDirectory)
            } catch let e as OpError {
                // Name the node that needs it, so the message says what cannot run.
                let reader = graph.node.enumerated().first { $0.element.input.contains(tensor.name) }
                    .map { ", read by node '\(Self.makeNode($0.element, index: $0.offset).name)' (\($0.element.opType)):" } ?? ""
                throw fail(e.kind, "initializer '\(tensor.name)'\(reader) \(e.message)")
            }
        }
        if let sparse = graph.sparseInitializer.first {
            throw fail(.unsupportedFeature, "sparse initializer '\(sparse.values.name)' is not supported")
        }
        return initializers
    }

    /// Turns Constant nodes into initializers; returns the other nodes, with their file order
    /// for sorting.
    func foldConstantNodes(_ graph: Onnx_GraphProto, opset importedOpset: Int?, inputNames: Set<String>,
                           into initializers: inout [String: Initializer]) throws -> [(fileIndex: Int, proto: Onnx_NodeProto)] {
        var pending: [(fileIndex: Int, proto: Onnx_NodeProto)] = []
        for (fileIndex, node) in graph.node.enumerated() {
            let isDefaultDomain = node.domain.isEmpty || node.domain == "ai.onnx"
            guard isDefaultDomain && node.opType == "Constant" else {
                pending.append((fileIndex, node))
                continue
            }
            let constant = Self.makeNode(node, index: fileIndex)
            guard let opset = importedOpset else {
                throw fail(.invalidGraph, "node '\(constant.name)' uses the default (ai.onnx) domain, but the model imports no default-domain opset")
            }
            do {
                let op = try ConstantOperator.checked(OpContext(node: constant, opset: opset))
                let name = constant.outputs[0]
                guard initializers[name] == nil && !inputNames.contains(name) else {
                    throw OpError.invalid("writes '\(name)', which is already an initializer or graph input")
                }
                initializers[name] = Initializer(name: name, tensor: op.value)
            } catch {
                throw ModelError.wrap(error, file: path, node: constant, kind: .invalidGraph)
            }
        }
        return pending
    }

    /// The nodes in a topological order, indexed in it.
    func sortedNodes(_ pending: [(fileIndex: Int, proto: Onnx_NodeProto)], available: Set<String>) throws -> [Node] {
        let order: [Int]
        do {
            order = try Self.topologicalOrder(pending.map { Self.makeNode($0.proto, index: $0.fileIndex) }, available: available)
        } catch let e as OpError {
            throw fail(e.kind, e.message)
        }
        return order.enumerated().map { index, fileNode in Self.makeNode(pending[fileNode].proto, index: index) }
    }

    /// Tensor names travel in every batch header, each with a 16-bit length.
    func checkNameLengths(_ names: [String]) throws {
        for name in names where name.utf8.count > Self.maximumNameBytes {
            throw fail(.invalidGraph, "a tensor name of \(name.utf8.count) bytes ('\(name.prefix(32))…'): names may have at most \(Self.maximumNameBytes)")
        }
    }

    /// Each node's schema. Every op must be supported before anything else is said about the
    /// graph: the error lists every one that is not.
    func schemas(for nodes: [Node], proto: Onnx_ModelProto, importedOpset: Int?) throws -> [OpSchema] {
        var unsupported: [String] = []
        var schemas: [OpSchema] = []
        for node in nodes {
            let isDefaultDomain = node.domain.isEmpty || node.domain == "ai.onnx"
            if isDefaultDomain && importedOpset == nil {
                throw fail(.invalidGraph, "node '\(node.name)' uses the default (ai.onnx) domain, but the model imports no default-domain opset")
            }
            switch OpRegistry.schema(for: node, opset: isDefaultDomain ? importedOpset ?? 0 : domainOpset(proto, node.domain)) {
            case .success(let schema): schemas.append(schema)
            case .failure(let reason): unsupported.append("\(path): node '\(node.name)': \(reason.message)")
            }
        }
        if !unsupported.isEmpty { throw ModelError(.unsupportedOp, unsupported.joined(separator: "\n")) }
        return schemas
    }

    func inputInfo(_ value: Onnx_ValueInfoProto) throws -> TensorInfo {
        let (dtype, shape) = try inputTensorType(value, role: "graph input")
        guard let shape else { throw fail(.unsupportedFeature, "graph input '\(value.name)' has no shape; Sluice needs the rank and the fixed dimensions") }
        // Checked before inference multiplies anything with them.
        guard let bytes = TensorDecoder.byteCount(dtype, shape.map { $0 ?? 1 }), bytes <= ShapeInference.maximumTensorBytes else {
            throw fail(.invalidGraph, "graph input '\(value.name)' has shape \(describeSymbolic(shape)): more than \(ShapeInference.maximumTensorBytes >> 30) GiB per sample")
        }
        return TensorInfo(name: value.name, dtype: dtype, shape: shape)
    }

    func configure(_ nodes: [Node], schemas: [OpSchema], opset: Int) throws -> [any Operator] {
        try zip(nodes, schemas).map { node, schema in
            do {
                return try schema.make(OpContext(node: node, opset: opset))
            } catch {
                throw ModelError.wrap(error, file: path, node: node, kind: .invalidGraph)
            }
        }
    }

    /// Types at batch 1 and, for each value, which of its dimensions follow the batch.
    struct InferredTypes {
        let types: [String: ValueType]
        /// Values whose shapes are known only at run time.
        let dynamic: Set<String>
        let symbolic: [String: [Bool]]
    }

    /// Infers per sample (symbolic dimensions = 1); a second pass at 2 shows which dimensions
    /// follow the batch.
    func inferTypes(_ nodes: [Node], operators: [any Operator], inputs: [TensorInfo],
                    initializers: [String: Initializer]) throws -> InferredTypes {
        func inputTypes(_ size: Int) -> [String: ValueType] {
            var types: [String: ValueType] = [:]
            for input in inputs { types[input.name] = ValueType(input.dtype, input.shape.map { $0 ?? size }) }
            return types
        }
        let inference = try ShapeInference.run(graph: nodes, operators: operators, inputs: inputTypes(1),
                                               initializers: initializers, file: path)
        let types = inference.types
        var symbolic: [String: [Bool]] = [:]
        if inputs.contains(where: { $0.shape.contains(nil) }) {
            // A model that only works at batch 1 (a Reshape to a fixed batch, say) still loads;
            // its batch dimensions are then fixed, and other sizes fail at run time.
            if let doubled = try? ShapeInference.run(graph: nodes, operators: operators, inputs: inputTypes(2),
                                                     initializers: initializers, file: path).types {
                for (name, type) in types where initializers[name] == nil {
                    if let other = doubled[name], other.shape.count == type.shape.count {
                        symbolic[name] = zip(type.shape, other.shape).map { $0 != $1 }
                    }
                }
            }
            for input in inputs { symbolic[input.name] = input.shape.map { $0 == nil } }
        }
        return InferredTypes(types: types, dynamic: inference.dynamic, symbolic: symbolic)
    }

    /// A graph output as inferred, checked against what the file declares.
    func outputInfo(_ value: Onnx_ValueInfoProto, _ inference: InferredTypes) throws -> TensorInfo {
        let (declaredType, declaredShape) = try tensorType(value, role: "graph output", allowUntyped: true)
        guard let type = inference.types[value.name] else {
            guard inference.dynamic.contains(value.name) else {
                throw fail(.invalidGraph, "graph output '\(value.name)' is not produced by any node")
            }
            // Its shape is only known at run time: report what the file declares.
            guard let declaredType else {
                throw fail(.unsupportedFeature, "graph output '\(value.name)' has a shape known only at run time and declares no type")
            }
            return TensorInfo(name: value.name, dtype: declaredType, shape: (declaredShape ?? []).map { _ in nil })
        }
        let mask = inference.symbolic[value.name] ?? Array(repeating: false, count: type.shape.count)
        let shape: [Int?] = zip(type.shape, mask).map { $1 ? nil : $0 }
        if let declaredType, declaredType != type.dtype {
            throw fail(.shapeMismatch, "graph output '\(value.name)' is declared \(declaredType) but computes \(type.dtype)")
        }
        if let declaredShape {
            // A fixed size the computation contradicts is taken from the computation, as
            // onnxruntime does: skl2onnx declares a two-target regressor's output [N, 1].
            let conflict = declaredShape.count != shape.count
            if conflict {
                throw fail(.shapeMismatch, "graph output '\(value.name)' is declared \(describeSymbolic(declaredShape)) but inference gives \(describeSymbolic(shape))")
            }
        }
        return TensorInfo(name: value.name, dtype: type.dtype, shape: shape)
    }

    /// What the model tells about each node: FLOPs per sample and bytes of weights.
    func nodeInfos(_ nodes: [Node], operators: [any Operator], types: [String: ValueType],
                   initializers: [String: Initializer]) -> [NodeInfo] {
        zip(nodes, operators).map { node, op in
            let inTypes = node.inputs.map { $0.isEmpty ? nil : types[$0] }
            let outTypes = node.outputs.compactMap { $0.isEmpty ? nil : types[$0] }
            let known = !outTypes.isEmpty && node.outputs.allSatisfy { $0.isEmpty || types[$0] != nil }
            let weightNames = Set(node.inputs.filter { initializers[$0] != nil })
            return NodeInfo(index: node.index, name: node.name, opType: node.opType, inputs: node.inputs,
                            outputs: node.outputs, flopsPerWindow: known ? op.flops(inTypes, outTypes) : 0,
                            parameterBytes: weightNames.reduce(0) { $0 + (initializers[$1]?.byteCount ?? 0) })
        }
    }

    static let maximumNameBytes = 4096

    func readProto() throws -> Onnx_ModelProto {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw fail(.fileNotReadable, "cannot open the model: no such file")
        }
        guard !isDirectory.boolValue else { throw fail(.fileNotReadable, "cannot open the model: it is a directory") }
        let data: Data
        do {
            // Read, not mapped: parsed initializers may keep slices of these bytes, and a model
            // file replaced on disk must not pull them away from a running stage.
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw fail(.fileNotReadable, "cannot read the model: \(error.localizedDescription)")
        }
        do {
            return try Onnx_ModelProto(serializedBytes: data)
        } catch {
            throw fail(.notAModel, "not an ONNX model: the protobuf does not parse (\(error))")
        }
    }

    func defaultOpset(_ proto: Onnx_ModelProto) -> Int? {
        proto.opsetImport.first(where: { $0.domain.isEmpty || $0.domain == "ai.onnx" }).map { Int($0.version) }
    }

    func domainOpset(_ proto: Onnx_ModelProto, _ domain: String) -> Int {
        Int(proto.opsetImport.first { $0.domain == domain }?.version ?? 0)
    }

    static func makeNode(_ proto: Onnx_NodeProto, index: Int) -> Node {
        // Also the names it lists itself: its subgraphs look them up by name.
        let implicit = Subgraph.outerNames(of: proto.attribute.flatMap(Subgraph.graphs))
        return Node(index: index, name: proto.name.isEmpty ? "\(proto.opType)_\(index)" : proto.name, opType: proto.opType,
                    domain: proto.domain, inputs: proto.input + implicit, outputs: proto.output,
                    attributes: Attributes(proto.attribute), implicitInputCount: implicit.count)
    }

    /// The element type and shape a value declares; shape nil when it declares none.
    private func tensorType(_ value: Onnx_ValueInfoProto, role: String, allowUntyped: Bool = false) throws -> (DType?, [Int?]?) {
        // ZipMap's rows of label → score maps: Sluice keeps them as the score tensor they come
        // from (see `ZipMapOperator`), so the inferred type stands.
        if allowUntyped, case .sequenceType(let sequence)? = value.type.value, case .mapType? = sequence.elemType.value {
            return (.float32, [nil, nil])
        }
        guard value.hasType, case .tensorType(let tensorType)? = value.type.value else {
            if allowUntyped && !value.hasType { return (nil, nil) }
            throw fail(.unsupportedFeature, "\(role) '\(value.name)' is not a tensor; only tensors are supported")
        }
        guard let dtype = TensorDecoder.dtype(onnx: tensorType.elemType) else {
            throw fail(.unsupportedFeature, "\(role) '\(value.name)' has data type \(TensorDecoder.onnxTypeName(tensorType.elemType)), which is not supported")
        }
        guard tensorType.hasShape else { return (dtype, nil) }
        let shape: [Int?] = tensorType.shape.dim.map { dim in
            if case .dimValue(let v)? = dim.value, v >= 0 { return Int(v) }
            return nil
        }
        return (dtype, shape)
    }

    private func inputTensorType(_ value: Onnx_ValueInfoProto, role: String) throws -> (DType, [Int?]?) {
        let (dtype, shape) = try tensorType(value, role: role, allowUntyped: false)
        guard let dtype else { throw fail(.unsupportedFeature, "\(role) '\(value.name)' declares no element type") }
        return (dtype, shape)
    }

    /// A stable topological order: file order wherever it is already valid, producers moved
    /// ahead of their first consumer otherwise. Returns indices into `nodes`.
    static func topologicalOrder(_ nodes: [Node], available: Set<String>) throws -> [Int] {
        var producer: [String: Int] = [:]
        for (i, node) in nodes.enumerated() {
            for name in node.outputs where !name.isEmpty {
                if let other = producer[name] {
                    throw OpError.invalid("tensor '\(name)' is produced by both node '\(nodes[other].name)' and node '\(node.name)'")
                }
                if available.contains(name) {
                    throw OpError.invalid("node '\(node.name)' writes '\(name)', which is a graph input or an initializer")
                }
                producer[name] = i
            }
        }
        // Depth-first, producers before consumers, roots in file order.
        var state = [UInt8](repeating: 0, count: nodes.count)  // 0 new, 1 on the stack, 2 placed
        var order: [Int] = []
        order.reserveCapacity(nodes.count)
        for root in nodes.indices where state[root] == 0 {
            var stack: [(node: Int, next: Int)] = [(root, 0)]
            state[root] = 1
            while let top = stack.last {
                let inputs = nodes[top.node].inputs
                if top.next < inputs.count {
                    stack[stack.count - 1].next += 1
                    let name = inputs[top.next]
                    if name.isEmpty || available.contains(name) { continue }
                    guard let p = producer[name] else {
                        throw OpError.invalid("node '\(nodes[top.node].name)' (\(nodes[top.node].qualifiedOp)) reads '\(name)', which no node produces and which is neither a graph input nor an initializer")
                    }
                    if state[p] == 1 {
                        throw OpError.invalid("the graph has a cycle through node '\(nodes[p].name)'")
                    }
                    if state[p] == 0 {
                        state[p] = 1
                        stack.append((p, 0))
                    }
                } else {
                    state[top.node] = 2
                    order.append(top.node)
                    stack.removeLast()
                }
            }
        }
        return order
    }
}
