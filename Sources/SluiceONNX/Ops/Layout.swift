import Foundation
import SluiceTensor

/// Ops that build, select or rearrange elements; most work for every dtype.
enum LayoutOps {
    static let schemas: [OpSchema] = [
        OpSchema(name: "Expand", opsets: 8...OpRegistry.latestOpset) { try ExpandOperator($0) },
        OpSchema(name: "Range", opsets: 11...OpRegistry.latestOpset) { try RangeOperator($0) },
        OpSchema(name: "Slice", opsets: 1...OpRegistry.latestOpset) { try SliceOperator($0) },
        OpSchema(name: "Split", opsets: 1...OpRegistry.latestOpset) { try SplitOperator($0) },
        OpSchema(name: "Tile", opsets: 6...OpRegistry.latestOpset) { try TileOperator($0) },
        OpSchema(name: "Pad", opsets: 2...OpRegistry.latestOpset) { try PadOperator($0) },
        OpSchema(name: "ConstantOfShape", opsets: 9...OpRegistry.latestOpset) { try ConstantOfShapeOperator($0) },
        OpSchema(name: "Size", opsets: 1...OpRegistry.latestOpset) { try SizeOperator($0) },
        OpSchema(name: "GatherElements", opsets: 11...OpRegistry.latestOpset) { try GatherElementsOperator($0) },
        OpSchema(name: "ScatterElements", opsets: 11...OpRegistry.latestOpset) { try ScatterElementsOperator($0) },
        OpSchema(name: "Scatter", opsets: 9...10) { try ScatterElementsOperator($0) },
        OpSchema(name: "GatherND", opsets: 11...OpRegistry.latestOpset) { try GatherNDOperator($0) },
        OpSchema(name: "ScatterND", opsets: 11...OpRegistry.latestOpset) { try ScatterNDOperator($0) },
        OpSchema(name: "DepthToSpace", opsets: 1...OpRegistry.latestOpset) { try DepthToSpaceOperator($0) },
        OpSchema(name: "SpaceToDepth", opsets: 1...OpRegistry.latestOpset) { try SpaceToDepthOperator($0) },
        OpSchema(name: "Trilu", opsets: 14...OpRegistry.latestOpset) { try TriluOperator($0) },
        OpSchema(name: "EyeLike", opsets: 9...OpRegistry.latestOpset) { try EyeLikeOperator($0) },
        OpSchema(name: "OneHot", opsets: 9...OpRegistry.latestOpset) { try OneHotOperator($0) },
        OpSchema(name: "NonZero", opsets: 9...OpRegistry.latestOpset) { try NonZeroOperator($0) },
        OpSchema(name: "Compress", opsets: 9...OpRegistry.latestOpset) { try CompressOperator($0) },
        OpSchema(name: "ReverseSequence", opsets: 10...OpRegistry.latestOpset) { try ReverseSequenceOperator($0) },
        OpSchema(name: "CastLike", opsets: 15...OpRegistry.latestOpset) { try CastLikeOperator($0) },
        OpSchema(name: "Unique", opsets: 11...OpRegistry.latestOpset) { try UniqueOperator($0) },
    ]
}

/// Calls `body` with every multi-index of `shape` in row-major order and its flat position.
func forEachIndex(_ shape: [Int], _ body: ([Int], Int) throws -> Void) rethrows {
    let total = Tensor.elementCount(of: shape)
    guard total > 0 else { return }
    var index = [Int](repeating: 0, count: shape.count)
    for flat in 0..<total {
        try body(index, flat)
        var d = shape.count - 1
        while d >= 0 {
            index[d] += 1
            if index[d] < shape[d] { break }
            index[d] = 0
            d -= 1
        }
    }
}

/// The flat offset of `index` with `strides`.
@inline(__always)
func offset(_ index: [Int], _ strides: [Int]) -> Int {
    var o = 0
    for d in 0..<index.count { o += index[d] * strides[d] }
    return o
}

/// Expand: broadcast the input to a shape given as an input (bidirectionally: dimensions of 1
/// in the shape keep the input's).
struct ExpandOperator: Operator {
    init(_ context: OpContext) throws {
        try context.expectInputs(2...2)
        try context.expectOutputs(1...1)
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let x = try inputs.type(0)
        _ = try inputs.type(1, oneOf: [.int64], role: "shape")
        guard let shape = inputs.integers(1) else { throw OpError.needsValue("the shape input") }
        return [ValueType(x.dtype, try Shapes.broadcast(x.shape, shape))]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let x = inputs[0]!
        let shape = outputs[0].shape
        if x.shape == shape { return [x] }
        return [Kernels.pick(x, Shapes.broadcastOffsets(x.shape, to: shape), shape: shape)]
    }

    func flops(_ inputs: [ValueType?], _ outputs: [ValueType]) -> Double { 0 }
}

/// Range(start, limit, delta): max(ceil((limit − start) / delta), 0) values.
struct RangeOperator: Operator {
    init(_ context: OpContext) throws {
        try context.expectInputs(3...3)
        try context.expectOutputs(1...1)
    }

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

    func flops(_ inputs: [ValueType?], _ outputs: [ValueType]) -> Double { 0 }
}

