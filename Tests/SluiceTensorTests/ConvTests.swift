import SluiceTensor
import Testing

@Suite struct ConvTests {
    struct Case: CustomStringConvertible {
        var input: [Int], weight: [Int], group: Int, strides: [Int], dilations: [Int], pads: [Int]
        var bias: Bool, scale: Bool, activation: Activation
        var description: String {
            "x\(input) w\(weight) g\(group) s\(strides) d\(dilations) p\(pads) bias=\(bias) scale=\(scale) \(activation)"
        }
    }

    static func randomCase(seed: Int, spatial: Int) -> Case {
        var rng = SeededGenerator(seed: seed)
        // Cycle through plain, grouped and depthwise convolutions.
        let kind = seed % 3
        let group = kind == 0 ? 1 : (kind == 1 ? rng.int(2...3) : rng.int(2...5))
        let cg = kind == 2 ? 1 : rng.int(1...4)
        let mg = kind == 2 ? 1 : rng.int(1...5)
        let batch = rng.int(1...3)
        let size = (0..<spatial).map { _ in rng.int(1...13) }
        let dilations = (0..<spatial).map { _ in seed % 4 == 1 ? rng.int(1...3) : 1 }
        let kernel = (0..<spatial).map { d in rng.int(1...max(1, min(5, (size[d] + 2) / dilations[d]))) }
        let strides = (0..<spatial).map { _ in rng.int(1...3) }
        var pads = (0..<(2 * spatial)).map { _ in seed % 2 == 0 ? rng.int(0...2) : 0 }
        // Make sure the padded input holds at least one window.
        for d in 0..<spatial {
            let span = (kernel[d] - 1) * dilations[d] + 1
            if size[d] + pads[d] + pads[d + spatial] < span { pads[d + spatial] += span - size[d] - pads[d] - pads[d + spatial] }
        }
        let activations: [Activation] = [.none, .relu, .leakyRelu(alpha: 0.1), .clip(min: -0.5, max: 0.5)]
        return Case(input: [batch, cg * group] + size, weight: [mg * group, cg] + kernel, group: group,
                    strides: strides, dilations: dilations, pads: pads, bias: rng.bool(), scale: seed % 5 == 0,
                    activation: activations[seed % activations.count])
    }

    func check(_ c: Case, seed: Int, scratch: Scratch) throws {
        var rng = SeededGenerator(seed: seed * 7 + 1)
        let x = rng.tensor(c.input), w = rng.tensor(c.weight)
        let bias = c.bias ? rng.tensor([c.weight[0]]) : nil
        let scale = c.scale ? rng.tensor([c.weight[0]], in: 0.5...2) : nil
        let shift = c.scale ? rng.tensor([c.weight[0]]) : nil
        let geometry = try ConvGeometry(input: c.input, weight: c.weight, group: c.group, strides: c.strides,
                                        dilations: c.dilations, pads: c.pads)
        let spatial = c.input.count - 2
        let reference = ReferenceKernels.conv(x, weight: w, bias: bias, channelScale: scale, channelShift: shift,
                                              group: c.group,
                                              strides: c.strides, dilations: c.dilations,
                                              padsBegin: Array(c.pads.prefix(spatial)), padsEnd: Array(c.pads.suffix(spatial)),
                                              activation: c.activation)
        // The direct kernel is built for several instruction levels: every one this CPU runs.
        let levels = Kernels.convIsDirect(geometry) ? InstructionLevel.runnable : [.inUse]
        for level in levels {
            let fast = Kernels.conv(x, weight: w, bias: bias, channelScale: scale, channelShift: shift, geometry: geometry,
                                    activation: c.activation, scratch: scratch, instructions: level)
            expectClose(fast, reference, "conv \(c) \(level)")
            if let scale, let shift {
                // Folding a BatchNormalization in gives bit for bit what the two separate kernels give.
                let plain = Kernels.conv(x, weight: w, bias: bias, geometry: geometry, scratch: scratch, instructions: level)
                let separate = Kernels.activation(c.activation,
                                                  Kernels.channelAffine(plain, scale: scale.floats, shift: shift.floats))
                #expect(fast.floats == separate.floats, "conv \(c) \(level): fused epilogue differs from separate kernels")
            }
        }
    }

    @Test(arguments: 0..<40)
    func conv1DMatchesReference(seed: Int) throws {
        try check(Self.randomCase(seed: seed, spatial: 1), seed: seed, scratch: Scratch())
    }

    @Test(arguments: 0..<40)
    func conv2DMatchesReference(seed: Int) throws {
        try check(Self.randomCase(seed: 500 + seed, spatial: 2), seed: seed, scratch: Scratch())
    }

