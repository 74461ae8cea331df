import Foundation

/// Plain-loop twins of the fast kernels: one element at a time, straight from the ONNX
/// definitions, accumulating in Double. Slow and obviously correct; tests compare against them.
public enum ReferenceKernels {
    /// Where(condition, x, y) on float32 through a table of broadcast offsets per operand.
    public static func select(_ condition: Tensor, _ x: Tensor, _ y: Tensor) throws -> Tensor {
        let shape = try Shapes.broadcast([condition.shape, x.shape, y.shape])
        let co = Shapes.broadcastOffsets(condition.shape, to: shape)
        let xo = Shapes.broadcastOffsets(x.shape, to: shape), yo = Shapes.broadcastOffsets(y.shape, to: shape)
        let c = condition.truthValues, xv = x.floats, yv = y.floats
        return Tensor(shape: shape, floats: (0..<co.count).map { c[co[$0]] ? xv[xo[$0]] : yv[yo[$0]] })
    }

    /// Row-major strides of a shape.
    static func strides(_ shape: [Int]) -> [Int] {
        var s = [Int](repeating: 1, count: shape.count)
        for d in stride(from: shape.count - 2, through: 0, by: -1) { s[d] = s[d + 1] * shape[d + 1] }
        return s
    }

    /// The multi-index of flat position `flat` in `shape`.
    static func unravel(_ flat: Int, _ shape: [Int]) -> [Int] {
        var index = [Int](repeating: 0, count: shape.count)
        var rest = flat
        for d in stride(from: shape.count - 1, through: 0, by: -1) {
            index[d] = rest % shape[d]
            rest /= shape[d]
        }
        return index
    }

    /// The flat position in `shape` of the multi-index `index` of a broadcast shape (aligned right;
    /// dimensions of size 1 repeat).
    static func broadcastOffset(_ index: [Int], in shape: [Int]) -> Int {
        let offset = index.count - shape.count
        let s = strides(shape)
        var flat = 0
        for d in 0..<shape.count where shape[d] != 1 { flat += index[offset + d] * s[d] }
        return flat
    }

    public static func gemm(_ a: Tensor, _ b: Tensor, c: Tensor? = nil, transA: Bool = false, transB: Bool = false,
                            alpha: Float = 1, beta: Float = 1, activation: Activation = .none) -> Tensor {
        let av = a.floats, bv = b.floats
        let m = transA ? a.shape[1] : a.shape[0]
        let k = transA ? a.shape[0] : a.shape[1]
        let n = transB ? b.shape[0] : b.shape[1]
        var y = [Float](repeating: 0, count: m * n)
        for i in 0..<m {
            for j in 0..<n {
                var sum = 0.0
                for p in 0..<k {
                    let x = transA ? av[p * m + i] : av[i * k + p]
                    let w = transB ? bv[j * k + p] : bv[p * n + j]
                    sum += Double(x) * Double(w)
                }
                var v = Double(alpha) * sum
                if let c { v += Double(beta) * Double(c.floats[broadcastOffset([i, j], in: c.shape)]) }
                y[i * n + j] = activation(Float(v))
            }
        }
        return Tensor(shape: [m, n], floats: y)
    }

    public static func matmul(_ a: Tensor, _ b: Tensor) -> Tensor {
        let aShape = a.rank == 1 ? [1, a.shape[0]] : a.shape
        let bShape = b.rank == 1 ? [b.shape[0], 1] : b.shape
        let m = aShape[aShape.count - 2], k = aShape.last!, n = bShape.last!
        let aBatch = Array(aShape.dropLast(2)), bBatch = Array(bShape.dropLast(2))
        let rank = max(aBatch.count, bBatch.count)
        var batch = [Int](repeating: 1, count: rank)
        for d in 0..<rank {
            let da = d < rank - aBatch.count ? 1 : aBatch[d - (rank - aBatch.count)]
            let db = d < rank - bBatch.count ? 1 : bBatch[d - (rank - bBatch.count)]
            batch[d] = max(da, db)
        }
        let av = a.floats, bv = b.floats
        let count = Tensor.elementCount(of: batch)
        var y = [Float](repeating: 0, count: count * m * n)
        for t in 0..<count {
            let index = unravel(t, batch)
            let aBase = broadcastOffset(index, in: aBatch) * m * k
            let bBase = broadcastOffset(index, in: bBatch) * k * n
            for i in 0..<m {
                for j in 0..<n {
                    var sum = 0.0
                    for p in 0..<k { sum += Double(av[aBase + i * k + p]) * Double(bv[bBase + p * n + j]) }
                    y[(t * m + i) * n + j] = Float(sum)
                }
            }
        }
        var shape = batch
        if a.rank > 1 { shape.append(m) }
        if b.rank > 1 { shape.append(n) }
        return Tensor(shape: shape, floats: y)
    }

