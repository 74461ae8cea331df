import SluiceTensor

/// A run of consecutive nodes that the executor runs as one kernel:
/// Conv [+ BatchNormalization] [+ activation], Gemm + activation, MatMul + Add [+ activation],
/// where an activation may also be the five nodes exporters write for exact Gelu
/// (Div by √2, Erf, Add 1, Mul by x, Mul by ½), which alone also run as one kernel.
/// Found at load from the graph alone; the node list is never changed.
struct Fusion: Sendable {
    let nodes: Range<Int>
    let batchNorm: Int?
    let add: Int?
    let activation: Int?
    /// The activation is the Gelu pattern starting at `activation`.
    var gelu = false
    /// Transpose (of the last two dimensions) + MatMul reading it as B [+ Mul or Div by a
    /// scalar]: one batched product with B transposed, scaled by `scale`.
    var transposedMatMul = false
    var scale: Float = 1
    /// Add of two tensors, then LayerNormalization of the sum.
    var residualNorm = false

    var head: Int { nodes.lowerBound }

    static func find(graph: [Node], operators: [any Operator], initializers: [String: Initializer],
                     types: [String: ValueType], graphOutputs: Set<String>) -> [Fusion] {
        FusionFinder(graph: graph, operators: operators, initializers: initializers, types: types,
                     graphOutputs: graphOutputs).find()
    }
}

/// The graph `Fusion.find` walks, and the patterns it recognises at each node.
struct FusionFinder {
    let graph: [Node]
    let operators: [any Operator]
    let initializers: [String: Initializer]
    let types: [String: ValueType]
    let graphOutputs: Set<String>
    /// The nodes reading each value.
    let consumers: [String: Set<Int>]

    init(graph: [Node], operators: [any Operator], initializers: [String: Initializer], types: [String: ValueType],
         graphOutputs: Set<String>) {
        self.graph = graph
        self.operators = operators
        self.initializers = initializers
        self.types = types
        self.graphOutputs = graphOutputs
        var consumers: [String: Set<Int>] = [:]
        for node in graph {
            for name in node.inputs where !name.isEmpty { consumers[name, default: []].insert(node.index) }
        }
        self.consumers = consumers
    }

    /// Every fusion, in node order; none overlap.
    func find() -> [Fusion] {
        var fusions: [Fusion] = []
        var i = 0
        while i < graph.count {
            if let fusion = fusion(at: i) {
                fusions.append(fusion)
                i = fusion.nodes.upperBound
            } else {
                i += 1
            }
        }
        return fusions
    }

    /// The fusion whose first node is `i`, if any.
    func fusion(at i: Int) -> Fusion? {
        switch operators[i] {
        case is ConvOperator: return convFusion(at: i)
        case is GemmOperator: return gemmFusion(at: i)
        case is MatMulOperator: return matMulBiasFusion(at: i)
        case let transpose as TransposeOperator: return transposedMatMulFusion(at: i, transpose)
        case let binary as BinaryOperator: return geluFusion(at: i) ?? residualNormFusion(at: i, binary)
        default: return nil
        }
    }

    /// Conv [+ BatchNormalization of constants] [+ activation].
    func convFusion(at i: Int) -> Fusion? {
        let output = graph[i].outputs[0]
        var end = i + 1
        var batchNorm: Int?, activation: Int?
        if end < graph.count, operators[end] is BatchNormOperator, graph[end].inputs.first == output,
           onlyFeeds(output, end), graph[end].inputs.dropFirst().allSatisfy(isConstant) {
            batchNorm = end
            end += 1
        }
        if activationFollows(end) {
            activation = end
            end += 1
        }
        guard end > i + 1 else { return nil }
        return Fusion(nodes: i..<end, batchNorm: batchNorm, add: nil, activation: activation)
    }

    /// Gemm + activation, or Gemm + the Gelu pattern.
    func gemmFusion(at i: Int) -> Fusion? {
        let end = i + 1
        if activationFollows(end) {
            return Fusion(nodes: i..<(end + 1), batchNorm: nil, add: nil, activation: end)
        }
        if let out = graph[i].outputs.first, geluAt(end, of: out), geluOwns(end, out) {
            return Fusion(nodes: i..<(end + 5), batchNorm: nil, add: nil, activation: end, gelu: true)
        }
        return nil
    }

