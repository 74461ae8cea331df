import CBLAS

extension Kernels {
    /// `C = alpha · op(A) · op(B) + beta · C`, row-major, where op(A) is m×k and op(B) is k×n.
    /// Products with one row or one column go to `cblas_sgemv`, which is several times faster
    /// there than OpenBLAS's sgemm.
    public static func sgemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float = 1,
                             a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                             beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
        guard m > 0 && n > 0 else { return }
        prepareBLAS()
        if k == 0 {
            for i in 0..<m { scale(c + i * ldc, count: n, by: beta) }
            return
        }
        if m == 1 {
            // c[n] = alpha · op(B)ᵀ-shaped product with the single row of op(A).
            let incX = transA ? lda : 1
            if beta == 0 { c.update(repeating: 0, count: n) }
            if transB {
                // B is stored n×k: c = B · a.
                cblas_sgemv(CblasRowMajor, CblasNoTrans, blasint(n), blasint(k), alpha, b, blasint(ldb),
                            a, blasint(incX), beta, c, 1)
            } else {
                // B is stored k×n: c = Bᵀ · a.
                cblas_sgemv(CblasRowMajor, CblasTrans, blasint(k), blasint(n), alpha, b, blasint(ldb),
                            a, blasint(incX), beta, c, 1)
            }
            return
        }
        if n == 1 {
            // The single column of C: c = op(A) · b, strided by ldc.
            let incX = transB ? 1 : ldb
            if beta == 0 { for i in 0..<m { c[i * ldc] = 0 } }
            if transA {
                // A is stored k×m.
                cblas_sgemv(CblasRowMajor, CblasTrans, blasint(k), blasint(m), alpha, a, blasint(lda),
                            b, blasint(incX), beta, c, blasint(ldc))
            } else {
                cblas_sgemv(CblasRowMajor, CblasNoTrans, blasint(m), blasint(k), alpha, a, blasint(lda),
                            b, blasint(incX), beta, c, blasint(ldc))
            }
            return
        }
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    blasint(m), blasint(n), blasint(k), alpha, a, blasint(lda), b, blasint(ldb), beta, c, blasint(ldc))
    }

    private static func scale(_ p: UnsafeMutablePointer<Float>, count: Int, by factor: Float) {
        if factor == 0 {
            p.update(repeating: 0, count: count)
        } else if factor != 1 {
            for i in 0..<count { p[i] *= factor }
        }
    }

    /// The output shape of ONNX Gemm, or why there is none.
    public static func gemmShape(a: [Int], b: [Int], c: [Int]?, transA: Bool, transB: Bool) throws -> [Int] {
        guard a.count == 2, b.count == 2 else { throw ShapeError("Gemm needs 2-D A and B, got \(a) and \(b)") }
        let (m, ka) = transA ? (a[1], a[0]) : (a[0], a[1])
        let (kb, n) = transB ? (b[1], b[0]) : (b[0], b[1])
        guard ka == kb else {
            throw ShapeError("Gemm inner dimensions differ: op(A) is \(m)×\(ka), op(B) is \(kb)×\(n)")
        }
        if let c, !Shapes.broadcasts(c, to: [m, n]) {
            throw ShapeError("Gemm bias C of shape \(c) does not broadcast to [\(m), \(n)]")
        }
        return [m, n]
    }

    /// ONNX Gemm: `Y = activation(alpha · op(A) · op(B) + beta · C)`, C broadcast to [M, N].
    public static func gemm(_ a: Tensor, _ b: Tensor, c: Tensor? = nil, transA: Bool = false, transB: Bool = false,
                            alpha: Float = 1, beta: Float = 1, activation: Activation = .none) -> Tensor {
        let shape: [Int]
        do {
            shape = try gemmShape(a: a.shape, b: b.shape, c: c?.shape, transA: transA, transB: transB)
        } catch { preconditionFailure("\(error)") }
        let out = Tensor(uninitialized: .float32, shape: shape)
        gemm(a, b, c: c, transA: transA, transB: transB, alpha: alpha, beta: beta, activation: activation, into: out)
        return out
    }

    /// ONNX Gemm written to `out` ([M, N]).
    public static func gemm(_ a: Tensor, _ b: Tensor, c: Tensor? = nil, transA: Bool = false, transB: Bool = false,
                            alpha: Float = 1, beta: Float = 1, activation: Activation = .none, into out: Tensor) {
        let (m, n) = (out.shape[0], out.shape[1])
        let k = transA ? a.shape[0] : a.shape[1]
        precondition(out.rank == 2 && (transA ? a.shape[1] : a.shape[0]) == m && (transB ? b.shape[0] : b.shape[1]) == n,
                     "Gemm of \(a.shape) and \(b.shape) into \(out.shape)")
        let y = out.mutableFloatPointer
        var blasBeta: Float = 0
        if let c, beta != 0 {
            fillBroadcast(c, rows: m, columns: n, into: y)
            blasBeta = beta
        }
        sgemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha,
              a: a.floatPointer, lda: a.shape[1], b: b.floatPointer, ldb: b.shape[1],
              beta: blasBeta, c: y, ldc: n)
        activation.apply(y, count: m * n)
    }

    /// Writes `c` broadcast to rows×columns into `y`.
    static func fillBroadcast(_ c: Tensor, rows m: Int, columns n: Int, into y: UnsafeMutablePointer<Float>) {
        let strides = Shapes.broadcastStrides(c.shape, to: [m, n])
        let src = c.floatPointer
        let (rowStride, columnStride) = (strides[0], strides[1])
        for i in 0..<m {
            let row = y + i * n
            let from = src + i * rowStride
            if columnStride == 1 {
                row.update(from: from, count: n)
            } else {
                row.update(repeating: from[0], count: n)
            }
        }
    }

    /// `activation(x · w + bias)` for x [rows, k], w [k, n] and bias [n]: the product exactly as
    /// `matmul` computes it, then the bias and the activation in one pass over each row, so the
    /// result equals MatMul, Add and the activation run one after another, bit for bit.
    public static func linear(_ x: Tensor, _ w: Tensor, bias: Tensor, activation: Activation = .none) -> Tensor {
        precondition(x.rank == 2 && w.rank == 2 && x.shape[1] == w.shape[0] && bias.elementCount == w.shape[1],
                     "linear of \(x.shape) × \(w.shape) + \(bias.shape)")
        let out = Tensor(uninitialized: .float32, shape: [x.shape[0], w.shape[1]])
        linear(x, w, bias: bias, activation: activation, into: out)
        return out
    }

    /// `activation(x · w + bias)` written to `out` ([rows, n] elements; x seen as [rows, k]).
    public static func linear(_ x: Tensor, _ w: Tensor, bias: Tensor, activation: Activation = .none, into out: Tensor) {
        let (k, n) = (w.shape[0], w.shape[1])
        let m = x.elementCount / max(k, 1)
        precondition(x.elementCount == m * k && out.elementCount == m * n && bias.elementCount == n,
                     "linear of \(x.shape) × \(w.shape) + \(bias.shape) into \(out.shape)")
        let y = out.mutableFloatPointer, b = bias.floatPointer
        sgemm(transA: false, transB: false, m: m, n: n, k: k, a: x.floatPointer, lda: k, b: w.floatPointer, ldb: n,
              c: y, ldc: n)
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

    /// `numpy.matmul` for float32, batch dimensions broadcast.
    public static func matmul(_ a: Tensor, _ b: Tensor) -> Tensor {
        let outShape: [Int]
        do { outShape = try Shapes.matmul(a.shape, b.shape) } catch { preconditionFailure("\(error)") }
        let out = Tensor(uninitialized: .float32, shape: outShape)
        matmul(a, b, into: out)
        return out
    }

    /// `numpy.matmul` written to `out` (the product's element count).
    public static func matmul(_ a: Tensor, _ b: Tensor, into out: Tensor) {
        matmul(a, b, transB: false, alpha: 1, into: out)
    }

    /// `alpha · numpy.matmul(a, bᵀ)` (bᵀ swapping b's last two dimensions when `transB`), for
    /// a MatMul fused with the Transpose before it and the scaling after it (attention's
    /// q·kᵀ/√d), written to `out`.
    public static func matmul(_ a: Tensor, _ b: Tensor, transB: Bool, alpha: Float, into out: Tensor) {
        let aMat = a.rank == 1 ? [1, a.shape[0]] : Array(a.shape.suffix(2))
        var bMat = b.rank == 1 ? [b.shape[0], 1] : Array(b.shape.suffix(2))
        if transB { bMat = [bMat[1], bMat[0]] }
        let (m, k, n) = (aMat[0], aMat[1], bMat[1])
        let aBatch = Array(a.shape.dropLast(min(2, a.rank)))
        let bBatch = Array(b.shape.dropLast(min(2, b.rank)))
        let pa = a.floatPointer, pb = b.floatPointer, py = out.mutableFloatPointer
        let ldb = transB ? k : n

        if bBatch.allSatisfy({ $0 == 1 }) && aBatch.count >= bBatch.count {
            // A shared right-hand matrix (the usual weight): fold A's batch into its rows.
            let rows = Tensor.elementCount(of: aBatch) * m
            sgemm(transA: false, transB: transB, m: rows, n: n, k: k, alpha: alpha, a: pa, lda: k, b: pb, ldb: ldb, c: py, ldc: n)
            return
        }
        let batch = (try? Shapes.broadcast(aBatch, bBatch)) ?? []
        let aStrides = Shapes.broadcastStrides(aBatch, to: batch)
        let bStrides = Shapes.broadcastStrides(bBatch, to: batch)
        var index = [Int](repeating: 0, count: batch.count)
        for t in 0..<Tensor.elementCount(of: batch) {
            var aOffset = 0, bOffset = 0
            for d in 0..<batch.count {
                aOffset += index[d] * aStrides[d]
                bOffset += index[d] * bStrides[d]
            }
            sgemm(transA: false, transB: transB, m: m, n: n, k: k, alpha: alpha, a: pa + aOffset * m * k, lda: k,
                  b: pb + bOffset * k * n, ldb: ldb, c: py + t * m * n, ldc: n)
            var d = batch.count - 1
            while d >= 0 {
                index[d] += 1
                if index[d] < batch[d] { break }
                index[d] = 0
                d -= 1
            }
        }
    }
}
