import Foundation

/// Kernels that move elements without arithmetic; they work for every dtype.
extension Kernels {
    /// Permutes dimensions: `out.shape[i] == x.shape[perm[i]]`.
    public static func transpose(_ x: Tensor, perm: [Int]) -> Tensor {
        precondition(perm.count == x.rank && Set(perm) == Set(0..<x.rank), "permutation \(perm) of rank \(x.rank)")
        let outShape = perm.map { x.shape[$0] }
        let out = Tensor(uninitialized: x.dtype, shape: outShape)
        transpose(x, perm: perm, into: out)
        return out
    }

    /// The permutation written to `out` (x's dtype and element count).
    public static func transpose(_ x: Tensor, perm: [Int], into out: Tensor) {
        precondition(perm.count == x.rank && out.dtype == x.dtype && out.elementCount == x.elementCount,
                     "permutation \(perm) of \(x) into \(out)")
        guard out.elementCount > 0 else { return }
        if perm == Array(0..<x.rank) {
            out.storage.bytes.copyMemory(from: x.storage.bytes, byteCount: x.byteCount)
            return
        }
        // Merge input dimensions that stay neighbours in the same order; drop size-1 ones.
        var shape: [Int] = [], order: [Int] = []
        let kept = perm.filter { x.shape[$0] != 1 }
        var groups: [[Int]] = []  // input dimensions, grouped, in output order
        for d in kept {
            if let last = groups.last?.last, last + 1 == d, !kept.contains(where: { $0 > last && $0 < d }) {
                groups[groups.count - 1].append(d)
            } else {
                groups.append([d])
            }
        }
        let inputOrder = groups.sorted { $0[0] < $1[0] }
        for group in inputOrder { shape.append(group.reduce(1) { $0 * x.shape[$1] }) }
        for group in groups { order.append(inputOrder.firstIndex { $0 == group }!) }
        let source = Tensor(dtype: x.dtype, shape: shape, storage: x.storage)
        let view = Tensor(dtype: out.dtype, shape: order.map { shape[$0] }, storage: out.storage)
        if order == Array(0..<order.count) {
            out.storage.bytes.copyMemory(from: x.storage.bytes, byteCount: x.byteCount)
            return
        }
        switch x.dtype.byteSize {
        case 1: transpose(source, order, view, as: UInt8.self)
        case 2: transpose(source, order, view, as: UInt16.self)
        case 4: transpose(source, order, view, as: UInt32.self)
        default: transpose(source, order, view, as: UInt64.self)
        }
    }

    /// The general permutation, once dimensions are merged: whole rows copied when the last
    /// dimension stays last, tiles when the last two swap, element by element otherwise.
    private static func transpose<T>(_ x: Tensor, _ perm: [Int], _ out: Tensor, as: T.Type) {
        var inStrides = [Int](repeating: 1, count: x.rank)
        for d in stride(from: x.rank - 2, through: 0, by: -1) { inStrides[d] = inStrides[d + 1] * x.shape[d + 1] }
        let strides = perm.map { inStrides[$0] }
        let dims = out.shape
        let src = UnsafePointer(x.storage.bytes.bindMemory(to: T.self, capacity: x.elementCount))
        let dst = out.storage.bytes.bindMemory(to: T.self, capacity: out.elementCount)
        let rank = x.rank
        if rank >= 2 && perm[rank - 1] == rank - 2 && perm[rank - 2] == rank - 1 && Array(perm.prefix(rank - 2)) == Array(0..<(rank - 2)) {
            // [batch, r, c] -> [batch, c, r] in 16×16 tiles.
            let r = x.shape[rank - 2], c = x.shape[rank - 1]
            let batch = x.elementCount / max(r * c, 1)
            for b in 0..<batch {
                let s = src + b * r * c, d = dst + b * r * c
                var i0 = 0
                while i0 < r {
                    let i1 = min(i0 + 16, r)
                    var j0 = 0
                    while j0 < c {
                        let j1 = min(j0 + 16, c)
                        for i in i0..<i1 { for j in j0..<j1 { d[j * r + i] = s[i * c + j] } }
                        j0 = j1
                    }
                    i0 = i1
                }
            }
            return
        }
        let n = dims.last!, step = strides.last!
        if step == 1 {
            // The last dimension stays last: copy whole rows.
            var index = [Int](repeating: 0, count: dims.count)
            var offset = 0
            for o in 0..<(out.elementCount / max(n, 1)) {
                (dst + o * n).update(from: src + offset, count: n)
                var d = dims.count - 2
                while d >= 0 {
                    index[d] += 1
                    offset += strides[d]
                    if index[d] < dims[d] { break }
                    offset -= strides[d] * dims[d]
                    index[d] = 0
                    d -= 1
                }
            }
            return
        }
        var index = [Int](repeating: 0, count: dims.count)
        var offset = 0
        for o in 0..<(out.elementCount / n) {
            let row = dst + o * n
            for i in 0..<n { row[i] = src[offset + i * step] }
            var d = dims.count - 2
            while d >= 0 {
                index[d] += 1
                offset += strides[d]
                if index[d] < dims[d] { break }
                offset -= strides[d] * dims[d]
                index[d] = 0
                d -= 1
            }
        }
    }