    /// x[…, K] · W[K, N] + b[N]: a Gemm over the rows of x with a broadcast bias [+ activation or Gelu].
    func matMulBiasFusion(at i: Int) -> Fusion? {
        let head = graph[i]
        var end = i + 1
        guard end < graph.count, let add = operators[end] as? BinaryOperator, add.op == .add,
              let weight = initializers[head.inputs[1]], weight.shape.count == 2,
              let x = types[head.inputs[0]], x.shape.count >= 2 else { return nil }
        let output = head.outputs[0]
        let next = graph[end]
        guard next.inputs.count == 2, next.inputs.contains(output), onlyFeeds(output, end) else { return nil }
        let biasName = next.inputs[0] == output ? next.inputs[1] : next.inputs[0]
        guard let bias = initializers[biasName], bias.dtype == .float32,
              bias.shape == [weight.shape[1]] || bias.shape == [1, weight.shape[1]] else { return nil }
        let fusedAdd = end
        end += 1
        var activation: Int?
        var gelu = false
        if activationFollows(end) {
            activation = end
            end += 1
        } else if let out = next.outputs.first, geluAt(end, of: out), geluOwns(end, out) {
            activation = end
            gelu = true
            end += 5
        }
        return Fusion(nodes: i..<end, batchNorm: nil, add: fusedAdd, activation: activation, gelu: gelu)
    }

    /// Transpose(k, swap last two) → MatMul(q, kᵀ) [→ Mul/Div by a scalar].
    func transposedMatMulFusion(at i: Int, _ transpose: TransposeOperator) -> Fusion? {
        let head = graph[i]
        var end = i + 1
        guard let input = types[head.inputs[0]], input.shape.count >= 2, end < graph.count,
              let perm = try? transpose.permutation(rank: input.shape.count),
              perm == Array(0..<(input.shape.count - 2)) + [input.shape.count - 1, input.shape.count - 2],
              operators[end] is MatMulOperator, graph[end].inputs.count == 2, graph[end].inputs[1] == head.outputs[0],
              graph[end].inputs[0] != head.outputs[0], onlyFeeds(head.outputs[0], end) else { return nil }
        end += 1
        var scale: Float = 1
        if end < graph.count, let mul = operators[end] as? BinaryOperator, mul.legacy == nil, mul.op == .mul || mul.op == .div,
           let product = graph[end - 1].outputs.first, graph[end].inputs.first == product, onlyFeeds(product, end),
           let c = scalar(graph[end].inputs[1]) {
            scale = mul.op == .mul ? c : 1 / c
            end += 1
        }
        return Fusion(nodes: i..<end, batchNorm: nil, add: nil, activation: nil, transposedMatMul: true, scale: scale)
    }

    /// A Gelu written out node by node.
    func geluFusion(at i: Int) -> Fusion? {
        guard let x = graph[i].inputs.first, geluAt(i, of: x) else { return nil }
        return Fusion(nodes: i..<(i + 5), batchNorm: nil, add: nil, activation: i, gelu: true)
    }

    /// A residual Add straight into LayerNormalization (the operands may broadcast).
    func residualNormFusion(at i: Int, _ binary: BinaryOperator) -> Fusion? {
        let head = graph[i]
        let end = i + 1
        guard binary.op == .add, binary.legacy == nil, end < graph.count, operators[end] is LayerNormOperator,
              head.inputs.count == 2, let a = types[head.inputs[0]], let b = types[head.inputs[1]],
              a.dtype == .float32, b.dtype == .float32, (try? Shapes.broadcast(a.shape, b.shape)) != nil,
              let sum = head.outputs.first, graph[end].inputs.first == sum, onlyFeeds(sum, end),
              graph[end].outputs.dropFirst().allSatisfy({ $0.isEmpty }) else { return nil }
        return Fusion(nodes: i..<(end + 1), batchNorm: nil, add: i, activation: nil, residualNorm: true)
    }

    /// Whether `tensor` is read by node `j` and nothing else, so fusing may skip producing it.
    func onlyFeeds(_ tensor: String, _ j: Int) -> Bool {
        consumers[tensor] == [j] && !graphOutputs.contains(tensor)
    }

    func isConstant(_ name: String) -> Bool { name.isEmpty || initializers[name] != nil }

    /// Whether node `j` is an activation reading only node `j − 1`'s sole output.
    func activationFollows(_ j: Int) -> Bool {
        guard j < graph.count, let source = graph[j - 1].outputs.first, graph[j].inputs.first == source,
              onlyFeeds(source, j) else { return false }
        switch operators[j] {
        case is ActivationOperator: return true
        case is ClipOperator: return graph[j].inputs.dropFirst().allSatisfy(isConstant)
        default: return false
        }
    }

    /// The scalar value of a constant float input, if it is one.
    func scalar(_ name: String) -> Float? {
        guard let initializer = initializers[name], initializer.dtype == .float32, initializer.shape.reduce(1, *) == 1,
              let value = try? initializer.tensor() else { return nil }
        return value.floats[0]
    }

