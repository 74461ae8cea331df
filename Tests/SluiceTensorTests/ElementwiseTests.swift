import SluiceTensor
import Testing

@Suite struct ElementwiseTests {
    @Test(arguments: 0..<48)
    func binaryBroadcastMatchesReference(seed: Int) {
        var rng = SeededGenerator(seed: seed)
        let pairs: [([Int], [Int])] = [
            ([3, 4], [3, 4]), ([3, 4], [4]), ([3, 4], [3, 1]), ([2, 3, 4], [1]), ([], [5]), ([2, 1, 4], [3, 1]),
            ([5, 1, 7], [1, 6, 1]), ([2, 3, 4, 5], [3, 1, 5]), ([1], [1]), ([4, 1], [1, 4]), ([2, 3, 1, 1], [2, 3, 5, 6]),
            ([7, 1, 3], [7, 2, 3]),
        ]
        let (sa, sb) = pairs[seed % pairs.count]
        let (a, b) = seed % 2 == 0 ? (rng.tensor(sa), rng.tensor(sb)) : (rng.tensor(sb), rng.tensor(sa))
        let op = BinaryOp.allCases[seed % BinaryOp.allCases.count]
        // Keep divisors away from zero.
        let divisor = op == .div ? Tensor(shape: b.shape, floats: b.floats.map { $0 >= 0 ? $0 + 0.5 : $0 - 0.5 }) : b
        expectClose(Kernels.binary(op, a, divisor), ReferenceKernels.binary(op, a, divisor), "\(op) \(a.shape) \(b.shape)")
    }

    @Test func integerArithmeticNeverTraps() {
        let a = Tensor(shape: [4], int64s: [7, -7, Int64.min, Int64.max])
        let b = Tensor(shape: [4], int64s: [2, 0, -1, 1])
        #expect(Kernels.binary(.div, a, b).int64s == [3, 0, Int64.min, Int64.max])
        #expect(Kernels.binary(.add, a, b).int64s == [9, -7, Int64.min &- 1, Int64.max &+ 1])
        #expect(Kernels.binary(.mul, Tensor(shape: [1], int64s: [3]), Tensor(shape: [2, 1], int64s: [2, 5])).int64s == [6, 15])
    }

    @Test func broadcastShapeErrors() throws {
        #expect(throws: ShapeError.self) { try Shapes.broadcast([3, 4], [5]) }
        #expect(try Shapes.broadcast([2, 1, 4], [3, 1]) == [2, 3, 4])
    }

    @Test(arguments: [Activation.relu, .leakyRelu(alpha: 0.2), .clip(min: -0.3, max: 0.7), .sigmoid, .tanh])
    func activationsMatchReference(activation: Activation) {
        var rng = SeededGenerator(seed: 5)
        let x = rng.tensor([3, 37], in: -30...30)
        expectClose(Kernels.activation(activation, x), ReferenceKernels.activation(activation, x), "\(activation)")
        // In place on the same memory gives the same answer.
        let y = Tensor(shape: x.shape, floats: x.floats)
        y.withUnsafeMutableBufferPointer(as: Float.self) { activation.apply($0.baseAddress!, count: $0.count) }
        expectClose(y, ReferenceKernels.activation(activation, x), "\(activation) in place")
    }

    @Test func sigmoidDoesNotOverflow() {
        let y = Kernels.activation(.sigmoid, Tensor(shape: [4], floats: [-1000, -90, 90, 1000])).floats
        #expect(y[0] == 0 && y[3] == 1 && y.allSatisfy { !$0.isNaN })
    }
}
