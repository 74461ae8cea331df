import Foundation
import SluiceTensor

/// Ops that cut, join, pad, repeat or broadcast tensors along axes; they work for every dtype.
enum SlicingOps {
    static let schemas: [OpSchema] = [
        OpSchema(name: "Slice", opsets: 1...OpRegistry.latestOpset, inputsSince: [1: 1...1, 10: 3...5]) { try SliceOperator($0) },
        OpSchema(name: "Split", opsets: 1...OpRegistry.latestOpset, inputs: 1...2, outputs: OpSchema.anyCount) { try SplitOperator($0) },
        OpSchema(name: "Concat", opsets: 4...OpRegistry.latestOpset, inputs: OpSchema.anyCount) { try ConcatOperator($0) },
        OpSchema(name: "Pad", opsets: 2...OpRegistry.latestOpset, inputsSince: [2: 1...1, 11: 2...4]) { try PadOperator($0) },
        OpSchema(name: "Tile", opsets: 6...OpRegistry.latestOpset, inputs: 2...2) { _ in TileOperator() },
        OpSchema(name: "Expand", opsets: 8...OpRegistry.latestOpset, inputs: 2...2) { _ in ExpandOperator() },
        OpSchema(name: "ReverseSequence", opsets: 10...OpRegistry.latestOpset, inputs: 2...2) { try ReverseSequenceOperator($0) },
    ]
}

/// Slice: starts, ends, axes and steps from attributes (before opset 10) or inputs.
struct SliceOperator: DataMovementOperator {
    let attributes: (starts: [Int], ends: [Int], axes: [Int]?)?

    init(_ context: OpContext) throws {
        if context.opset < 10 {
            guard let starts = try context.attributes.ints("starts"), let ends = try context.attributes.ints("ends") else {
                throw OpError.invalid("attributes starts and ends are required")
            }
            attributes = (starts, ends, try context.attributes.ints("axes"))
        } else {
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
}

/// Split into the outputs along an axis: by the `split` sizes (attribute before opset 13,
/// optional input after), or into equal parts (`num_outputs`, opset 18, allows a smaller last).
struct SplitOperator: DataMovementOperator {
    let axis: Int
    let attributeSplit: [Int]?
    let splitFromInput: Bool
    let outputCount: Int

    init(_ context: OpContext) throws {
        axis = try context.attributes.int("axis", default: 0)
        outputCount = context.node.outputs.count
        guard outputCount >= 1 else { throw OpError.invalid("has no outputs") }
        if context.opset < 13 {
            attributeSplit = try context.attributes.ints("split")
            splitFromInput = context.opset < 2 && context.node.inputs.count > 1 && !context.node.inputs[1].isEmpty
        } else {
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
}

struct ConcatOperator: DataMovementOperator {
    let axis: Int

    init(_ context: OpContext) throws {
        guard let axis = try context.attributes.int("axis") else { throw OpError.invalid("attribute axis is required") }
        guard !context.node.inputs.isEmpty, !context.node.inputs.contains("") else {
            throw OpError.invalid("needs at least one input and no omitted ones")
        }
        self.axis = axis
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let types = try (0..<inputs.count).map { try inputs.type($0) }
        let dtype = types[0].dtype
        if let other = types.first(where: { $0.dtype != dtype }) {
            throw OpError("inputs have different types: \(dtype) and \(other.dtype)")
        }
        let a = try Shapes.axis(axis, rank: types[0].shape.count)
        return [ValueType(dtype, try Kernels.concatShape(types.map(\.shape), axis: a))]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let parts = inputs.map { $0! }
        return [Kernels.concat(parts, axis: try Shapes.axis(axis, rank: parts[0].rank))]
    }
}

/// Pad: constant, reflect, edge or wrap; negative pads crop. Pads and the constant are
/// attributes before opset 11, inputs after (with optional axes from opset 18).
struct PadOperator: DataMovementOperator {
    enum Mode: String { case constant, reflect, edge, wrap }
    let mode: Mode
    let attributePads: [Int]?
    let attributeValue: Float

    init(_ context: OpContext) throws {
        let text = try context.attributes.string("mode") ?? "constant"
        guard let mode = Mode(rawValue: text) else { throw OpError.invalid("mode '\(text)' is not one of constant, reflect, edge, wrap") }
        self.mode = mode
        if context.opset < 11 {
            guard let pads = try context.attributes.ints("pads") ?? context.attributes.ints("paddings") else {
                throw OpError.invalid("attribute pads is required")
            }
            attributePads = pads
            attributeValue = try context.attributes.float("value", default: 0)
        } else {
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
}

struct TileOperator: DataMovementOperator {
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
}

/// Expand: broadcast the input to a shape given as an input (bidirectionally: dimensions of 1
/// in the shape keep the input's).
struct ExpandOperator: DataMovementOperator {
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
}

struct ReverseSequenceOperator: DataMovementOperator {
    let batchAxis: Int
    let timeAxis: Int

    init(_ context: OpContext) throws {
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
}