    /// Whether nodes j..<j+5 compute exact Gelu of `x`: Div(x, √2) (or Mul by 1/√2), Erf,
    /// Add 1, then Mul by x and Mul by ½ in either order, each intermediate read only by the next.
    func geluAt(_ j: Int, of x: String) -> Bool {
        guard j + 5 <= graph.count else { return false }
        let n = Array(graph[j..<(j + 5)])
        guard let scale = operators[j] as? BinaryOperator, scale.legacy == nil, n[0].inputs.count == 2, n[0].inputs[0] == x,
              let c = scalar(n[0].inputs[1]) else { return false }
        guard (scale.op == .div && abs(c - 1.41421356) < 1e-4) || (scale.op == .mul && abs(c - 0.70710678) < 1e-4) else { return false }
        guard let erf = operators[j + 1] as? UnaryOperator, erf.op == .erf, n[1].inputs == [n[0].outputs[0]],
              onlyFeeds(n[0].outputs[0], j + 1) else { return false }
        guard let add = operators[j + 2] as? BinaryOperator, add.op == .add, add.legacy == nil,
              n[2].inputs.contains(n[1].outputs[0]), onlyFeeds(n[1].outputs[0], j + 2),
              n[2].inputs.first(where: { $0 != n[1].outputs[0] }).flatMap(scalar) == 1 else { return false }
        guard let m1 = operators[j + 3] as? BinaryOperator, m1.op == .mul, m1.legacy == nil,
              let m2 = operators[j + 4] as? BinaryOperator, m2.op == .mul, m2.legacy == nil,
              n[3].inputs.contains(n[2].outputs[0]), onlyFeeds(n[2].outputs[0], j + 3),
              n[4].inputs.contains(n[3].outputs[0]), onlyFeeds(n[3].outputs[0], j + 4) else { return false }
        let other3 = n[3].inputs.first { $0 != n[2].outputs[0] } ?? ""
        let other4 = n[4].inputs.first { $0 != n[3].outputs[0] } ?? ""
        // {other3, other4} = {x, ½}
        return (other3 == x && scalar(other4) == 0.5) || (scalar(other3) == 0.5 && other4 == x)
    }

    /// x's readers must be exactly the Div and the Mul of the Gelu at j (x is not kept).
    func geluOwns(_ j: Int, _ x: String) -> Bool {
        consumers[x] == [j, graph[j + 3].inputs.contains(x) ? j + 3 : j + 4] && !graphOutputs.contains(x)
    }
}

/// MatMul by a 2-D weight followed by a bias Add (and maybe an activation), as one Gemm over
/// the rows of the input: `activation(x[…, K] · W[K, N] + b[N])`.
struct MatMulBiasOperator: Operator {
    var activation: Activation
    /// The weight input is packed in column panels from [k, n].
    var packed: PackedShape?

    init(activation: Activation) {
        self.activation = activation
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let x = try inputs.type(0, oneOf: [.float32], role: "A")
        var w = try inputs.type(1, oneOf: [.float32], role: "B")
        if let packed { w.shape = [packed.k, packed.n] }
        let shape = try Shapes.matmul(x.shape, w.shape)
        guard x.shape.count >= 2, w.shape.count == 2 else { throw OpError("fused MatMul needs A of rank ≥ 2 and a 2-D B") }
        return [ValueType(.float32, shape)]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let x = inputs[0]!, w = inputs[1]!, bias = inputs[2]!
        if let packed {
            let out = Tensor(uninitialized: .float32, shape: outputs[0].shape)
            Kernels.linear(x, packed: w, k: packed.k, n: packed.n, bias: bias.reshaped([packed.n]), activation: activation, into: out)
            return [out]
        }
        let k = w.shape[0], n = w.shape[1]
        let rows = x.elementCount / max(k, 1)
        let y = Kernels.linear(x.reshaped([rows, k]), w, bias: bias.reshaped([n]), activation: activation)
        return [y.reshaped(outputs[0].shape)]
    }

    func flops(_ inputs: [ValueType?], _ outputs: [ValueType]) -> Double {
        guard let w = inputs[1] else { return 0 }
        return Double(outputs[0].elementCount) * (2 * Double(packed?.k ?? w.shape[0]) + 1)
    }
}

/// The [k, n] a weight had before it was packed into column panels.
struct PackedShape: Sendable, Equatable {
    let k: Int
    let n: Int
}

/// An activation on its own as one step (the fused Gelu pattern).
struct FusedActivationOperator: Operator {
    let activation: Activation

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        [try inputs.type(0, oneOf: [.float32], role: "input")]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        [Kernels.activation(activation, inputs[0]!)]
    }

    var writesInto: Bool { true }

    func evaluate(_ inputs: [Tensor?], into outputs: [Tensor], scratch: Scratch) throws -> Bool {
        Kernels.activation(activation, inputs[0]!, into: outputs[0])
        return true
    }
}

