import SluiceTensor
import Testing

@Suite struct PoolTests {
    static func randomWindow(seed: Int, spatial: Int) throws -> (x: [Int], window: KernelGeometry, pads: [Int]) {
        var rng = SeededGenerator(seed: seed)
        let size = (0..<spatial).map { _ in rng.int(1...12) }
        let kernel = (0..<spatial).map { d in rng.int(1...min(4, size[d] + 1)) }
        let strides = (0..<spatial).map { _ in rng.int(1...3) }
        let dilations = (0..<spatial).map { _ in seed % 3 == 2 ? rng.int(1...2) : 1 }
        // Pads smaller than the kernel, as ONNX requires for pooling.
        var pads = (0..<(2 * spatial)).map { i in seed % 2 == 0 ? rng.int(0...(kernel[i % spatial] - 1)) : 0 }
        for d in 0..<spatial {
            let span = (kernel[d] - 1) * dilations[d] + 1
            if size[d] + pads[d] + pads[d + spatial] < span { pads[d + spatial] += span - size[d] - pads[d] - pads[d + spatial] }
        }
        let window = try KernelGeometry(input: size, kernel: kernel, strides: strides, dilations: dilations, pads: pads,
                                        ceilMode: seed % 4 == 3)
        return ([rng.int(1...2), rng.int(1...3)] + size, window, pads)
    }

    @Test(arguments: 0..<60)
    func maxPoolMatchesReference(seed: Int) throws {
        let (shape, w, _) = try Self.randomWindow(seed: seed, spatial: seed % 2 + 1)
        var rng = SeededGenerator(seed: seed + 77)
        let x = rng.tensor(shape)
        let reference = ReferenceKernels.maxPool(x, kernel: w.kernel, strides: w.strides, dilations: w.dilations,
                                                 padsBegin: w.padsBegin, padsEnd: w.padsEnd, output: w.output)
        expectClose(Kernels.maxPool(x, window: w), reference, tolerance: 0, "maxPool \(shape) \(w)")
    }

    @Test func maxPoolVectorRows() throws {
        // Rows long enough for the eight-wide pairs of the stride-2 path and its scalar tail, and
        // other strides beside it; a NaN anywhere in a window wins.
        for (i, (length, kernel, stride)) in [(128, 2, 2), (37, 2, 2), (130, 3, 2), (64, 2, 1), (50, 3, 3)].enumerated() {
            let w = try KernelGeometry(input: [length], kernel: [kernel], strides: [stride])
            var rng = SeededGenerator(seed: 40 + i)
            let x = rng.tensor([2, 3, length])
            let reference = ReferenceKernels.maxPool(x, kernel: w.kernel, strides: w.strides, dilations: w.dilations,
                                                     padsBegin: w.padsBegin, padsEnd: w.padsEnd, output: w.output)
            expectClose(Kernels.maxPool(x, window: w), reference, tolerance: 0, "maxPool \(x.shape) \(w)")
            var values = x.floats
            let poisoned = length + 2 * stride + 1
            values[poisoned] = .nan
            let pooled = Kernels.maxPool(Tensor(shape: x.shape, floats: values), window: w).floats
            let window = (poisoned - length) / stride
            #expect(pooled[w.output[0] + window].isNaN, "maxPool \(x.shape) \(w): NaN lost")
        }
    }

    @Test(arguments: 0..<60)
    func averagePoolMatchesReference(seed: Int) throws {
        let (shape, w, _) = try Self.randomWindow(seed: 300 + seed, spatial: seed % 2 + 1)
        var rng = SeededGenerator(seed: seed + 78)
        let x = rng.tensor(shape)
        for include in [false, true] {
            let reference = ReferenceKernels.averagePool(x, kernel: w.kernel, strides: w.strides, dilations: w.dilations,
                                                         padsBegin: w.padsBegin, padsEnd: w.padsEnd, output: w.output,
                                                         countIncludePad: include)
            expectClose(Kernels.averagePool(x, window: w, countIncludePad: include), reference,
                        "averagePool \(shape) \(w) countIncludePad=\(include)")
        }
    }

    @Test(arguments: [[2, 3, 17], [1, 5, 4, 6], [3, 1, 1, 1], [2, 2, 3, 1, 2]])
    func globalAveragePoolMatchesReference(shape: [Int]) {
        var rng = SeededGenerator(seed: shape.reduce(0, +))
        let x = rng.tensor(shape)
        expectClose(Kernels.globalAveragePool(x), ReferenceKernels.globalAveragePool(x), "globalAveragePool \(shape)")
        let maxima = Kernels.globalMaxPool(x)
        #expect(maxima.shape == Array(shape.prefix(2)) + Array(repeating: 1, count: shape.count - 2))
        let plane = x.elementCount / (shape[0] * shape[1])
        for p in 0..<(shape[0] * shape[1]) {
            #expect(maxima.floats[p] == x.floats[(p * plane)..<((p + 1) * plane)].max())
        }
    }

    @Test func maxPoolKnownValues() throws {
        // 1×1×4×4 ramp, 2×2 windows with stride 2.
        let x = Tensor(shape: [1, 1, 4, 4], floats: (0..<16).map(Float.init))
        let y = Kernels.maxPool(x, window: try KernelGeometry(input: [4, 4], kernel: [2, 2], strides: [2, 2]))
        #expect(y.shape == [1, 1, 2, 2] && y.floats == [5, 7, 13, 15])
    }
}