/// Slice: starts, ends, axes and steps from attributes (before opset 10) or inputs.
struct SliceOperator: Operator {
    let attributes: (starts: [Int], ends: [Int], axes: [Int]?)?

    init(_ context: OpContext) throws {
        try context.expectOutputs(1...1)
        if context.opset < 10 {
            try context.expectInputs(1...1)
            guard let starts = try context.attributes.ints("starts"), let ends = try context.attributes.ints("ends") else {
                throw OpError.invalid("attributes starts and ends are required")
            }
            attributes = (starts, ends, try context.attributes.ints("axes"))
        } else {
            try context.expectInputs(3...5)
            attributes = nil
        }
    }

    /// Per dimension of the input: first index, step, count.
    func plan(_ inputs: InferenceInputs, shape: [Int]) throws -> [(start: Int, step: Int, count: Int)] {
        let starts: [Int], ends: [Int]
        var axes: [Int]?, steps: [Int]?
        if let attributes {
            (starts, ends, axes) = attributes
        } else {
            for i in 1..<inputs.count where inputs.optionalType(i) != nil {
                _ = try inputs.type(i, oneOf: [.int64, .int32], role: ["", "starts", "ends", "axes", "steps"][i])
            }
            guard let s = inputs.integers(1), let e = inputs.integers(2) else { throw OpError.needsValue("starts and ends") }
            starts = s
            ends = e
            if inputs.optionalType(3) != nil {
                guard let a = inputs.integers(3) else { throw OpError.needsValue("axes") }
                axes = a
            }
            if inputs.optionalType(4) != nil {
                guard let st = inputs.integers(4) else { throw OpError.needsValue("steps") }
                steps = st
            }
        }
        let rank = shape.count
        let axisList = try (axes ?? Array(0..<starts.count)).map { try Shapes.axis($0, rank: rank) }
        let stepList = steps ?? Array(repeating: 1, count: starts.count)
        guard ends.count == starts.count, axisList.count == starts.count, stepList.count == starts.count else {
            throw OpError("starts, ends, axes and steps must have the same length")
        }
        guard Set(axisList).count == axisList.count else { throw OpError("axes \(describe(axisList)) repeat") }
        var plan = shape.map { (start: 0, step: 1, count: $0) }
        for (k, axis) in axisList.enumerated() {
            let dim = shape[axis], step = stepList[k]
            guard step != 0 else { throw OpError("step 0 in axis \(axis)") }
            var start = starts[k], end = ends[k]
            if start < 0 { start += dim }
            if end < 0 { end += dim }
            if step > 0 {
                start = Swift.min(Swift.max(start, 0), dim)
                end = Swift.min(Swift.max(end, 0), dim)
                plan[axis] = (start, step, Swift.max(0, (end - start + step - 1) / step))
            } else {
                start = Swift.min(Swift.max(start, 0), dim - 1)
                end = Swift.min(Swift.max(end, -1), dim - 1)
                plan[axis] = (start, step, Swift.max(0, (start - end - step - 1) / -step))
            }
        }
        return plan
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let x = try inputs.type(0)
        return [ValueType(x.dtype, try plan(inputs, shape: x.shape).map(\.count))]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let x = inputs[0]!
        let plan = try plan(InferenceInputs(tensors: inputs), shape: x.shape)
        let shape = plan.map(\.count)
        let strides = Shapes.strides(x.shape)
        // A run of whole rows (every dimension after the first sliced one is complete).
        let base = zip(plan, strides).reduce(0) { $0 + $1.0.start * $1.1 }
        let steps = zip(plan, strides).map { $0.step * $1 }
        var sources = [Int](repeating: 0, count: Tensor.elementCount(of: shape))
        forEachIndex(shape) { index, flat in sources[flat] = base + offset(index, steps) }
        return [Kernels.pick(x, sources, shape: shape)]
    }

    func flops(_ inputs: [ValueType?], _ outputs: [ValueType]) -> Double { 0 }
}

/// Split into the outputs along an axis: by the `split` sizes (attribute before opset 13,
/// optional input after), or into equal parts (`num_outputs`, opset 18, allows a smaller last).
struct SplitOperator: Operator {
    let axis: Int
    let attributeSplit: [Int]?
    let splitFromInput: Bool
    let outputCount: Int

    init(_ context: OpContext) throws {
        axis = try context.attributes.int("axis", default: 0)
        outputCount = context.node.outputs.count
        guard outputCount >= 1 else { throw OpError.invalid("has no outputs") }
        if context.opset < 13 {
            try context.expectInputs(1...2)
            attributeSplit = try context.attributes.ints("split")
            splitFromInput = context.opset < 2 && context.node.inputs.count > 1 && !context.node.inputs[1].isEmpty
        } else {
            try context.expectInputs(1...2)
            attributeSplit = nil
            splitFromInput = context.node.inputs.count > 1 && !context.node.inputs[1].isEmpty
        }
    }

