import CKernels

/// Matrix products with a constant right-hand side (the weights of Gemm and MatMul layers)
/// stored once in 16-column panels, each [K][16] and contiguous, so that every panel streams
/// through the cache once, sequentially, for all rows of the left-hand side.
///
/// Measured on one core of this project's machines (K = N = 1024): OpenBLAS's sgemm reaches 5,
/// 18, 32 and 63 GFLOP/s at M = 1, 4, 8 and 32 rows; the packed kernel (AVX2 + FMA, picked at
/// run time) 44, 84, 95 and 100. With AVX2, small-K products (K < 256) stay with OpenBLAS, which
/// is as fast or faster there. On CPUs with AVX-512 the kernel uses 16-float vectors and 12-row
/// tiles (see kernels_avx512.h), except for single rows, which memory bandwidth bounds either
/// way; there it also wins from K = 64: a 4-layer transformer of width 64 (every dense layer
/// K = 64 or 128) went from 0.98 to 1.03-1.06 of onnxruntime at batch 8 and 32.
extension Kernels {
    /// Weights with at least this many rows (K) are packed.
    public static var packedMinimumDepth: Int { sluice_kernels_level() >= 2 ? 64 : 256 }

    /// B [K, N] as 16-column panels: a float tensor [⌈N/16⌉, K, 16], the last panel zero-padded.
    public static func packColumns(_ b: Tensor) -> Tensor {
        precondition(b.rank == 2 && b.dtype == .float32, "packing needs a 2-D float matrix, got \(b)")
        let (k, n) = (b.shape[0], b.shape[1])
        let packed = Tensor(uninitialized: .float32, shape: [(n + 15) / 16, k, 16])
        sluice_pack_b(k, n, b.floatPointer, n, packed.mutableFloatPointer)
        return packed
    }

    /// `c = alpha · a · B (+ c when accumulating)` for a [m, k] (row stride lda) and B packed
    /// from [k, n]; c has row stride ldc. `instructions` picks a level other than the one in use
    /// (for tests).
    public static func gemmPacked(m: Int, n: Int, k: Int, alpha: Float = 1, a: UnsafePointer<Float>, lda: Int, packed: Tensor,
                                  accumulate: Bool, c: UnsafeMutablePointer<Float>, ldc: Int,
                                  instructions: InstructionLevel = .inUse) {
        precondition(packed.shape == [(n + 15) / 16, k, 16], "packed \(packed.shape) is not [\(k), \(n)] in panels")
        guard m > 0 && n > 0 else { return }
        if k == 0 {
            if !accumulate { for i in 0..<m { (c + i * ldc).update(repeating: 0, count: n) } }
            return
        }
        precondition(instructions <= .inUse, "\(instructions) kernels are not in use on this CPU")
        sluice_sgemm_packed_at(Int32(instructions.rawValue), m, n, k, alpha, a, lda, packed.floatPointer,
                               accumulate ? 1 : 0, c, ldc)
    }

    /// `activation(x · w + bias)` with w [k, n] packed; x is seen as [rows, k].
    public static func linear(_ x: Tensor, packed: Tensor, k: Int, n: Int, bias: Tensor, activation: Activation = .none,
                              into out: Tensor) {
        let m = x.elementCount / max(k, 1)
        precondition(x.elementCount == m * k && out.elementCount == m * n && bias.elementCount == n,
                     "linear of \(x.shape) × [\(k), \(n)] + \(bias.shape) into \(out.shape)")
        let y = out.mutableFloatPointer
        gemmPacked(m: m, n: n, k: k, a: x.floatPointer, lda: k, packed: packed, accumulate: false, c: y, ldc: n)
        biasAndActivation(y, rows: m, columns: n, bias: bias.floatPointer, activation: activation)
    }

    /// ONNX Gemm with B [k, n] packed (transB already applied): `activation(alpha · op(A) · B + beta · C)`.
    public static func gemm(_ a: Tensor, packed: Tensor, k: Int, n: Int, c: Tensor?, transA: Bool, alpha: Float, beta: Float,
                            activation: Activation, into out: Tensor, instructions: InstructionLevel = .inUse) {
        let m = transA ? a.shape[1] : a.shape[0]
        precondition(out.shape == [m, n] && (transA ? a.shape[0] : a.shape[1]) == k, "Gemm of \(a.shape) × [\(k), \(n)] into \(out.shape)")
        let y = out.mutableFloatPointer
        var accumulate = false
        if let c, beta != 0 {
            fillBroadcast(c, rows: m, columns: n, into: y)
            if beta != 1 { for i in 0..<(m * n) { y[i] *= beta } }
            accumulate = true
        }
        if transA {
            // The packed kernel reads A by rows: transpose it first (A is the activation, small).
            let at = transpose(a, perm: [1, 0])
            withExtendedLifetime(at) {
                gemmPacked(m: m, n: n, k: k, alpha: alpha, a: at.floatPointer, lda: k, packed: packed, accumulate: accumulate,
                           c: y, ldc: n, instructions: instructions)
            }
        } else {
            gemmPacked(m: m, n: n, k: k, alpha: alpha, a: a.floatPointer, lda: k, packed: packed, accumulate: accumulate, c: y,
                       ldc: n, instructions: instructions)
        }
        activation.apply(y, count: m * n)
    }

    /// Adds `bias` to every row and applies the activation, one pass per row.
    static func biasAndActivation(_ y: UnsafeMutablePointer<Float>, rows m: Int, columns n: Int, bias b: UnsafePointer<Float>,
                                  activation: Activation) {
        for i in 0..<m {
            let row = y + i * n
            if activation == .relu {
                for j in 0..<n { row[j] = max(row[j] + b[j], 0) }
            } else {
                for j in 0..<n { row[j] += b[j] }
                activation.apply(row, count: n)
            }
        }
    }
}
