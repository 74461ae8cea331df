import Foundation

/// Binary elementwise operations with NumPy broadcasting.
public enum BinaryOp: String, Sendable, CaseIterable {
    case add = "Add"
    case sub = "Sub"
    case mul = "Mul"
    case div = "Div"
    case max = "Max"
    case min = "Min"
}

/// Element types the elementwise kernels handle. Integer arithmetic wraps and integer
/// division by zero yields 0, so that a bad batch cannot trap the process.
protocol ArithmeticElement {
    static func add(_ a: Self, _ b: Self) -> Self
    static func sub(_ a: Self, _ b: Self) -> Self
    static func mul(_ a: Self, _ b: Self) -> Self
    static func div(_ a: Self, _ b: Self) -> Self
    static func maximum(_ a: Self, _ b: Self) -> Self
    static func minimum(_ a: Self, _ b: Self) -> Self
}

extension Float: ArithmeticElement {
    @inline(__always) static func add(_ a: Float, _ b: Float) -> Float { a + b }
    @inline(__always) static func sub(_ a: Float, _ b: Float) -> Float { a - b }
    @inline(__always) static func mul(_ a: Float, _ b: Float) -> Float { a * b }
    @inline(__always) static func div(_ a: Float, _ b: Float) -> Float { a / b }
    // NaN-propagating, as ONNX Max/Min specify.
    @inline(__always) static func maximum(_ a: Float, _ b: Float) -> Float { a.isNaN || b.isNaN ? .nan : Swift.max(a, b) }
    @inline(__always) static func minimum(_ a: Float, _ b: Float) -> Float { a.isNaN || b.isNaN ? .nan : Swift.min(a, b) }
}

extension Double: ArithmeticElement {
    @inline(__always) static func add(_ a: Double, _ b: Double) -> Double { a + b }
    @inline(__always) static func sub(_ a: Double, _ b: Double) -> Double { a - b }
    @inline(__always) static func mul(_ a: Double, _ b: Double) -> Double { a * b }
    @inline(__always) static func div(_ a: Double, _ b: Double) -> Double { a / b }
    @inline(__always) static func maximum(_ a: Double, _ b: Double) -> Double { a.isNaN || b.isNaN ? .nan : Swift.max(a, b) }
    @inline(__always) static func minimum(_ a: Double, _ b: Double) -> Double { a.isNaN || b.isNaN ? .nan : Swift.min(a, b) }
}

extension FixedWidthInteger {
    @inline(__always) static func add(_ a: Self, _ b: Self) -> Self { a &+ b }
    @inline(__always) static func sub(_ a: Self, _ b: Self) -> Self { a &- b }
    @inline(__always) static func mul(_ a: Self, _ b: Self) -> Self { a &* b }
    @inline(__always) static func div(_ a: Self, _ b: Self) -> Self {
        b == 0 ? 0 : a.dividedReportingOverflow(by: b).partialValue
    }
    @inline(__always) static func maximum(_ a: Self, _ b: Self) -> Self { Swift.max(a, b) }
    @inline(__always) static func minimum(_ a: Self, _ b: Self) -> Self { Swift.min(a, b) }
}

extension Float16: ArithmeticElement {
    @inline(__always) static func add(_ a: Float16, _ b: Float16) -> Float16 { a + b }
    @inline(__always) static func sub(_ a: Float16, _ b: Float16) -> Float16 { a - b }
    @inline(__always) static func mul(_ a: Float16, _ b: Float16) -> Float16 { a * b }
    @inline(__always) static func div(_ a: Float16, _ b: Float16) -> Float16 { a / b }
    @inline(__always) static func maximum(_ a: Float16, _ b: Float16) -> Float16 { a.isNaN || b.isNaN ? .nan : Swift.max(a, b) }
    @inline(__always) static func minimum(_ a: Float16, _ b: Float16) -> Float16 { a.isNaN || b.isNaN ? .nan : Swift.min(a, b) }
}

extension Int64: ArithmeticElement {}
extension Int32: ArithmeticElement {}
extension Int8: ArithmeticElement {}
extension UInt8: ArithmeticElement {}
extension Int16: ArithmeticElement {}
extension UInt16: ArithmeticElement {}
extension UInt32: ArithmeticElement {}
extension UInt64: ArithmeticElement {}

extension Kernels {
    /// The dtypes `binary` handles.
    public static let binaryDTypes: [DType] = [.float32, .float64, .float16, .int64, .int32, .int16, .int8,
                                                .uint64, .uint32, .uint16, .uint8]

    /// `a op b` with NumPy broadcasting; both tensors have the same dtype, one of `binaryDTypes`.
    public static func binary(_ op: BinaryOp, _ a: Tensor, _ b: Tensor) -> Tensor {
        precondition(a.dtype == b.dtype, "\(op.rawValue) of \(a.dtype) and \(b.dtype)")
        let shape: [Int]
        do { shape = try Shapes.broadcast(a.shape, b.shape) } catch { preconditionFailure("\(error)") }
        let out = Tensor(uninitialized: a.dtype, shape: shape)
        binary(op, a, b, into: out)
        return out
    }

