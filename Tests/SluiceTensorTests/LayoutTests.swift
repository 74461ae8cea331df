import SluiceTensor
import Testing

@Suite struct LayoutTests {
    @Test(arguments: 0..<16)
    func transposeMatchesReference(seed: Int) {
        var rng = SeededGenerator(seed: seed)
        let rank = rng.int(1...5)
        let shape = (0..<rank).map { _ in rng.int(1...5) }
        let perm = Array(0..<rank).shuffled(using: &rng)
        let x = rng.tensor(shape)
        expectClose(Kernels.transpose(x, perm: perm), ReferenceKernels.transpose(x, perm: perm), tolerance: 0,
                    "transpose \(shape) \(perm)")
    }

    @Test func transposeInt64() {
        let x = Tensor(shape: [2, 3], int64s: [1, 2, 3, 4, 5, 6])
        let y = Kernels.transpose(x, perm: [1, 0])
        #expect(y.shape == [3, 2] && y.int64s == [1, 4, 2, 5, 3, 6])
    }

    @Test func concatAlongEachAxis() throws {
        let a = Tensor(shape: [2, 2], floats: [1, 2, 3, 4])
        let b = Tensor(shape: [2, 1], floats: [5, 6])
        #expect(Kernels.concat([a, b], axis: 1).floats == [1, 2, 5, 3, 4, 6])
        let c = Tensor(shape: [1, 2], floats: [7, 8])
        #expect(Kernels.concat([a, c], axis: 0).floats == [1, 2, 3, 4, 7, 8])
        #expect(throws: ShapeError.self) { try Kernels.concatShape([[2, 2], [3, 1]], axis: 1) }
    }

    @Test func gatherWithNegativeAndOutOfRangeIndices() throws {
        let data = Tensor(shape: [3, 2], floats: [1, 2, 3, 4, 5, 6])
        let rows = try Kernels.gather(data, indices: Tensor(shape: [2], int64s: [2, -3]), axis: 0)
        #expect(rows.shape == [2, 2] && rows.floats == [5, 6, 1, 2])
        let scalar = try Kernels.gather(data, indices: Tensor(shape: [], int64s: [1]), axis: 1)
        #expect(scalar.shape == [3] && scalar.floats == [2, 4, 6])
        #expect(throws: ShapeError.self) { try Kernels.gather(data, indices: Tensor(shape: [1], int64s: [3]), axis: 0) }
    }

    @Test func castConvertsLikeONNX() {
        let x = Tensor(shape: [5], floats: [1.7, -1.7, .nan, 3e20, 0])
        #expect(Kernels.cast(x, to: .int64).int64s == [1, -1, 0, Int64.max, 0])
        let back = Kernels.cast(Tensor(shape: [2], int64s: [3, -4]), to: .float32)
        #expect(back.floats == [3, -4])
        let flags = Kernels.cast(x, to: .bool)
        flags.withUnsafeBufferPointer(as: UInt8.self) { #expect(Array($0) == [1, 1, 1, 1, 0]) }
        let half = Kernels.cast(Tensor(shape: [4], floats: [1, -2.5, 65504, 1e-7]), to: .float16)
        #expect(Kernels.cast(half, to: .float32).floats == [1, -2.5, 65504, Float(1.1920929e-7)])
    }

    @Test func castCoversTheWiderIntegerTypes() {
        let big = Tensor(dtype: .uint64, shape: [3], int64Values: [Int64(bitPattern: UInt64.max), 1 << 40, 7])
        #expect(Kernels.cast(big, to: .float64).doubles == [18446744073709551615.0, 1099511627776, 7])
        // Narrowing wraps, as between the narrower types.
        #expect(Kernels.cast(big, to: .uint16).int64Values == [65535, 0, 7])
        #expect(Kernels.cast(big, to: .int16).int64Values == [-1, 0, 7])
        #expect(Kernels.cast(Tensor(shape: [2], int64s: [-1, 70000]), to: .uint32).int64Values == [4294967295, 70000])
        // Floats past Int64.max still fit uint64; negative ones saturate at 0.
        let wide = Kernels.cast(Tensor(dtype: .float64, shape: [3], doubles: [1.5e19, -3, 2.9]), to: .uint64)
        wide.withUnsafeBufferPointer(as: UInt64.self) { #expect(Array($0) == [15_000_000_000_000_000_000, 0, 2]) }
    }

    @Test func castToBFloat16TruncatesAndKeepsNaN() {
        let x = Tensor(shape: [5], floats: [Float(bitPattern: 0x3EF5_EEB0), -2.5, .infinity, .nan, Float(bitPattern: 0x7F80_0001)])
        let b = Kernels.cast(x, to: .bfloat16)
        b.withUnsafeBufferPointer(as: UInt16.self) { #expect(Array($0[0..<3]) == [0x3EF5, 0xC020, 0x7F80]) }
        let back = Kernels.cast(b, to: .float32).floats
        #expect(back[0] == Float(bitPattern: 0x3EF5_0000) && back[1] == -2.5 && back[2] == .infinity)
        // A NaN whose payload lies in the dropped bits must not turn into infinity.
        #expect(back[3].isNaN && back[4].isNaN)
    }
}
