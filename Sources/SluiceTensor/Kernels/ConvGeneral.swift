/// Convolution, transposed convolution and pooling over any number of spatial dimensions
/// (3-D volumes and up), and pooling with argmax indices: straightforward index maps, since
/// the 1-D and 2-D kernels cover what sensor models run.
extension KernelGeometry {
    /// For spatial dimension `d`: for each kernel tap and output position, the input position
    /// read (−1 in the padding). `taps[t][o]`.
    func tapMap(_ d: Int) -> [[Int]] {
        (0..<kernel[d]).map { t in
            (0..<output[d]).map { o in
                let i = o * strides[d] + t * dilations[d] - padsBegin[d]
                return i >= 0 && i < input[d] ? i : -1
            }
        }
    }
}

/// Calls `body` for every multi-index of `shape` in row-major order with its flat position.
@inline(__always)
func forEachPosition(_ shape: [Int], _ body: ([Int], Int) -> Void) {
    let total = Tensor.elementCount(of: shape)
    guard total > 0 else { return }
    var index = [Int](repeating: 0, count: shape.count)
    for flat in 0..<total {
        body(index, flat)
        var d = shape.count - 1
        while d >= 0 {
            index[d] += 1
            if index[d] < shape[d] { break }
            index[d] = 0
            d -= 1
        }
    }
}

extension Kernels {
    /// Unfolds `channels` volumes into columns for any number of spatial dimensions: row
    /// (c, taps…), column (output positions…).
    static func im2colGeneral(_ src: UnsafePointer<Float>, channels: Int, _ w: KernelGeometry,
                              into col: UnsafeMutablePointer<Float>) {
        let maps = (0..<w.input.count).map { w.tapMap($0) }
        let inStrides = Shapes.strides(w.input)
        let inPlane = Tensor.elementCount(of: w.input)
        let outPlane = Tensor.elementCount(of: w.output)
        // For each tap tuple, the input offset of each output position (−1 for padding).
        var offsets = [Int](repeating: 0, count: outPlane)
        var row = 0
        for c in 0..<channels {
            let plane = src + c * inPlane
            forEachPosition(w.kernel) { tap, _ in
                forEachPosition(w.output) { o, flat in
                    var off = 0
                    for d in 0..<o.count {
                        let i = maps[d][tap[d]][o[d]]
                        if i < 0 { off = -1; break }
                        off += i * inStrides[d]
                    }
                    offsets[flat] = off
                }
                let dst = col + row * outPlane
                for j in 0..<outPlane { dst[j] = offsets[j] < 0 ? 0 : plane[offsets[j]] }
                row += 1
            }
        }
    }

    /// Convolution for any number of spatial dimensions, one sample at a time (im2col + sgemm).
    static func convGeneral(_ x: Tensor, weight: Tensor, bias: Tensor?, channelScale: Tensor?, channelShift: Tensor?,
                            geometry g: ConvGeometry, activation: Activation, scratch: Scratch, into out: Tensor) {
        let w = g.window
        let cg = g.inChannels / g.group, mg = g.outChannels / g.group
        let kdim = cg * Tensor.elementCount(of: w.kernel)
        let inPlane = Tensor.elementCount(of: w.input), outPlane = Tensor.elementCount(of: w.output)
        let col = scratch.floats(kdim * outPlane)
        let xp = x.floatPointer, wp = weight.floatPointer, yp = out.mutableFloatPointer
        for n in 0..<g.batch {
            for gi in 0..<g.group {
                im2colGeneral(xp + (n * g.inChannels + gi * cg) * inPlane, channels: cg, w, into: col)
                sgemm(transA: false, transB: false, m: mg, n: outPlane, k: kdim, a: wp + gi * mg * kdim, lda: kdim,
                      b: col, ldb: outPlane, c: yp + (n * g.outChannels + gi * mg) * outPlane, ldc: outPlane)
            }
            for m in 0..<g.outChannels {
                let channel = yp + (n * g.outChannels + m) * outPlane
                channelEpilogue(UnsafePointer(channel), into: channel, count: outPlane, bias: bias?.floatPointer[m],
                                scale: channelScale?.floatPointer[m], shift: channelShift?.floatPointer[m], activation: activation)
            }
        }
    }