    func sizes(_ inputs: InferenceInputs, dim: Int) throws -> [Int] {
        var split = attributeSplit
        if splitFromInput {
            guard let values = inputs.integers(1) else { throw OpError.needsValue("the split input") }
            split = values
        }
        if let split, !split.isEmpty {
            guard split.count == outputCount else { throw OpError("split \(describe(split)) has \(split.count) parts for \(outputCount) outputs") }
            guard split.reduce(0, +) == dim, split.allSatisfy({ $0 >= 0 }) else {
                throw OpError("split \(describe(split)) does not add up to the dimension's \(dim)")
            }
            return split
        }
        let part = (dim + outputCount - 1) / outputCount
        guard dim % outputCount == 0 else {
            return (0..<outputCount).map { Swift.max(0, Swift.min(part, dim - $0 * part)) }
        }
        return Array(repeating: dim / outputCount, count: outputCount)
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let x = try inputs.type(0)
        let a = try Shapes.axis(axis, rank: x.shape.count)
        return try sizes(inputs, dim: x.shape[a]).map { size in
            var shape = x.shape
            shape[a] = size
            return ValueType(x.dtype, shape)
        }
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let x = inputs[0]!
        let a = try Shapes.axis(axis, rank: x.rank)
        let (outer, length, inner) = split(x.shape, at: a)
        let bytes = inner * x.dtype.byteSize
        var start = 0
        return outputs.map { type in
            let out = Tensor(uninitialized: x.dtype, shape: type.shape)
            let size = type.shape[a]
            for o in 0..<outer {
                (out.storage.bytes + o * size * bytes).copyMemory(from: x.storage.bytes + (o * length + start) * bytes,
                                                                  byteCount: size * bytes)
            }
            start += size
            return out
        }
    }

    func flops(_ inputs: [ValueType?], _ outputs: [ValueType]) -> Double { 0 }
}

struct TileOperator: Operator {
    init(_ context: OpContext) throws {
        try context.expectInputs(2...2)
        try context.expectOutputs(1...1)
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let x = try inputs.type(0)
        _ = try inputs.type(1, oneOf: [.int64], role: "repeats")
        guard let repeats = inputs.integers(1) else { throw OpError.needsValue("repeats") }
        guard repeats.count == x.shape.count, repeats.allSatisfy({ $0 >= 0 }) else {
            throw OpError("repeats \(describe(repeats)) must have one non-negative value per dimension of \(describe(x.shape))")
        }
        return [ValueType(x.dtype, zip(x.shape, repeats).map(*))]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let x = inputs[0]!
        let shape = outputs[0].shape
        let strides = Shapes.strides(x.shape)
        var sources = [Int](repeating: 0, count: Tensor.elementCount(of: shape))
        forEachIndex(shape) { index, flat in
            var o = 0
            for d in 0..<index.count { o += (index[d] % x.shape[d]) * strides[d] }
            sources[flat] = o
        }
        return [Kernels.pick(x, sources, shape: shape)]
    }

    func flops(_ inputs: [ValueType?], _ outputs: [ValueType]) -> Double { 0 }
}

/// Pad: constant, reflect, edge or wrap; negative pads crop. Pads and the constant are
/// attributes before opset 11, inputs after (with optional axes from opset 18).
struct PadOperator: Operator {
    enum Mode: String { case constant, reflect, edge, wrap }
    let mode: Mode
    let attributePads: [Int]?
    let attributeValue: Float

    init(_ context: OpContext) throws {
        try context.expectOutputs(1...1)
        let text = try context.attributes.string("mode") ?? "constant"
        guard let mode = Mode(rawValue: text) else { throw OpError.invalid("mode '\(text)' is not one of constant, reflect, edge, wrap") }
        self.mode = mode
        if context.opset < 11 {
            try context.expectInputs(1...1)
            guard let pads = try context.attributes.ints("pads") ?? context.attributes.ints("paddings") else {
                throw OpError.invalid("attribute pads is required")
            }
            attributePads = pads
            attributeValue = try context.attributes.float("value", default: 0)
        } else {
            try context.expectInputs(2...4)
            attributePads = nil
            attributeValue = 0
        }
    }

