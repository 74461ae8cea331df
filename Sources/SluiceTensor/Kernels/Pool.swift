import CKernels

extension Kernels {
    /// Validates an N×C×spatial pooling input against its window geometry.
    private static func checkPoolInput(_ x: Tensor, _ window: KernelGeometry, _ name: String) {
        precondition(x.dtype == .float32, "\(name) of a \(x.dtype) tensor")
        precondition(x.rank == window.input.count + 2 && Array(x.shape.dropFirst(2)) == window.input,
                     "\(name) input \(x.shape) does not match its window over \(window.input)")
        precondition(window.input.count <= 2, "\(name) supports 1-D and 2-D windows")
    }

    /// Max pooling over 1-D or 2-D windows; padding never wins.
    public static func maxPool(_ x: Tensor, window: KernelGeometry) -> Tensor {
        let out = Tensor(uninitialized: .float32, shape: Array(x.shape.prefix(2)) + window.output)
        maxPool(x, window: window, into: out)
        return out
    }

    /// maxPool written to `out` (N×C×output).
    public static func maxPool(_ x: Tensor, window: KernelGeometry, into out: Tensor) {
        checkPoolInput(x, window, "MaxPool")
        precondition(out.shape == Array(x.shape.prefix(2)) + window.output, "maxPool into \(out)")
        let p = window.planar
        let planes = x.shape[0] * x.shape[1]
        let xp = x.floatPointer, yp = out.mutableFloatPointer
        if p.ph == 0 && p.pw == 0 && (p.oh - 1) * p.sh + (p.kh - 1) * p.dh < p.h && (p.ow - 1) * p.sw + (p.kw - 1) * p.dw < p.w {
            // Every window lies inside the input: no tap ranges to compute.
            for plane in 0..<planes {
                let src = xp + plane * p.h * p.w, dst = yp + plane * p.oh * p.ow
                for oh in 0..<p.oh {
                    let row = dst + oh * p.ow
                    let top = src + oh * p.sh * p.w
                    for ow in 0..<p.ow { row[ow] = top[ow * p.sw] }
                    for kh in 0..<p.kh {
                        let line = top + kh * p.dh * p.w
                        for kw in 0..<p.kw where kh > 0 || kw > 0 {
                            let tap = line + kw * p.dw
                            // Vector selects, not branches: on real activations the comparison
                            // goes either way at random, and the mispredictions of a scalar loop
                            // made max pooling a tenth of cnn1d's time.
                            sluice_max_into(row, tap, p.sw, p.ow)
                        }
                    }
                }
            }
            return
        }
        for plane in 0..<planes {
            let src = xp + plane * p.h * p.w
            let dst = yp + plane * p.oh * p.ow
            for oh in 0..<p.oh {
                let (khLo, khHi) = tapRange(start: oh * p.sh - p.ph, dilation: p.dh, kernel: p.kh, size: p.h)
                for ow in 0..<p.ow {
                    let start = ow * p.sw - p.pw
                    let (kwLo, kwHi) = tapRange(start: start, dilation: p.dw, kernel: p.kw, size: p.w)
                    var best = -Float.greatestFiniteMagnitude
                    for kh in khLo..<khHi {
                        let base = (oh * p.sh - p.ph + kh * p.dh) * p.w + start
                        for kw in kwLo..<kwHi { best = max(best, src[base + kw * p.dw]) }
                    }
                    dst[oh * p.ow + ow] = best
                }
            }
        }
    }

    /// Average pooling over 1-D or 2-D windows. With `countIncludePad` the divisor counts the
    /// taps that fall in the padding too (but not those past it, in ceil mode).
    public static func averagePool(_ x: Tensor, window: KernelGeometry, countIncludePad: Bool) -> Tensor {
        let out = Tensor(uninitialized: .float32, shape: Array(x.shape.prefix(2)) + window.output)
        averagePool(x, window: window, countIncludePad: countIncludePad, into: out)
        return out
    }