    /// ONNX ConvTranspose for any number of spatial dimensions: X [N, C, in…], W [C, M/group,
    /// k…]; each input value spreads over the output through the kernel (sgemm then col2im).
    /// `padsBegin` are the pads at the start of each dimension; the output size is given.
    public static func convTranspose(_ x: Tensor, weight: Tensor, bias: Tensor?, group: Int, strides: [Int],
                                     dilations: [Int], padsBegin: [Int], outputSpatial: [Int], scratch: Scratch) -> Tensor {
        let spatial = Array(x.shape.dropFirst(2))
        let kernel = Array(weight.shape.dropFirst(2))
        let (batch, channels) = (x.shape[0], x.shape[1])
        let cg = channels / group, mg = weight.shape[1], outChannels = mg * group
        let taps = Tensor.elementCount(of: kernel)
        let inPlane = Tensor.elementCount(of: spatial), outPlane = Tensor.elementCount(of: outputSpatial)
        let out = Tensor(zeros: .float32, shape: [batch, outChannels] + outputSpatial)
        let col = scratch.floats(mg * taps * inPlane)
        let xp = x.floatPointer, wp = weight.floatPointer, yp = out.mutableFloatPointer
        let outStrides = Shapes.strides(outputSpatial)
        // For each (tap, input position), the output offset it lands on (−1 outside).
        var landing = [Int](repeating: -1, count: taps * inPlane)
        var tapIndex = 0
        forEachPosition(kernel) { tap, _ in
            forEachPosition(spatial) { i, flat in
                var off = 0
                for d in 0..<i.count {
                    let o = i[d] * strides[d] + tap[d] * dilations[d] - padsBegin[d]
                    if o < 0 || o >= outputSpatial[d] { off = -1; break }
                    off += o * outStrides[d]
                }
                landing[tapIndex * inPlane + flat] = off
            }
            tapIndex += 1
        }
        for n in 0..<batch {
            for gi in 0..<group {
                // col[m·taps + t, i] = Σ_c W[c, m, t] · X[c, i] over this group's channels.
                sgemm(transA: true, transB: false, m: mg * taps, n: inPlane, k: cg,
                      a: wp + gi * cg * mg * taps, lda: mg * taps,
                      b: xp + (n * channels + gi * cg) * inPlane, ldb: inPlane, c: col, ldc: inPlane)
                for m in 0..<mg {
                    let dst = yp + (n * outChannels + gi * mg + m) * outPlane
                    for t in 0..<taps {
                        let src = col + (m * taps + t) * inPlane
                        let land = t * inPlane
                        for i in 0..<inPlane where landing[land + i] >= 0 { dst[landing[land + i]] += src[i] }
                    }
                }
            }
            if let bias {
                let b = bias.floatPointer
                for m in 0..<outChannels {
                    let dst = yp + (n * outChannels + m) * outPlane
                    for j in 0..<outPlane { dst[j] += b[m] }
                }
            }
        }
        return out
    }

    /// Max or average pooling over any number of spatial dimensions and any numeric dtype; for
    /// max, also the flat index of each maximum in N×C×spatial, the spatial part row-major or
    /// column-major.
    public static func poolGeneral(_ x: Tensor, window w: KernelGeometry, average: Bool, countIncludePad: Bool,
                                   columnMajorIndices: Bool = false)
        -> (Tensor, indices: Tensor) {
        let planes = x.shape[0] * x.shape[1]
        let inPlane = Tensor.elementCount(of: w.input), outPlane = Tensor.elementCount(of: w.output)
        let v = x.doubles
        var y = [Double](repeating: 0, count: planes * outPlane)
        var indices = [Int64](repeating: 0, count: planes * outPlane)
        let inStrides = Shapes.strides(w.input)
        let rank = w.input.count
        var windows: [(taps: [Int], padded: Int)] = []
        forEachPosition(w.output) { o, _ in
            var taps: [Int] = []
            var padded = 1
            for d in 0..<rank {
                // Taps within the padded extent count for count_include_pad.
                let start = o[d] * w.strides[d] - w.padsBegin[d]
                var inside = 0
                for t in 0..<w.kernel[d] {
                    let p = start + t * w.dilations[d]
                    if p >= -w.padsBegin[d] && p < w.input[d] + w.padsEnd[d] { inside += 1 }
                }
                padded *= inside
            }
            forEachPosition(w.kernel) { tap, _ in
                var off = 0
                for d in 0..<rank {
                    let i = o[d] * w.strides[d] + tap[d] * w.dilations[d] - w.padsBegin[d]
                    if i < 0 || i >= w.input[d] { off = -1; break }
                    off += i * inStrides[d]
                }
                if off >= 0 { taps.append(off) }
            }
            windows.append((taps, padded))
        }
        for p in 0..<planes {
            let base = p * inPlane
            for (j, window) in windows.enumerated() {
                if average {
                    let sum = window.taps.reduce(0) { $0 + v[base + $1] }
                    let count = countIncludePad ? window.padded : window.taps.count
                    y[p * outPlane + j] = count > 0 ? sum / Double(count) : 0
                } else {
                    var best = -Double.infinity, bestIndex = window.taps.first ?? 0
                    for t in window.taps where v[base + t] > best {
                        best = v[base + t]
                        bestIndex = t
                    }
                    y[p * outPlane + j] = best
                    var position = bestIndex
                    if columnMajorIndices {
                        // Unravel row-major, ravel column-major.
                        var rest = bestIndex, flat = 0, step = 1
                        var coordinates = [Int](repeating: 0, count: rank)
                        for d in stride(from: rank - 1, through: 0, by: -1) { coordinates[d] = rest % w.input[d]; rest /= w.input[d] }
                        for d in 0..<rank { flat += coordinates[d] * step; step *= w.input[d] }
                        position = flat
                    }
                    indices[p * outPlane + j] = Int64(base + position)
                }
            }
        }
        let shape = Array(x.shape.prefix(2)) + w.output
        return (Tensor(dtype: x.dtype, shape: shape, doubles: y), Tensor(shape: shape, int64s: indices))
    }
}
