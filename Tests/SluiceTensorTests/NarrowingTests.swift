import SluiceTensor
import Testing

/// The link narrowing kernels against Swift's own conversions, at every instruction level the
/// CPU runs (F16C and the portable conversion must agree bit for bit).
@Suite struct NarrowingTests {
    /// Ties, the edges of the half range, subnormals, zeros, infinities and random values.
    static func values() -> [Float] {
        var values: [Float] = [0, -0, 1, -1, 65504, 65519.99, 65520, -65520, 1e9, -1e9, .infinity, -.infinity,
                               Float(bitPattern: 0x3880_0000), Float(bitPattern: 0x387F_FFFF), Float(bitPattern: 0x3300_0000),
                               Float(bitPattern: 0x3300_0001), Float(bitPattern: 0x32FF_FFFF), 5.9604645e-8, 2.9802322e-8,
                               1.0009765625 + 0.00048828125, 1 + 0.00048828125 * 3, .leastNonzeroMagnitude, .greatestFiniteMagnitude]
        var rng = SeededGenerator(seed: 5)
        for _ in 0..<4000 { values.append(Float(bitPattern: UInt32.random(in: 0...UInt32.max, using: &rng))) }
        for _ in 0..<4000 { values.append(Float.random(in: -70000...70000, using: &rng)) }
        for _ in 0..<4000 { values.append(Float.random(in: -1e-4...1e-4, using: &rng)) }
        return values.filter { !$0.isNaN }
    }

    @Test(arguments: InstructionLevel.runnable)
    func halfPrecisionMatchesSwiftsConversion(level: InstructionLevel) {
        let x = Self.values()
        let expected = ReferenceKernels.toHalf(x)
        var halves = [UInt16](repeating: 0, count: x.count)
        var back = [Float](repeating: 0, count: x.count)
        InstructionLevel.capped(at: level) {
            Narrowing.toHalf(x, &halves, count: x.count)
            Narrowing.fromHalf(halves, &back, count: x.count)
        }
        let mismatches = x.indices.filter { halves[$0] != expected[$0] }
        #expect(mismatches.isEmpty, "\(level): \(mismatches.prefix(5).map { "\(x[$0]) -> \(halves[$0]), Swift says \(expected[$0])" })")
        let widened = ReferenceKernels.fromHalf(expected)
        let widenedAlike = x.indices.allSatisfy { back[$0].bitPattern == widened[$0].bitPattern }
        #expect(widenedAlike, "\(level)")
    }

    @Test(arguments: InstructionLevel.runnable)
    func halfPrecisionKeepsNaNs(level: InstructionLevel) {
        let x: [Float] = [.nan, -.nan, .signalingNaN, Float(bitPattern: 0x7FC0_1234)] + Array(repeating: Float.nan, count: 12)
        var halves = [UInt16](repeating: 0, count: x.count)
        var back = [Float](repeating: 0, count: x.count)
        InstructionLevel.capped(at: level) {
            Narrowing.toHalf(x, &halves, count: x.count)
            Narrowing.fromHalf(halves, &back, count: x.count)
        }
        let allNaN = back.allSatisfy { $0.isNaN }
        #expect(allNaN, "\(level): \(halves)")
    }

    @Test func int8MatchesReference() {
        var rng = SeededGenerator(seed: 9)
        for trial in 0..<50 {
            let count = Int.random(in: 1...300, using: &rng)
            let spread = Float.random(in: 1e-3...1e3, using: &rng)
            var x = (0..<count).map { _ in Float.random(in: -spread...spread, using: &rng) }
            if trial == 0 { x = Array(repeating: 0, count: count) }
            let largest = Narrowing.maximumMagnitude(x, count: count)
            #expect(largest == x.map(abs).max())
            var narrowed = [Int8](repeating: 0, count: count)
            Narrowing.toInt8(x, &narrowed, count: count, maximumMagnitude: largest)
            #expect(narrowed == ReferenceKernels.toInt8(x, maximumMagnitude: largest), "trial \(trial)")
            let scale = Narrowing.int8Scale(maximumMagnitude: largest)
            var back = [Float](repeating: 0, count: count)
            Narrowing.fromInt8(narrowed, &back, count: count, scale: scale)
            #expect(back == ReferenceKernels.fromInt8(narrowed, scale: scale))
            // Each value comes back within half a step of the scale.
            #expect(zip(x, back).allSatisfy { abs($0 - $1) <= scale * 0.5001 + 1e-30 }, "trial \(trial)")
        }
    }

    /// What narrowing cost, measured on the narrowed values, equals the sums over a widened copy.
    @Test(arguments: InstructionLevel.runnable)
    func errorsAddUpAsOverAWidenedCopy(level: InstructionLevel) {
        var rng = SeededGenerator(seed: 13)
        let x = (0..<1000).map { _ in Float.random(in: -50...50, using: &rng) }
        func sums(_ back: [Float]) -> (Double, Double) {
            (zip(x, back).reduce(0) { $0 + (Double($1.0) - Double($1.1)) * (Double($1.0) - Double($1.1)) },
             x.reduce(0) { $0 + Double($1) * Double($1) })
        }
        let halves = ReferenceKernels.toHalf(x)
        var error = 1.0, norm = 2.0
        InstructionLevel.capped(at: level) {
            Narrowing.accumulateHalfError(exact: x, halves: halves, count: x.count, error: &error, norm: &norm)
        }
        let half = sums(ReferenceKernels.fromHalf(halves))
        #expect(abs(error - 1 - half.0) <= 1e-9 * half.0 && abs(norm - 2 - half.1) <= 1e-9 * half.1, "\(level)")
        let largest = x.map(abs).max() ?? 0
        let scale = Narrowing.int8Scale(maximumMagnitude: largest)
        let narrowed = ReferenceKernels.toInt8(x, maximumMagnitude: largest)
        error = 0
        norm = 0
        Narrowing.accumulateInt8Error(exact: x, narrowed: narrowed, count: x.count, scale: scale, error: &error, norm: &norm)
        let quarter = sums(ReferenceKernels.fromInt8(narrowed, scale: scale))
        #expect(abs(error - quarter.0) <= 1e-9 * quarter.0 && abs(norm - quarter.1) <= 1e-9 * quarter.1)
    }
}
