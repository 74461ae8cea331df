import Foundation
import SluiceTensor

/// Ops whose outputs are made from attributes, a shape or scalar bounds rather than from
/// input elements.
enum GeneratorOps {
    /// Also checks the Constant nodes the loader turns into initializers without configuring
    /// them through the registry.
    static let constant = OpSchema(name: "Constant", opsets: 1...OpRegistry.latestOpset, inputs: 0...0) {
        try ConstantOperator($0)
    }

    static let schemas: [OpSchema] = [
        constant,
        OpSchema(name: "ConstantOfShape", opsets: 9...OpRegistry.latestOpset, inputs: 1...1) { try ConstantOfShapeOperator($0) },
        OpSchema(name: "Range", opsets: 11...OpRegistry.latestOpset, inputs: 3...3) { _ in RangeOperator() },
        OpSchema(name: "EyeLike", opsets: 9...OpRegistry.latestOpset, inputs: 1...1) { try EyeLikeOperator($0) },
    ]
}

/// Constant: its value comes from one of the `value*` attributes. The loader turns Constant
/// nodes into initializers; this op is what decodes them.
struct ConstantOperator: DataMovementOperator {
    let value: Tensor

    /// A Constant node's op, its arity checked as the registry checks every op's.
    static func checked(_ context: OpContext) throws -> ConstantOperator {
        try GeneratorOps.constant.checkArity(context)
        return try ConstantOperator(context)
    }

    // Only through the schema or `checked`: it reads the output the arity check guarantees.
    fileprivate init(_ context: OpContext) throws {
        let a = context.attributes
        if let proto = try a.tensor("value") {
            value = try TensorDecoder.decode(proto, name: context.node.outputs[0], baseDirectory: nil)
        } else if let f = try a.float("value_float") {
            value = Tensor(shape: [], floats: [f])
        } else if let fs = try a.floats("value_floats") {
            value = Tensor(shape: [fs.count], floats: fs)
        } else if let i = try a.int("value_int") {
            value = Tensor(shape: [], int64s: [Int64(i)])
        } else if let ints = try a.ints("value_ints") {
            value = Tensor(shape: [ints.count], int64s: ints.map { Int64($0) })
        } else if a.has("sparse_value") || a.has("value_string") || a.has("value_strings") {
            throw OpError.unsupported("sparse and string constants are not supported")
        } else {
            throw OpError.invalid("has no value attribute")
        }
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] { [ValueType(value.dtype, value.shape)] }
    func valuesFromTypes(_ inputs: InferenceInputs) throws -> [Tensor]? { [value] }
    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] { [value] }
}

struct ConstantOfShapeOperator: DataMovementOperator {
    let value: Tensor

    init(_ context: OpContext) throws {
        if let proto = try context.attributes.tensor("value") {
            let t = try TensorDecoder.decode(proto, name: "value", baseDirectory: nil)
            guard t.elementCount == 1 else { throw OpError.invalid("value must hold one element, it holds \(t.elementCount)") }
            value = t.reshaped([1])
        } else {
            value = Tensor(shape: [1], floats: [0])
        }
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        _ = try inputs.type(0, oneOf: [.int64], role: "input")
        guard let shape = inputs.integers(0) else { throw OpError.needsValue("the shape input") }
        guard shape.allSatisfy({ $0 >= 0 }) else { throw OpError("shape \(describe(shape)) has a negative dimension") }
        return [ValueType(value.dtype, shape)]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let shape = outputs[0].shape
        return [Kernels.pick(value, [Int](repeating: 0, count: Tensor.elementCount(of: shape)), shape: shape)]
    }
}

/// Range(start, limit, delta): max(ceil((limit − start) / delta), 0) values.
struct RangeOperator: DataMovementOperator {
    func count(_ inputs: InferenceInputs) throws -> Int? {
        guard let s = inputs.value(0), let l = inputs.value(1), let d = inputs.value(2) else { return nil }
        guard s.elementCount == 1, l.elementCount == 1, d.elementCount == 1 else { throw OpError("start, limit and delta must be scalars") }
        if s.dtype.isInteger {
            let start = s.int64Values[0], limit = l.int64Values[0], delta = d.int64Values[0]
            guard delta != 0 else { throw OpError("delta is 0") }
            let span = limit - start
            let n = delta > 0 ? (span + delta - 1) / delta : (span + delta + 1) / delta
            return Swift.max(Int(n), 0)
        }
        let start = s.doubles[0], limit = l.doubles[0], delta = d.doubles[0]
        guard delta != 0 else { throw OpError("delta is 0") }
        return Swift.max(Int(((limit - start) / delta).rounded(.up)), 0)
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let s = try inputs.type(0, oneOf: [.float32, .float64, .int64, .int32], role: "start")
        for i in 1...2 where try inputs.type(i).dtype != s.dtype { throw OpError("start, limit and delta must share a type") }
        guard let n = try count(inputs) else { throw OpError.needsValue("start, limit and delta") }
        return [ValueType(s.dtype, [n])]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let s = inputs[0]!, d = inputs[2]!
        let n = outputs[0].shape[0]
        if s.dtype.isInteger {
            let start = s.int64Values[0], delta = d.int64Values[0]
            return [Tensor(dtype: s.dtype, shape: [n], int64Values: (0..<n).map { start + Int64($0) * delta })]
        }
        if s.dtype == .float32 {
            // Accumulate in float32 as the reference does (start + i·delta rounds differently).
            let start = s.floats[0], delta = d.floats[0]
            var values = [Float](repeating: 0, count: n)
            var v = start
            for i in 0..<n { values[i] = v; v += delta }
            return [Tensor(shape: [n], floats: values)]
        }
        let start = s.doubles[0], delta = d.doubles[0]
        var values = [Double](repeating: 0, count: n)
        var v = start
        for i in 0..<n { values[i] = v; v += delta }
        return [Tensor(dtype: s.dtype, shape: [n], doubles: values)]
    }
}

struct EyeLikeOperator: DataMovementOperator {
    let dtype: DType?
    let k: Int

    init(_ context: OpContext) throws {
        k = try context.attributes.int("k", default: 0)
        if let code = try context.attributes.int("dtype") {
            guard let d = TensorDecoder.numericDType(onnx: Int32(truncatingIfNeeded: code)) else {
                throw OpError.unsupported("dtype \(TensorDecoder.onnxTypeName(Int32(truncatingIfNeeded: code))) is not supported")
            }
            dtype = d
        } else {
            dtype = nil
        }
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let x = try inputs.type(0)
        guard x.shape.count == 2 else { throw OpError("input must be 2-D, got \(describe(x.shape))") }
        return [ValueType(dtype ?? x.dtype, x.shape)]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let shape = outputs[0].shape
        let values = (0..<Tensor.elementCount(of: shape)).map { flat -> Double in
            flat % shape[1] - flat / shape[1] == k ? 1 : 0
        }
        return [Tensor(dtype: outputs[0].dtype, shape: shape, doubles: values)]
    }
}
