import Foundation
@testable import SluiceTensor
import Testing

@Suite struct GemmTests {
    @Test(arguments: 0..<40)
    func gemmMatchesReference(seed: Int) {
        var rng = SeededGenerator(seed: seed)
        // Every fifth case has one row (the sgemv path), every seventh one column.
        let m = seed % 5 == 0 ? 1 : rng.int(1...37)
        let n = seed % 7 == 0 ? 1 : rng.int(1...41)
        let k = rng.int(1...53)
        let transA = rng.bool(), transB = rng.bool()
        let a = rng.tensor(transA ? [k, m] : [m, k])
        let b = rng.tensor(transB ? [n, k] : [k, n])
        let cShapes: [[Int]?] = [nil, [n], [1, n], [m, 1], [m, n], [], [1]]
        let c = cShapes[seed % cShapes.count].map { rng.tensor($0) }
        let alpha = Float(rng.int(1...4)) / 2, beta = Float(rng.int(0...4)) / 2
        let activation: Activation = seed % 3 == 0 ? .relu : .none
        let fast = Kernels.gemm(a, b, c: c, transA: transA, transB: transB, alpha: alpha, beta: beta, activation: activation)
        let reference = ReferenceKernels.gemm(a, b, c: c, transA: transA, transB: transB, alpha: alpha, beta: beta,
                                              activation: activation)
        expectClose(fast, reference, "gemm m=\(m) n=\(n) k=\(k) tA=\(transA) tB=\(transB) c=\(c?.shape ?? [-1])")
    }

    @Test func sgemvPathHonoursBetaAndStrides() {
        // One row of A taken from a wider matrix (lda > k) and accumulated into existing C.
        var rng = SeededGenerator(seed: 99)
        let (k, n, lda) = (7, 5, 11)
        let a = rng.tensor([1, lda]), b = rng.tensor([k, n])
        var c = rng.tensor([1, n]).floats
        let expected = (0..<n).map { j in
            0.5 * c[j] + 2 * (0..<k).reduce(Float(0)) { $0 + a.floats[$1] * b.floats[$1 * n + j] }
        }
        a.withUnsafeBufferPointer(as: Float.self) { pa in
            b.withUnsafeBufferPointer(as: Float.self) { pb in
                c.withUnsafeMutableBufferPointer { pc in
                    Kernels.sgemm(transA: false, transB: false, m: 1, n: n, k: k, alpha: 2, a: pa.baseAddress!, lda: lda,
                                  b: pb.baseAddress!, ldb: n, beta: 0.5, c: pc.baseAddress!, ldc: n)
                }
            }
        }
        for j in 0..<n { #expect(abs(c[j] - expected[j]) <= 1e-5 * max(1, abs(expected[j]))) }
    }

    @Test(arguments: 0..<30)
    func matmulBroadcastsLikeNumPy(seed: Int) {
        var rng = SeededGenerator(seed: 1000 + seed)
        let m = seed % 4 == 0 ? 1 : rng.int(1...9), k = rng.int(1...11), n = rng.int(1...10)
        let shapes: [([Int], [Int])] = [
            ([m, k], [k, n]), ([3, m, k], [k, n]), ([2, 3, m, k], [k, n]), ([k], [k, n]), ([m, k], [k]),
            ([3, m, k], [3, k, n]), ([1, m, k], [4, k, n]), ([2, 1, m, k], [3, k, n]), ([k], [2, k, n]),
            ([m, k], [2, k, n]),
        ]
        let (sa, sb) = shapes[seed % shapes.count]
        let a = rng.tensor(sa), b = rng.tensor(sb)
        expectClose(Kernels.matmul(a, b), ReferenceKernels.matmul(a, b), "matmul \(sa) × \(sb)")
    }

    @Test func matmulShapeErrors() throws {
        #expect(throws: ShapeError.self) { try Shapes.matmul([2, 3], [4, 5]) }
        #expect(throws: ShapeError.self) { try Shapes.matmul([2, 2, 3], [3, 3, 5]) }
        #expect(try Shapes.matmul([7], [7]) == [])
        #expect(try Shapes.matmul([5, 1, 2, 3], [4, 3, 6]) == [5, 4, 2, 6])
    }

    @Test(.enabled(if: ProcessInfo.processInfo.environment["OPENBLAS_NUM_THREADS"] == nil))
    func oneBLASThreadByDefault() {
        // Other tests run BLAS concurrently, so this only checks the default and that setting it sticks.
        #expect(Kernels.threads == 1)
        Kernels.setThreads(1)
        #expect(Kernels.threads == 1)
    }
}

@Suite struct LinearTests {
    @Test(arguments: [1, 2, 7, 33])
    func linearEqualsMatMulThenAddBitForBit(rows: Int) {
        var rng = SeededGenerator(seed: rows)
        let x = rng.tensor([rows, 300]), w = rng.tensor([300, 17]), b = rng.tensor([17])
        for activation in [Activation.none, .relu, .tanh] {
            let fused = Kernels.linear(x, w, bias: b, activation: activation)
            let separate = Kernels.activation(activation, Kernels.binary(.add, Kernels.matmul(x, w), b))
            #expect(fused.floats == separate.floats, "rows \(rows) \(activation)")
            let reference = ReferenceKernels.activation(activation, ReferenceKernels.binary(.add, ReferenceKernels.matmul(x, w), b))
            expectClose(fused, reference, "linear rows \(rows) \(activation)")
        }
    }
}

@Test func baselineBLASKernelsOnAVXMachinesAreReplaced() {
    // What OpenBLAS 0.3.21 chose on a cloud Xeon it did not recognize, and what to ask for instead.
    #expect(Kernels.betterBLASCoreType(chosen: "Prescott", environment: [:], avx512: true, avx2: true) == "SkylakeX")
    #expect(Kernels.betterBLASCoreType(chosen: "Prescott", environment: [:], avx512: false, avx2: true) == "Haswell")
    #expect(Kernels.betterBLASCoreType(chosen: "Prescott", environment: [:], avx512: false, avx2: false) == nil)
    // A vector kernel it chose, or a core type the user set, is left alone.
    #expect(Kernels.betterBLASCoreType(chosen: "Cooperlake", environment: [:], avx512: true, avx2: true) == nil)
    #expect(Kernels.betterBLASCoreType(chosen: "Prescott", environment: ["OPENBLAS_CORETYPE": "Prescott"], avx512: true, avx2: true) == nil)
}