    /// A Conv1d the direct kernel takes (group 1, stride 1, dilation 1), sized to reach its edges:
    /// output channels 1–20 leave every row-block size (1 to 6 rows with AVX2, 1 to 12 with
    /// AVX-512), kernel sizes 3 and 5 take the unrolled taps and the others the general loop,
    /// lengths are rarely a multiple of the 16- or 32-position block, and pads differ on each side.
    static func directCase(seed: Int) -> Case {
        var rng = SeededGenerator(seed: 9000 + seed)
        let kernel = [1, 2, 3, 3, 4, 5, 5, 7][seed % 8]
        let length = rng.int(1...70)
        var pads = [rng.int(0...3), rng.int(0...3)]
        if length + pads[0] + pads[1] < kernel { pads[1] += kernel - length - pads[0] - pads[1] }
        let activations: [Activation] = [.relu, .none, .leakyRelu(alpha: 0.1), .relu, .sigmoid]
        let channels = rng.int(1...19)
        return Case(input: [rng.int(1...4), channels, length], weight: [rng.int(1...20), channels, kernel], group: 1,
                    strides: [1], dilations: [1], pads: pads, bias: rng.bool(), scale: seed % 3 == 0,
                    activation: activations[seed % activations.count])
    }

    @Test(arguments: 0..<60)
    func directConv1DMatchesReference(seed: Int) throws {
        let c = Self.directCase(seed: seed)
        let geometry = try ConvGeometry(input: c.input, weight: c.weight, pads: c.pads)
        #expect(Kernels.convIsDirect(geometry) == FastMath.vectorized, "\(c) should run directly with AVX2")
        try check(c, seed: seed, scratch: Scratch())
    }

    @Test func directConv1DLongAndWide() throws {
        // Longer than one 256-position span (the kernel's outer blocking), more channels than a
        // row block, the cnn1d layers' shapes, and the same scratch reused across them.
        let scratch = Scratch()
        let cases = [
            Case(input: [2, 9, 300], weight: [13, 9, 5], group: 1, strides: [1], dilations: [1], pads: [2, 2],
                 bias: true, scale: true, activation: .relu),
            Case(input: [3, 6, 128], weight: [64, 6, 5], group: 1, strides: [1], dilations: [1], pads: [2, 2],
                 bias: true, scale: true, activation: .relu),
            Case(input: [2, 64, 64], weight: [128, 64, 3], group: 1, strides: [1], dilations: [1], pads: [1, 1],
                 bias: true, scale: false, activation: .relu),
            Case(input: [1, 3, 517], weight: [7, 3, 9], group: 1, strides: [1], dilations: [1], pads: [0, 4],
                 bias: false, scale: false, activation: .none),
        ]
        for (i, c) in cases.enumerated() { try check(c, seed: i, scratch: scratch) }
    }

    @Test func scratchIsReusedAcrossShapes() throws {
        // One scratch serves big and small problems in any order without stale columns leaking in.
        let scratch = Scratch()
        for seed in [3, 11, 4, 20, 8, 3] {
            try check(Self.randomCase(seed: seed, spatial: 2), seed: seed, scratch: scratch)
        }
        let capacity = scratch.capacity
        try check(Self.randomCase(seed: 3, spatial: 2), seed: 3, scratch: scratch)
        #expect(scratch.capacity == capacity)
    }

    @Test func pointwiseAndDepthwiseShapes() throws {
        let cases = [
            Case(input: [2, 6, 1, 9], weight: [4, 6, 1, 1], group: 1, strides: [1, 1], dilations: [1, 1],
                 pads: [0, 0, 0, 0], bias: true, scale: false, activation: .relu),
            Case(input: [1, 8, 7, 7], weight: [8, 1, 3, 3], group: 8, strides: [2, 2], dilations: [1, 1],
                 pads: [1, 1, 1, 1], bias: true, scale: true, activation: .none),
            Case(input: [3, 4, 100], weight: [16, 4, 5], group: 1, strides: [1], dilations: [2],
                 pads: [4, 4], bias: true, scale: false, activation: .relu),
            // 1024 columns hold 3 samples of 300 positions: chunks of 3, 3 and 1.
            Case(input: [7, 3, 300], weight: [4, 3, 3], group: 1, strides: [1], dilations: [1],
                 pads: [1, 1], bias: true, scale: true, activation: .relu),
            // Pointwise over several small samples goes through the batched columns too.
            Case(input: [5, 6, 2, 5], weight: [3, 6, 1, 1], group: 1, strides: [1, 1], dilations: [1, 1],
                 pads: [0, 0, 0, 0], bias: false, scale: false, activation: .sigmoid),
        ]
        for (i, c) in cases.enumerated() { try check(c, seed: i, scratch: Scratch()) }
    }

    @Test func geometryRejectsBadShapes() throws {
        #expect(throws: ShapeError.self) { try ConvGeometry(input: [1, 3, 8], weight: [4, 2, 3]) }
        #expect(throws: ShapeError.self) { try ConvGeometry(input: [1, 4, 8], weight: [3, 2, 3], group: 2) }
        #expect(throws: ShapeError.self) { try ConvGeometry(input: [1, 3, 2], weight: [4, 3, 5]) }
        #expect(throws: ShapeError.self) { try ConvGeometry(input: [1, 3, 4, 4, 4], weight: [4, 3, 1, 1]) }
        // Volumes (3 spatial dimensions) are convolved by the general kernel.
        #expect(try ConvGeometry(input: [1, 3, 4, 4, 4], weight: [4, 3, 1, 1, 1]).outputShape == [1, 4, 4, 4, 4])
    }
}
