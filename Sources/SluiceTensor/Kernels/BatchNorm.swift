extension Kernels {
    /// Inference-time BatchNormalization as a per-channel affine map:
    /// `y = x · scale' + shift'` with `scale' = scale / sqrt(var + ε)`, `shift' = bias − mean · scale'`.
    public static func batchNormCoefficients(scale: Tensor, bias: Tensor, mean: Tensor, variance: Tensor,
                                             epsilon: Float) -> (scale: [Float], shift: [Float]) {
        let c = scale.elementCount
        precondition(bias.elementCount == c && mean.elementCount == c && variance.elementCount == c,
                     "BatchNormalization parameters differ in size")
        let s = scale.floatPointer, b = bias.floatPointer, m = mean.floatPointer, v = variance.floatPointer
        var outScale = [Float](repeating: 0, count: c), outShift = [Float](repeating: 0, count: c)
        for i in 0..<c {
            let k = s[i] / (v[i] + epsilon).squareRoot()
            outScale[i] = k
            outShift[i] = b[i] - m[i] * k
        }
        return (outScale, outShift)
    }

    /// `y[n, c, …] = x[n, c, …] · scale[c] + shift[c]` for an N×C×… tensor.
    public static func channelAffine(_ x: Tensor, scale: [Float], shift: [Float]) -> Tensor {
        precondition(x.rank >= 2 && x.shape[1] == scale.count && shift.count == scale.count,
                     "per-channel affine of \(x) with \(scale.count) channels")
        let out = Tensor(uninitialized: .float32, shape: x.shape)
        channelAffine(x, scale: scale, shift: shift, into: out)
        return out
    }

    /// The per-channel affine map written to `out` (x's shape).
    public static func channelAffine(_ x: Tensor, scale: [Float], shift: [Float], into out: Tensor) {
        precondition(x.rank >= 2 && x.shape[1] == scale.count && out.shape == x.shape, "per-channel affine of \(x) into \(out)")
        let channels = x.shape[1]
        let plane = Tensor.elementCount(of: Array(x.shape.dropFirst(2)))
        let xp = x.floatPointer, yp = out.mutableFloatPointer
        for n in 0..<x.shape[0] {
            for c in 0..<channels {
                let offset = (n * channels + c) * plane
                let (k, b) = (scale[c], shift[c])
                let src = xp + offset, dst = yp + offset
                for i in 0..<plane { dst[i] = src[i] * k + b }
            }
        }
    }

    /// BatchNormalization in inference mode over dimension 1.
    public static func batchNorm(_ x: Tensor, scale: Tensor, bias: Tensor, mean: Tensor, variance: Tensor,
                                 epsilon: Float) -> Tensor {
        let (k, b) = batchNormCoefficients(scale: scale, bias: bias, mean: mean, variance: variance, epsilon: epsilon)
        return channelAffine(x, scale: k, shift: b)
    }
}