/// MatMul(A, Bᵀ) · scale, where Bᵀ swaps B's last two dimensions: Transpose + MatMul [+ Mul].
struct MatMulTransposedOperator: Operator {
    let scale: Float

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let a = try inputs.type(0, oneOf: [.float32], role: "A")
        let b = try inputs.type(1, oneOf: [.float32], role: "B")
        guard b.shape.count >= 2 else { throw OpError("B must have rank ≥ 2") }
        var bt = b.shape
        bt.swapAt(bt.count - 1, bt.count - 2)
        return [ValueType(.float32, try Shapes.matmul(a.shape, bt))]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let out = Tensor(uninitialized: .float32, shape: outputs[0].shape)
        Kernels.matmul(inputs[0]!, inputs[1]!, transB: true, alpha: scale, into: out)
        return [out]
    }

    var writesInto: Bool { true }

    func evaluate(_ inputs: [Tensor?], into outputs: [Tensor], scratch: Scratch) throws -> Bool {
        Kernels.matmul(inputs[0]!, inputs[1]!, transB: true, alpha: scale, into: outputs[0])
        return true
    }

    func flops(_ inputs: [ValueType?], _ outputs: [ValueType]) -> Double {
        guard let b = inputs[1], let k = b.shape.last else { return 0 }
        return 2 * Double(outputs[0].elementCount) * Double(k)
    }
}

/// Add(a, b) then LayerNormalization of the sum, in one pass per row; a and b broadcast as Add's do.
struct AddLayerNormOperator: Operator {
    let norm: LayerNormOperator

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let a = try inputs.type(0, oneOf: [.float32], role: "A"), b = try inputs.type(1, oneOf: [.float32], role: "B")
        // The shapes the fusion saw at load may differ at run time (a batch of N plus position
        // embeddings of batch 1): the sum broadcasts as Add does.
        let sum = ValueType(.float32, try Shapes.broadcast(a.shape, b.shape))
        let rest = InferenceInputs(types: [sum] + Array(inputs.types.dropFirst(2)), values: [nil] + Array(inputs.values.dropFirst(2)))
        return [try norm.infer(rest)[0]]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let out = Tensor(uninitialized: .float32, shape: outputs[0].shape)
        if try !evaluate(inputs, into: [out], scratch: scratch) {
            let sum = Kernels.binary(.add, inputs[0]!, inputs[1]!)
            return [try norm.evaluate([sum] + Array(inputs.dropFirst(2)), outputs: outputs, scratch: scratch)[0]]
        }
        return [out]
    }

    var writesInto: Bool { true }

    func evaluate(_ inputs: [Tensor?], into outputs: [Tensor], scratch: Scratch) throws -> Bool {
        let a = inputs[0]!, b = inputs[1]!, out = outputs[0]
        let axis = try Shapes.axis(norm.axis, rank: out.rank)
        let columns = Tensor.elementCount(of: Array(out.shape[axis...]))
        let scale = inputs[2]!, bias = inputs.count > 3 ? inputs[3] : nil
        guard columns > 0, scale.elementCount == columns, bias == nil || bias!.elementCount == columns else { return false }
        // One operand has the sum's shape; the other repeats over whole rows of it (the same
        // shape, or position embeddings [1, T, C] beside [N, T, C]): add it block by block.
        let (full, block) = a.shape == out.shape ? (a, b) : (b, a)
        guard full.shape == out.shape, let repeats = Self.repeats(block.shape, in: out.shape, axis: axis) else {
            let sum = Kernels.binary(.add, a, b)
            Kernels.layerNorm(sum.floatData, rows: sum.elementCount / columns, columns: columns, scale: scale.floatData,
                              bias: bias?.floatData, epsilon: norm.epsilon, into: out.mutableFloatData)
            return true
        }
        let blockCount = block.elementCount
        for r in 0..<repeats {
            Kernels.layerNorm(full.floatData + r * blockCount, residual: block.floatData, rows: blockCount / columns, columns: columns,
                              scale: scale.floatData, bias: bias?.floatData, epsilon: norm.epsilon,
                              into: out.mutableFloatData + r * blockCount)
        }
        return true
    }

    /// How many times `block` repeats to fill `shape`, when it is `shape` with leading
    /// dimensions (before `axis`) set to 1 or dropped; nil for any other broadcast.
    static func repeats(_ block: [Int], in shape: [Int], axis: Int) -> Int? {
        guard block.count <= shape.count else { return nil }
        let padded = Array(repeating: 1, count: shape.count - block.count) + block
        let first = padded.indices.first { padded[$0] != 1 || $0 >= axis } ?? shape.count
        guard first <= axis, padded[first...].elementsEqual(shape[first...]) else { return nil }
        return Tensor.elementCount(of: Array(shape[..<first]))
    }

    func flops(_ inputs: [ValueType?], _ outputs: [ValueType]) -> Double { 9 * Double(outputs[0].elementCount) }
}
