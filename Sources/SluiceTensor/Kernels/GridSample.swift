import Foundation

/// How GridSample reads its input at a grid point: the interpolation, what lies outside the
/// input, and whether the normalized range −1…1 spans the centers of the corner pixels or
/// their outer edges. The definitions follow ONNX (which follows PyTorch's grid_sample).
public struct GridSampling: Sendable, Equatable {
    public enum Mode: Sendable, CaseIterable { case nearest, linear, cubic }
    public enum Padding: Sendable, CaseIterable { case zeros, border, reflection }

    public var mode: Mode
    public var padding: Padding
    public var alignCorners: Bool

    public init(mode: Mode, padding: Padding, alignCorners: Bool) {
        self.mode = mode
        self.padding = padding
        self.alignCorners = alignCorners
    }

    /// The pixel coordinate of normalized coordinate `g` along an axis of `size` pixels.
    func denormalize(_ g: Double, size: Int) -> Double {
        alignCorners ? (g + 1) / 2 * Double(size - 1) : ((g + 1) * Double(size) - 1) / 2
    }

    /// The span reflection mirrors at: the corner pixels' centers, or their outer edges.
    func bounds(size: Int) -> (low: Double, high: Double) {
        alignCorners ? (0, Double(size - 1)) : (-0.5, Double(size) - 0.5)
    }

    /// `x` mirrored at the bounds until it lies between them.
    static func reflect(_ x: Double, low: Double, high: Double) -> Double {
        let span = high - low
        guard span > 0 else { return low }
        guard x < low || x > high else { return x }
        let distance = x < low ? low - x : x - high
        let flips = (distance / span).rounded(.towardZero)
        let rest = distance - flips * span
        // An even number of whole flips leaves us mirrored once at the near bound.
        let nearLow = (x < low) == (flips.truncatingRemainder(dividingBy: 2) == 0)
        return nearLow ? low + rest : high - rest
    }

    /// The coordinate sampled for normalized `g`: rounded half to even for nearest (as PyTorch
    /// does), then brought inside by the padding mode when it falls out.
    func source(_ g: Double, size: Int) -> Double {
        var x = denormalize(g, size: size)
        if mode == .nearest { x = x.rounded(.toNearestOrEven) }
        let (low, high) = bounds(size: size)
        guard x < low || x > high else { return x }
        switch padding {
        case .zeros: return x
        case .border: return Swift.min(Swift.max(x, 0), Double(size - 1))
        case .reflection: return Self.reflect(x, low: low, high: high)
        }
    }

    /// Whether a sampled coordinate can touch the input at all; past this every tap is a zero
    /// (and converting it to a whole position could overflow).
    static func reaches(_ x: Double, size: Int) -> Bool { x.isFinite && abs(x) < Double(size) + 4 }

    /// The pixel that whole position `i` reads, or nil where zero padding reads 0.
    func pixel(_ i: Int, size: Int) -> Int? {
        if i >= 0 && i < size { return i }
        switch padding {
        case .zeros: return nil
        case .border: return Swift.min(Swift.max(i, 0), size - 1)
        case .reflection:
            let (low, high) = bounds(size: size)
            return Int(Self.reflect(Double(i), low: low, high: high))
        }
    }


    /// Most pixels one output reads along one axis.
    public var tapsPerAxis: Int {
        switch mode {
        case .nearest: return 1
        case .linear: return 2
        case .cubic: return 4
        }
    }

    /// The pixels (−1 for a zero) and weights one grid coordinate reads along an axis.
    func taps(_ g: Double, size: Int, pixels: UnsafeMutablePointer<Int>, weights: UnsafeMutablePointer<Float>) {
        let x = source(g, size: size)
        guard Self.reaches(x, size: size) else {
            for k in 0..<tapsPerAxis { pixels[k] = -1; weights[k] = 0 }
            return
        }
        let start = x.rounded(.down), t = x - start
        let first = Int(start)
        switch mode {
        case .nearest:
            pixels[0] = pixel(Int(x), size: size) ?? -1
            weights[0] = 1
        case .linear:
            pixels[0] = pixel(first, size: size) ?? -1
            pixels[1] = pixel(first + 1, size: size) ?? -1
            weights[0] = Float(1 - t)
            weights[1] = Float(t)
        case .cubic:
            let w = Kernels.cubicWeights(t)
            for k in 0..<4 {
                pixels[k] = pixel(first - 1 + k, size: size) ?? -1
                weights[k] = Float(w[k])
            }
        }
    }
}

