import SluiceTensor
import Testing

/// A small deterministic generator (SplitMix64) so that every random case can be replayed by seed.
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64
    init(seed: Int) { state = UInt64(truncatingIfNeeded: seed) &+ 0x9E37_79B9_7F4A_7C15 }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func int(_ range: ClosedRange<Int>) -> Int { Int.random(in: range, using: &self) }
    mutating func bool() -> Bool { Bool.random(using: &self) }

    mutating func tensor(_ shape: [Int], in range: ClosedRange<Float> = -1...1) -> Tensor {
        Tensor(shape: shape, floats: (0..<Tensor.elementCount(of: shape)).map { _ in Float.random(in: range, using: &self) })
    }
}

/// max |a − b| / max(1, |b|) over all elements; infinity when the shapes differ.
func maxRelativeError(_ a: Tensor, _ b: Tensor) -> Float {
    guard a.shape == b.shape else { return .infinity }
    var worst: Float = 0
    for (x, y) in zip(a.floats, b.floats) {
        if x.isNaN != y.isNaN { return .infinity }
        if x.isNaN { continue }
        worst = max(worst, abs(x - y) / max(1, abs(y)))
    }
    return worst
}

/// Expects the fast result to match the reference within `tolerance`, naming the case.
func expectClose(_ fast: Tensor, _ reference: Tensor, tolerance: Float = 1e-4, _ context: String,
                 sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(fast.shape == reference.shape, "\(context): shape \(fast.shape) vs reference \(reference.shape)",
            sourceLocation: sourceLocation)
    let error = maxRelativeError(fast, reference)
    #expect(error <= tolerance, "\(context): max relative error \(error)", sourceLocation: sourceLocation)
}
