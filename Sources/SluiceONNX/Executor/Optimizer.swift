import SluiceTensor

/// What the executor runs for a range of a model's nodes: the result of its optimisation pass,
/// a step of its own between loading and running. The pass has three steps, each a function
/// that can run on its own:
///
/// 1. Fusions: `Fusion.find`, at load, because stage cuts must keep fused runs whole (see
///    `ONNXModel.fusionGroups`); the pass takes those lying wholly inside the range and builds
///    each one's single kernel (`FusedSteps`).
/// 2. Weights: the initializers the range reads, decoded, and packed or transposed once for the
///    kernels that read them (`WeightPacking`).
/// 3. Buffers: laid out for each set of input shapes when a range first runs with them
///    (`ExecutionPlan`), since sizes follow the batch.
///
/// It keeps no reference to the model, so the rest of the weights can be released.
struct OptimizedGraph {
    let nodes: Range<Int>
    /// Every node on its own, as planned (weights packed).
    let singles: [Executor.Step]
    /// The fused steps, by their first node.
    let fused: [Int: Executor.Step]
    /// The weights some step reads; a packed or transposed copy replaces its source.
    let weights: [String: Tensor]
    /// What each value the range reads from the caller must look like.
    let expectations: [String: Executor.Expectation]

    init(model: ONNXModel, nodes: Range<Int>) throws {
        let graph = Array(model.graph[nodes])
        var weights = try Self.decodeWeights(readBy: graph, in: model)
        let planned = WeightPacking.pack(graph.map { PlannedNode(op: model.operators[$0.index], inputs: $0.inputs) },
                                         weights: &weights)
        let singles = zip(graph, planned).map { node, plan in
            Executor.Step(nodes: node.index..<(node.index + 1), node: node, op: plan.op, inputs: plan.inputs, outputs: node.outputs)
        }
        let fused = FusedSteps.steps(for: model.fusions, within: nodes, model: model, planned: planned, weights: weights)
        self.nodes = nodes
        self.singles = singles
        self.fused = fused
        self.weights = Self.keeping(weights, readBy: singles + fused.values)
        expectations = Self.expectations(readBy: graph, in: model)
    }

    /// The initializers `graph` reads, decoded.
    static func decodeWeights(readBy graph: [Node], in model: ONNXModel) throws -> [String: Tensor] {
        var weights: [String: Tensor] = [:]
        for name in graph.flatMap(\.inputs) where weights[name] == nil {
            guard let initializer = model.initializers[name] else { continue }
            do { weights[name] = try initializer.tensor() } catch let e as OpError {
                throw ModelError(e.kind, "\(model.path): initializer '\(name)' \(e.message)")
            }
        }
        return weights
    }

    /// The declared type of every value `graph` reads that is not an initializer.
    static func expectations(readBy graph: [Node], in model: ONNXModel) -> [String: Executor.Expectation] {
        var expectations: [String: Executor.Expectation] = [:]
        for name in graph.flatMap(\.inputs) where !name.isEmpty && model.initializers[name] == nil {
            guard let type = model.types[name] else { continue }
            let free = model.symbolic[name] ?? Array(repeating: false, count: type.shape.count)
            expectations[name] = Executor.Expectation(type: type, free: free)
        }
        return expectations
    }

    static func keeping(_ weights: [String: Tensor], readBy steps: [Executor.Step]) -> [String: Tensor] {
        let read = Set(steps.flatMap(\.inputs))
        return weights.filter { read.contains($0.key) }
    }
}

/// A node's op and the inputs it reads, as the optimisation pass leaves them.
struct PlannedNode {
    var op: any Operator
    var inputs: [String]
}

/// Step 2 of the optimisation pass. Gemm and MatMul weights deep enough are packed into column
/// panels for the packed kernel (see Kernels.packColumns); other Gemm weights used transposed
/// are stored transposed once, because BLAS runs A·Bᵀ markedly slower than A·B (about 50
/// against 75+ GFLOP/s at K = 1024, M = 32). Recurrent weights R are packed per direction.
enum WeightPacking {
    /// `nodes` with their ops and inputs switched to packed weights, added to `weights` under
    /// names no ONNX tensor has.
    static func pack(_ nodes: [PlannedNode], weights: inout [String: Tensor]) -> [PlannedNode] {
        nodes.map { node in
            packedMatMul(node, &weights) ?? packedRecurrent(node, &weights) ?? packedGemm(node, &weights) ?? node
        }
    }

