import Foundation
import SluiceTensor
import Testing

/// The kernels added for ONNX op coverage against their plain reference twins.
@Suite struct KernelTwinTests {
    static let unaryOps: [UnaryOp] = [
        .abs, .neg, .exp, .log, .sqrt, .reciprocal, .floor, .ceil, .round, .sign, .erf, .sin, .cos, .tan, .asin, .acos,
        .atan, .sinh, .cosh, .asinh, .acosh, .atanh, .softplus, .softsign, .mish, .elu(alpha: 0.7),
        .selu(alpha: 1.6, gamma: 1.05), .celu(alpha: 0.9), .hardSigmoid(alpha: 0.2, beta: 0.5), .hardSwish,
        .thresholdedRelu(alpha: 0.3), .shrink(bias: 0.1, lambda: 0.4), .gelu(tanh: false), .gelu(tanh: true),
    ]

    @Test(arguments: unaryOps)
    func unaryMatchesReference(op: UnaryOp) {
        var rng = SeededGenerator(seed: 11)
        // Inside every function's domain: (0, 1) suits log, sqrt, asin, acos, atanh; acosh needs ≥ 1.
        let range: ClosedRange<Float> = op == .acosh ? 1...4 : ([.log, .sqrt, .asin, .acos, .atanh, .reciprocal].contains(op) ? 0.05...0.95 : -4...4)
        let x = rng.tensor([5, 33], in: range)
        expectClose(Kernels.unary(op, x), ReferenceKernels.unary(op, x), "\(op)")
    }

    @Test(arguments: 0..<40)
    func reductionsMatchReference(seed: Int) {
        var rng = SeededGenerator(seed: seed)
        let rank = rng.int(1...4)
        let shape = (0..<rank).map { _ in rng.int(1...6) }
        let axes = (0..<rank).filter { _ in rng.bool() }
        let chosen = axes.isEmpty ? [rng.int(0...(rank - 1))] : axes
        let op = ReduceOp.allCases[seed % ReduceOp.allCases.count]
        let x = rng.tensor(shape, in: op == .logSum ? 0.1...2 : -2...2)
        let keep = rng.bool()
        expectClose(Kernels.reduce(op, x, axes: chosen, keepDims: keep), ReferenceKernels.reduce(op, x, axes: chosen, keepDims: keep),
                    "\(op) of \(shape) over \(chosen)")
    }

    @Test(arguments: [(3, 7), (1, 64), (16, 33), (4, 1)])
    func layerNormMatchesReference(rows: Int, columns: Int) {
        var rng = SeededGenerator(seed: rows * 100 + columns)
        let x = rng.tensor([rows, columns], in: -3...5)
        let scale = rng.tensor([columns]), bias = rng.tensor([columns])
        let (y, _, _) = Kernels.layerNorm(x, scale: scale, bias: bias, axis: 1, epsilon: 1e-5)
        expectClose(y, ReferenceKernels.layerNorm(x, scale: scale, bias: bias, axis: 1, epsilon: 1e-5), "\(rows)×\(columns)")
    }

    static let cells: [RecurrentCell.Kind] = [.rnn, .gru(linearBeforeReset: true), .gru(linearBeforeReset: false), .lstm]

