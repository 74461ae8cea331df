import Foundation

extension Kernels {
    /// Layer normalization of `rows` rows of `columns` floats:
    /// `y = (x − mean) / sqrt(var + ε) · scale + bias`, with the per-row mean and 1/sqrt(var + ε)
    /// written to `mean` and `invStdDev` when given. `scale` and `bias` hold `columns` values.
    public static func layerNorm(_ x: UnsafePointer<Float>, rows: Int, columns: Int, scale: UnsafePointer<Float>?,
                                 bias: UnsafePointer<Float>?, epsilon: Float, into y: UnsafeMutablePointer<Float>,
                                 mean meanOut: UnsafeMutablePointer<Float>? = nil,
                                 invStdDev invOut: UnsafeMutablePointer<Float>? = nil) {
        guard columns > 0 else { return }
        let n = Float(columns)
        for r in 0..<rows {
            let src = x + r * columns, dst = y + r * columns
            var s0: Float = 0, s1: Float = 0, s2: Float = 0, s3: Float = 0
            var i = 0
            while i + 4 <= columns { s0 += src[i]; s1 += src[i + 1]; s2 += src[i + 2]; s3 += src[i + 3]; i += 4 }
            while i < columns { s0 += src[i]; i += 1 }
            let mean = ((s0 + s1) + (s2 + s3)) / n
            var v0: Float = 0, v1: Float = 0, v2: Float = 0, v3: Float = 0
            i = 0
            while i + 4 <= columns {
                let d0 = src[i] - mean, d1 = src[i + 1] - mean, d2 = src[i + 2] - mean, d3 = src[i + 3] - mean
                v0 += d0 * d0; v1 += d1 * d1; v2 += d2 * d2; v3 += d3 * d3
                i += 4
            }
            while i < columns { let d = src[i] - mean; v0 += d * d; i += 1 }
            let variance = ((v0 + v1) + (v2 + v3)) / n
            let inv = 1 / (variance + epsilon).squareRoot()
            meanOut?[r] = mean
            invOut?[r] = inv
            switch (scale, bias) {
            case let (s?, b?): for j in 0..<columns { dst[j] = (src[j] - mean) * inv * s[j] + b[j] }
            case let (s?, nil): for j in 0..<columns { dst[j] = (src[j] - mean) * inv * s[j] }
            case let (nil, b?): for j in 0..<columns { dst[j] = (src[j] - mean) * inv + b[j] }
            case (nil, nil): for j in 0..<columns { dst[j] = (src[j] - mean) * inv }
            }
        }
    }

    /// Layer normalization of a tensor over its dimensions from `axis` on; returns Y, Mean and
    /// InvStdDev (the last two with the normalized dimensions kept as 1s).
    public static func layerNorm(_ x: Tensor, scale: Tensor?, bias: Tensor?, axis: Int, epsilon: Float) -> (Tensor, Tensor, Tensor) {
        precondition(axis >= 0 && axis <= x.rank, "LayerNormalization axis \(axis) of \(x)")
        let rows = Tensor.elementCount(of: Array(x.shape[..<axis]))
        let columns = Tensor.elementCount(of: Array(x.shape[axis...]))
        precondition(scale == nil || scale!.elementCount == columns, "scale must have \(columns) values")
        precondition(bias == nil || bias!.elementCount == columns, "bias must have \(columns) values")
        let y = Tensor(uninitialized: .float32, shape: x.shape)
        let statsShape = Array(x.shape[..<axis]) + Array(repeating: 1, count: x.rank - axis)
        let mean = Tensor(uninitialized: .float32, shape: statsShape)
        let inv = Tensor(uninitialized: .float32, shape: statsShape)
        layerNorm(x.floatPointer, rows: rows, columns: columns, scale: scale?.floatPointer, bias: bias?.floatPointer,
                  epsilon: epsilon, into: y.mutableFloatPointer, mean: mean.mutableFloatPointer, invStdDev: inv.mutableFloatPointer)
        return (y, mean, inv)
    }
}

extension ReferenceKernels {
    /// Layer normalization from the definition, in Double.
    public static func layerNorm(_ x: Tensor, scale: Tensor?, bias: Tensor?, axis: Int, epsilon: Float) -> Tensor {
        let columns = Tensor.elementCount(of: Array(x.shape[axis...]))
        let rows = x.elementCount / Swift.max(columns, 1)
        let v = x.doubles, s = scale?.doubles, b = bias?.doubles
        var y = [Double](repeating: 0, count: v.count)
        for r in 0..<rows {
            let row = v[(r * columns)..<((r + 1) * columns)]
            let mean = row.reduce(0, +) / Double(columns)
            let variance = row.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(columns)
            for j in 0..<columns {
                var value = (v[r * columns + j] - mean) / (variance + Double(epsilon)).squareRoot()
                if let s { value *= s[j] }
                if let b { value += b[j] }
                y[r * columns + j] = value
            }
        }
        return Tensor(dtype: x.dtype, shape: x.shape, doubles: y)
    }
}