extension Kernels {
    /// ONNX GridSample over two spatial dimensions: `x` is [N, C, H, W] float32, `grid` is
    /// [N, Hout, Wout, 2] float32 holding (x, y) pairs in −1…1; the result is [N, C, Hout, Wout].
    /// The taps and weights of every output position are worked out once per sample and then
    /// applied to each channel.
    public static func gridSample(_ x: Tensor, grid: Tensor, _ sampling: GridSampling) -> Tensor {
        precondition(x.dtype == .float32 && grid.dtype == .float32 && x.rank == 4 && grid.rank == 4
                     && grid.shape[3] == 2 && grid.shape[0] == x.shape[0], "GridSample of \(x) by \(grid)")
        let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let (outH, outW) = (grid.shape[1], grid.shape[2])
        let positions = outH * outW
        let out = Tensor(uninitialized: .float32, shape: [n, c, outH, outW])
        guard out.elementCount > 0 else { return out }
        let k = sampling.tapsPerAxis
        let xs = UnsafeMutablePointer<Int>.allocate(capacity: positions * k)
        let ys = UnsafeMutablePointer<Int>.allocate(capacity: positions * k)
        let xw = UnsafeMutablePointer<Float>.allocate(capacity: positions * k)
        let yw = UnsafeMutablePointer<Float>.allocate(capacity: positions * k)
        defer { xs.deallocate(); ys.deallocate(); xw.deallocate(); yw.deallocate() }
        let g = grid.floatPointer, src = x.floatPointer, dst = out.mutableFloatPointer
        for sample in 0..<n {
            for p in 0..<positions {
                let point = g + (sample * positions + p) * 2
                sampling.taps(Double(point[0]), size: w, pixels: xs + p * k, weights: xw + p * k)
                sampling.taps(Double(point[1]), size: h, pixels: ys + p * k, weights: yw + p * k)
            }
            for channel in 0..<c {
                let plane = src + (sample * c + channel) * h * w
                let y = dst + (sample * c + channel) * positions
                for p in 0..<positions {
                    var sum: Float = 0
                    for i in 0..<k where ys[p * k + i] >= 0 {
                        let row = plane + ys[p * k + i] * w
                        var across: Float = 0
                        for j in 0..<k where xs[p * k + j] >= 0 { across += xw[p * k + j] * row[xs[p * k + j]] }
                        sum += yw[p * k + i] * across
                    }
                    y[p] = sum
                }
            }
        }
        return out
    }
}

extension ReferenceKernels {
    /// GridSample one output element at a time, as ONNX's definition reads: the coordinate,
    /// then interpolation along the width in each row it needs, then along the height.
    public static func gridSample(_ x: Tensor, grid: Tensor, _ sampling: GridSampling) -> Tensor {
        let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let (outH, outW) = (grid.shape[1], grid.shape[2])
        let xv = x.doubles, gv = grid.doubles
        func value(_ sample: Int, _ channel: Int, _ row: Int?, _ column: Int?) -> Double {
            guard let row, let column else { return 0 }
            return xv[((sample * c + channel) * h + row) * w + column]
        }
        /// Interpolates `read` (a function of whole positions) at coordinate `at`.
        func interpolate(_ at: Double, _ read: (Int) -> Double) -> Double {
            let start = at.rounded(.down), t = at - start, first = Int(start)
            switch sampling.mode {
            case .nearest: return read(Int(at))
            case .linear: return (1 - t) * read(first) + t * read(first + 1)
            case .cubic: return zip(Kernels.cubicWeights(t), (first - 1)...(first + 2)).reduce(0) { $0 + $1.0 * read($1.1) }
            }
        }
        var y = [Double](repeating: 0, count: n * c * outH * outW)
        for sample in 0..<n {
            for channel in 0..<c {
                for i in 0..<outH {
                    for j in 0..<outW {
                        let point = ((sample * outH + i) * outW + j) * 2
                        let sx = sampling.source(gv[point], size: w), sy = sampling.source(gv[point + 1], size: h)
                        guard GridSampling.reaches(sx, size: w) && GridSampling.reaches(sy, size: h) else { continue }
                        y[((sample * c + channel) * outH + i) * outW + j] = interpolate(sy) { row in
                            interpolate(sx) { column in
                                value(sample, channel, sampling.pixel(row, size: h), sampling.pixel(column, size: w))
                            }
                        }
                    }
                }
            }
        }
        return Tensor(shape: [n, c, outH, outW], floats: y.map { Float($0) })
    }
}

extension Kernels {
    /// Keys' cubic convolution weights of the four pixels around fraction `t` (GridSample's
    /// bicubic mode, and Resize's cubic mode with its `cubic_coeff_a`).
    public static func cubicWeights(_ t: Double, a: Double = -0.75) -> [Double] {
        func near(_ d: Double) -> Double { ((a + 2) * d - (a + 3)) * d * d + 1 }
        func far(_ d: Double) -> Double { ((a * d - 5 * a) * d + 8 * a) * d - 4 * a }
        return [far(t + 1), near(t), near(1 - t), far((1 - t) + 1)]
    }
}
