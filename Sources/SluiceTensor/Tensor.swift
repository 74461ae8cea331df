/// Element types, numbered as ONNX's `TensorProto.DataType` so the same code travels on the wire.
public enum DType: UInt8, Sendable, CustomStringConvertible {
    case float32 = 1
    case uint8 = 2
    case int8 = 3
    case uint16 = 4
    case int16 = 5
    case int32 = 6
    case int64 = 7
    case bool = 9
    case float16 = 10
    case float64 = 11
    case uint32 = 12
    case uint64 = 13
    /// Brain floating point: the top 16 bits of a float32 (no Swift type; kept as UInt16 bits).
    case bfloat16 = 16
    /// Text, such as the class labels of scikit-learn classifiers. The elements live beside the
    /// bytes (`TensorStorage.strings`), which hold none: byte-copying code sees an empty tensor.
    case string = 8

    public var byteSize: Int {
        switch self {
        case .string: return 0
        case .uint8, .int8, .bool: return 1
        case .float16, .bfloat16, .uint16, .int16: return 2
        case .float32, .int32, .uint32: return 4
        case .int64, .float64, .uint64: return 8
        }
    }

    public var description: String {
        switch self {
        case .float32: return "float32"
        case .uint8: return "uint8"
        case .int8: return "int8"
        case .int32: return "int32"
        case .int64: return "int64"
        case .bool: return "bool"
        case .float16: return "float16"
        case .float64: return "float64"
        case .uint16: return "uint16"
        case .int16: return "int16"
        case .uint32: return "uint32"
        case .uint64: return "uint64"
        case .bfloat16: return "bfloat16"
        case .string: return "string"
        }
    }
}

import Foundation

/// The bytes behind a tensor. Either owned (allocated here, freed on deinit) or borrowed from
/// another owner, such as a received ZeroMQ message, which stays alive as long as this does.
public final class TensorStorage: @unchecked Sendable {
    public static let alignment = 64

    /// A per-thread count of owned allocations, so a test can check its own thread's work.
    private static let counterKey: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key) { $0?.deallocate() }
        return key
    }()

    private static func countAllocation() {
        if let p = pthread_getspecific(counterKey) {
            p.assumingMemoryBound(to: Int.self).pointee += 1
        } else {
            let p = UnsafeMutablePointer<Int>.allocate(capacity: 1)
            p.initialize(to: 1)
            pthread_setspecific(counterKey, p)
        }
    }

    /// How many owned buffers this thread has allocated so far (borrowed storage is not
    /// counted): tests use it to check that a planned steady state allocates nothing.
    public static var allocationCount: Int {
        pthread_getspecific(counterKey).map { $0.assumingMemoryBound(to: Int.self).pointee } ?? 0
    }

    public let bytes: UnsafeMutableRawPointer
    public let byteCount: Int
    private let owner: AnyObject?
    /// A string tensor's elements (empty for every other dtype).
    public let strings: [String]

    /// Allocates `byteCount` zeroed, 64-byte aligned bytes.
    public init(byteCount: Int) {
        Self.countAllocation()
        self.byteCount = byteCount
        bytes = UnsafeMutableRawPointer.allocate(byteCount: max(byteCount, 1), alignment: Self.alignment)
        bytes.initializeMemory(as: UInt8.self, repeating: 0, count: max(byteCount, 1))
        owner = nil
        strings = []
    }

    /// Holds a string tensor's elements.
    public init(strings: [String]) {
        byteCount = 0
        bytes = UnsafeMutableRawPointer.allocate(byteCount: 1, alignment: Self.alignment)
        owner = nil
        self.strings = strings
    }

    /// Allocates `byteCount` 64-byte aligned bytes left uninitialized, for a kernel that
    /// writes every byte before anyone reads them.
    public init(uninitializedByteCount byteCount: Int) {
        Self.countAllocation()
        self.byteCount = byteCount
        bytes = UnsafeMutableRawPointer.allocate(byteCount: max(byteCount, 1), alignment: Self.alignment)
        owner = nil
        strings = []
    }

    /// Wraps memory that `owner` keeps valid; nothing is copied.
    public init(borrowing bytes: UnsafeMutableRawPointer, byteCount: Int, owner: AnyObject) {
        self.bytes = bytes
        self.byteCount = byteCount
        self.owner = owner
        strings = []
    }

    deinit {
        if owner == nil { bytes.deallocate() }
    }
}

/// A dense, row-major (C order) tensor. Values share storage: a tensor is written only by
/// the kernel that created it, before anyone else sees it.
public struct Tensor: @unchecked Sendable {
    public let dtype: DType
    public let shape: [Int]
    public let storage: TensorStorage

    public init(dtype: DType, shape: [Int], storage: TensorStorage) {
        precondition(storage.byteCount >= Tensor.elementCount(of: shape) * dtype.byteSize,
                     "storage of \(storage.byteCount) bytes is too small for \(dtype)\(shape)")
        self.dtype = dtype
        self.shape = shape
        self.storage = storage
    }

    /// A zero-filled tensor.
    public init(zeros dtype: DType, shape: [Int]) {
        self.init(dtype: dtype, shape: shape,
                  storage: TensorStorage(byteCount: Tensor.elementCount(of: shape) * dtype.byteSize))
    }