    @Test(arguments: cells, [false, true])
    func recurrentMatchesReference(kind: RecurrentCell.Kind, reverse: Bool) {
        var rng = SeededGenerator(seed: reverse ? 3 : 4)
        let (steps, batch, input, hidden) = (5, 3, 4, 6)
        let activations: [RecurrentActivation]
        switch kind {
        case .rnn: activations = [.tanh]
        case .gru: activations = [.sigmoid, .tanh]
        case .lstm: activations = [.sigmoid, .tanh, .tanh]
        }
        let cell = RecurrentCell(kind: kind, hidden: hidden, activations: activations, clip: nil)
        let g = cell.gates
        let x = rng.tensor([steps, batch, input]), w = rng.tensor([g * hidden, input]), r = rng.tensor([g * hidden, hidden])
        let bias = rng.tensor([2 * g * hidden]), h0 = rng.tensor([batch, hidden])
        let peepholes = kind == .lstm ? rng.tensor([3 * hidden]) : nil
        let y = Tensor(zeros: .float32, shape: [steps, batch, hidden])
        let yh = Tensor(zeros: .float32, shape: [batch, hidden])
        let buffers = RecurrentCell.Buffers(x: x.floatData, w: w.floatData, r: r.floatData, bias: bias.floatData,
                                            peepholes: peepholes?.floatData, initialH: h0.floatData, initialC: nil,
                                            y: y.mutableFloatData, yStepStride: batch * hidden, yh: yh.mutableFloatData, yc: nil)
        cell.run(buffers, steps: steps, batch: batch, inputSize: input, reverse: reverse, lengths: nil, scratch: Scratch())
        let (ry, rh) = ReferenceKernels.recurrent(cell, x: x, w: w, r: r, bias: bias, peepholes: peepholes, initialH: h0, reverse: reverse)
        expectClose(y, ry, "\(kind) Y")
        expectClose(yh, rh, "\(kind) Y_h")
    }

    @Test func compareLogicAndSelectBroadcast() throws {
        let a = Tensor(shape: [2, 3], floats: [1, 2, 3, 4, 5, 6])
        let b = Tensor(shape: [3], floats: [2, 2, 7])
        #expect(try Kernels.compare(.greater, a, b).truthValues == [false, false, false, true, true, false])
        #expect(try Kernels.compare(.equal, a, b).truthValues == [false, true, false, false, false, false])
        let mask = try Kernels.compare(.lessOrEqual, a, b)
        #expect(try Kernels.logic(.xor, mask, Tensor(shape: [1], bools: [true])).truthValues == [false, false, false, true, true, false])
        #expect(try Kernels.select(mask, a, Tensor(shape: [], floats: [0])).floats == [1, 2, 3, 0, 0, 6])
    }

    /// The vectorized exp, erf, tanh, logistic and Gelu functions against libm over their
    /// whole range (lengths that are not multiples of the vector width included).
    @Test func fastMathMatchesLibm() {
        typealias Function = (UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int) -> Void
        func check(_ name: String, _ f: Function, _ reference: (Double) -> Double, _ range: ClosedRange<Float>,
                   relative: Bool, tolerance: Double) {
            var worst = 0.0
            let count = 200_003
            var x = [Float](repeating: 0, count: count)
            for i in 0..<count { x[i] = range.lowerBound + (range.upperBound - range.lowerBound) * Float(i) / Float(count - 1) }
            var y = [Float](repeating: 0, count: count)
            x.withUnsafeBufferPointer { src in
                y.withUnsafeMutableBufferPointer { dst in f(src.baseAddress!, dst.baseAddress!, count) }
            }
            for i in 0..<count {
                let expected = reference(Double(x[i]))
                let error = abs(Double(y[i]) - expected) / (relative ? max(abs(expected), 1e-30) : 1)
                worst = max(worst, error)
            }
            #expect(worst < tolerance, "\(name): worst error \(worst)")
        }
        check("exp", { FastMath.exp($0, $1, count: $2) }, Foundation.exp, -87...88, relative: true, tolerance: 3e-7)
        check("erf", { FastMath.erf($0, $1, count: $2) }, Foundation.erf, -9...9, relative: false, tolerance: 1e-6)
        check("tanh", { FastMath.tanh($0, $1, count: $2) }, Foundation.tanh, -12...12, relative: false, tolerance: 1e-6)
        check("sigmoid", { FastMath.sigmoid($0, $1, count: $2) }, { 1 / (1 + Foundation.exp(-$0)) }, -30...30,
              relative: false, tolerance: 1e-6)
        check("gelu", { FastMath.gelu($0, $1, count: $2) }, { 0.5 * $0 * (1 + Foundation.erf($0 / 2.0.squareRoot())) }, -8...8,
              relative: false, tolerance: 4e-6)
        var special: [Float] = [.nan, .infinity, -.infinity, 0, 1, -1, 100, -100, 3]
        special.withUnsafeMutableBufferPointer { FastMath.exp($0.baseAddress!, $0.baseAddress!, count: $0.count) }
        #expect(special[0].isNaN && special[1] == .infinity && special[2] < 1e-37 && special[3] == 1)
    }

