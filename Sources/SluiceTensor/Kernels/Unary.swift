import Foundation

/// Elementwise float functions of one value (ONNX's unary math ops and activations).
public enum UnaryOp: Sendable, Equatable {
    case abs, neg, exp, log, sqrt, reciprocal, floor, ceil, round, sign, erf
    case sin, cos, tan, asin, acos, atan, sinh, cosh, asinh, acosh, atanh
    case softplus, softsign, mish
    case elu(alpha: Float)
    case selu(alpha: Float, gamma: Float)
    case celu(alpha: Float)
    case hardSigmoid(alpha: Float, beta: Float)
    case hardSwish
    case thresholdedRelu(alpha: Float)
    case shrink(bias: Float, lambda: Float)
    /// x · Φ(x), exactly (erf) or with the tanh approximation.
    case gelu(tanh: Bool)

    /// The function in Double precision (the reference; also float64 and integer inputs).
    public func callAsFunction(_ x: Double) -> Double {
        switch self {
        case .abs: return Swift.abs(x)
        case .neg: return -x
        case .exp: return Foundation.exp(x)
        case .log: return Foundation.log(x)
        case .sqrt: return x.squareRoot()
        case .reciprocal: return 1 / x
        case .floor: return x.rounded(.down)
        case .ceil: return x.rounded(.up)
        case .round: return x.rounded(.toNearestOrEven)
        case .sign: return x > 0 ? 1 : (x < 0 ? -1 : (x.isNaN ? x : 0))
        case .erf: return Foundation.erf(x)
        case .sin: return Foundation.sin(x)
        case .cos: return Foundation.cos(x)
        case .tan: return Foundation.tan(x)
        case .asin: return Foundation.asin(x)
        case .acos: return Foundation.acos(x)
        case .atan: return Foundation.atan(x)
        case .sinh: return Foundation.sinh(x)
        case .cosh: return Foundation.cosh(x)
        case .asinh: return Foundation.asinh(x)
        case .acosh: return Foundation.acosh(x)
        case .atanh: return Foundation.atanh(x)
        case .softplus: return x > 0 ? x + Foundation.log1p(Foundation.exp(-x)) : Foundation.log1p(Foundation.exp(x))
        case .softsign: return x / (1 + Swift.abs(x))
        case .mish:
            let sp = x > 0 ? x + Foundation.log1p(Foundation.exp(-x)) : Foundation.log1p(Foundation.exp(x))
            return x * Foundation.tanh(sp)
        case .elu(let alpha): return x < 0 ? Double(alpha) * (Foundation.exp(x) - 1) : x
        case .selu(let alpha, let gamma):
            return Double(gamma) * (x <= 0 ? Double(alpha) * (Foundation.exp(x) - 1) : x)
        case .celu(let alpha):
            let a = Double(alpha)
            return Swift.max(0, x) + Swift.min(0, a * (Foundation.exp(x / a) - 1))
        case .hardSigmoid(let alpha, let beta): return Swift.max(0, Swift.min(1, Double(alpha) * x + Double(beta)))
        case .hardSwish: return x * Swift.max(0, Swift.min(1, x / 6 + 0.5))
        case .thresholdedRelu(let alpha): return x > Double(alpha) ? x : 0
        case .shrink(let bias, let lambda):
            return x < -Double(lambda) ? x + Double(bias) : (x > Double(lambda) ? x - Double(bias) : 0)
        case .gelu(let tanh):
            if tanh {
                return 0.5 * x * (1 + Foundation.tanh((2 / Double.pi).squareRoot() * (x + 0.044715 * x * x * x)))
            }
            return 0.5 * x * (1 + Foundation.erf(x / 2.0.squareRoot()))
        }
    }

