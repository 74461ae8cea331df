import Foundation
import SluiceTensor

/// Reductions, arg-reductions, cumulative sums, top-k and hardmax.
enum ReduceOps {
    static let schemas: [OpSchema] = ReduceOp.allCases.map { op in
        OpSchema(name: op.rawValue, opsets: 1...OpRegistry.latestOpset,
                 inputsSince: [1: 1...1, op == .sum ? 13 : 18: 1...2]) { try ReduceOperator($0, op) }
    } + [
        OpSchema(name: "ArgMax", opsets: 1...OpRegistry.latestOpset, inputs: 1...1) { try ArgOperator($0, max: true) },
        OpSchema(name: "ArgMin", opsets: 1...OpRegistry.latestOpset, inputs: 1...1) { try ArgOperator($0, max: false) },
        OpSchema(name: "CumSum", opsets: 11...OpRegistry.latestOpset, inputs: 2...2) { try CumSumOperator($0) },
        OpSchema(name: "TopK", opsets: 1...OpRegistry.latestOpset, inputsSince: [1: 1...1, 10: 2...2], outputs: 2...2) { try TopKOperator($0) },
        OpSchema(name: "Hardmax", opsets: 1...OpRegistry.latestOpset, inputs: 1...1) { try HardmaxOperator($0) },
    ]
}

/// (outer, length, inner) of `shape` around `axis`.
func split(_ shape: [Int], at axis: Int) -> (outer: Int, length: Int, inner: Int) {
    (Tensor.elementCount(of: Array(shape[..<axis])), shape[axis], Tensor.elementCount(of: Array(shape[(axis + 1)...])))
}

/// Reduce*: axes from the `axes` attribute, or from an optional int64 input (ReduceSum from
/// opset 13, the others from 18). No axes means all, unless `noop_with_empty_axes`.
struct ReduceOperator: Operator {
    let op: ReduceOp
    let keepDims: Bool
    let attributeAxes: [Int]?
    let axesFromInput: Bool
    let noopWithEmptyAxes: Bool

    init(_ context: OpContext, _ op: ReduceOp) throws {
        self.op = op
        let a = context.attributes
        keepDims = try a.int("keepdims", default: 1) != 0
        noopWithEmptyAxes = try a.int("noop_with_empty_axes", default: 0) != 0
        let inputAxes = op == .sum ? context.opset >= 13 : context.opset >= 18
        if inputAxes {
            attributeAxes = nil
            axesFromInput = context.node.inputs.count > 1 && !context.node.inputs[1].isEmpty
        } else {
            attributeAxes = try a.ints("axes")
            axesFromInput = false
        }
    }

    /// The normalized axes to reduce, or nil for "return the input unchanged".
    func axes(_ inputs: InferenceInputs, rank: Int) throws -> [Int]? {
        var axes = attributeAxes ?? []
        if axesFromInput {
            _ = try inputs.type(1, oneOf: [.int64], role: "axes")
            guard let values = inputs.integers(1) else { throw OpError.needsValue("the axes input") }
            axes = values
        }
        if axes.isEmpty { return noopWithEmptyAxes ? nil : Array(0..<rank) }
        let normalized = try axes.map { try Shapes.axis($0, rank: rank) }
        guard Set(normalized).count == normalized.count else { throw OpError("axes \(describe(axes)) repeat") }
        return normalized.sorted()
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let x = try inputs.type(0, oneOf: Kernels.reduceDTypes, role: "input")
        guard let axes = try axes(inputs, rank: x.shape.count) else { return [x] }
        return [ValueType(x.dtype, Shapes.reduced(x.shape, axes: axes, keepDims: keepDims))]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let x = inputs[0]!
        guard let axes = try axes(InferenceInputs(tensors: inputs), rank: x.rank) else { return [x] }
        return [Kernels.reduce(op, x, axes: axes, keepDims: keepDims)]
    }

    func flops(_ inputs: [ValueType?], _ outputs: [ValueType]) -> Double { Double(inputs[0]?.elementCount ?? 0) }
}

/// ArgMax and ArgMin: int64 positions along one axis; ties go to the first (or, with
/// `select_last_index`, the last) position.
struct ArgOperator: Operator {
    let max: Bool
    let axis: Int
    let keepDims: Bool
    let selectLast: Bool

    init(_ context: OpContext, max: Bool) throws {
        self.max = max
        axis = try context.attributes.int("axis", default: 0)
        keepDims = try context.attributes.int("keepdims", default: 1) != 0
        selectLast = try context.attributes.int("select_last_index", default: 0) != 0
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let x = try inputs.type(0, oneOf: Kernels.reduceDTypes, role: "input")
        let a = try Shapes.axis(axis, rank: x.shape.count)
        return [ValueType(.int64, Shapes.reduced(x.shape, axes: [a], keepDims: keepDims))]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let x = inputs[0]!
        let (outer, length, inner) = split(x.shape, at: try Shapes.axis(axis, rank: x.rank))
        let v = x.doubles
        var result = [Int64](repeating: 0, count: outer * inner)
        for o in 0..<outer {
            for i in 0..<inner {
                var best = 0
                var bestValue = v[o * length * inner + i]
                for r in 1..<Swift.max(length, 1) {
                    let e = v[(o * length + r) * inner + i]
                    let better = max ? (e > bestValue || (selectLast && e == bestValue))
                                     : (e < bestValue || (selectLast && e == bestValue))
                    if better { best = r; bestValue = e }
                }
                result[o * inner + i] = Int64(best)
            }
        }
        return [Tensor(shape: outputs[0].shape, int64s: result)]
    }
}

/// CumSum along an axis given as a scalar input; `exclusive` and `reverse` as ONNX defines them.
struct CumSumOperator: Operator {
    let exclusive: Bool
    let reverse: Bool