    /// Products with a packed right-hand side against the plain reference, over row counts,
    /// depths and widths that leave partial row chunks and partial 16-column panels.
    @Test(arguments: [(1, 300, 5), (2, 257, 16), (3, 260, 33), (8, 512, 40), (13, 300, 17), (33, 256, 64), (70, 270, 18)])
    func packedProductsMatchReference(m: Int, k: Int, n: Int) {
        var rng = SeededGenerator(seed: m * 1000 + n)
        let a = rng.tensor([m, k]), b = rng.tensor([k, n]), bias = rng.tensor([n])
        let packed = Kernels.packColumns(b)
        let out = Tensor(zeros: .float32, shape: [m, n])
        Kernels.linear(a, packed: packed, k: k, n: n, bias: bias, activation: .relu, into: out)
        let expected = ReferenceKernels.gemm(a, b, c: bias.reshaped([1, n]), activation: .relu)
        expectClose(out, expected, "linear \(m)×\(k)×\(n)")
        let c = rng.tensor([m, 1])
        let gemmOut = Tensor(zeros: .float32, shape: [m, n])
        Kernels.gemm(a, packed: packed, k: k, n: n, c: c, transA: false, alpha: 0.5, beta: 2, activation: .none, into: gemmOut)
        expectClose(gemmOut, ReferenceKernels.gemm(a, b, c: c, alpha: 0.5, beta: 2), "gemm \(m)×\(k)×\(n)")
        // Every instruction level this CPU runs, not only the best one, with C added in and not.
        let addend = rng.tensor([m, n])
        for level in InstructionLevel.runnable {
            for c in [nil, addend] {
                let out = Tensor(zeros: .float32, shape: [m, n])
                Kernels.gemm(a, packed: packed, k: k, n: n, c: c, transA: false, alpha: 0.5, beta: 1, activation: .none,
                             into: out, instructions: level)
                expectClose(out, ReferenceKernels.gemm(a, b, c: c, alpha: 0.5, beta: 1),
                            "\(level) packed \(m)×\(k)×\(n) with C: \(c != nil)")
            }
        }
    }

    static let samplings = GridSampling.Mode.allCases.flatMap { mode in
        GridSampling.Padding.allCases.flatMap { padding in
            [false, true].map { GridSampling(mode: mode, padding: padding, alignCorners: $0) }
        }
    }

    /// Grid points reaching past the input on every side, so each padding mode does its part.
    @Test(arguments: samplings)
    func gridSampleMatchesReference(sampling: GridSampling) {
        var rng = SeededGenerator(seed: 21)
        let x = rng.tensor([2, 3, 5, 4], in: -2...2)
        let grid = rng.tensor([2, 6, 7, 2], in: -2.5...2.5)
        expectClose(Kernels.gridSample(x, grid: grid, sampling), ReferenceKernels.gridSample(x, grid: grid, sampling), "\(sampling)")
    }

