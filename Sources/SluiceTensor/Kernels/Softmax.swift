import Foundation

extension Kernels {
    /// Softmax along `axis` (ONNX opset 13 and later), numerically stable: the maximum along the
    /// axis is subtracted before exponentiating.
    public static func softmax(_ x: Tensor, axis: Int, log: Bool = false) -> Tensor {
        precondition(x.dtype == .float32 && axis >= 0 && axis < x.rank, "softmax over axis \(axis) of \(x)")
        let outer = Tensor.elementCount(of: Array(x.shape[..<axis]))
        let inner = Tensor.elementCount(of: Array(x.shape[(axis + 1)...]))
        let out = Tensor(uninitialized: .float32, shape: x.shape)
        softmax(x.floatPointer, into: out.mutableFloatPointer, outer: outer, length: x.shape[axis], inner: inner, log: log)
        return out
    }

    /// Softmax along `axis` written to `out` (x's element count).
    public static func softmax(_ x: Tensor, axis: Int, log: Bool = false, into out: Tensor) {
        precondition(x.dtype == .float32 && axis >= 0 && axis < x.rank && out.elementCount == x.elementCount, "softmax over axis \(axis) of \(x)")
        let outer = Tensor.elementCount(of: Array(x.shape[..<axis]))
        let inner = Tensor.elementCount(of: Array(x.shape[(axis + 1)...]))
        softmax(x.floatPointer, into: out.mutableFloatPointer, outer: outer, length: x.shape[axis], inner: inner, log: log)
    }

    /// Softmax of `outer` independent groups of `length` values spaced `inner` apart.
    public static func softmax(_ src: UnsafePointer<Float>, into dst: UnsafeMutablePointer<Float>,
                               outer: Int, length: Int, inner: Int, log: Bool = false) {
        guard length > 0 && outer > 0 && inner > 0 else { return }
        if inner == 1 {
            for o in 0..<outer {
                softmaxRow(src + o * length, dst + o * length, length, log: log)
            }
            return
        }
        // Groups spaced `inner` apart: walk rows of `inner` contiguous values at a time.
        let maxima = UnsafeMutablePointer<Float>.allocate(capacity: inner)
        let sums = UnsafeMutablePointer<Float>.allocate(capacity: inner)
        defer { maxima.deallocate(); sums.deallocate() }
        for o in 0..<outer {
            let s = src + o * length * inner, d = dst + o * length * inner
            maxima.update(repeating: -Float.infinity, count: inner)
            sums.update(repeating: 0, count: inner)
            for k in 0..<length {
                let row = s + k * inner
                for j in 0..<inner { maxima[j] = max(maxima[j], row[j]) }
            }
            for k in 0..<length {
                let row = s + k * inner, outRow = d + k * inner
                for j in 0..<inner { outRow[j] = row[j] - maxima[j] }
                FastMath.exp(outRow, outRow, count: inner)
                for j in 0..<inner { sums[j] += outRow[j] }
            }
            if log {
                for j in 0..<inner { sums[j] = Foundation.logf(sums[j]) }
                for k in 0..<length {
                    let row = s + k * inner, outRow = d + k * inner
                    for j in 0..<inner { outRow[j] = (row[j] - maxima[j]) - sums[j] }
                }
            } else {
                for j in 0..<inner { sums[j] = 1 / sums[j] }
                for k in 0..<length {
                    let outRow = d + k * inner
                    for j in 0..<inner { outRow[j] *= sums[j] }
                }
            }
        }
    }

    /// One contiguous softmax row: maximum, exponentials and their sum in one vectorized pass,
    /// then the scaling (or, for log, x − max − log Σ).
    @inline(__always)
    static func softmaxRow(_ s: UnsafePointer<Float>, _ d: UnsafeMutablePointer<Float>, _ length: Int, log: Bool) {
        let maximum = FastMath.maximum(s, count: length)
        if maximum.isNaN {
            d.update(repeating: .nan, count: length)
            return
        }
        let sum = FastMath.expShifted(s, d, count: length, shift: maximum)
        if log {
            // (x − max) first: exact for nearby values, where max + log(sum) would round.
            let logSum = Foundation.logf(sum)
            for i in 0..<length { d[i] = (s[i] - maximum) - logSum }
            return
        }
        FastMath.scale(d, count: length, by: 1 / sum)
    }
}