    init(_ context: OpContext) throws {
        exclusive = try context.attributes.int("exclusive", default: 0) != 0
        reverse = try context.attributes.int("reverse", default: 0) != 0
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let x = try inputs.type(0, oneOf: Kernels.reduceDTypes, role: "input")
        _ = try inputs.type(1, oneOf: [.int64, .int32], role: "axis")
        return [x]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let x = inputs[0]!
        guard let axisValue = InferenceInputs(tensors: inputs).integers(1)?.first else { throw OpError("axis is empty") }
        let (outer, length, inner) = split(x.shape, at: try Shapes.axis(axisValue, rank: x.rank))
        func scan<T: AdditiveArithmetic>(_ v: [T]) -> [T] {
            var out = v
            for o in 0..<outer {
                for i in 0..<inner {
                    var acc = T.zero
                    for step in 0..<length {
                        let r = reverse ? length - 1 - step : step
                        let index = (o * length + r) * inner + i
                        if exclusive {
                            out[index] = acc
                            acc += v[index]
                        } else {
                            acc += v[index]
                            out[index] = acc
                        }
                    }
                }
            }
            return out
        }
        if x.dtype.isInteger { return [Tensor(dtype: x.dtype, shape: x.shape, int64Values: scan(x.int64Values))] }
        if x.dtype == .float32 { return [Tensor(shape: x.shape, floats: scan(x.floats))] }
        return [Tensor(dtype: x.dtype, shape: x.shape, doubles: scan(x.doubles))]
    }
}

/// TopK: the k largest (or smallest) along an axis, with their int64 indices; equal values
/// keep their order (lower index first).
struct TopKOperator: Operator {
    let axis: Int
    let largest: Bool
    let attributeK: Int?

    init(_ context: OpContext) throws {
        axis = try context.attributes.int("axis", default: -1)
        largest = try context.attributes.int("largest", default: 1) != 0
        if context.opset < 10 {
            guard let k = try context.attributes.int("k") else { throw OpError.invalid("attribute k is required") }
            attributeK = k
        } else {
            attributeK = nil
        }
    }

    func k(_ inputs: InferenceInputs) throws -> Int {
        if let attributeK { return attributeK }
        _ = try inputs.type(1, oneOf: [.int64], role: "K")
        guard let values = inputs.integers(1) else { throw OpError.needsValue("K") }
        guard values.count == 1, values[0] >= 0 else { throw OpError("K must be one non-negative value, got \(values)") }
        return values[0]
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let x = try inputs.type(0, oneOf: Kernels.reduceDTypes, role: "X")
        let a = try Shapes.axis(axis, rank: x.shape.count)
        let k = try k(inputs)
        guard k <= x.shape[a] else { throw OpError("K = \(k) exceeds dimension \(a) of \(describe(x.shape))") }
        var shape = x.shape
        shape[a] = k
        return [ValueType(x.dtype, shape), ValueType(.int64, shape)]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let x = inputs[0]!
        let a = try Shapes.axis(axis, rank: x.rank)
        let k = outputs[0].shape[a]
        let (outer, length, inner) = split(x.shape, at: a)
        let v = x.doubles
        var indices = [Int](repeating: 0, count: outer * k * inner)
        for o in 0..<outer {
            for i in 0..<inner {
                let order = (0..<length).sorted { p, q in
                    let vp = v[(o * length + p) * inner + i], vq = v[(o * length + q) * inner + i]
                    if vp == vq { return p < q }
                    return largest ? vp > vq : vp < vq
                }
                for r in 0..<k { indices[(o * k + r) * inner + i] = order[r] }
            }
        }
        var sources = [Int](repeating: 0, count: indices.count)
        for o in 0..<outer {
            for r in 0..<k {
                for i in 0..<inner {
                    let p = (o * k + r) * inner + i
                    sources[p] = (o * length + indices[p]) * inner + i
                }
            }
        }
        return [Kernels.pick(x, sources, shape: outputs[0].shape), Tensor(shape: outputs[1].shape, int64s: indices.map { Int64($0) })]
    }
}

/// Hardmax: 1 at the first maximum along the axis, 0 elsewhere. Before opset 13 the input is
/// seen as 2-D around the axis, as for Softmax.
struct HardmaxOperator: Operator {
    let axis: Int
    let coerced: Bool

    init(_ context: OpContext) throws {
        coerced = context.opset < 13
        axis = try context.attributes.int("axis", default: coerced ? 1 : -1)
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let x = try inputs.type(0, oneOf: [.float32, .float64, .float16], role: "input")
        _ = try Shapes.axis(axis, rank: x.shape.count, inclusive: coerced)
        return [x]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let x = inputs[0]!
        let a = try Shapes.axis(axis, rank: x.rank, inclusive: coerced)
        let (outer, length, inner): (Int, Int, Int)
        if coerced {
            let o = Tensor.elementCount(of: Array(x.shape[..<a]))
            (outer, length, inner) = (o, x.elementCount / Swift.max(o, 1), 1)
        } else {
            (outer, length, inner) = split(x.shape, at: a)
        }
        let v = x.doubles
        var y = [Double](repeating: 0, count: v.count)
        for o in 0..<outer {
            for i in 0..<inner where length > 0 {
                var best = 0
                for r in 1..<length where v[(o * length + r) * inner + i] > v[(o * length + best) * inner + i] { best = r }
                y[(o * length + best) * inner + i] = 1
            }
        }
        return [Tensor(dtype: x.dtype, shape: x.shape, doubles: y)]
    }
}

extension InferenceInputs {
    /// Inputs at run time: every present input's type and value.
    init(tensors: [Tensor?]) {
        self.init(types: tensors.map { $0.map { ValueType($0.dtype, $0.shape) } }, values: tensors)
    }
}