    /// The function in single precision.
    @inline(__always)
    public func callAsFunction(_ x: Float) -> Float {
        switch self {
        case .abs: return Swift.abs(x)
        case .neg: return -x
        case .exp: return Foundation.expf(x)
        case .log: return Foundation.logf(x)
        case .sqrt: return x.squareRoot()
        case .reciprocal: return 1 / x
        case .floor: return x.rounded(.down)
        case .ceil: return x.rounded(.up)
        case .round: return x.rounded(.toNearestOrEven)
        case .sign: return x > 0 ? 1 : (x < 0 ? -1 : (x.isNaN ? x : 0))
        case .erf: return Foundation.erff(x)
        case .sin: return Foundation.sinf(x)
        case .cos: return Foundation.cosf(x)
        case .tan: return Foundation.tanf(x)
        case .asin: return Foundation.asinf(x)
        case .acos: return Foundation.acosf(x)
        case .atan: return Foundation.atanf(x)
        case .sinh: return Foundation.sinhf(x)
        case .cosh: return Foundation.coshf(x)
        case .asinh: return Foundation.asinhf(x)
        case .acosh: return Foundation.acoshf(x)
        case .atanh: return Foundation.atanhf(x)
        case .gelu(false): return 0.5 * x * (1 + Foundation.erff(x * 0.70710678118654752))
        default: return Float(self(Double(x)))
        }
    }
}

extension Kernels {
    /// The dtypes `unary` handles.
    public static let unaryDTypes: [DType] = [.float32, .float64, .float16, .bfloat16]

    /// `op` applied to every element of a float tensor.
    public static func unary(_ op: UnaryOp, _ x: Tensor) -> Tensor {
        let out = Tensor(uninitialized: x.dtype, shape: x.shape)
        unary(op, x, into: out)
        return out
    }

    /// `op` applied to every element of `x`, written to `out` (same dtype and element count;
    /// may be `x` itself).
    public static func unary(_ op: UnaryOp, _ x: Tensor, into out: Tensor) {
        precondition(x.dtype == out.dtype && x.elementCount == out.elementCount, "\(op) of \(x) into \(out)")
        let n = x.elementCount
        switch x.dtype {
        case .float32:
            let src = x.floatPointer, dst = out.mutableFloatPointer
            switch op {
            case .neg: for i in 0..<n { dst[i] = -src[i] }
            case .abs: for i in 0..<n { dst[i] = Swift.abs(src[i]) }
            case .sqrt: for i in 0..<n { dst[i] = src[i].squareRoot() }
            case .reciprocal: for i in 0..<n { dst[i] = 1 / src[i] }
            case .exp: FastMath.exp(src, dst, count: n)
            case .erf: FastMath.erf(src, dst, count: n)
            case .gelu(tanh: false): FastMath.gelu(src, dst, count: n)
            default: for i in 0..<n { dst[i] = op(src[i]) }
            }
        case .float64:
            let src = x.storage.bytes.bindMemory(to: Double.self, capacity: n)
            let dst = out.storage.bytes.bindMemory(to: Double.self, capacity: n)
            for i in 0..<n { dst[i] = op(src[i]) }
        case .float16:
            let src = x.storage.bytes.bindMemory(to: Float16.self, capacity: n)
            let dst = out.storage.bytes.bindMemory(to: Float16.self, capacity: n)
            for i in 0..<n { dst[i] = Float16(op(Float(src[i]))) }
        case .bfloat16:
            let src = x.storage.bytes.bindMemory(to: UInt16.self, capacity: n)
            let dst = out.storage.bytes.bindMemory(to: UInt16.self, capacity: n)
            for i in 0..<n { dst[i] = floatToBFloat16(op(bfloat16ToFloat(src[i]))) }
        default:
            preconditionFailure("\(op) of a \(x.dtype) tensor")
        }
    }
}

extension ReferenceKernels {
    /// `op` of each element, computed in Double.
    public static func unary(_ op: UnaryOp, _ x: Tensor) -> Tensor {
        Tensor(dtype: x.dtype, shape: x.shape, doubles: x.doubles.map { op($0) })
    }
}