    /// Direct convolution over 1 or 2 spatial dimensions.
    public static func conv(_ x: Tensor, weight: Tensor, bias: Tensor? = nil, channelScale: Tensor? = nil,
                            channelShift: Tensor? = nil, group: Int = 1, strides: [Int], dilations: [Int], padsBegin: [Int], padsEnd: [Int],
                            activation: Activation = .none) -> Tensor {
        let spatial = x.rank - 2
        // View 1-D as 2-D with a height of 1.
        let (h, w) = spatial == 1 ? (1, x.shape[2]) : (x.shape[2], x.shape[3])
        let (kh, kw) = spatial == 1 ? (1, weight.shape[2]) : (weight.shape[2], weight.shape[3])
        let (sh, sw) = spatial == 1 ? (1, strides[0]) : (strides[0], strides[1])
        let (dh, dw) = spatial == 1 ? (1, dilations[0]) : (dilations[0], dilations[1])
        let (ph, pw) = spatial == 1 ? (0, padsBegin[0]) : (padsBegin[0], padsBegin[1])
        let (phEnd, pwEnd) = spatial == 1 ? (0, padsEnd[0]) : (padsEnd[0], padsEnd[1])
        let oh = (h + ph + phEnd - ((kh - 1) * dh + 1)) / sh + 1
        let ow = (w + pw + pwEnd - ((kw - 1) * dw + 1)) / sw + 1
        let batch = x.shape[0], cin = x.shape[1], cout = weight.shape[0]
        let cg = cin / group, mg = cout / group
        let xv = x.floats, wv = weight.floats
        let bv = bias?.floats, sv = channelScale?.floats, hv = channelShift?.floats
        var y = [Float](repeating: 0, count: batch * cout * oh * ow)
        for n in 0..<batch {
            for m in 0..<cout {
                let g = m / mg
                for i in 0..<oh {
                    for j in 0..<ow {
                        var sum = 0.0
                        for c in 0..<cg {
                            for a in 0..<kh {
                                for b in 0..<kw {
                                    let ih = i * sh - ph + a * dh
                                    let iw = j * sw - pw + b * dw
                                    if ih < 0 || ih >= h || iw < 0 || iw >= w { continue }
                                    let xi = ((n * cin + g * cg + c) * h + ih) * w + iw
                                    let wi = ((m * cg + c) * kh + a) * kw + b
                                    sum += Double(xv[xi]) * Double(wv[wi])
                                }
                            }
                        }
                        let v = (sum + Double(bv?[m] ?? 0)) * Double(sv?[m] ?? 1) + Double(hv?[m] ?? 0)
                        y[((n * cout + m) * oh + i) * ow + j] = activation(Float(v))
                    }
                }
            }
        }
        let outSpatial = spatial == 1 ? [ow] : [oh, ow]
        return Tensor(shape: [batch, cout] + outSpatial, floats: y)
    }

    /// Visits every output position of a pooling window: `body(plane, outputIndex, taps)` where
    /// `taps` are the in-range input flat offsets within the plane and `padded` counts the taps
    /// inside input + padding.
    private static func pool(_ x: Tensor, kernel: [Int], strides: [Int], dilations: [Int], padsBegin: [Int],
                             padsEnd: [Int], output: [Int], _ reduce: (_ values: [Double], _ padded: Int) -> Double) -> Tensor {
        let spatial = x.rank - 2
        let input = Array(x.shape.dropFirst(2))
        let planes = x.shape[0] * x.shape[1]
        let inPlane = input.reduce(1, *), outPlane = output.reduce(1, *)
        let xv = x.floats
        var y = [Float](repeating: 0, count: planes * outPlane)
        for plane in 0..<planes {
            for o in 0..<outPlane {
                let oi = unravel(o, output)
                var values: [Double] = []
                var padded = 0
                for t in 0..<kernel.reduce(1, *) {
                    let ki = unravel(t, kernel)
                    var inside = true, insidePadded = true
                    var flat = 0
                    for d in 0..<spatial {
                        let pos = oi[d] * strides[d] - padsBegin[d] + ki[d] * dilations[d]
                        if pos < 0 || pos >= input[d] { inside = false }
                        if pos < -padsBegin[d] || pos >= input[d] + padsEnd[d] { insidePadded = false }
                        flat = flat * input[d] + pos
                    }
                    if insidePadded { padded += 1 }
                    if inside { values.append(Double(xv[plane * inPlane + flat])) }
                }
                y[plane * outPlane + o] = Float(reduce(values, padded))
            }
        }
        return Tensor(shape: Array(x.shape.prefix(2)) + output, floats: y)
    }