    /// Where the executor keeps a weight stored another way.
    static func internalKey(_ kind: String, _ name: String) -> String { "\u{1}\(kind)/\(name)" }

    /// MatMul by a constant matrix: packed too, so that it computes exactly as the MatMul + Add
    /// fusion built on it (a stage boundary may split that fusion).
    static func packedMatMul(_ node: PlannedNode, _ weights: inout [String: Tensor]) -> PlannedNode? {
        guard var matmul = node.op as? MatMulOperator, node.inputs.count == 2, let weight = weights[node.inputs[1]],
              weight.rank == 2, weight.dtype == .float32, weight.shape[0] >= Kernels.packedMinimumDepth else { return nil }
        let key = internalKey("packed", node.inputs[1])
        if weights[key] == nil { weights[key] = Kernels.packColumns(weight) }
        matmul.packed = PackedShape(k: weight.shape[0], n: weight.shape[1])
        return PlannedNode(op: matmul, inputs: [node.inputs[0], key])
    }

    /// Recurrent weights R: Rᵀ packed once per direction, as input 8.
    static func packedRecurrent(_ node: PlannedNode, _ weights: inout [String: Tensor]) -> PlannedNode? {
        guard var recurrent = node.op as? RecurrentOperator, node.inputs.count > 2, let r = weights[node.inputs[2]],
              r.rank == 3, r.dtype == .float32, r.shape[1] == recurrent.gates * r.shape[2] else { return nil }
        let key = internalKey("packedR", node.inputs[2])
        if weights[key] == nil { weights[key] = RecurrentCell.packRecurrentWeights(r, gates: recurrent.gates) }
        recurrent.packedR = true
        let inputs = node.inputs + Array(repeating: "", count: max(0, 8 - node.inputs.count))
        return PlannedNode(op: recurrent, inputs: Array(inputs.prefix(8)) + [key])
    }

    static func packedGemm(_ node: PlannedNode, _ weights: inout [String: Tensor]) -> PlannedNode? {
        guard var gemm = node.op as? GemmOperator, node.inputs.count > 1,
              let weight = weights[node.inputs[1]], weight.rank == 2, weight.dtype == .float32 else { return nil }
        let (k, n) = gemm.transB ? (weight.shape[1], weight.shape[0]) : (weight.shape[0], weight.shape[1])
        var inputs = node.inputs
        if k >= Kernels.packedMinimumDepth {
            let key = internalKey(gemm.transB ? "packedT" : "packed", node.inputs[1])
            if weights[key] == nil {
                weights[key] = Kernels.packColumns(gemm.transB ? Kernels.transpose(weight, perm: [1, 0]) : weight)
            }
            gemm.packed = PackedShape(k: k, n: n)
            inputs[1] = key
        } else if gemm.transB {
            let key = internalKey("transposed", node.inputs[1])
            if weights[key] == nil { weights[key] = Kernels.transpose(weight, perm: [1, 0]) }
            inputs[1] = key
        } else {
            return nil
        }
        gemm.transB = false
        return PlannedNode(op: gemm, inputs: inputs)
    }
}

/// Step 1 of the optimisation pass, after `Fusion.find`: the single kernel of each fusion in a
/// range, with constants of its later nodes folded in.
enum FusedSteps {
    static func steps(for fusions: [Fusion], within nodes: Range<Int>, model: ONNXModel, planned: [PlannedNode],
                      weights: [String: Tensor]) -> [Int: Executor.Step] {
        var fused: [Int: Executor.Step] = [:]
        for fusion in fusions where nodes.contains(fusion.head) && fusion.nodes.upperBound <= nodes.upperBound {
            fused[fusion.head] = step(for: fusion, model: model, head: planned[fusion.head - nodes.lowerBound], weights: weights)
        }
        return fused
    }