    /// Begin and end pads per dimension.
    func pads(_ inputs: InferenceInputs, rank: Int) throws -> [(Int, Int)] {
        var pads = attributePads
        var axes = Array(0..<rank)
        if pads == nil {
            _ = try inputs.type(1, oneOf: [.int64], role: "pads")
            guard let values = inputs.integers(1) else { throw OpError.needsValue("pads") }
            pads = values
            if inputs.optionalType(3) != nil {
                guard let a = inputs.integers(3) else { throw OpError.needsValue("axes") }
                axes = try a.map { try Shapes.axis($0, rank: rank) }
            }
        }
        let p = pads!
        guard p.count == 2 * axes.count else { throw OpError("pads \(describe(p)) need \(2 * axes.count) values") }
        var result = Array(repeating: (0, 0), count: rank)
        for (k, axis) in axes.enumerated() { result[axis] = (p[k], p[k + axes.count]) }
        return result
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let x = try inputs.type(0)
        let pads = try pads(inputs, rank: x.shape.count)
        let shape = zip(x.shape, pads).map { $0 + $1.0 + $1.1 }
        guard shape.allSatisfy({ $0 >= 0 }) else { throw OpError("pads \(pads) crop more than \(describe(x.shape)) holds") }
        if mode != .constant {
            for (d, (b, e)) in pads.enumerated() where (b > 0 || e > 0) && x.shape[d] == 0 {
                throw OpError("cannot \(mode.rawValue)-pad an empty dimension \(d)")
            }
        }
        return [ValueType(x.dtype, shape)]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let x = inputs[0]!
        let pads = try pads(InferenceInputs(tensors: inputs), rank: x.rank)
        let shape = outputs[0].shape
        // Per dimension, the input position each output position reads (−1: the constant).
        let maps: [[Int]] = (0..<x.rank).map { d in
            let n = x.shape[d], begin = pads[d].0
            return (0..<shape[d]).map { o in
                var i = o - begin
                if i >= 0 && i < n { return i }
                switch mode {
                case .constant: return -1
                case .edge: return i < 0 ? 0 : n - 1
                case .wrap: i %= n; return i < 0 ? i + n : i
                case .reflect:
                    if n == 1 { return 0 }
                    let period = 2 * (n - 1)
                    i %= period
                    if i < 0 { i += period }
                    return i < n ? i : period - i
                }
            }
        }
        let strides = Shapes.strides(x.shape)
        var sources = [Int](repeating: 0, count: Tensor.elementCount(of: shape))
        forEachIndex(shape) { index, flat in
            var o = 0
            for d in 0..<index.count {
                let i = maps[d][index[d]]
                if i < 0 { o = -1; break }
                o += i * strides[d]
            }
            sources[flat] = o
        }
        var fill: Tensor?
        if mode == .constant {
            if inputs.count > 2, let value = inputs[2], value.elementCount > 0 {
                fill = value.reshaped([1])
            } else {
                fill = Tensor(dtype: x.dtype, shape: [1], doubles: [Double(attributeValue)])
            }
            guard fill!.dtype == x.dtype else { throw OpError("constant_value is \(fill!.dtype), data is \(x.dtype)") }
        }
        return [Kernels.pick(x, sources, shape: shape, fill: fill)]
    }

    func flops(_ inputs: [ValueType?], _ outputs: [ValueType]) -> Double { 0 }
}

struct ConstantOfShapeOperator: Operator {
    let value: Tensor

    init(_ context: OpContext) throws {
        try context.expectInputs(1...1)
        try context.expectOutputs(1...1)
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

    func flops(_ inputs: [ValueType?], _ outputs: [ValueType]) -> Double { 0 }
}

struct SizeOperator: Operator {
    init(_ context: OpContext) throws {
        try context.expectInputs(1...1)
        try context.expectOutputs(1...1)
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        _ = try inputs.type(0)
        return [ValueType(.int64, [])]
    }

    func valuesFromTypes(_ inputs: InferenceInputs) throws -> [Tensor]? {
        [Tensor(shape: [], int64s: [Int64(try inputs.type(0).elementCount)])]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        [Tensor(shape: [], int64s: [Int64(inputs[0]!.elementCount)])]
    }

    func flops(_ inputs: [ValueType?], _ outputs: [ValueType]) -> Double { 0 }
}

/// Normalizes index values against a dimension, throwing for any out of range.
func normalizedIndices(_ indices: Tensor, dim: Int, role: String = "index") throws -> [Int] {
    try indices.int64Values.map { v in
        let i = v < 0 ? Int(v) + dim : Int(v)
        guard i >= 0 && i < dim else { throw OpError("\(role) \(v) is out of range for a dimension of \(dim)", kind: .invalidInput) }
        return i
    }
}

struct GatherElementsOperator: Operator {
    let axis: Int

    init(_ context: OpContext) throws {
        try context.expectInputs(2...2)
        try context.expectOutputs(1...1)
        axis = try context.attributes.int("axis", default: 0)
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let data = try inputs.type(0)
        let indices = try inputs.type(1, oneOf: [.int64, .int32], role: "indices")
        guard indices.shape.count == data.shape.count else { throw OpError("indices must have the data's rank \(data.shape.count)") }
        _ = try Shapes.axis(axis, rank: data.shape.count)
        return [ValueType(data.dtype, indices.shape)]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let data = inputs[0]!, indices = inputs[1]!
        let a = try Shapes.axis(axis, rank: data.rank)
        let picks = try normalizedIndices(indices, dim: data.shape[a])
        let strides = Shapes.strides(data.shape)
        var sources = [Int](repeating: 0, count: indices.elementCount)
        forEachIndex(indices.shape) { index, flat in
            var o = 0
            for d in 0..<index.count { o += (d == a ? picks[flat] : index[d]) * strides[d] }
            sources[flat] = o
        }
        return [Kernels.pick(data, sources, shape: indices.shape)]
    }

    func flops(_ inputs: [ValueType?], _ outputs: [ValueType]) -> Double { 0 }
}

enum ScatterReduction: String {
    case none, add, mul, max, min

    func combine(_ old: Double, _ new: Double) -> Double {
        switch self {
        case .none: return new
        case .add: return old + new
        case .mul: return old * new
        case .max: return Swift.max(old, new)
        case .min: return Swift.min(old, new)
        }
    }