    /// Values from ONNX's reference implementation (onnx.reference, GridSample) for X = [[1, 2, 3],
    /// [4, 5, 6]] at six points, inside and outside, per mode, padding and align_corners.
    @Test func gridSamplePaddingModesMatchONNX() {
        let x = Tensor(shape: [1, 1, 2, 3], floats: [1, 2, 3, 4, 5, 6])
        let points: [(Float, Float)] = [(-1.5, -1.2), (-1, -0.4), (-0.2, 0.3), (0.5, 1), (1.3, 1.7), (2.9, -2.6)]
        let grid = Tensor(shape: [1, 1, 6, 2], floats: points.flatMap { [$0.0, $0.1] })
        let expected: [(GridSampling.Mode, GridSampling.Padding, Bool, [Float])] = [
            (.nearest, .zeros, false, [0, 1, 5, 0, 0, 0]), (.nearest, .zeros, true, [1, 1, 5, 6, 6, 0]),
            (.nearest, .border, false, [1, 1, 5, 6, 6, 3]), (.nearest, .reflection, false, [1, 1, 5, 6, 6, 4]),
            (.linear, .zeros, false, [0, 0.65, 4.1, 2.875, 0, 0]), (.linear, .zeros, true, [0.45, 1.9, 3.75, 5.5, 2.73, 0]),
            (.linear, .border, false, [1, 1.3, 4.1, 5.75, 6, 3]), (.linear, .border, true, [1, 1.9, 3.75, 5.5, 6, 3]),
            (.linear, .reflection, false, [1.25, 1.3, 4.1, 5.75, 5.4, 4]), (.linear, .reflection, true, [1.8, 1.9, 3.75, 5.5, 4.65, 3.5]),
            (.cubic, .zeros, false, [-0.01448, 0.5668, 4.74737, 3.53162, -0.02282, 0]),
            (.cubic, .zeros, true, [0.28181, 2.13625, 4.44086, 6.15625, 3.19915, -0.00308]),
            (.cubic, .border, false, [1, 1.15225, 4.08275, 6.08984, 6, 3]), (.cubic, .border, true, [1, 1.837, 3.72919, 5.59375, 6, 3]),
            (.cubic, .reflection, false, [0.71891, 1.0585, 4.08275, 6.37109, 5.50763, 4.03188]),
            (.cubic, .reflection, true, [1.3965, 1.648, 3.85875, 5.6875, 5.03325, 3.7025]),
        ]
        for (mode, padding, align, values) in expected {
            let sampling = GridSampling(mode: mode, padding: padding, alignCorners: align)
            let want = Tensor(shape: [1, 1, 1, 6], floats: values)
            expectClose(Kernels.gridSample(x, grid: grid, sampling), want, tolerance: 2e-5, "\(sampling)")
            expectClose(ReferenceKernels.gridSample(x, grid: grid, sampling), want, tolerance: 2e-5, "reference \(sampling)")
        }
    }

    @Test func gridSampleFarOutsideOrNaNReadsZeros() {
        let x = Tensor(shape: [1, 1, 2, 2], floats: [1, 2, 3, 4])
        let grid = Tensor(shape: [1, 1, 3, 2], floats: [1e30, 0, .nan, 0, -.infinity, 0.5])
        for mode in GridSampling.Mode.allCases {
            let y = Kernels.gridSample(x, grid: grid, GridSampling(mode: mode, padding: .zeros, alignCorners: false))
            #expect(y.floats == [0, 0, 0], "\(mode)")
        }
        let border = Kernels.gridSample(x, grid: Tensor(shape: [1, 1, 1, 2], floats: [1e30, -1e30]),
                                        GridSampling(mode: .linear, padding: .border, alignCorners: true))
        #expect(border.floats == [2])
    }
}

/// Where over random broadcasts (a mask [N, 1, T, T] against [N, H, T, T], scalars, rows)
/// agrees with the offset-table reference.
@Test(arguments: 0..<30)
func selectAgreesWithItsReference(seed: Int) throws {
    var g = SeededGenerator(seed: seed)
    func next(_ n: Int) -> Int { g.int(0...(n - 1)) }
    let rank = 1 + next(4)
    let full = (0..<rank).map { _ in 1 + next(4) }
    func operand() -> [Int] {
        let dropped = next(rank + 1)
        return full.dropFirst(dropped).map { next(3) == 0 ? 1 : $0 }
    }
    let (cShape, xShape, yShape) = (operand(), operand(), operand())
    let condition = Tensor(shape: cShape, bools: (0..<Tensor.elementCount(of: cShape)).map { _ in next(2) == 0 })
    let x = Tensor(shape: xShape, floats: (0..<Tensor.elementCount(of: xShape)).map { _ in Float(next(100)) })
    let y = Tensor(shape: yShape, floats: (0..<Tensor.elementCount(of: yShape)).map { _ in -Float(next(100)) })
    let fast = try Kernels.select(condition, x, y), reference = try ReferenceKernels.select(condition, x, y)
    #expect(fast.shape == reference.shape && fast.floats == reference.floats, "\(cShape) \(xShape) \(yShape)")
}

