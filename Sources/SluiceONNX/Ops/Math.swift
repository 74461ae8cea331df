import SluiceTensor

/// Arithmetic, matrix products and activations.
enum MathOps {
    static let schemas: [OpSchema] = [
        OpSchema(name: "Add", opsets: 1...OpRegistry.latestOpset, inputs: 2...2) { try BinaryOperator($0, .add) },
        OpSchema(name: "Sub", opsets: 1...OpRegistry.latestOpset, inputs: 2...2) { try BinaryOperator($0, .sub) },
        OpSchema(name: "Mul", opsets: 1...OpRegistry.latestOpset, inputs: 2...2) { try BinaryOperator($0, .mul) },
        OpSchema(name: "Div", opsets: 1...OpRegistry.latestOpset, inputs: 2...2) { try BinaryOperator($0, .div) },
        OpSchema(name: "Gemm", opsets: 1...OpRegistry.latestOpset, inputs: 2...3) { try GemmOperator($0) },
        OpSchema(name: "MatMul", opsets: 1...OpRegistry.latestOpset, inputs: 2...2) { _ in MatMulOperator() },
        OpSchema(name: "Relu", opsets: 1...OpRegistry.latestOpset, inputs: 1...1) { try ActivationOperator($0, .relu) },
        OpSchema(name: "LeakyRelu", opsets: 1...OpRegistry.latestOpset, inputs: 1...1) {
            try ActivationOperator($0, .leakyRelu(alpha: try $0.attributes.float("alpha", default: 0.01)))
        },
        OpSchema(name: "Sigmoid", opsets: 1...OpRegistry.latestOpset, inputs: 1...1) { try ActivationOperator($0, .sigmoid) },
        OpSchema(name: "Tanh", opsets: 1...OpRegistry.latestOpset, inputs: 1...1) { try ActivationOperator($0, .tanh) },
        OpSchema(name: "Clip", opsets: 6...OpRegistry.latestOpset, inputsSince: [1: 1...1, 11: 1...3]) { try ClipOperator($0) },
        OpSchema(name: "Softmax", opsets: 1...OpRegistry.latestOpset, inputs: 1...1) { try SoftmaxOperator($0, log: false) },
        OpSchema(name: "LogSoftmax", opsets: 1...OpRegistry.latestOpset, inputs: 1...1) { try SoftmaxOperator($0, log: true) },
    ]
}

/// Add, Sub, Mul, Div with NumPy broadcasting (opset 7 and later). Before opset 7, B
/// broadcast to A only when the `broadcast` attribute said so, aligned at `axis` (default: the
/// trailing dimensions); `legacy` keeps those rules.
struct BinaryOperator: Operator {
    let op: BinaryOp
    var legacy: LegacyBroadcast?

    init(_ context: OpContext, _ op: BinaryOp) throws {
        self.op = op
        if context.opset < 7 { legacy = try LegacyBroadcast(context) }
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let a = try inputs.type(0, oneOf: Kernels.binaryDTypes, role: "input A")
        var b = try inputs.type(1)
        guard a.dtype == b.dtype else { throw OpError("inputs have different types: \(a.dtype) and \(b.dtype)") }
        if let legacy { b.shape = try legacy.align(b.shape, to: a.shape) }
        return [ValueType(a.dtype, try Shapes.broadcast(a.shape, b.shape))]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        var b = inputs[1]!
        if let legacy { b = b.reshaped(try legacy.align(b.shape, to: inputs[0]!.shape)) }
        return [Kernels.binary(op, inputs[0]!, b)]
    }
}

/// Broadcasting as opsets 1 to 6 defined it for binary ops: none unless `broadcast` = 1, and
/// then B's dimensions line up with A's from `axis` on.
struct LegacyBroadcast: Sendable {
    let enabled: Bool
    let axis: Int?

    init(_ context: OpContext) throws {
        enabled = try context.attributes.int("broadcast", default: 0) != 0
        axis = try context.attributes.int("axis")
    }