    /// averagePool written to `out` (N×C×output).
    public static func averagePool(_ x: Tensor, window: KernelGeometry, countIncludePad: Bool, into out: Tensor) {
        checkPoolInput(x, window, "AveragePool")
        precondition(out.shape == Array(x.shape.prefix(2)) + window.output, "averagePool into \(out)")
        let p = window.planar
        let planes = x.shape[0] * x.shape[1]
        let xp = x.floatPointer, yp = out.mutableFloatPointer
        for plane in 0..<planes {
            let src = xp + plane * p.h * p.w
            let dst = yp + plane * p.oh * p.ow
            for oh in 0..<p.oh {
                let startH = oh * p.sh - p.ph
                let (khLo, khHi) = tapRange(start: startH, dilation: p.dh, kernel: p.kh, size: p.h)
                let paddedH = tapRange(start: startH + p.ph, dilation: p.dh, kernel: p.kh, size: p.h + p.ph + p.phEnd)
                for ow in 0..<p.ow {
                    let start = ow * p.sw - p.pw
                    let (kwLo, kwHi) = tapRange(start: start, dilation: p.dw, kernel: p.kw, size: p.w)
                    var sum: Float = 0
                    for kh in khLo..<khHi {
                        let base = (startH + kh * p.dh) * p.w + start
                        for kw in kwLo..<kwHi { sum += src[base + kw * p.dw] }
                    }
                    let count: Int
                    if countIncludePad {
                        let paddedW = tapRange(start: start + p.pw, dilation: p.dw, kernel: p.kw, size: p.w + p.pw + p.pwEnd)
                        count = (paddedH.1 - paddedH.0) * (paddedW.1 - paddedW.0)
                    } else {
                        count = (khHi - khLo) * (kwHi - kwLo)
                    }
                    dst[oh * p.ow + ow] = count > 0 ? sum / Float(count) : 0
                }
            }
        }
    }

    /// The kernel taps `lo..<hi` of a window starting at `start` that land in `0..<size`.
    @inline(__always)
    static func tapRange(start: Int, dilation: Int, kernel: Int, size: Int) -> (Int, Int) {
        let lo = start >= 0 ? 0 : (-start + dilation - 1) / dilation
        let last = size - 1 - start
        let hi = last < 0 ? 0 : min(kernel, last / dilation + 1)
        return (min(lo, hi), hi)
    }

    /// The mean of every N×C plane: N×C×spatial → N×C×1×…×1.
    public static func globalAveragePool(_ x: Tensor) -> Tensor {
        globalPool(x) { p, count in
            var sum: Float = 0
            for i in 0..<count { sum += p[i] }
            return count > 0 ? sum / Float(count) : 0
        }
    }

    /// The maximum of every N×C plane: N×C×spatial → N×C×1×…×1.
    public static func globalMaxPool(_ x: Tensor) -> Tensor {
        globalPool(x) { p, count in
            var best = -Float.greatestFiniteMagnitude
            for i in 0..<count { best = max(best, p[i]) }
            return best
        }
    }

    /// Global average or max pooling written to `out` (N×C×1×…×1).
    public static func globalPool(_ x: Tensor, average: Bool, into out: Tensor) {
        if average {
            globalPool(x, into: out) { p, count in
                var sum: Float = 0
                for i in 0..<count { sum += p[i] }
                return count > 0 ? sum / Float(count) : 0
            }
        } else {
            globalPool(x, into: out) { p, count in
                var best = -Float.greatestFiniteMagnitude
                for i in 0..<count { best = max(best, p[i]) }
                return best
            }
        }
    }

    @inline(__always)
    private static func globalPool(_ x: Tensor, _ reduce: (UnsafePointer<Float>, Int) -> Float) -> Tensor {
        let out = Tensor(uninitialized: .float32, shape: Array(x.shape.prefix(2)) + Array(repeating: 1, count: x.rank - 2))
        globalPool(x, into: out, reduce)
        return out
    }

    @inline(__always)
    private static func globalPool(_ x: Tensor, into out: Tensor, _ reduce: (UnsafePointer<Float>, Int) -> Float) {
        precondition(x.rank >= 3 && x.dtype == .float32, "global pooling needs a float N×C×spatial tensor, got \(x)")
        let planes = x.shape[0] * x.shape[1]
        precondition(out.elementCount == planes, "global pooling of \(x) into \(out)")
        let size = Tensor.elementCount(of: Array(x.shape.dropFirst(2)))
        let xp = x.floatPointer, yp = out.mutableFloatPointer
        for plane in 0..<planes { yp[plane] = reduce(xp + plane * size, size) }
    }
}
