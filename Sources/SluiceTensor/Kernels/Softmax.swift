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
                let s = src + o * length, d = dst + o * length
                var maximum = -Float.infinity
                for i in 0..<length { maximum = max(maximum, s[i]) }
                var sum: Float = 0
                for i in 0..<length {
                    let e = Foundation.expf(s[i] - maximum)
                    d[i] = e
                    sum += e
                }
                if log {
                    // (x − max) first: exact for nearby values, where max + log(sum) would round.
                    let logSum = Foundation.logf(sum)
                    for i in 0..<length { d[i] = (s[i] - maximum) - logSum }
                } else {
                    let scale = 1 / sum
                    for i in 0..<length { d[i] *= scale }
                }
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
                for j in 0..<inner {
                    let e = Foundation.expf(row[j] - maxima[j])
                    outRow[j] = e
                    sums[j] += e
                }
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
}
