import CKernels

/// The shapes of an ONNX Conv: input N×C×spatial, weight M×(C/group)×kernel.
public struct ConvGeometry: Sendable, Equatable {
    public let batch: Int
    public let inChannels: Int
    public let outChannels: Int
    public let group: Int
    public let window: KernelGeometry

    public init(input: [Int], weight: [Int], group: Int = 1, strides: [Int]? = nil, dilations: [Int]? = nil,
                pads: [Int]? = nil, autoPad: AutoPad = .notSet) throws {
        guard input.count >= 3 else { throw ShapeError("Conv input must be N×C×spatial, got \(input)") }
        guard weight.count == input.count else {
            throw ShapeError("Conv weight \(weight) must have the input's rank \(input.count) (input \(input))")
        }
        guard group >= 1 else { throw ShapeError("Conv group must be positive, got \(group)") }
        guard input[1] == weight[1] * group else {
            throw ShapeError("Conv input has \(input[1]) channels but weight \(weight) with group \(group) expects \(weight[1] * group)")
        }
        guard weight[0] % group == 0 else {
            throw ShapeError("Conv output channels \(weight[0]) are not divisible by group \(group)")
        }
        batch = input[0]
        inChannels = input[1]
        outChannels = weight[0]
        self.group = group
        window = try KernelGeometry(input: Array(input.dropFirst(2)), kernel: Array(weight.dropFirst(2)),
                                    strides: strides, dilations: dilations, pads: pads, autoPad: autoPad)
    }

    public var outputShape: [Int] { [batch, outChannels] + window.output }

    /// Multiply-adds × 2 for the whole batch.
    public var flops: Double {
        let perOutput = Double(inChannels / group) * Double(window.kernel.reduce(1, *))
        return 2 * Double(batch * outChannels) * Double(window.output.reduce(1, *)) * perOutput
    }
}

extension Kernels {
    /// Convolution (1-D or 2-D) by im2col and sgemm, with a fused per-channel epilogue:
    /// `y[n, m] = activation((conv(x, w)[n, m] + bias[m]) · channelScale[m] + channelShift[m])`.
    /// The scale and shift are how a following BatchNormalization is folded in without copying
    /// weights; the operations are those of the unfused nodes in the same order, so fusing does
    /// not change a single bit of the result.
    public static func conv(_ x: Tensor, weight: Tensor, bias: Tensor? = nil, channelScale: Tensor? = nil,
                            channelShift: Tensor? = nil, geometry g: ConvGeometry, activation: Activation = .none,
                            scratch: Scratch, instructions: InstructionLevel? = nil) -> Tensor {
        let out = Tensor(uninitialized: .float32, shape: g.outputShape)
        conv(x, weight: weight, bias: bias, channelScale: channelScale, channelShift: channelShift, geometry: g,
             activation: activation, scratch: scratch, into: out, instructions: instructions)
        return out
    }

