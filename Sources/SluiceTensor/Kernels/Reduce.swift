import Foundation

/// ONNX's reductions.
public enum ReduceOp: String, Sendable, CaseIterable {
    case sum = "ReduceSum"
    case mean = "ReduceMean"
    case max = "ReduceMax"
    case min = "ReduceMin"
    case prod = "ReduceProd"
    case l1 = "ReduceL1"
    case l2 = "ReduceL2"
    case logSum = "ReduceLogSum"
    case logSumExp = "ReduceLogSumExp"
    case sumSquare = "ReduceSumSquare"
}

extension Shapes {
    /// The shape of a reduction over `axes` (normalized), keeping them as 1s or dropping them.
    public static func reduced(_ shape: [Int], axes: [Int], keepDims: Bool) -> [Int] {
        let set = Set(axes)
        return shape.enumerated().compactMap { d, size in set.contains(d) ? (keepDims ? 1 : nil) : size }
    }

    /// `shape` seen as [outer, reduced, inner] when `axes` are one contiguous run of dimensions.
    static func contiguousBlock(_ shape: [Int], axes: [Int]) -> (outer: Int, length: Int, inner: Int)? {
        let sorted = axes.sorted()
        guard let first = sorted.first, let last = sorted.last, last - first + 1 == sorted.count else { return nil }
        return (Tensor.elementCount(of: Array(shape[..<first])), Tensor.elementCount(of: Array(shape[first...last])),
                Tensor.elementCount(of: Array(shape[(last + 1)...])))
    }
}

extension Kernels {
    /// The dtypes `reduce` handles.
    public static let reduceDTypes: [DType] = [.float32, .float64, .float16, .int64, .int32, .int8, .uint8]

    /// `op` over `axes` (normalized, distinct); an empty `axes` reduces nothing (a copy).
    public static func reduce(_ op: ReduceOp, _ x: Tensor, axes: [Int], keepDims: Bool) -> Tensor {
        let outShape = Shapes.reduced(x.shape, axes: axes, keepDims: keepDims)
        if axes.isEmpty { return reduce(op, x, outer: x.elementCount, length: 1, inner: 1, shape: outShape) }
        var source = x
        var block = Shapes.contiguousBlock(x.shape, axes: axes)
        if block == nil {
            // Move the reduced dimensions last, then they are one contiguous block.
            let kept = (0..<x.rank).filter { !axes.contains($0) }
            source = transpose(x, perm: kept + axes.sorted())
            block = (Tensor.elementCount(of: kept.map { x.shape[$0] }), Tensor.elementCount(of: axes.map { x.shape[$0] }), 1)
        }
        let (outer, length, inner) = block!
        return reduce(op, source, outer: outer, length: length, inner: inner, shape: outShape)
    }

    private static func reduce(_ op: ReduceOp, _ x: Tensor, outer: Int, length: Int, inner: Int, shape: [Int]) -> Tensor {
        switch x.dtype {
        case .float32:
            let out = Tensor(uninitialized: .float32, shape: shape)
            reduceFloats(op, x.floatPointer, outer: outer, length: length, inner: inner, into: out.mutableFloatPointer)
            return out
        case _ where x.dtype.isInteger && (op == .sum || op == .prod || op == .max || op == .min):
            let v = x.int64Values
            var y = [Int64](repeating: 0, count: outer * inner)
            for o in 0..<outer {
                for i in 0..<inner {
                    var acc: Int64 = op == .prod ? 1 : (op == .max ? .min : (op == .min ? .max : 0))
                    for r in 0..<length {
                        let e = v[(o * length + r) * inner + i]
                        switch op {
                        case .sum: acc = acc &+ e
                        case .prod: acc = acc &* e
                        case .max: acc = Swift.max(acc, e)
                        default: acc = Swift.min(acc, e)
                        }
                    }
                    y[o * inner + i] = acc
                }
            }
            return Tensor(dtype: x.dtype, shape: shape, int64Values: y)
        default:
            let v = x.doubles
            var y = [Double](repeating: 0, count: outer * inner)
            var group = [Double](repeating: 0, count: length)
            for o in 0..<outer {
                for i in 0..<inner {
                    for r in 0..<length { group[r] = v[(o * length + r) * inner + i] }
                    y[o * inner + i] = reduceGroup(op, group)
                }
            }
            return Tensor(dtype: x.dtype, shape: shape, doubles: y)
        }
    }

    /// One reduction of a list of values, in Double.
    static func reduceGroup(_ op: ReduceOp, _ values: [Double]) -> Double {
        switch op {
        case .sum: return values.reduce(0, +)
        case .mean: return values.reduce(0, +) / Double(values.count)
        case .max: return values.reduce(-Double.infinity) { $0.isNaN || $1.isNaN ? .nan : Swift.max($0, $1) }
        case .min: return values.reduce(Double.infinity) { $0.isNaN || $1.isNaN ? .nan : Swift.min($0, $1) }
        case .prod: return values.reduce(1, *)
        case .l1: return values.reduce(0) { $0 + Swift.abs($1) }
        case .l2: return values.reduce(0) { $0 + $1 * $1 }.squareRoot()
        case .logSum: return Foundation.log(values.reduce(0, +))
        case .logSumExp:
            let m = values.max() ?? 0
            if !m.isFinite { return Foundation.log(values.reduce(0) { $0 + Foundation.exp($1) }) }
            return m + Foundation.log(values.reduce(0) { $0 + Foundation.exp($1 - m) })
        case .sumSquare: return values.reduce(0) { $0 + $1 * $1 }
        }
    }