    /// `a op b` written to `out` (the broadcast shape, a's dtype).
    public static func binary(_ op: BinaryOp, _ a: Tensor, _ b: Tensor, into out: Tensor) {
        precondition(a.dtype == b.dtype && out.dtype == a.dtype, "\(op.rawValue) of \(a.dtype) and \(b.dtype) into \(out.dtype)")
        switch a.dtype {
        case .float32: binary(op, a, b, out, as: Float.self)
        case .float64: binary(op, a, b, out, as: Double.self)
        case .float16: binary(op, a, b, out, as: Float16.self)
        case .int64: binary(op, a, b, out, as: Int64.self)
        case .int32: binary(op, a, b, out, as: Int32.self)
        case .int8: binary(op, a, b, out, as: Int8.self)
        case .uint8: binary(op, a, b, out, as: UInt8.self)
        case .int16: binary(op, a, b, out, as: Int16.self)
        case .uint16: binary(op, a, b, out, as: UInt16.self)
        case .uint32: binary(op, a, b, out, as: UInt32.self)
        case .uint64: binary(op, a, b, out, as: UInt64.self)
        default: preconditionFailure("\(op.rawValue) does not support \(a.dtype)")
        }
    }

    private static func binary<T: ArithmeticElement>(_ op: BinaryOp, _ a: Tensor, _ b: Tensor, _ out: Tensor, as: T.Type) {
        let pa = UnsafePointer(a.storage.bytes.bindMemory(to: T.self, capacity: a.elementCount))
        let pb = UnsafePointer(b.storage.bytes.bindMemory(to: T.self, capacity: b.elementCount))
        let py = out.storage.bytes.bindMemory(to: T.self, capacity: out.elementCount)
        switch op {
        case .add: broadcastLoop(pa, a.shape, pb, b.shape, py, out.shape) { T.add($0, $1) }
        case .sub: broadcastLoop(pa, a.shape, pb, b.shape, py, out.shape) { T.sub($0, $1) }
        case .mul: broadcastLoop(pa, a.shape, pb, b.shape, py, out.shape) { T.mul($0, $1) }
        case .div: broadcastLoop(pa, a.shape, pb, b.shape, py, out.shape) { T.div($0, $1) }
        case .max: broadcastLoop(pa, a.shape, pb, b.shape, py, out.shape) { T.maximum($0, $1) }
        case .min: broadcastLoop(pa, a.shape, pb, b.shape, py, out.shape) { T.minimum($0, $1) }
        }
    }

    /// Runs `f` over the broadcast of two shapes. Dimensions are first merged where both
    /// operands stay contiguous (or both stay broadcast), so the common cases (same shape, a
    /// scalar, a bias row) become one or two tight loops with no per-element index math.
    @inline(__always)
    public static func broadcastLoop<A, B, Y>(_ a: UnsafePointer<A>, _ aShape: [Int], _ b: UnsafePointer<B>, _ bShape: [Int],
                                              _ y: UnsafeMutablePointer<Y>, _ shape: [Int], _ f: (A, B) -> Y) {
        let total = Tensor.elementCount(of: shape)
        guard total > 0 else { return }
        let (dims, aStrides, bStrides) = collapse(shape, Shapes.broadcastStrides(aShape, to: shape),
                                                  Shapes.broadcastStrides(bShape, to: shape))
        let n = dims.last!
        let sa = aStrides.last!, sb = bStrides.last!
        let outer = total / n
        var index = [Int](repeating: 0, count: dims.count)
        var ao = 0, bo = 0
        for o in 0..<outer {
            let pa = a + ao, pb = b + bo, py = y + o * n
            if sa == 1 && sb == 1 {
                for i in 0..<n { py[i] = f(pa[i], pb[i]) }
            } else if sa == 1 {
                let v = pb[0]
                for i in 0..<n { py[i] = f(pa[i], v) }
            } else if sb == 1 {
                let v = pa[0]
                for i in 0..<n { py[i] = f(v, pb[i]) }
            } else {
                py.update(repeating: f(pa[0], pb[0]), count: n)
            }
            // Advance the odometer over the outer dimensions.
            var d = dims.count - 2
            while d >= 0 {
                index[d] += 1
                ao += aStrides[d]
                bo += bStrides[d]
                if index[d] < dims[d] { break }
                ao -= aStrides[d] * dims[d]
                bo -= bStrides[d] * dims[d]
                index[d] = 0
                d -= 1
            }
        }
    }

    /// Drops size-1 dimensions and merges neighbours that both operands traverse the same way.
    static func collapse(_ shape: [Int], _ aStrides: [Int], _ bStrides: [Int]) -> ([Int], [Int], [Int]) {
        var dims: [Int] = [], sa: [Int] = [], sb: [Int] = []
        for i in 0..<shape.count where shape[i] != 1 {
            if let last = dims.last,
               sa.last! == aStrides[i] * shape[i], sb.last! == bStrides[i] * shape[i] {
                dims[dims.count - 1] = last * shape[i]
                sa[sa.count - 1] = aStrides[i]
                sb[sb.count - 1] = bStrides[i]
            } else {
                dims.append(shape[i])
                sa.append(aStrides[i])
                sb.append(bStrides[i])
            }
        }
        if dims.isEmpty { return ([1], [0], [0]) }
        return (dims, sa, sb)
    }

    /// An activation as a standalone elementwise op (Relu, LeakyRelu, Clip, Sigmoid, Tanh).
    public static func activation(_ activation: Activation, _ x: Tensor) -> Tensor {
        let out = Tensor(uninitialized: .float32, shape: x.shape)
        activation.apply(x.floatPointer, into: out.mutableFloatPointer, count: x.elementCount)
        return out
    }

    /// The activation written to `out` (same element count).
    public static func activation(_ activation: Activation, _ x: Tensor, into out: Tensor) {
        precondition(out.elementCount == x.elementCount, "\(activation) of \(x) into \(out)")
        activation.apply(x.floatPointer, into: out.mutableFloatPointer, count: x.elementCount)
    }
}