    /// The convolution written to `out` (the geometry's output shape). `instructions` picks the
    /// direct kernel's level (for tests); by default it is `sluice_conv1d_level()`.
    public static func conv(_ x: Tensor, weight: Tensor, bias: Tensor? = nil, channelScale: Tensor? = nil,
                            channelShift: Tensor? = nil, geometry g: ConvGeometry, activation: Activation = .none,
                            scratch: Scratch, into out: Tensor, instructions: InstructionLevel? = nil) {
        precondition(x.shape == [g.batch, g.inChannels] + g.window.input, "Conv input \(x.shape) does not match its geometry")
        precondition(weight.shape == [g.outChannels, g.inChannels / g.group] + g.window.kernel, "Conv weight \(weight.shape) does not match its geometry")
        precondition(bias == nil || bias!.elementCount == g.outChannels, "Conv bias must have \(g.outChannels) values")
        precondition(channelScale == nil || channelScale!.elementCount == g.outChannels, "Conv scale must have \(g.outChannels) values")
        precondition(channelShift == nil || channelShift!.elementCount == g.outChannels, "Conv shift must have \(g.outChannels) values")
        precondition(out.shape == g.outputShape, "Conv into \(out.shape), expected \(g.outputShape)")
        if convIsDirect(g) {
            directConv1d(x, weight: weight, bias: bias, channelScale: channelScale, channelShift: channelShift, geometry: g,
                         activation: activation, scratch: scratch, into: out, instructions: instructions)
            return
        }
        if g.window.input.count > 2 {
            convGeneral(x, weight: weight, bias: bias, channelScale: channelScale, channelShift: channelShift,
                        geometry: g, activation: activation, scratch: scratch, into: out)
            return
        }
        let p = g.window.planar
        let cg = g.inChannels / g.group
        let mg = g.outChannels / g.group
        let kdim = cg * p.kh * p.kw
        let inPlane = p.h * p.w
        let outPlane = p.oh * p.ow
        let pointwise = p.kh == 1 && p.kw == 1 && p.sh == 1 && p.sw == 1 && p.ph == 0 && p.pw == 0
            && p.phEnd == 0 && p.pwEnd == 0
        let xp = x.floatPointer, wp = weight.floatPointer, yp = out.mutableFloatPointer
        let bp = bias?.floatPointer, sp = channelScale?.floatPointer, hp = channelShift?.floatPointer
        // Small output planes make thin matrix products, which BLAS runs slowly: unfold several
        // samples side by side so each product has about `convColumnTarget` columns.
        let chunk = max(1, min(g.batch, convColumnTarget / max(outPlane, 1)))

        var n0 = 0
        while n0 < g.batch {
            let count = min(chunk, g.batch - n0)
            let columns = count * outPlane
            if count == 1 {
                // One sample: the product lands in the output, the epilogue works in place.
                let col = pointwise ? nil : scratch.floats(kdim * outPlane)
                for gi in 0..<g.group {
                    let src = xp + (n0 * g.inChannels + gi * cg) * inPlane
                    let unfolded: UnsafePointer<Float>
                    if let col {
                        im2col(src, channels: cg, p, into: col, rowStride: outPlane)
                        unfolded = UnsafePointer(col)
                    } else {
                        unfolded = src
                    }
                    sgemm(transA: false, transB: false, m: mg, n: outPlane, k: kdim,
                          a: wp + gi * mg * kdim, lda: kdim, b: unfolded, ldb: outPlane,
                          c: yp + (n0 * g.outChannels + gi * mg) * outPlane, ldc: outPlane)
                }
                for m in 0..<g.outChannels {
                    let channel = yp + (n0 * g.outChannels + m) * outPlane
                    channelEpilogue(UnsafePointer(channel), into: channel, count: outPlane, bias: bp?[m],
                                    scale: sp?[m], shift: hp?[m], activation: activation)
                }
            } else {
                // Several samples: columns [sample][position], product into scratch, and the
                // epilogue scatters each channel of each sample to its place in the output.
                let buffer = scratch.floats((kdim + mg) * columns)
                let col = buffer, product = buffer + kdim * columns
                for gi in 0..<g.group {
                    for j in 0..<count {
                        im2col(xp + ((n0 + j) * g.inChannels + gi * cg) * inPlane, channels: cg, p,
                               into: col + j * outPlane, rowStride: columns)
                    }
                    sgemm(transA: false, transB: false, m: mg, n: columns, k: kdim,
                          a: wp + gi * mg * kdim, lda: kdim, b: col, ldb: columns, c: product, ldc: columns)
                    for j in 0..<count {
                        for m in 0..<mg {
                            let channel = gi * mg + m
                            channelEpilogue(UnsafePointer(product + m * columns + j * outPlane),
                                            into: yp + ((n0 + j) * g.outChannels + channel) * outPlane, count: outPlane,
                                            bias: bp?[channel], scale: sp?[channel], shift: hp?[channel],
                                            activation: activation)
                        }
                    }
                }
            }
            n0 += count
        }
    }

    /// Whether `conv` runs this geometry through the direct 1-D kernel instead of im2col + sgemm:
    /// the Conv1d that exporters write (group 1, stride 1, dilation 1, any kernel and padding), on
    /// CPUs with AVX2 and FMA. On cnn1d's layers the direct kernel measured 90–110 GFLOP/s where
    /// im2col + OpenBLAS reached 62–71 (im2col copies the input k times and thin products run
    /// below OpenBLAS's peak); the baseline build of the kernel has neither FMA nor 256-bit
    /// vectors, so there OpenBLAS keeps the work.
    public static func convIsDirect(_ g: ConvGeometry) -> Bool {
        let w = g.window
        return w.input.count == 1 && g.group == 1 && w.strides == [1] && w.dilations == [1]
            && FastMath.vectorized
    }

