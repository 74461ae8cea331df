import SluiceTensor
import Testing

@Suite struct SoftmaxBatchNormTests {
    @Test(arguments: 0..<20)
    func softmaxMatchesReferenceOnEveryAxis(seed: Int) {
        var rng = SeededGenerator(seed: seed)
        let rank = rng.int(1...4)
        let shape = (0..<rank).map { _ in rng.int(1...7) }
        let x = rng.tensor(shape, in: -20...20)
        for axis in 0..<rank {
            for log in [false, true] {
                expectClose(Kernels.softmax(x, axis: axis, log: log), ReferenceKernels.softmax(x, axis: axis, log: log),
                            "softmax \(shape) axis \(axis) log \(log)")
            }
        }
    }

    @Test func softmaxIsStableForLargeInputs() {
        let x = Tensor(shape: [1, 3], floats: [1000, 1001, 1002])
        let y = Kernels.softmax(x, axis: 1).floats
        #expect(y.allSatisfy { $0.isFinite })
        #expect(abs(y.reduce(0, +) - 1) < 1e-6)
        #expect(abs(y[2] - 0.66524096) < 1e-6)
    }

    @Test(arguments: [[2, 3], [2, 4, 5], [1, 3, 4, 4], [3, 2, 1, 5]])
    func batchNormMatchesReference(shape: [Int]) {
        var rng = SeededGenerator(seed: shape.count)
        let c = shape[1]
        let x = rng.tensor(shape), scale = rng.tensor([c]), bias = rng.tensor([c]), mean = rng.tensor([c])
        let variance = rng.tensor([c], in: 0.1...2)
        expectClose(Kernels.batchNorm(x, scale: scale, bias: bias, mean: mean, variance: variance, epsilon: 1e-5),
                    ReferenceKernels.batchNorm(x, scale: scale, bias: bias, mean: mean, variance: variance, epsilon: 1e-5),
                    "batchNorm \(shape)")
    }
}

@Suite struct AxisTests {
    @Test func negativeAxesCountFromTheEnd() throws {
        #expect(try Shapes.axis(-1, rank: 3) == 2)
        #expect(try Shapes.axis(-3, rank: 3) == 0)
        #expect(throws: ShapeError.self) { try Shapes.axis(3, rank: 3) }
        #expect(throws: ShapeError.self) { try Shapes.axis(-4, rank: 3) }
        // Flatten's axis may also be the rank itself; −1 still means the last dimension.
        #expect(try Shapes.axis(3, rank: 3, inclusive: true) == 3)
        #expect(try Shapes.axis(-1, rank: 3, inclusive: true) == 2)
        #expect(throws: ShapeError.self) { try Shapes.axis(-4, rank: 3, inclusive: true) }
    }

    @Test func logSoftmaxKeepsPrecisionForLargeInputs() {
        let x = Tensor(shape: [1, 4], floats: [10000, 10001, 10002, 10003])
        let y = Kernels.softmax(x, axis: 1, log: true).floats
        let expected: [Float] = [-3.4401896, -2.4401896, -1.4401897, -0.44018966]
        for (a, b) in zip(y, expected) { #expect(abs(a - b) < 1e-6) }
    }
}