    /// B's shape padded with 1s to A's rank, so that NumPy broadcasting gives the old result.
    func align(_ b: [Int], to a: [Int]) throws -> [Int] {
        guard enabled else {
            guard a == b else { throw OpError("shapes \(describe(a)) and \(describe(b)) differ and broadcast is 0") }
            return b
        }
        if b.count == 1 && b[0] == 1 { return b }
        let start = axis.map { $0 < 0 ? $0 + a.count : $0 } ?? (a.count - b.count)
        guard start >= 0, start + b.count <= a.count else {
            throw OpError("B \(describe(b)) does not fit A \(describe(a)) at axis \(start)")
        }
        return Array(repeating: 1, count: start) + b + Array(repeating: 1, count: a.count - start - b.count)
    }
}

/// Gemm: `Y = alpha · op(A) · op(B) + beta · C`, with an activation the executor may fuse in.
struct GemmOperator: Operator {
    let alpha: Float
    let beta: Float
    let transA: Bool
    var transB: Bool
    var activation: Activation = .none
    /// B is packed in column panels from [k, n] (transB already applied).
    var packed: PackedShape?

    init(_ context: OpContext) throws {
        let a = context.attributes
        alpha = try a.float("alpha", default: 1)
        beta = try a.float("beta", default: 1)
        transA = try a.int("transA", default: 0) != 0
        transB = try a.int("transB", default: 0) != 0
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let a = try inputs.type(0, oneOf: [.float32], role: "A")
        var b = try inputs.type(1, oneOf: [.float32], role: "B")
        if let packed { b.shape = [packed.k, packed.n] }
        let c = inputs.optionalType(2)
        if let c, c.dtype != .float32 { throw OpError("C must be float32, got \(c.dtype)") }
        return [ValueType(.float32, try Kernels.gemmShape(a: a.shape, b: b.shape, c: c?.shape, transA: transA, transB: transB))]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let c = inputs.count > 2 ? inputs[2] : nil
        if let packed {
            let out = Tensor(uninitialized: .float32, shape: outputs[0].shape)
            Kernels.gemm(inputs[0]!, packed: inputs[1]!, k: packed.k, n: packed.n, c: c, transA: transA, alpha: alpha, beta: beta,
                         activation: activation, into: out)
            return [out]
        }
        return [Kernels.gemm(inputs[0]!, inputs[1]!, c: c, transA: transA, transB: transB, alpha: alpha, beta: beta,
                             activation: activation)]
    }

    func flops(_ inputs: [ValueType?], _ outputs: [ValueType]) -> Double {
        guard let a = inputs[0], a.shape.count == 2 else { return 0 }
        let k = transA ? a.shape[0] : a.shape[1]
        let extra = inputs.count > 2 && inputs[2] != nil ? 1.0 : 0.0
        return Double(outputs[0].elementCount) * (2 * Double(k) + extra)
    }
}

/// MatMul with NumPy semantics (1-D operands, broadcast batch dimensions).
struct MatMulOperator: Operator {
    /// B is a constant [k, n] matrix the executor packed in column panels.
    var packed: PackedShape?

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let a = try inputs.type(0, oneOf: [.float32], role: "A")
        var b = try inputs.type(1, oneOf: [.float32], role: "B")
        if let packed {
            guard a.shape.count >= 2 else { throw OpError("a packed MatMul needs A of rank ≥ 2") }
            b.shape = [packed.k, packed.n]
        }
        return [ValueType(.float32, try Shapes.matmul(a.shape, b.shape))]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let out = Tensor(uninitialized: .float32, shape: outputs[0].shape)
        _ = try evaluate(inputs, into: [out], scratch: scratch)
        return [out]
    }

    func evaluate(_ inputs: [Tensor?], into outputs: [Tensor], scratch: Scratch) throws -> Bool {
        if let packed {
            let a = inputs[0]!
            Kernels.gemmPacked(m: a.elementCount / max(packed.k, 1), n: packed.n, k: packed.k, a: a.floatData, lda: packed.k,
                               packed: inputs[1]!, accumulate: false, c: outputs[0].mutableFloatData, ldc: packed.n)
        } else {
            Kernels.matmul(inputs[0]!, inputs[1]!, into: outputs[0])
        }
        return true
    }

    var writesInto: Bool { true }

    func flops(_ inputs: [ValueType?], _ outputs: [ValueType]) -> Double {
        guard let a = inputs[0], let k = a.shape.last else { return 0 }
        return 2 * Double(outputs[0].elementCount) * Double(k)
    }
}