    /// The fusion as one step; `head` is its first node as planned (weights packed).
    static func step(for fusion: Fusion, model: ONNXModel, head: PlannedNode, weights: [String: Tensor]) -> Executor.Step {
        let first = model.graph[fusion.head]
        let last = model.graph[fusion.nodes.upperBound - 1]
        let activation = self.activation(of: fusion, model: model, weights: weights)
        let kernel = self.kernel(of: fusion, model: model, head: head, activation: activation, weights: weights) ?? head
        return Executor.Step(nodes: fusion.nodes, node: first, op: kernel.op, inputs: kernel.inputs, outputs: last.outputs)
    }

    static func activation(of fusion: Fusion, model: ONNXModel, weights: [String: Tensor]) -> Activation {
        if fusion.gelu { return .gelu }
        guard let a = fusion.activation else { return .none }
        switch model.operators[a] {
        case let op as ActivationOperator:
            return op.activation
        case let op as ClipOperator:
            let values = model.graph[a].inputs.map { $0.isEmpty ? nil : weights[$0] }
            let known = InferenceInputs(types: values.map { $0.map { ValueType($0.dtype, $0.shape) } }, values: values)
            let (lo, hi) = op.bounds(known)
            return .clip(min: lo, max: hi)
        default:
            return .none
        }
    }

    /// The fused op and its inputs; nil where the head runs as planned.
    static func kernel(of fusion: Fusion, model: ONNXModel, head: PlannedNode, activation: Activation,
                       weights: [String: Tensor]) -> PlannedNode? {
        let node = model.graph[fusion.head]
        switch head.op {
        case var conv as ConvOperator:
            if let b = fusion.batchNorm, let norm = model.operators[b] as? BatchNormOperator {
                let (scale, shift) = foldedBatchNorm(norm, model.graph[b], weights: weights)
                conv.channelScale = scale
                conv.channelShift = shift
            }
            conv.activation = activation
            return PlannedNode(op: conv, inputs: head.inputs)
        case var gemm as GemmOperator:
            gemm.activation = activation
            return PlannedNode(op: gemm, inputs: head.inputs)
        case let matmul as MatMulOperator:
            guard let a = fusion.add else { return nil }
            let add = model.graph[a]
            var linear = MatMulBiasOperator(activation: activation)
            linear.packed = matmul.packed
            return PlannedNode(op: linear, inputs: head.inputs + [add.inputs[0] == node.outputs[0] ? add.inputs[1] : add.inputs[0]])
        case is BinaryOperator where fusion.residualNorm:
            let normNode = model.graph[fusion.nodes.upperBound - 1]
            guard let norm = model.operators[normNode.index] as? LayerNormOperator, normNode.inputs.first == node.outputs[0] else { return nil }
            return PlannedNode(op: AddLayerNormOperator(norm: norm), inputs: head.inputs + Array(normNode.inputs.dropFirst()))
        case is TransposeOperator where fusion.transposedMatMul:
            let matmul = model.graph[fusion.head + 1]
            return PlannedNode(op: MatMulTransposedOperator(scale: fusion.scale), inputs: [matmul.inputs[0], node.inputs[0]])
        case is BinaryOperator where fusion.gelu:
            // The Gelu pattern alone: its input is the Div's first input.
            return PlannedNode(op: FusedActivationOperator(activation: .gelu), inputs: [node.inputs[0]])
        default:
            return nil
        }
    }

    /// A BatchNormalization after a Conv as the Conv's per-channel scale and shift.
    static func foldedBatchNorm(_ norm: BatchNormOperator, _ node: Node, weights: [String: Tensor]) -> (Tensor, Tensor) {
        // Fusion.find checked that these four are initializers, so the executor holds them.
        let p = node.inputs.dropFirst().map { weights[$0]! }
        let (scale, shift) = Kernels.batchNormCoefficients(scale: p[0], bias: p[1], mean: p[2], variance: p[3], epsilon: norm.epsilon)
        return (Tensor(shape: [scale.count], floats: scale), Tensor(shape: [shift.count], floats: shift))
    }
}
