/// The shapes of an ONNX Conv: input N×C×spatial, weight M×(C/group)×kernel.
public struct ConvGeometry: Sendable, Equatable {
    public let batch: Int
    public let inChannels: Int
    public let outChannels: Int
    public let group: Int
    public let window: WindowGeometry

    public init(input: [Int], weight: [Int], group: Int = 1, strides: [Int]? = nil, dilations: [Int]? = nil,
                pads: [Int]? = nil, autoPad: AutoPad = .notSet) throws {
        guard input.count >= 3 else { throw ShapeError("Conv input must be N×C×spatial, got \(input)") }
        guard input.count <= 4 else {
            throw ShapeError("Conv with \(input.count - 2) spatial dimensions is not supported (only 1-D and 2-D), input \(input)")
        }
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
        window = try WindowGeometry(input: Array(input.dropFirst(2)), kernel: Array(weight.dropFirst(2)),
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
                            scratch: Scratch) -> Tensor {
        precondition(x.shape == [g.batch, g.inChannels] + g.window.input, "Conv input \(x.shape) does not match its geometry")
        precondition(weight.shape == [g.outChannels, g.inChannels / g.group] + g.window.kernel, "Conv weight \(weight.shape) does not match its geometry")
        precondition(bias == nil || bias!.elementCount == g.outChannels, "Conv bias must have \(g.outChannels) values")
        precondition(channelScale == nil || channelScale!.elementCount == g.outChannels, "Conv scale must have \(g.outChannels) values")
        precondition(channelShift == nil || channelShift!.elementCount == g.outChannels, "Conv shift must have \(g.outChannels) values")
        let out = Tensor(uninitialized: .float32, shape: g.outputShape)
        let p = g.window.planar
        let cg = g.inChannels / g.group
        let mg = g.outChannels / g.group
        let kdim = cg * p.kh * p.kw
        let inPlane = p.h * p.w
        let outPlane = p.oh * p.ow
        let pointwise = p.kh == 1 && p.kw == 1 && p.sh == 1 && p.sw == 1 && p.ph == 0 && p.pw == 0
            && p.phEnd == 0 && p.pwEnd == 0
        let col = pointwise ? nil : scratch.floats(kdim * outPlane)
        let xp = x.floatPointer, wp = weight.floatPointer, yp = out.mutableFloatPointer
        let bp = bias?.floatPointer, sp = channelScale?.floatPointer, hp = channelShift?.floatPointer

        for n in 0..<g.batch {
            for gi in 0..<g.group {
                let src = xp + (n * g.inChannels + gi * cg) * inPlane
                let columns: UnsafePointer<Float>
                if let col {
                    im2col(src, channels: cg, p, into: col)
                    columns = UnsafePointer(col)
                } else {
                    columns = src
                }
                sgemm(transA: false, transB: false, m: mg, n: outPlane, k: kdim,
                      a: wp + gi * mg * kdim, lda: kdim, b: columns, ldb: outPlane,
                      c: yp + (n * g.outChannels + gi * mg) * outPlane, ldc: outPlane)
            }
            for m in 0..<g.outChannels {
                channelEpilogue(yp + (n * g.outChannels + m) * outPlane, count: outPlane, bias: bp?[m],
                                scale: sp?[m], shift: hp?[m], activation: activation)
            }
        }
        return out
    }

    /// `p[i] = activation((p[i] + bias) · scale + shift)` in one pass over a channel. Absent
    /// terms are skipped, not replaced by 0 and 1, and each operation rounds as it would in the
    /// unfused nodes, so results match those bit for bit.
    @inline(__always)
    static func channelEpilogue(_ p: UnsafeMutablePointer<Float>, count: Int, bias: Float?, scale: Float?, shift: Float?,
                                activation: Activation) {
        let relu = activation == .relu
        switch (bias, scale, shift) {
        case let (b?, s?, h?):
            if relu {
                for i in 0..<count { p[i] = max((p[i] + b) * s + h, 0) }
                return
            }
            for i in 0..<count { p[i] = (p[i] + b) * s + h }
        case let (nil, s?, h?):
            if relu {
                for i in 0..<count { p[i] = max(p[i] * s + h, 0) }
                return
            }
            for i in 0..<count { p[i] = p[i] * s + h }
        case let (b?, nil, nil):
            if relu {
                for i in 0..<count { p[i] = max(p[i] + b, 0) }
                return
            }
            for i in 0..<count { p[i] += b }
        default:
            if let bias { for i in 0..<count { p[i] += bias } }
            if let scale { for i in 0..<count { p[i] *= scale } }
            if let shift { for i in 0..<count { p[i] += shift } }
        }
        activation.apply(p, count: count)
    }

    /// Unfolds `channels` planes into columns: row (c, kh, kw) holds, for every output position,
    /// the input value under that kernel tap (0 in the padding).
    static func im2col(_ src: UnsafePointer<Float>, channels: Int, _ p: WindowGeometry.Planar,
                       into col: UnsafeMutablePointer<Float>) {
        let outPlane = p.oh * p.ow
        for c in 0..<channels {
            let plane = src + c * p.h * p.w
            for kh in 0..<p.kh {
                let offH = kh * p.dh - p.ph
                let (ohLo, ohHi) = WindowGeometry.Planar.validOutputs(offset: offH, stride: p.sh, size: p.h, count: p.oh)
                for kw in 0..<p.kw {
                    let row = col + ((c * p.kh + kh) * p.kw + kw) * outPlane
                    let offW = kw * p.dw - p.pw
                    let (owLo, owHi) = WindowGeometry.Planar.validOutputs(offset: offW, stride: p.sw, size: p.w, count: p.ow)
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