    /// Float reduction of `outer` × `inner` groups of `length` values spaced `inner` apart.
    public static func reduceFloats(_ op: ReduceOp, _ x: UnsafePointer<Float>, outer: Int, length: Int, inner: Int,
                                    into y: UnsafeMutablePointer<Float>) {
        if inner == 1 {
            for o in 0..<outer { y[o] = reduceRow(op, x + o * length, length) }
            return
        }
        // Walk rows of `inner` contiguous values, accumulating a whole output row at a time.
        for o in 0..<outer {
            let src = x + o * length * inner, dst = y + o * inner
            switch op {
            case .max, .min, .logSumExp:
                let isMax = op != .min
                dst.update(from: src, count: inner)
                for r in 1..<Swift.max(length, 1) {
                    let row = src + r * inner
                    for i in 0..<inner {
                        let a = dst[i], b = row[i]
                        dst[i] = a.isNaN || b.isNaN ? .nan : (isMax ? Swift.max(a, b) : Swift.min(a, b))
                    }
                }
                if length == 0 { dst.update(repeating: isMax ? -.infinity : .infinity, count: inner) }
                if op == .logSumExp {
                    for i in 0..<inner {
                        let m = dst[i]
                        var sum: Float = 0
                        for r in 0..<length { sum += Foundation.expf(src[r * inner + i] - (m.isFinite ? m : 0)) }
                        dst[i] = (m.isFinite ? m : 0) + Foundation.logf(sum)
                    }
                }
            case .prod:
                dst.update(repeating: 1, count: inner)
                for r in 0..<length { let row = src + r * inner; for i in 0..<inner { dst[i] *= row[i] } }
            default:
                dst.update(repeating: 0, count: inner)
                for r in 0..<length {
                    let row = src + r * inner
                    switch op {
                    case .l1: for i in 0..<inner { dst[i] += Swift.abs(row[i]) }
                    case .l2, .sumSquare: for i in 0..<inner { dst[i] += row[i] * row[i] }
                    default: for i in 0..<inner { dst[i] += row[i] }
                    }
                }
                switch op {
                case .mean: let scale = 1 / Float(length); for i in 0..<inner { dst[i] *= scale }
                case .l2: for i in 0..<inner { dst[i] = dst[i].squareRoot() }
                case .logSum: for i in 0..<inner { dst[i] = Foundation.logf(dst[i]) }
                default: break
                }
            }
        }
    }

    /// One contiguous row reduced.
    @inline(__always)
    static func reduceRow(_ op: ReduceOp, _ p: UnsafePointer<Float>, _ n: Int) -> Float {
        switch op {
        case .sum, .mean, .logSum:
            var s0: Float = 0, s1: Float = 0, s2: Float = 0, s3: Float = 0
            var i = 0
            while i + 4 <= n { s0 += p[i]; s1 += p[i + 1]; s2 += p[i + 2]; s3 += p[i + 3]; i += 4 }
            while i < n { s0 += p[i]; i += 1 }
            let s = (s0 + s1) + (s2 + s3)
            return op == .sum ? s : (op == .mean ? s / Float(n) : Foundation.logf(s))
        case .sumSquare, .l2:
            var s: Float = 0
            for i in 0..<n { s += p[i] * p[i] }
            return op == .l2 ? s.squareRoot() : s
        case .l1:
            var s: Float = 0
            for i in 0..<n { s += Swift.abs(p[i]) }
            return s
        case .prod:
            var s: Float = 1
            for i in 0..<n { s *= p[i] }
            return s
        case .max, .min, .logSumExp:
            var m: Float = op == .min ? .infinity : -.infinity
            for i in 0..<n {
                if p[i].isNaN { return .nan }
                m = op == .min ? Swift.min(m, p[i]) : Swift.max(m, p[i])
            }
            if op != .logSumExp { return m }
            let shift = m.isFinite ? m : 0
            var s: Float = 0
            for i in 0..<n { s += Foundation.expf(p[i] - shift) }
            return shift + Foundation.logf(s)
        }
    }
}

extension ReferenceKernels {
    /// `op` over `axes`, element by element in Double.
    public static func reduce(_ op: ReduceOp, _ x: Tensor, axes: [Int], keepDims: Bool) -> Tensor {
        let outShape = Shapes.reduced(x.shape, axes: axes, keepDims: keepDims)
        let keptShape = x.shape.enumerated().map { axes.contains($0.offset) ? 1 : $0.element }
        var groups = [[Double]](repeating: [], count: Tensor.elementCount(of: keptShape))
        let v = x.doubles
        let keptStrides = strides(keptShape)
        for flat in 0..<x.elementCount {
            let index = unravel(flat, x.shape)
            var g = 0
            for d in 0..<x.rank where !axes.contains(d) { g += index[d] * keptStrides[d] }
            groups[g].append(v[flat])
        }
        return Tensor(dtype: x.dtype, shape: outShape, doubles: groups.map { Kernels.reduceGroup(op, $0) })
    }
}