    /// `unsigned` for uint64, whose values above Int64.max are held as negative bit patterns.
    func combine(_ old: Int64, _ new: Int64, unsigned: Bool) -> Int64 {
        let newIsLess = unsigned ? UInt64(bitPattern: new) < UInt64(bitPattern: old) : new < old
        switch self {
        case .none: return new
        case .add: return old &+ new
        case .mul: return old &* new
        case .max: return newIsLess ? old : new
        case .min: return newIsLess ? new : old
        }
    }

    init(_ context: OpContext) throws {
        let text = try context.attributes.string("reduction") ?? "none"
        guard let value = ScatterReduction(rawValue: text) else { throw OpError.invalid("reduction '\(text)' is not one of none, add, mul, max, min") }
        self = value
    }
}

/// Writes `updates` into a copy of `data` at flat positions `targets`, combining by `reduction`.
func scatter(_ data: Tensor, _ updates: Tensor, targets: [Int], reduction: ScatterReduction) -> Tensor {
    if reduction == .none {
        let out = Kernels.pick(data, Array(0..<data.elementCount), shape: data.shape)
        let size = data.dtype.byteSize
        for (i, t) in targets.enumerated() {
            (out.storage.bytes + t * size).copyMemory(from: updates.storage.bytes + i * size, byteCount: size)
        }
        return out
    }
    if data.dtype.isInteger {
        var values = data.int64Values
        let u = updates.int64Values
        for (i, t) in targets.enumerated() { values[t] = reduction.combine(values[t], u[i], unsigned: data.dtype == .uint64) }
        return Tensor(dtype: data.dtype, shape: data.shape, int64Values: values)
    }
    var values = data.doubles
    let u = updates.doubles
    for (i, t) in targets.enumerated() { values[t] = reduction.combine(values[t], u[i]) }
    return Tensor(dtype: data.dtype, shape: data.shape, doubles: values)
}

/// ScatterElements (and the older Scatter, the same op without reductions).
struct ScatterElementsOperator: Operator {
    let axis: Int
    let reduction: ScatterReduction

    init(_ context: OpContext) throws {
        try context.expectInputs(3...3)
        try context.expectOutputs(1...1)
        axis = try context.attributes.int("axis", default: 0)
        reduction = try ScatterReduction(context)
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let data = try inputs.type(0)
        let indices = try inputs.type(1, oneOf: [.int64, .int32], role: "indices")
        let updates = try inputs.type(2)
        guard updates.dtype == data.dtype, updates.shape == indices.shape else {
            throw OpError("updates \(updates) must match indices \(describe(indices.shape)) and have the data's type")
        }
        _ = try Shapes.axis(axis, rank: data.shape.count)
        return [data]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let data = inputs[0]!, indices = inputs[1]!
        let a = try Shapes.axis(axis, rank: data.rank)
        let picks = try normalizedIndices(indices, dim: data.shape[a])
        let strides = Shapes.strides(data.shape)
        var targets = [Int](repeating: 0, count: indices.elementCount)
        forEachIndex(indices.shape) { index, flat in
            var o = 0
            for d in 0..<index.count { o += (d == a ? picks[flat] : index[d]) * strides[d] }
            targets[flat] = o
        }
        return [scatter(data, inputs[2]!, targets: targets, reduction: reduction)]
    }

    func flops(_ inputs: [ValueType?], _ outputs: [ValueType]) -> Double { 0 }
}

/// The flat offsets and slice size GatherND and ScatterND address.
private func ndOffsets(data: [Int], indices: Tensor, batchDims: Int) throws -> (offsets: [Int], slice: Int, outer: [Int]) {
    guard let depth = indices.shape.last, batchDims + depth <= data.count else {
        throw OpError("indices \(describe(indices.shape)) address more dimensions than data \(describe(data)) has")
    }
    let strides = Shapes.strides(data)
    let slice = Tensor.elementCount(of: Array(data[(batchDims + depth)...]))
    let batch = Tensor.elementCount(of: Array(data[..<batchDims]))
    let values = indices.int64Values
    let tuples = depth == 0 ? indices.elementCount : values.count / depth
    let perBatch = batch == 0 ? 0 : tuples / Swift.max(batch, 1)
    let batchStride = batchDims == 0 ? 0 : strides[batchDims - 1]
    var offsets = [Int](repeating: 0, count: tuples)
    for t in 0..<tuples {
        var o = perBatch == 0 ? 0 : (t / perBatch) * batchStride
        for j in 0..<depth {
            let dim = data[batchDims + j]
            var i = Int(values[t * depth + j])
            if i < 0 { i += dim }
            guard i >= 0 && i < dim else { throw OpError("index \(values[t * depth + j]) is out of range for a dimension of \(dim)", kind: .invalidInput) }
            o += i * strides[batchDims + j]
        }
        offsets[t] = o
    }
    return (offsets, slice, Array(indices.shape.dropLast()))
}

struct GatherNDOperator: Operator {
    let batchDims: Int