    /// The stride-1 1-D convolution by `sluice_conv1d_at`: each sample's channels are copied once into
    /// rows with their zero padding (a copy of the input, where im2col made k), then every output
    /// channel block × 16 (32 with AVX-512) positions is accumulated in registers, with bias, folded
    /// BatchNormalization and Relu applied before the store. One sample at a time, so that its
    /// padded copy is still in L1 or L2 when the kernel reads it: padding a whole micro-batch of
    /// 32 first left the copy in L3.
    static func directConv1d(_ x: Tensor, weight: Tensor, bias: Tensor?, channelScale: Tensor?, channelShift: Tensor?,
                             geometry g: ConvGeometry, activation: Activation, scratch: Scratch, into out: Tensor,
                             instructions: InstructionLevel?) {
        if let instructions { precondition(instructions <= .inUse, "\(instructions) kernels are not in use on this CPU") }
        let level = instructions.map { Int32($0.rawValue) } ?? sluice_conv1d_level()
        let w = g.window
        let (length, positions, kernel, padBegin) = (w.input[0], w.output[0], w.kernel[0], w.padsBegin[0])
        let channels = g.inChannels
        let row = sluice_conv1d_padded_row(positions, kernel)
        let padded = scratch.floats(channels * row)
        let relu = activation == .relu
        let xp = x.floatPointer, yp = out.mutableFloatPointer
        for n in 0..<g.batch {
            for c in 0..<channels {
                let dst = padded + c * row
                dst.update(repeating: 0, count: padBegin)
                (dst + padBegin).update(from: xp + (n * channels + c) * length, count: length)
                (dst + padBegin + length).update(repeating: 0, count: row - padBegin - length)
            }
            sluice_conv1d_at(level, 1, g.outChannels, channels, kernel, positions,
                             weight.floatPointer, padded, row, channels * row, yp + n * g.outChannels * positions,
                             bias?.floatPointer, channelScale?.floatPointer, channelShift?.floatPointer, relu ? 1 : 0)
        }
        if !relu { activation.apply(yp, count: out.elementCount) }
    }

    /// About how many columns a convolution's matrix product gets when samples are batched.
    static let convColumnTarget = 1024

    /// `dst[i] = activation((src[i] + bias) · scale + shift)` in one pass over a channel; `src`
    /// and `dst` may be the same. Absent terms are skipped, not replaced by 0 and 1, and each
    /// operation rounds as it would in the unfused nodes, so results match those bit for bit.
    @inline(__always)
    static func channelEpilogue(_ src: UnsafePointer<Float>, into dst: UnsafeMutablePointer<Float>, count: Int,
                                bias: Float?, scale: Float?, shift: Float?, activation: Activation) {
        let relu = activation == .relu
        switch (bias, scale, shift) {
        case let (b?, s?, h?):
            if relu {
                for i in 0..<count { dst[i] = max((src[i] + b) * s + h, 0) }
                return
            }
            for i in 0..<count { dst[i] = (src[i] + b) * s + h }
        case let (nil, s?, h?):
            if relu {
                for i in 0..<count { dst[i] = max(src[i] * s + h, 0) }
                return
            }
            for i in 0..<count { dst[i] = src[i] * s + h }
        case let (b?, nil, nil):
            if relu {
                for i in 0..<count { dst[i] = max(src[i] + b, 0) }
                return
            }
            for i in 0..<count { dst[i] = src[i] + b }
        default:
            // No terms, or a rare combination: one step at a time.
            if UnsafePointer(dst) != src { dst.update(from: src, count: count) }
            if let bias { for i in 0..<count { dst[i] += bias } }
            if let scale { for i in 0..<count { dst[i] *= scale } }
            if let shift { for i in 0..<count { dst[i] += shift } }
        }
        activation.apply(dst, count: count)
    }

    /// Unfolds `channels` planes into columns: row (c, kh, kw), `rowStride` floats apart, holds
    /// for every output position the input value under that kernel tap (0 in the padding).
    static func im2col(_ src: UnsafePointer<Float>, channels: Int, _ p: KernelGeometry.Planar,
                       into col: UnsafeMutablePointer<Float>, rowStride: Int) {
        for c in 0..<channels {
            let plane = src + c * p.h * p.w
            for kh in 0..<p.kh {
                let offH = kh * p.dh - p.ph
                let (ohLo, ohHi) = KernelGeometry.Planar.validOutputs(offset: offH, stride: p.sh, size: p.h, count: p.oh)
                for kw in 0..<p.kw {
                    let row = col + ((c * p.kh + kh) * p.kw + kw) * rowStride
                    let offW = kw * p.dw - p.pw
                    let (owLo, owHi) = KernelGeometry.Planar.validOutputs(offset: offW, stride: p.sw, size: p.w, count: p.ow)
                    if ohLo > 0 { row.update(repeating: 0, count: ohLo * p.ow) }
                    for oh in ohLo..<ohHi {
                        let dst = row + oh * p.ow
                        let line = plane + (oh * p.sh + offH) * p.w
                        if owLo > 0 { dst.update(repeating: 0, count: owLo) }
                        if p.sw == 1 {
                            (dst + owLo).update(from: line + owLo + offW, count: owHi - owLo)
                        } else {
                            for ow in owLo..<owHi { dst[ow] = line[ow * p.sw + offW] }
                        }
                        if owHi < p.ow { (dst + owHi).update(repeating: 0, count: p.ow - owHi) }
                    }
                    if ohHi < p.oh { (row + ohHi * p.ow).update(repeating: 0, count: (p.oh - ohHi) * p.ow) }
                }
            }
        }
    }
}