/// Relu, LeakyRelu, Sigmoid, Tanh: float32 in, same shape out.
struct ActivationOperator: Operator {
    let activation: Activation

    init(_ context: OpContext, _ activation: Activation) throws {
        self.activation = activation
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        [try inputs.type(0, oneOf: [.float32], role: "input")]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        [Kernels.activation(activation, inputs[0]!)]
    }
}

/// Clip: bounds are attributes before opset 11 and optional scalar inputs from 11 on.
struct ClipOperator: Operator {
    let attributeBounds: (min: Float, max: Float)?

    init(_ context: OpContext) throws {
        if context.opset < 11 {
            attributeBounds = (try context.attributes.float("min", default: -.greatestFiniteMagnitude),
                               try context.attributes.float("max", default: .greatestFiniteMagnitude))
        } else {
            attributeBounds = nil
        }
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let x = try inputs.type(0, oneOf: Kernels.binaryDTypes, role: "input")
        for i in 1..<max(1, inputs.count) {
            if let bound = inputs.optionalType(i), bound.dtype != x.dtype || bound.elementCount != 1 {
                throw OpError("\(i == 1 ? "min" : "max") must be a \(x.dtype) scalar, got \(bound)")
            }
        }
        return [x]
    }

    /// The bounds for these inputs (constant inputs, or the attributes of old opsets).
    func bounds(_ inputs: InferenceInputs) -> (min: Float, max: Float) {
        if let attributeBounds { return attributeBounds }
        return (inputs.scalarFloat(1) ?? -.greatestFiniteMagnitude, inputs.scalarFloat(2) ?? .greatestFiniteMagnitude)
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let x = inputs[0]!
        if x.dtype != .float32 {
            let lo = inputs.count > 1 ? inputs[1]?.doubles.first : nil
            let hi = inputs.count > 2 ? inputs[2]?.doubles.first : nil
            let values = x.doubles.map { v -> Double in
                var r = v
                if let lo, r < lo { r = lo }
                if let hi, r > hi { r = hi }
                return r
            }
            return [Tensor(dtype: x.dtype, shape: x.shape, doubles: values)]
        }
        let known = InferenceInputs(types: inputs.map { $0.map { ValueType($0.dtype, $0.shape) } }, values: inputs)
        let (lo, hi) = bounds(known)
        return [Kernels.activation(.clip(min: lo, max: hi), x)]
    }
}

/// Softmax and LogSoftmax. Before opset 13 the input is seen as 2-D, [∏ dims before axis,
/// ∏ dims from axis], and normalized over the second; from 13 on, over one axis (default −1).
struct SoftmaxOperator: Operator {
    let axis: Int
    let coerced: Bool
    let log: Bool

    init(_ context: OpContext, log: Bool) throws {
        coerced = context.opset < 13
        axis = try context.attributes.int("axis", default: coerced ? 1 : -1)
        self.log = log
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let x = try inputs.type(0, oneOf: [.float32], role: "input")
        _ = try Shapes.axis(axis, rank: x.shape.count, inclusive: coerced)
        return [x]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let x = inputs[0]!
        let a = try Shapes.axis(axis, rank: x.rank, inclusive: coerced)
        if coerced {
            let outer = Tensor.elementCount(of: Array(x.shape[..<a]))
            let flat = Kernels.softmax(x.reshaped([outer, x.elementCount / max(outer, 1)]), axis: 1, log: log)
            return [flat.reshaped(x.shape)]
        }
        return [Kernels.softmax(x, axis: a, log: log)]
    }

    func flops(_ inputs: [ValueType?], _ outputs: [ValueType]) -> Double { 4 * Double(outputs[0].elementCount) }
}
