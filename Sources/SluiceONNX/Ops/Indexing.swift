import Foundation
import SluiceTensor

/// Ops that read or write elements by index or by mask; most work for every dtype.
enum IndexingOps {
    static let schemas: [OpSchema] = [
        OpSchema(name: "Gather", opsets: 1...OpRegistry.latestOpset, inputs: 2...2) { try GatherOperator($0) },
        OpSchema(name: "GatherElements", opsets: 11...OpRegistry.latestOpset, inputs: 2...2) { try GatherElementsOperator($0) },
        OpSchema(name: "GatherND", opsets: 11...OpRegistry.latestOpset, inputs: 2...2) { try GatherNDOperator($0) },
        OpSchema(name: "ScatterElements", opsets: 11...OpRegistry.latestOpset, inputs: 3...3) { try ScatterElementsOperator($0) },
        OpSchema(name: "Scatter", opsets: 9...10, inputs: 3...3) { try ScatterElementsOperator($0) },
        OpSchema(name: "ScatterND", opsets: 11...OpRegistry.latestOpset, inputs: 3...3) { try ScatterNDOperator($0) },
        OpSchema(name: "OneHot", opsets: 9...OpRegistry.latestOpset, inputs: 3...3) { try OneHotOperator($0) },
        OpSchema(name: "NonZero", opsets: 9...OpRegistry.latestOpset, inputs: 1...1) { _ in NonZeroOperator() },
        OpSchema(name: "Compress", opsets: 9...OpRegistry.latestOpset, inputs: 2...2) { try CompressOperator($0) },
        OpSchema(name: "Unique", opsets: 11...OpRegistry.latestOpset, inputs: 1...1, outputs: 1...4) { try UniqueOperator($0) },
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

/// Normalizes index values against a dimension, throwing for any out of range.
func normalizedIndices(_ indices: Tensor, dim: Int, role: String = "index") throws -> [Int] {
    try indices.int64Values.map { v in
        let i = v < 0 ? Int(v) + dim : Int(v)
        guard i >= 0 && i < dim else { throw OpError("\(role) \(v) is out of range for a dimension of \(dim)", kind: .invalidInput) }
        return i
    }
}

struct GatherOperator: DataMovementOperator {
    let axis: Int

    init(_ context: OpContext) throws {
        axis = try context.attributes.int("axis", default: 0)
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let data = try inputs.type(0)
        let indices = try inputs.type(1, oneOf: [.int64, .int32], role: "indices")
        let a = try Shapes.axis(axis, rank: data.shape.count)
        return [ValueType(data.dtype, Array(data.shape[..<a]) + indices.shape + Array(data.shape[(a + 1)...]))]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let data = inputs[0]!
        do {
            let axis = try Shapes.axis(axis, rank: data.rank)
            guard data.dtype == .string else { return [try Kernels.gather(data, indices: inputs[1]!, axis: axis)] }
            // Strings (skl2onnx picks a text column so): the positions gathered as numbers, then the strings at them.
            let positions = Tensor(dtype: .int64, shape: data.shape, int64Values: (0..<Int64(data.elementCount)).map { $0 })
            let picked = try Kernels.gather(positions, indices: inputs[1]!, axis: axis)
            let strings = data.strings
            return [Tensor(shape: picked.shape, strings: picked.int64s.map { strings[Int($0)] })]
        } catch let error as ShapeError {
            throw OpError(error.message, kind: .invalidInput)
        }
    }

    var takesStrings: Bool { true }
}

struct GatherElementsOperator: DataMovementOperator {
    let axis: Int

    init(_ context: OpContext) throws {
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
struct ScatterElementsOperator: DataMovementOperator {
    let axis: Int
    let reduction: ScatterReduction

    init(_ context: OpContext) throws {
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

struct GatherNDOperator: DataMovementOperator {
    let batchDims: Int

    init(_ context: OpContext) throws {
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
}

struct ScatterNDOperator: DataMovementOperator {
    let reduction: ScatterReduction

    init(_ context: OpContext) throws {
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
}

/// OneHot(indices, depth, values = [off, on]): a new axis of `depth` entries.
struct OneHotOperator: DataMovementOperator {
    let axis: Int

    init(_ context: OpContext) throws {
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
}

/// NonZero: the int64 indices of nonzero elements, [rank, count]; the count depends on the data.
struct NonZeroOperator: DataMovementOperator {
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
}

/// Compress: the slices along `axis` (or elements of the flattened input) where the
/// condition holds.
struct CompressOperator: DataMovementOperator {
    let axis: Int?

    init(_ context: OpContext) throws {
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
}

/// Unique: distinct elements (or slices along `axis`), sorted or in order of first
/// appearance, with first indices, inverse indices and counts. The output size depends on the data.
struct UniqueOperator: DataMovementOperator {
    let sorted: Bool
    let axis: Int?

    init(_ context: OpContext) throws {
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
}
