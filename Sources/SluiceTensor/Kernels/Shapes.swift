/// Shape rules shared by the kernels and by shape inference, so both agree by construction.
public enum Shapes {
    /// NumPy broadcasting of two shapes.
    public static func broadcast(_ a: [Int], _ b: [Int]) throws -> [Int] {
        let rank = max(a.count, b.count)
        var out = [Int](repeating: 1, count: rank)
        for i in 0..<rank {
            let da = i < rank - a.count ? 1 : a[i - (rank - a.count)]
            let db = i < rank - b.count ? 1 : b[i - (rank - b.count)]
            if da == db || db == 1 {
                out[i] = da
            } else if da == 1 {
                out[i] = db
            } else {
                throw ShapeError("shapes \(a) and \(b) do not broadcast (dimension \(i): \(da) vs \(db))")
            }
        }
        return out
    }

    /// NumPy broadcasting of several shapes.
    public static func broadcast(_ shapes: [[Int]]) throws -> [Int] {
        var out: [Int] = []
        for shape in shapes { out = try broadcast(out, shape) }
        return out
    }

    /// Whether `shape` broadcasts to `target` without changing `target` (unidirectional).
    public static func broadcasts(_ shape: [Int], to target: [Int]) -> Bool {
        guard shape.count <= target.count else { return false }
        let offset = target.count - shape.count
        for (i, d) in shape.enumerated() where d != 1 && d != target[offset + i] { return false }
        return true
    }

    /// Element strides of `shape` seen inside the broadcast shape `target`: 0 along broadcast
    /// dimensions. `shape` must broadcast to `target`.
    public static func broadcastStrides(_ shape: [Int], to target: [Int]) -> [Int] {
        let offset = target.count - shape.count
        var strides = [Int](repeating: 0, count: target.count)
        var step = 1
        for i in stride(from: shape.count - 1, through: 0, by: -1) {
            strides[offset + i] = shape[i] == 1 ? 0 : step
            step *= shape[i]
        }
        return strides
    }

    /// The output shape of `numpy.matmul(a, b)`.
    public static func matmul(_ a: [Int], _ b: [Int]) throws -> [Int] {
        guard !a.isEmpty, !b.isEmpty else { throw ShapeError("MatMul of a scalar (shapes \(a) and \(b))") }
        let aMat = a.count == 1 ? [1, a[0]] : Array(a.suffix(2))
        let bMat = b.count == 1 ? [b[0], 1] : Array(b.suffix(2))
        guard aMat[1] == bMat[0] else {
            throw ShapeError("MatMul inner dimensions differ: \(a) × \(b) (\(aMat[1]) vs \(bMat[0]))")
        }
        let batch = try broadcast(Array(a.dropLast(min(2, a.count))), Array(b.dropLast(min(2, b.count))))
        var out = batch
        if a.count > 1 { out.append(aMat[0]) }
        if b.count > 1 { out.append(bMat[1]) }
        return out
    }

    /// Normalizes a possibly negative axis: into 0..<rank, or with `inclusive` (Flatten, the
    /// 2-D view of old Softmax) into 0...rank, where −1 still means rank − 1.
    public static func axis(_ axis: Int, rank: Int, inclusive: Bool = false) throws -> Int {
        let normalized = axis < 0 ? axis + rank : axis
        guard normalized >= 0 && (normalized < rank || (inclusive && normalized == rank)) else {
            throw ShapeError("axis \(axis) is out of range for rank \(rank)")
        }
        return normalized
    }
}