    /// The shape of `parts` joined along `axis`, or why they cannot be joined.
    public static func concatShape(_ shapes: [[Int]], axis: Int) throws -> [Int] {
        guard let first = shapes.first else { throw ShapeError("Concat of nothing") }
        var out = first
        out[axis] = 0
        for shape in shapes {
            guard shape.count == first.count else { throw ShapeError("Concat of ranks \(first.count) and \(shape.count)") }
            for d in 0..<shape.count where d != axis && shape[d] != first[d] {
                throw ShapeError("Concat along axis \(axis) of shapes \(first) and \(shape) (dimension \(d) differs)")
            }
            out[axis] += shape[axis]
        }
        return out
    }

    /// Joins tensors of one dtype along `axis` (already normalized).
    public static func concat(_ parts: [Tensor], axis: Int) -> Tensor {
        let shape: [Int]
        do { shape = try concatShape(parts.map(\.shape), axis: axis) } catch { preconditionFailure("\(error)") }
        let out = Tensor(uninitialized: parts[0].dtype, shape: shape)
        concat(parts, axis: axis, into: out)
        return out
    }

    /// The parts joined along `axis`, written to `out` (the joined shape).
    public static func concat(_ parts: [Tensor], axis: Int, into out: Tensor) {
        let dtype = parts[0].dtype
        precondition(parts.allSatisfy { $0.dtype == dtype } && out.dtype == dtype, "Concat of mixed dtypes")
        let shape = out.shape
        let outer = Tensor.elementCount(of: Array(shape[..<axis]))
        let inner = Tensor.elementCount(of: Array(shape[(axis + 1)...])) * dtype.byteSize
        var dst = out.storage.bytes
        for o in 0..<outer {
            for part in parts {
                let chunk = part.shape[axis] * inner
                dst.copyMemory(from: part.storage.bytes + o * chunk, byteCount: chunk)
                dst += chunk
            }
        }
    }

    /// ONNX Gather: picks entries of `data` along `axis` by `indices` (int64 or int32; negative
    /// counts from the end). Throws for an index out of range: indices are data.
    public static func gather(_ data: Tensor, indices: Tensor, axis: Int) throws -> Tensor {
        precondition(axis >= 0 && axis < data.rank, "Gather axis \(axis) of rank \(data.rank)")
        let dim = data.shape[axis]
        var picks = [Int](repeating: 0, count: indices.elementCount)
        switch indices.dtype {
        case .int64: indices.withUnsafeBufferPointer(as: Int64.self) { for (i, v) in $0.enumerated() { picks[i] = Int(v) } }
        case .int32: indices.withUnsafeBufferPointer(as: Int32.self) { for (i, v) in $0.enumerated() { picks[i] = Int(v) } }
        default: throw ShapeError("Gather indices must be int64 or int32, not \(indices.dtype)")
        }
        for i in picks.indices {
            if picks[i] < 0 { picks[i] += dim }
            guard picks[i] >= 0 && picks[i] < dim else {
                throw ShapeError("Gather index \(picks[i] < 0 ? picks[i] - dim : picks[i]) is out of range for dimension \(axis) of size \(dim)")
            }
        }
        let shape = Array(data.shape[..<axis]) + indices.shape + Array(data.shape[(axis + 1)...])
        let out = Tensor(uninitialized: data.dtype, shape: shape)
        let outer = Tensor.elementCount(of: Array(data.shape[..<axis]))
        let inner = Tensor.elementCount(of: Array(data.shape[(axis + 1)...])) * data.dtype.byteSize
        var dst = out.storage.bytes
        for o in 0..<outer {
            let base = data.storage.bytes + o * dim * inner
            for pick in picks {
                dst.copyMemory(from: base + pick * inner, byteCount: inner)
                dst += inner
            }
        }
        return out
    }

    /// Converts elements to `dtype` as ONNX Cast does: floats to integers truncate toward zero
    /// (NaN becomes 0, out-of-range values saturate), integers narrow by wrapping, anything to
    /// bool is `!= 0`.
    public static func cast(_ x: Tensor, to dtype: DType) -> Tensor {
        if x.dtype == dtype { return x }
        // Between integer types the bit patterns carry over (uint64 included); everything else
        // goes through Double, exact for every float and for integers up to 2^53.
        if !x.dtype.isFloatingPoint && !dtype.isFloatingPoint {
            return Tensor(dtype: dtype, shape: x.shape, int64Values: x.int64Values)
        }
        return Tensor(dtype: dtype, shape: x.shape, doubles: x.doubles)
    }

    /// bfloat16 bits → single: they are its top half.
    public static func bfloat16ToFloat(_ b: UInt16) -> Float { Float(bitPattern: UInt32(b) << 16) }

    /// Single → bfloat16 by truncation (dropping the low 16 bits), as ONNX's reference Cast and
    /// its backend test data do; NaN stays a quiet NaN instead of possibly becoming infinity.
    public static func floatToBFloat16(_ f: Float) -> UInt16 {
        if f.isNaN { return UInt16(truncatingIfNeeded: f.bitPattern >> 16) | 0x7FC0 }
        return UInt16(truncatingIfNeeded: f.bitPattern >> 16)
    }
}