    public static func maxPool(_ x: Tensor, kernel: [Int], strides: [Int], dilations: [Int], padsBegin: [Int],
                               padsEnd: [Int], output: [Int]) -> Tensor {
        pool(x, kernel: kernel, strides: strides, dilations: dilations, padsBegin: padsBegin, padsEnd: padsEnd,
             output: output) { values, _ in values.max() ?? -Double(Float.greatestFiniteMagnitude) }
    }

    public static func averagePool(_ x: Tensor, kernel: [Int], strides: [Int], dilations: [Int], padsBegin: [Int],
                                   padsEnd: [Int], output: [Int], countIncludePad: Bool) -> Tensor {
        pool(x, kernel: kernel, strides: strides, dilations: dilations, padsBegin: padsBegin, padsEnd: padsEnd,
             output: output) { values, padded in
            let count = countIncludePad ? padded : values.count
            return count == 0 ? 0 : values.reduce(0, +) / Double(count)
        }
    }

    public static func globalAveragePool(_ x: Tensor) -> Tensor {
        let planes = x.shape[0] * x.shape[1]
        let size = x.elementCount / max(planes, 1)
        let xv = x.floats
        var y = [Float](repeating: 0, count: planes)
        for p in 0..<planes {
            var sum = 0.0
            for i in 0..<size { sum += Double(xv[p * size + i]) }
            y[p] = Float(sum / Double(size))
        }
        return Tensor(shape: Array(x.shape.prefix(2)) + Array(repeating: 1, count: x.rank - 2), floats: y)
    }

    /// Elementwise `op` with broadcasting, in Double, for float32 tensors.
    public static func binary(_ op: BinaryOp, _ a: Tensor, _ b: Tensor) -> Tensor {
        let rank = max(a.rank, b.rank)
        let pa = [Int](repeating: 1, count: rank - a.rank) + a.shape
        let pb = [Int](repeating: 1, count: rank - b.rank) + b.shape
        let shape = (0..<rank).map { max(pa[$0], pb[$0]) }
        let av = a.floats, bv = b.floats
        var y = [Float](repeating: 0, count: Tensor.elementCount(of: shape))
        for i in y.indices {
            let index = unravel(i, shape)
            let u = Double(av[broadcastOffset(index, in: pa)]), v = Double(bv[broadcastOffset(index, in: pb)])
            let r: Double
            switch op {
            case .add: r = u + v
            case .sub: r = u - v
            case .mul: r = u * v
            case .div: r = u / v
            case .max: r = Swift.max(u, v)
            case .min: r = Swift.min(u, v)
            }
            y[i] = Float(r)
        }
        return Tensor(shape: shape, floats: y)
    }

    public static func activation(_ activation: Activation, _ x: Tensor) -> Tensor {
        Tensor(shape: x.shape, floats: x.floats.map { activation($0) })
    }

    /// Softmax along `axis`, straight from the definition exp(x) / Σ exp(x), in Double.
    public static func softmax(_ x: Tensor, axis: Int, log: Bool = false) -> Tensor {
        let xv = x.floats
        var y = [Float](repeating: 0, count: xv.count)
        let s = strides(x.shape)
        for i in xv.indices {
            let index = unravel(i, x.shape)
            var sum = 0.0
            for k in 0..<x.shape[axis] {
                sum += Foundation.exp(Double(xv[i + (k - index[axis]) * s[axis]]))
            }
            y[i] = log ? Float(Double(xv[i]) - Foundation.log(sum)) : Float(Foundation.exp(Double(xv[i])) / sum)
        }
        return Tensor(shape: x.shape, floats: y)
    }

    public static func batchNorm(_ x: Tensor, scale: Tensor, bias: Tensor, mean: Tensor, variance: Tensor,
                                 epsilon: Float) -> Tensor {
        let xv = x.floats, sv = scale.floats, bv = bias.floats, mv = mean.floats, vv = variance.floats
        var y = [Float](repeating: 0, count: xv.count)
        for i in xv.indices {
            let c = unravel(i, x.shape)[1]
            let normalized = (Double(xv[i]) - Double(mv[c])) / (Double(vv[c]) + Double(epsilon)).squareRoot()
            y[i] = Float(normalized * Double(sv[c]) + Double(bv[c]))
        }
        return Tensor(shape: x.shape, floats: y)
    }

    public static func transpose(_ x: Tensor, perm: [Int]) -> Tensor {
        let xv = x.floats
        let shape = perm.map { x.shape[$0] }
        let s = strides(x.shape)
        var y = [Float](repeating: 0, count: xv.count)
        for i in y.indices {
            let index = unravel(i, shape)
            var flat = 0
            for d in 0..<perm.count { flat += index[d] * s[perm[d]] }
            y[i] = xv[flat]
        }
        return Tensor(shape: shape, floats: y)
    }
}