    init(_ context: OpContext) throws {
        try context.expectInputs(2...2)
        try context.expectOutputs(1...1)
        batchDims = try context.attributes.int("batch_dims", default: 0)
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let data = try inputs.type(0)
        let indices = try inputs.type(1, oneOf: [.int64], role: "indices")
        guard let depth = indices.shape.last, batchDims + depth <= data.shape.count else {
            throw OpError("indices \(describe(indices.shape)) address more dimensions than data \(describe(data.shape)) has")
        }
        return [ValueType(data.dtype, Array(indices.shape.dropLast()) + Array(data.shape[(batchDims + depth)...]))]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let data = inputs[0]!
        let (offsets, slice, _) = try ndOffsets(data: data.shape, indices: inputs[1]!, batchDims: batchDims)
        var sources: [Int] = []
        sources.reserveCapacity(offsets.count * slice)
        for o in offsets { for k in 0..<slice { sources.append(o + k) } }
        return [Kernels.pick(data, sources, shape: outputs[0].shape)]
    }

    func flops(_ inputs: [ValueType?], _ outputs: [ValueType]) -> Double { 0 }
}

struct ScatterNDOperator: Operator {
    let reduction: ScatterReduction

    init(_ context: OpContext) throws {
        try context.expectInputs(3...3)
        try context.expectOutputs(1...1)
        reduction = try ScatterReduction(context)
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let data = try inputs.type(0)
        _ = try inputs.type(1, oneOf: [.int64], role: "indices")
        guard try inputs.type(2).dtype == data.dtype else { throw OpError("updates must have the data's type") }
        return [data]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let data = inputs[0]!
        let (offsets, slice, _) = try ndOffsets(data: data.shape, indices: inputs[1]!, batchDims: 0)
        var targets: [Int] = []
        targets.reserveCapacity(offsets.count * slice)
        for o in offsets { for k in 0..<slice { targets.append(o + k) } }
        guard targets.count == inputs[2]!.elementCount else { throw OpError("updates have \(inputs[2]!.elementCount) values for \(targets.count) places") }
        return [scatter(data, inputs[2]!, targets: targets, reduction: reduction)]
    }

    func flops(_ inputs: [ValueType?], _ outputs: [ValueType]) -> Double { 0 }
}

/// DepthToSpace (DCR or CRD) and SpaceToDepth are a reshape, a transpose and a reshape.
struct DepthToSpaceOperator: Operator {
    let block: Int
    let crd: Bool

    init(_ context: OpContext) throws {
        try context.expectInputs(1...1)
        try context.expectOutputs(1...1)
        guard let b = try context.attributes.int("blocksize"), b >= 1 else { throw OpError.invalid("blocksize must be positive") }
        block = b
        let mode = try context.attributes.string("mode") ?? "DCR"
        guard mode == "DCR" || mode == "CRD" else { throw OpError.invalid("mode '\(mode)' is not DCR or CRD") }
        crd = mode == "CRD"
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let x = try inputs.type(0)
        guard x.shape.count == 4, x.shape[1] % (block * block) == 0 else {
            throw OpError("input must be N×C×H×W with C divisible by \(block * block), got \(describe(x.shape))")
        }
        let s = x.shape
        return [ValueType(x.dtype, [s[0], s[1] / (block * block), s[2] * block, s[3] * block])]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let x = inputs[0]!, s = x.shape, b = block
        let c = s[1] / (b * b)
        let moved = crd
            ? Kernels.transpose(x.reshaped([s[0], c, b, b, s[2], s[3]]), perm: [0, 1, 4, 2, 5, 3])
            : Kernels.transpose(x.reshaped([s[0], b, b, c, s[2], s[3]]), perm: [0, 3, 4, 1, 5, 2])
        return [moved.reshaped(outputs[0].shape)]
    }

    func flops(_ inputs: [ValueType?], _ outputs: [ValueType]) -> Double { 0 }
}

struct SpaceToDepthOperator: Operator {
    let block: Int

    init(_ context: OpContext) throws {
        try context.expectInputs(1...1)
        try context.expectOutputs(1...1)
        guard let b = try context.attributes.int("blocksize"), b >= 1 else { throw OpError.invalid("blocksize must be positive") }
        block = b
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let x = try inputs.type(0)
        guard x.shape.count == 4, x.shape[2] % block == 0, x.shape[3] % block == 0 else {
            throw OpError("input must be N×C×H×W with H and W divisible by \(block), got \(describe(x.shape))")
        }
        let s = x.shape
        return [ValueType(x.dtype, [s[0], s[1] * block * block, s[2] / block, s[3] / block])]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let x = inputs[0]!, s = x.shape, b = block
        let moved = Kernels.transpose(x.reshaped([s[0], s[1], s[2] / b, b, s[3] / b, b]), perm: [0, 3, 5, 1, 2, 4])
        return [moved.reshaped(outputs[0].shape)]
    }

    func flops(_ inputs: [ValueType?], _ outputs: [ValueType]) -> Double { 0 }
}

/// Trilu: keeps the upper (or lower) triangle of the last two dimensions, from diagonal k.
struct TriluOperator: Operator {
    let upper: Bool

