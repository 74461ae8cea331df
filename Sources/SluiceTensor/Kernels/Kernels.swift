import CBLAS
import CKernels
import Foundation

/// Fast float32 kernels. Each has a plain-loop twin in `ReferenceKernels`; the tests compare them.
///
/// Conventions: tensors are dense row-major; kernels allocate their outputs (fully written, so
/// they start uninitialized) and never write their inputs. Shape errors are programming errors
/// here (preconditions): callers such as the ONNX executor validate shapes first with the
/// throwing shape functions (`Shapes`, `ConvGeometry`, `PoolGeometry`).
public enum Kernels {
    /// Applied once, before the first BLAS call: one BLAS thread, because a pipeline stage is
    /// one compute thread and threads per stage are the planner's decision. An explicit
    /// `OPENBLAS_NUM_THREADS` in the environment is respected.
    private static let defaultThreadsApplied: Void = {
        if ProcessInfo.processInfo.environment["OPENBLAS_NUM_THREADS"] == nil {
            openblas_set_num_threads(1)
        }
    }()

    /// Makes sure the default thread count is in place; every BLAS entry point calls this.
    @inline(__always)
    static func prepareBLAS() { _ = defaultThreadsApplied }

    /// OpenBLAS picks its kernels when it loads, from the CPU's model number. A CPU it does not
    /// know (newer than the library, or a virtual machine's generic model) gets the Prescott
    /// baseline: on a 16-core cloud Xeon with AVX-512, cblas_sgemm ran at 19 GFLOP/s that way
    /// and at 100 with SkylakeX's. The core type to ask for instead, from the CPU's features;
    /// nil when OpenBLAS chose a vector kernel or `OPENBLAS_CORETYPE` is set already.
    public static func betterBLASCoreType(environment: [String: String] = ProcessInfo.processInfo.environment) -> String? {
        guard let name = openblas_get_corename() else { return nil }
        return betterBLASCoreType(chosen: String(cString: name), environment: environment,
                                  avx512: sluice_cpu_has_avx512() != 0, avx2: sluice_kernels_vectorized() != 0)
    }

    /// The decision itself, from what OpenBLAS chose and what the CPU has.
    static func betterBLASCoreType(chosen: String, environment: [String: String], avx512: Bool, avx2: Bool) -> String? {
        let baseline: Set<String> = ["prescott", "core2", "penryn", "dunnington", "nehalem", "atom", "katmai", "coppermine",
                                     "northwood", "banias", "unknown"]
        guard environment["OPENBLAS_CORETYPE"] == nil, baseline.contains(chosen.lowercased()) else { return nil }
        if avx512 { return "SkylakeX" }
        if avx2 { return "Haswell" }
        return nil
    }

    /// Sets the number of threads OpenBLAS uses from now on (process-wide).
    public static func setThreads(_ count: Int) {
        precondition(count >= 1, "BLAS thread count must be at least 1, not \(count)")
        prepareBLAS()
        openblas_set_num_threads(Int32(count))
    }

    /// The number of threads OpenBLAS uses.
    public static var threads: Int {
        prepareBLAS()
        return Int(openblas_get_num_threads())
    }
}

/// The instruction sets the C kernels are built for. The best one the CPU runs is picked when the
/// process starts, unless `SLUICE_KERNELS=avx2` or `SLUICE_KERNELS=baseline` asks for less (to
/// compare levels on one machine). AVX-512 is used by the packed matrix product and the direct
/// 1-D convolution (not on AMD Zen 4, where that convolution's AVX2 build is faster); the other
/// kernels stop at AVX2.
public enum InstructionLevel: Int, Comparable, CaseIterable, Sendable, CustomStringConvertible {
    case baseline = 0, avx2 = 1, avx512 = 2

    /// The level the kernels use in this process.
    public static var inUse: InstructionLevel { InstructionLevel(rawValue: Int(sluice_kernels_level())) ?? .baseline }

    /// Every level up to the one in use: the ones a test can run and compare.
    public static var runnable: [InstructionLevel] { allCases.filter { $0 <= inUse } }

    /// Runs `body` with the kernels of at most `level` on this thread only; other threads keep the
    /// process's level. Lets one test run a whole model at every level in one process.
    public static func capped<T>(at level: InstructionLevel, _ body: () throws -> T) rethrows -> T {
        sluice_kernels_cap_thread(Int32(level.rawValue))
        defer { sluice_kernels_cap_thread(-1) }
        return try body()
    }

    public static func < (a: InstructionLevel, b: InstructionLevel) -> Bool { a.rawValue < b.rawValue }

    public var description: String {
        switch self {
        case .baseline: return "baseline"
        case .avx2: return "avx2"
        case .avx512: return "avx512"
        }
    }
}