    public init(shape: [Int], floats: [Float]) {
        precondition(floats.count == Tensor.elementCount(of: shape), "\(floats.count) values for shape \(shape)")
        self.init(zeros: .float32, shape: shape)
        floats.withUnsafeBytes { storage.bytes.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
    }

    /// A string tensor.
    public init(shape: [Int], strings: [String]) {
        precondition(strings.count == Tensor.elementCount(of: shape), "\(strings.count) strings for shape \(shape)")
        self.init(dtype: .string, shape: shape, storage: TensorStorage(strings: strings))
    }

    public init(shape: [Int], int64s: [Int64]) {
        precondition(int64s.count == Tensor.elementCount(of: shape), "\(int64s.count) values for shape \(shape)")
        self.init(zeros: .int64, shape: shape)
        int64s.withUnsafeBytes { storage.bytes.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
    }

    public static func elementCount(of shape: [Int]) -> Int { shape.reduce(1, *) }

    public var elementCount: Int { Tensor.elementCount(of: shape) }
    public var byteCount: Int { elementCount * dtype.byteSize }
    public var rank: Int { shape.count }

    /// The same bytes seen under another shape with the same element count.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        precondition(Tensor.elementCount(of: newShape) == elementCount, "cannot reshape \(shape) to \(newShape)")
        return Tensor(dtype: dtype, shape: newShape, storage: storage)
    }

    public func withUnsafeBufferPointer<T, R>(as type: T.Type, _ body: (UnsafeBufferPointer<T>) throws -> R) rethrows -> R {
        precondition(MemoryLayout<T>.stride == dtype.byteSize, "\(T.self) does not match \(dtype)")
        // The storage must outlive `body`'s use of its bytes, even when this tensor is a temporary.
        return try withExtendedLifetime(storage) {
            try body(UnsafeBufferPointer(start: storage.bytes.bindMemory(to: T.self, capacity: elementCount), count: elementCount))
        }
    }

    /// Writes are allowed only on a tensor this code just created (see the type's comment).
    public func withUnsafeMutableBufferPointer<T, R>(as type: T.Type, _ body: (UnsafeMutableBufferPointer<T>) throws -> R) rethrows -> R {
        precondition(MemoryLayout<T>.stride == dtype.byteSize, "\(T.self) does not match \(dtype)")
        return try withExtendedLifetime(storage) {
            try body(UnsafeMutableBufferPointer(start: storage.bytes.bindMemory(to: T.self, capacity: elementCount), count: elementCount))
        }
    }

    public var floats: [Float] {
        precondition(dtype == .float32, "floats of a \(dtype) tensor")
        return withUnsafeBufferPointer(as: Float.self) { Array($0) }
    }

    /// A string tensor's elements; a string tensor made as zeros holds empty strings, as
    /// ONNX's default string is.
    public var strings: [String] {
        precondition(dtype == .string, "strings of a \(dtype) tensor")
        let held = storage.strings
        return held.count == elementCount ? held : Array(repeating: "", count: elementCount)
    }

    public var int64s: [Int64] {
        precondition(dtype == .int64, "int64s of a \(dtype) tensor")
        return withUnsafeBufferPointer(as: Int64.self) { Array($0) }
    }

    /// Rows `range` of the first dimension, copied.
    public func rows(_ range: Range<Int>) -> Tensor {
        precondition(rank >= 1 && range.lowerBound >= 0 && range.upperBound <= shape[0], "rows \(range) of \(shape)")
        let rowElements = shape.count > 1 ? Tensor.elementCount(of: Array(shape.dropFirst())) : 1
        let rowBytes = rowElements * dtype.byteSize
        var newShape = shape
        newShape[0] = range.count
        if dtype == .string {
            return Tensor(shape: newShape, strings: Array(strings[(range.lowerBound * rowElements)..<(range.upperBound * rowElements)]))
        }
        let out = Tensor(zeros: dtype, shape: newShape)
        out.storage.bytes.copyMemory(from: storage.bytes + range.lowerBound * rowBytes, byteCount: range.count * rowBytes)
        return out
    }

    /// Stacks tensors of equal trailing shape along the first dimension.
    public static func concatenatingRows(_ parts: [Tensor]) -> Tensor {
        precondition(!parts.isEmpty, "nothing to concatenate")
        let first = parts[0]
        let tail = Array(first.shape.dropFirst())
        var offset = 0
        let total = parts.reduce(0) { $0 + $1.shape[0] }
        if first.dtype == .string {
            precondition(parts.allSatisfy { $0.dtype == .string && Array($0.shape.dropFirst()) == tail }, "mismatched rows")
            return Tensor(shape: [total] + tail, strings: parts.flatMap(\.strings))
        }
        let out = Tensor(zeros: first.dtype, shape: [total] + tail)
        for part in parts {
            precondition(part.dtype == first.dtype && Array(part.shape.dropFirst()) == tail, "mismatched rows \(part.shape) vs \(first.shape)")
            (out.storage.bytes + offset).copyMemory(from: part.storage.bytes, byteCount: part.byteCount)
            offset += part.byteCount
        }
        return out
    }
}

extension Tensor: CustomStringConvertible {
    public var description: String { "Tensor<\(dtype)>\(shape)" }
}