    init(_ context: OpContext) throws {
        try context.expectInputs(1...2)
        try context.expectOutputs(1...1)
        upper = try context.attributes.int("upper", default: 1) != 0
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let x = try inputs.type(0)
        guard x.shape.count >= 2 else { throw OpError("input must have rank ≥ 2, got \(describe(x.shape))") }
        if inputs.optionalType(1) != nil { _ = try inputs.type(1, oneOf: [.int64], role: "k") }
        return [x]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let x = inputs[0]!
        let k = inputs.count > 1 ? (InferenceInputs(tensors: inputs).integers(1)?.first ?? 0) : 0
        let rows = x.shape[x.rank - 2], columns = x.shape[x.rank - 1]
        let sources = (0..<x.elementCount).map { flat -> Int in
            let j = flat % columns, i = (flat / columns) % Swift.max(rows, 1)
            return (upper ? j - i >= k : j - i <= k) ? flat : -1
        }
        return [Kernels.pick(x, sources, shape: x.shape, fill: Tensor(dtype: x.dtype, shape: [1], doubles: [0]))]
    }

    func flops(_ inputs: [ValueType?], _ outputs: [ValueType]) -> Double { 0 }
}

struct EyeLikeOperator: Operator {
    let dtype: DType?
    let k: Int

    init(_ context: OpContext) throws {
        try context.expectInputs(1...1)
        try context.expectOutputs(1...1)
        k = try context.attributes.int("k", default: 0)
        if let code = try context.attributes.int("dtype") {
            guard let d = TensorDecoder.dtype(onnx: Int32(truncatingIfNeeded: code)) else {
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

    func flops(_ inputs: [ValueType?], _ outputs: [ValueType]) -> Double { 0 }
}

/// OneHot(indices, depth, values = [off, on]): a new axis of `depth` entries.
struct OneHotOperator: Operator {
    let axis: Int

    init(_ context: OpContext) throws {
        try context.expectInputs(3...3)
        try context.expectOutputs(1...1)
        axis = try context.attributes.int("axis", default: -1)
    }

    func depth(_ inputs: InferenceInputs) throws -> Int {
        guard let v = inputs.value(1) else { throw OpError.needsValue("depth") }
        guard v.elementCount == 1, let d = v.doubles.first, d >= 1 else { throw OpError("depth must be one positive value") }
        return Int(d)
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let indices = try inputs.type(0)
        let values = try inputs.type(2)
        guard values.elementCount == 2 else { throw OpError("values must hold [off, on]") }
        let a = try Shapes.axis(axis, rank: indices.shape.count + 1)
        var shape = indices.shape
        shape.insert(try depth(inputs), at: a)
        return [ValueType(values.dtype, shape)]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let indices = inputs[0]!.doubles
        let depth = try depth(InferenceInputs(tensors: inputs))
        let shape = outputs[0].shape
        let a = try Shapes.axis(axis, rank: shape.count)
        let inner = Tensor.elementCount(of: Array(shape[(a + 1)...]))
        var sources = [Int](repeating: 0, count: Tensor.elementCount(of: shape))
        for (flat, value) in indices.enumerated() {
            var index = Int(value)
            if index < 0 { index += depth }
            guard index >= 0 && index < depth else { continue }
            let o = flat / inner, i = flat % inner
            sources[(o * depth + index) * inner + i] = 1
        }
        return [Kernels.pick(inputs[2]!, sources, shape: shape)]
    }

    func flops(_ inputs: [ValueType?], _ outputs: [ValueType]) -> Double { 0 }
}

/// NonZero: the int64 indices of nonzero elements, [rank, count]; the count depends on the data.
struct NonZeroOperator: Operator {
    init(_ context: OpContext) throws {
        try context.expectInputs(1...1)
        try context.expectOutputs(1...1)
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let x = try inputs.type(0)
        guard let value = inputs.value(0) else { throw OpError.needsValue("the input's data") }
        return [ValueType(.int64, [x.shape.count, value.truthValues.filter { $0 }.count])]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let x = inputs[0]!
        let truth = x.truthValues
        let count = outputs[0].shape[1]
        var values = [Int64](repeating: 0, count: x.rank * count)
        var k = 0
        forEachIndex(x.shape) { index, flat in
            guard truth[flat] else { return }
            for d in 0..<index.count { values[d * count + k] = Int64(index[d]) }
            k += 1
        }
        return [Tensor(shape: outputs[0].shape, int64s: values)]
    }

    func flops(_ inputs: [ValueType?], _ outputs: [ValueType]) -> Double { 0 }
}

/// Compress: the slices along `axis` (or elements of the flattened input) where the
/// condition holds.
struct CompressOperator: Operator {
    let axis: Int?

    init(_ context: OpContext) throws {
        try context.expectInputs(2...2)
        try context.expectOutputs(1...1)
        axis = try context.attributes.int("axis")
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let x = try inputs.type(0)
        _ = try inputs.type(1, oneOf: [.bool], role: "condition")
        guard let condition = inputs.value(1) else { throw OpError.needsValue("the condition") }
        let kept = condition.truthValues.filter { $0 }.count
        guard let axis else { return [ValueType(x.dtype, [kept])] }
        let a = try Shapes.axis(axis, rank: x.shape.count)
        var shape = x.shape
        shape[a] = kept
        return [ValueType(x.dtype, shape)]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let x = inputs[0]!
        let truth = inputs[1]!.truthValues
        guard let axis else {
            let sources = (0..<Swift.min(truth.count, x.elementCount)).filter { truth[$0] }
            return [Kernels.pick(x, sources, shape: outputs[0].shape)]
        }
        let (outer, length, inner) = split(x.shape, at: try Shapes.axis(axis, rank: x.rank))
        let kept = (0..<Swift.min(truth.count, length)).filter { truth[$0] }
        var sources: [Int] = []
        for o in 0..<outer { for r in kept { for i in 0..<inner { sources.append((o * length + r) * inner + i) } } }
        return [Kernels.pick(x, sources, shape: outputs[0].shape)]
    }

    func flops(_ inputs: [ValueType?], _ outputs: [ValueType]) -> Double { 0 }
}

struct ReverseSequenceOperator: Operator {
    let batchAxis: Int
    let timeAxis: Int

    init(_ context: OpContext) throws {
        try context.expectInputs(2...2)
        try context.expectOutputs(1...1)
        batchAxis = try context.attributes.int("batch_axis", default: 1)
        timeAxis = try context.attributes.int("time_axis", default: 0)
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let x = try inputs.type(0)
        _ = try inputs.type(1, oneOf: [.int64], role: "sequence_lens")
        return [x]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let x = inputs[0]!
        let lengths = inputs[1]!.int64Values.map { Int($0) }
        let strides = Shapes.strides(x.shape)
        var sources = [Int](repeating: 0, count: x.elementCount)
        forEachIndex(x.shape) { index, flat in
            var source = index
            let b = index[batchAxis], t = index[timeAxis]
            if b < lengths.count, t < lengths[b] { source[timeAxis] = lengths[b] - 1 - t }
            sources[flat] = offset(source, strides)
        }
        return [Kernels.pick(x, sources, shape: x.shape)]
    }

    func flops(_ inputs: [ValueType?], _ outputs: [ValueType]) -> Double { 0 }
}

struct CastLikeOperator: Operator {
    init(_ context: OpContext) throws {
        try context.expectInputs(2...2)
        try context.expectOutputs(1...1)
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        [ValueType(try inputs.type(1).dtype, try inputs.type(0).shape)]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        [Kernels.cast(inputs[0]!, to: outputs[0].dtype)]
    }
}

/// Unique: distinct elements (or slices along `axis`), sorted or in order of first
/// appearance, with first indices, inverse indices and counts. The output size depends on the data.
struct UniqueOperator: Operator {
    let sorted: Bool
    let axis: Int?

    init(_ context: OpContext) throws {
        try context.expectInputs(1...1)
        try context.expectOutputs(1...4)
        sorted = try context.attributes.int("sorted", default: 1) != 0
        axis = try context.attributes.int("axis")
    }

    /// The distinct slices: for each, its first position; and for each position, its slice.
    func analyze(_ x: Tensor) throws -> (shape: [Int], axis: Int?, firsts: [Int], inverse: [Int], counts: [Int], length: Int) {
        let v = x.doubles
        let a = try axis.map { try Shapes.axis($0, rank: x.rank) }
        let (outer, length, inner) = a.map { split(x.shape, at: $0) } ?? (1, x.elementCount, 1)
        let slices = (0..<length).map { r -> [Double] in
            var s: [Double] = []
            for o in 0..<outer { for i in 0..<inner { s.append(v[(o * length + r) * inner + i]) } }
            return s
        }
        var firsts: [Int] = []
        var seen: [[Double]: Int] = [:]
        var inverse = [Int](repeating: 0, count: length)
        for (r, s) in slices.enumerated() {
            if let k = seen[s] { inverse[r] = k; continue }
            seen[s] = firsts.count
            inverse[r] = firsts.count
            firsts.append(r)
        }
        if sorted {
            let order = firsts.indices.sorted { slices[firsts[$0]].lexicographicallyPrecedes(slices[firsts[$1]]) }
            var rank = [Int](repeating: 0, count: order.count)
            for (newIndex, old) in order.enumerated() { rank[old] = newIndex }
            firsts = order.map { firsts[$0] }
            inverse = inverse.map { rank[$0] }
        }
        var counts = [Int](repeating: 0, count: firsts.count)
        for k in inverse { counts[k] += 1 }
        var shape = a == nil ? [firsts.count] : x.shape
        if let a { shape[a] = firsts.count }
        return (shape, a, firsts, inverse, counts, length)
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let x = try inputs.type(0)
        guard let value = inputs.value(0) else { throw OpError.needsValue("the input's data") }
        let r = try analyze(value)
        let n = r.firsts.count
        return [ValueType(x.dtype, r.shape), ValueType(.int64, [n]), ValueType(.int64, [r.length]), ValueType(.int64, [n])]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let x = inputs[0]!
        let r = try analyze(x)
        var sources: [Int] = []
        if let a = r.axis {
            let (outer, length, inner) = split(x.shape, at: a)
            for o in 0..<outer { for f in r.firsts { for i in 0..<inner { sources.append((o * length + f) * inner + i) } } }
        } else {
            sources = r.firsts
        }
        let n = r.firsts.count
        return [Kernels.pick(x, sources, shape: r.shape), Tensor(shape: [n], int64s: r.firsts.map { Int64($0) }),
                Tensor(shape: [r.length], int64s: r.inverse.map { Int64($0) }), Tensor(shape: [n], int64s: r.counts.map { Int64($0) })]
    }

    func flops(_ inputs: [ValueType?], _ outputs: [ValueType]) -> Double { 0 }
}