/// An activation applied elementwise, alone or fused into the epilogue of Conv and Gemm.
public enum Activation: Sendable, Equatable, CustomStringConvertible {
    case none
    case relu
    case leakyRelu(alpha: Float)
    case clip(min: Float, max: Float)
    case sigmoid
    case tanh
    /// x · Φ(x) with the exact (erf) Φ.
    case gelu

    public var description: String {
        switch self {
        case .none: return "none"
        case .relu: return "Relu"
        case .leakyRelu(let alpha): return "LeakyRelu(\(alpha))"
        case .clip(let lo, let hi): return "Clip(\(lo), \(hi))"
        case .sigmoid: return "Sigmoid"
        case .tanh: return "Tanh"
        case .gelu: return "Gelu"
        }
    }

    /// Applies the activation in place to `count` floats.
    public func apply(_ p: UnsafeMutablePointer<Float>, count: Int) {
        if self == .none { return }
        apply(UnsafePointer(p), into: p, count: count)
    }

    /// Writes `activation(src[i])` to `dst[i]`; `src` and `dst` may be the same memory.
    public func apply(_ src: UnsafePointer<Float>, into dst: UnsafeMutablePointer<Float>, count: Int) {
        switch self {
        case .none:
            if UnsafePointer(dst) != src { dst.update(from: src, count: count) }
        case .relu:
            for i in 0..<count { dst[i] = Swift.max(src[i], 0) }
        case .leakyRelu(let alpha):
            for i in 0..<count { let v = src[i]; dst[i] = v < 0 ? v * alpha : v }
        case .clip(let lo, let hi):
            for i in 0..<count { dst[i] = Swift.min(Swift.max(src[i], lo), hi) }
        case .sigmoid:
            FastMath.sigmoid(src, dst, count: count)
        case .tanh:
            FastMath.tanh(src, dst, count: count)
        case .gelu:
            FastMath.gelu(src, dst, count: count)
        }
    }

    /// The activation of one value (used by the reference kernels).
    public func callAsFunction(_ v: Float) -> Float {
        switch self {
        case .none: return v
        case .relu: return v > 0 ? v : 0
        case .leakyRelu(let alpha): return v < 0 ? v * alpha : v
        case .clip(let lo, let hi): return Swift.min(Swift.max(v, lo), hi)
        case .sigmoid: return Activation.sigmoid(v)
        case .tanh: return Foundation.tanhf(v)
        case .gelu: return Float(0.5 * Double(v) * (1 + Foundation.erf(Double(v) / 2.0.squareRoot())))
        }
    }

    /// A logistic function that does not overflow for large |x|.
    static func sigmoid(_ x: Float) -> Float {
        if x >= 0 {
            return 1 / (1 + Foundation.expf(-x))
        }
        let e = Foundation.expf(x)
        return e / (1 + e)
    }
}

/// A growable float buffer that kernels reuse between calls (im2col columns and the like),
/// so that the steady state allocates nothing. Not thread-safe: one user at a time.
public final class Scratch: @unchecked Sendable {
    private var pointer: UnsafeMutablePointer<Float>
    public private(set) var capacity: Int

    public init(capacity: Int = 0) {
        self.capacity = capacity
        pointer = .allocate(capacity: max(capacity, 1))
    }

    deinit { pointer.deallocate() }

    /// At least `count` floats, uninitialized; valid until the next call.
    public func floats(_ count: Int) -> UnsafeMutablePointer<Float> {
        if count > capacity {
            pointer.deallocate()
            // Grow geometrically so that slowly growing batches do not reallocate every time.
            capacity = max(count, capacity + capacity / 2)
            pointer = .allocate(capacity: capacity)
        }
        return pointer
    }
}

/// A shape mismatch found before running a kernel. Callers add the context (node, op).
public struct ShapeError: Error, CustomStringConvertible, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

extension Tensor {
    /// A tensor whose bytes are not initialized: only for kernels that write every element.
    public init(uninitialized dtype: DType, shape: [Int]) {
        self.init(dtype: dtype, shape: shape,
                  storage: TensorStorage(uninitializedByteCount: Tensor.elementCount(of: shape) * dtype.byteSize))
    }

    /// The float elements, read-only (for kernels in other modules).
    public var floatData: UnsafePointer<Float> { floatPointer }

    /// The float elements of a tensor the caller just created (for kernels in other modules).
    public var mutableFloatData: UnsafeMutablePointer<Float> { mutableFloatPointer }

    /// The float elements, read-only, for kernels.
    var floatPointer: UnsafePointer<Float> {
        precondition(dtype == .float32, "float kernel given a \(dtype) tensor")
        return UnsafePointer(storage.bytes.bindMemory(to: Float.self, capacity: elementCount))
    }

    /// The float elements of a tensor this code just created.
    var mutableFloatPointer: UnsafeMutablePointer<Float> {
        precondition(dtype == .float32, "float kernel given a \(dtype) tensor")
        return storage.bytes.bindMemory(to: Float.self, capacity: elementCount)
    }
}
