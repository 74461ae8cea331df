/// Comparisons, boolean logic and selection, with NumPy broadcasting.
public enum CompareOp: String, Sendable {
    case equal = "Equal"
    case less = "Less"
    case lessOrEqual = "LessOrEqual"
    case greater = "Greater"
    case greaterOrEqual = "GreaterOrEqual"

    @inline(__always)
    func holds<T: Comparable>(_ a: T, _ b: T) -> Bool {
        switch self {
        case .equal: return a == b
        case .less: return a < b
        case .lessOrEqual: return a <= b
        case .greater: return a > b
        case .greaterOrEqual: return a >= b
        }
    }
}

public enum LogicOp: String, Sendable {
    case and = "And"
    case or = "Or"
    case xor = "Xor"
}

extension Kernels {
    /// `a op b` elementwise as a bool tensor; `a` and `b` have the same dtype.
    public static func compare(_ op: CompareOp, _ a: Tensor, _ b: Tensor) throws -> Tensor {
        guard a.dtype == b.dtype else { throw ShapeError("\(op.rawValue) of \(a.dtype) and \(b.dtype)") }
        let shape = try Shapes.broadcast(a.shape, b.shape)
        let out = Tensor(uninitialized: .bool, shape: shape)
        let y = out.storage.bytes.bindMemory(to: UInt8.self, capacity: out.elementCount)
        func run<T: Comparable>(_: T.Type) {
            let pa = UnsafePointer(a.storage.bytes.bindMemory(to: T.self, capacity: a.elementCount))
            let pb = UnsafePointer(b.storage.bytes.bindMemory(to: T.self, capacity: b.elementCount))
            broadcastLoop(pa, a.shape, pb, b.shape, y, shape) { op.holds($0, $1) ? 1 : 0 }
        }
        switch a.dtype {
        case .float32: run(Float.self)
        case .float64: run(Double.self)
        case .float16: run(Float16.self)
        case .int64: run(Int64.self)
        case .int32: run(Int32.self)
        case .int8: run(Int8.self)
        case .uint8, .bool: run(UInt8.self)
        case .int16: run(Int16.self)
        case .uint16: run(UInt16.self)
        case .uint32: run(UInt32.self)
        case .uint64: run(UInt64.self)
        case .string:
            let sa = a.strings, sb = b.strings
            let ia = Shapes.broadcastOffsets(a.shape, to: shape), ib = Shapes.broadcastOffsets(b.shape, to: shape)
            for i in 0..<out.elementCount { y[i] = op.holds(sa[ia[i]], sb[ib[i]]) ? 1 : 0 }
        case .bfloat16:
            // Compared as floats: the bit patterns of negative values sort backwards.
            let fa = Kernels.cast(a, to: .float32), fb = Kernels.cast(b, to: .float32)
            return try compare(op, fa, fb)
        }
        return out
    }

    /// Boolean `a op b` elementwise; both are bool tensors.
    public static func logic(_ op: LogicOp, _ a: Tensor, _ b: Tensor) throws -> Tensor {
        guard a.dtype == .bool, b.dtype == .bool else { throw ShapeError("\(op.rawValue) needs bool inputs, got \(a.dtype) and \(b.dtype)") }
        let shape = try Shapes.broadcast(a.shape, b.shape)
        let out = Tensor(uninitialized: .bool, shape: shape)
        let y = out.storage.bytes.bindMemory(to: UInt8.self, capacity: out.elementCount)
        let pa = UnsafePointer(a.storage.bytes.bindMemory(to: UInt8.self, capacity: a.elementCount))
        let pb = UnsafePointer(b.storage.bytes.bindMemory(to: UInt8.self, capacity: b.elementCount))
        switch op {
        case .and: broadcastLoop(pa, a.shape, pb, b.shape, y, shape) { ($0 != 0 && $1 != 0) ? 1 : 0 }
        case .or: broadcastLoop(pa, a.shape, pb, b.shape, y, shape) { ($0 != 0 || $1 != 0) ? 1 : 0 }
        case .xor: broadcastLoop(pa, a.shape, pb, b.shape, y, shape) { (($0 != 0) != ($1 != 0)) ? 1 : 0 }
        }
        return out
    }

    /// ONNX Where: `condition ? x : y` elementwise, all three broadcast together.
    public static func select(_ condition: Tensor, _ x: Tensor, _ y: Tensor) throws -> Tensor {
        guard condition.dtype == .bool else { throw ShapeError("Where's condition must be bool, got \(condition.dtype)") }
        guard x.dtype == y.dtype else { throw ShapeError("Where of \(x.dtype) and \(y.dtype)") }
        let shape = try Shapes.broadcast([condition.shape, x.shape, y.shape])
        let out = Tensor(uninitialized: x.dtype, shape: shape)
        let total = out.elementCount
        guard total > 0 else { return out }
        let c = condition.storage.bytes.bindMemory(to: UInt8.self, capacity: condition.elementCount)
        if condition.shape == shape && x.shape == shape && y.shape == shape {
            func copy<T>(_: T.Type) {
                let px = x.storage.bytes.bindMemory(to: T.self, capacity: total)
                let py = y.storage.bytes.bindMemory(to: T.self, capacity: total)
                let po = out.storage.bytes.bindMemory(to: T.self, capacity: total)
                for i in 0..<total { po[i] = c[i] != 0 ? px[i] : py[i] }
            }
            switch x.dtype.byteSize {
            case 1: copy(UInt8.self)
            case 2: copy(UInt16.self)
            case 4: copy(UInt32.self)
            default: copy(UInt64.self)
            }
            return out
        }
        // Row by row along the last axis, each operand stepping by its broadcast stride: no
        // table of offsets (an attention mask [N, 1, T, T] against [N, H, T, T] made three).
        let rank = shape.count
        let cs = Shapes.broadcastStrides(condition.shape, to: shape)
        let xs = Shapes.broadcastStrides(x.shape, to: shape), ys = Shapes.broadcastStrides(y.shape, to: shape)
        let inner = shape[rank - 1]
        let (ci, xi, yi) = (cs[rank - 1], xs[rank - 1], ys[rank - 1])
        func pick<T>(_: T.Type) {
            let px = x.storage.bytes.bindMemory(to: T.self, capacity: x.elementCount)
            let py = y.storage.bytes.bindMemory(to: T.self, capacity: y.elementCount)
            let po = out.storage.bytes.bindMemory(to: T.self, capacity: total)
            var index = [Int](repeating: 0, count: rank)
            var (cb, xb, yb) = (0, 0, 0)
            for row in 0..<(total / inner) {
                let o = po + row * inner
                for j in 0..<inner { o[j] = c[cb + j * ci] != 0 ? px[xb + j * xi] : py[yb + j * yi] }
                // The next row: carry through the outer axes.
                var axis = rank - 2
                while axis >= 0 {
                    index[axis] += 1
                    cb += cs[axis]; xb += xs[axis]; yb += ys[axis]
                    if index[axis] < shape[axis] { break }
                    cb -= cs[axis] * shape[axis]; xb -= xs[axis] * shape[axis]; yb -= ys[axis] * shape[axis]
                    index[axis] = 0
                    axis -= 1
                }
            }
        }
        switch x.dtype.byteSize {
        case 1: pick(UInt8.self)
        case 2: pick(UInt16.self)
        case 4: pick(UInt32.self)
        default: pick(UInt64.self)
        }
        return out
    }
}
