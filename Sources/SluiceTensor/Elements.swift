/// Element access for the many rarely used ops that need not be fast: every element of any
/// numeric dtype as a Double (exact for floats and for integers up to 2^53) or as an Int64
/// (exact for every integer dtype but uint64, which keeps its bit pattern: values past
/// Int64.max read as negative), and tensors built back from those.
extension DType {
    public static let floatingPoint: [DType] = [.float32, .float64, .float16, .bfloat16]
    public var isFloatingPoint: Bool { DType.floatingPoint.contains(self) }
    public var isInteger: Bool { !isFloatingPoint && self != .bool }
    public var isSigned: Bool { ![.uint8, .uint16, .uint32, .uint64, .bool].contains(self) }
}

extension Tensor {
    /// Every element as a Double (bool as 0 or 1).
    public var doubles: [Double] {
        let n = elementCount
        switch dtype {
        case .float32: return withUnsafeBufferPointer(as: Float.self) { $0.map(Double.init) }
        case .float64: return withUnsafeBufferPointer(as: Double.self) { Array($0) }
        case .float16: return withUnsafeBufferPointer(as: Float16.self) { $0.map(Double.init) }
        case .int64: return withUnsafeBufferPointer(as: Int64.self) { $0.map(Double.init) }
        case .int32: return withUnsafeBufferPointer(as: Int32.self) { $0.map(Double.init) }
        case .int8: return withUnsafeBufferPointer(as: Int8.self) { $0.map(Double.init) }
        case .uint8, .bool: return withUnsafeBufferPointer(as: UInt8.self) { n == 0 ? [] : $0.map(Double.init) }
        case .int16: return withUnsafeBufferPointer(as: Int16.self) { $0.map(Double.init) }
        case .uint16: return withUnsafeBufferPointer(as: UInt16.self) { $0.map(Double.init) }
        case .uint32: return withUnsafeBufferPointer(as: UInt32.self) { $0.map(Double.init) }
        case .uint64: return withUnsafeBufferPointer(as: UInt64.self) { $0.map { Double($0) } }
        case .bfloat16: return withUnsafeBufferPointer(as: UInt16.self) { $0.map { Double(Kernels.bfloat16ToFloat($0)) } }
        // As ONNX's Cast reads text: a number, else NaN.
        case .string: return strings.map { Double($0.trimmingCharacters(in: .whitespaces)) ?? .nan }
        }
    }

    /// Every element as an Int64: integers exactly, floats truncated toward zero (NaN as 0,
    /// saturating), bool as 0 or 1.
    public var int64Values: [Int64] {
        switch dtype {
        case .int64: return withUnsafeBufferPointer(as: Int64.self) { Array($0) }
        case .int32: return withUnsafeBufferPointer(as: Int32.self) { $0.map(Int64.init) }
        case .int8: return withUnsafeBufferPointer(as: Int8.self) { $0.map(Int64.init) }
        case .uint8, .bool: return withUnsafeBufferPointer(as: UInt8.self) { $0.map(Int64.init) }
        case .int16: return withUnsafeBufferPointer(as: Int16.self) { $0.map(Int64.init) }
        case .uint16: return withUnsafeBufferPointer(as: UInt16.self) { $0.map(Int64.init) }
        case .uint32: return withUnsafeBufferPointer(as: UInt32.self) { $0.map(Int64.init) }
        case .uint64: return withUnsafeBufferPointer(as: UInt64.self) { $0.map { Int64(bitPattern: $0) } }
        default: return doubles.map(Tensor.saturatingInt64)
        }
    }

    /// Whether each element is nonzero.
    public var truthValues: [Bool] {
        switch dtype {
        case .bool, .uint8: return withUnsafeBufferPointer(as: UInt8.self) { $0.map { $0 != 0 } }
        default: return doubles.map { $0 != 0 }
        }
    }

    static func saturatingInt64(_ v: Double) -> Int64 {
        if v.isNaN { return 0 }
        if v >= 9.223372036854775807e18 { return .max }
        if v <= -9.223372036854775808e18 { return .min }
        return Int64(v)
    }

    static func saturatingUInt64(_ v: Double) -> UInt64 {
        if v.isNaN || v <= 0 { return 0 }
        if v >= 1.8446744073709551615e19 { return .max }
        return UInt64(v)
    }

    /// A tensor of `dtype` from Doubles: floats rounded to the type, integers truncated toward
    /// zero and wrapped to the width, bool as `!= 0`.
    public init(dtype: DType, shape: [Int], doubles values: [Double]) {
        precondition(values.count == Tensor.elementCount(of: shape), "\(values.count) values for shape \(shape)")
        self.init(uninitialized: dtype, shape: shape)
        let n = values.count
        switch dtype {
        case .float32: withUnsafeMutableBufferPointer(as: Float.self) { for i in 0..<n { $0[i] = Float(values[i]) } }
        case .float64: withUnsafeMutableBufferPointer(as: Double.self) { for i in 0..<n { $0[i] = values[i] } }
        case .float16: withUnsafeMutableBufferPointer(as: Float16.self) { for i in 0..<n { $0[i] = Float16(Float(values[i])) } }
        case .bfloat16:
            withUnsafeMutableBufferPointer(as: UInt16.self) { for i in 0..<n { $0[i] = Kernels.floatToBFloat16(Float(values[i])) } }
        case .bool: withUnsafeMutableBufferPointer(as: UInt8.self) { for i in 0..<n { $0[i] = values[i] != 0 ? 1 : 0 } }
        case .uint64: withUnsafeMutableBufferPointer(as: UInt64.self) { for i in 0..<n { $0[i] = Tensor.saturatingUInt64(values[i]) } }
        case .string: self = Tensor(shape: shape, strings: values.map { $0 == $0.rounded() && abs($0) < 1e15 ? String(Int64($0)) : String($0) })
        default: self = Tensor(dtype: dtype, shape: shape, int64Values: values.map(Tensor.saturatingInt64))
        }
    }

    /// A tensor of `dtype` from Int64s: integers wrapped to the width, floats converted, bool as `!= 0`.
    public init(dtype: DType, shape: [Int], int64Values values: [Int64]) {
        precondition(values.count == Tensor.elementCount(of: shape), "\(values.count) values for shape \(shape)")
        self.init(uninitialized: dtype, shape: shape)
        let n = values.count
        switch dtype {
        case .int64: withUnsafeMutableBufferPointer(as: Int64.self) { for i in 0..<n { $0[i] = values[i] } }
        case .int32: withUnsafeMutableBufferPointer(as: Int32.self) { for i in 0..<n { $0[i] = Int32(truncatingIfNeeded: values[i]) } }
        case .int8: withUnsafeMutableBufferPointer(as: Int8.self) { for i in 0..<n { $0[i] = Int8(truncatingIfNeeded: values[i]) } }
        case .uint8: withUnsafeMutableBufferPointer(as: UInt8.self) { for i in 0..<n { $0[i] = UInt8(truncatingIfNeeded: values[i]) } }
        case .int16: withUnsafeMutableBufferPointer(as: Int16.self) { for i in 0..<n { $0[i] = Int16(truncatingIfNeeded: values[i]) } }
        case .uint16: withUnsafeMutableBufferPointer(as: UInt16.self) { for i in 0..<n { $0[i] = UInt16(truncatingIfNeeded: values[i]) } }
        case .uint32: withUnsafeMutableBufferPointer(as: UInt32.self) { for i in 0..<n { $0[i] = UInt32(truncatingIfNeeded: values[i]) } }
        case .uint64: withUnsafeMutableBufferPointer(as: UInt64.self) { for i in 0..<n { $0[i] = UInt64(bitPattern: values[i]) } }
        case .bool: withUnsafeMutableBufferPointer(as: UInt8.self) { for i in 0..<n { $0[i] = values[i] != 0 ? 1 : 0 } }
        case .string: self = Tensor(shape: shape, strings: values.map { String($0) })
        default: self = Tensor(dtype: dtype, shape: shape, doubles: values.map(Double.init))
        }
    }

    /// A bool tensor.
    public init(shape: [Int], bools values: [Bool]) {
        precondition(values.count == Tensor.elementCount(of: shape), "\(values.count) values for shape \(shape)")
        self.init(uninitialized: .bool, shape: shape)
        withUnsafeMutableBufferPointer(as: UInt8.self) { for i in 0..<values.count { $0[i] = values[i] ? 1 : 0 } }
    }

    /// A scalar of `dtype`.
    public init(scalar value: Double, dtype: DType) {
        self.init(dtype: dtype, shape: [], doubles: [value])
    }
}

extension Shapes {
    /// Row-major strides of a shape.
    public static func strides(_ shape: [Int]) -> [Int] {
        var s = [Int](repeating: 1, count: shape.count)
        var step = 1
        for d in stride(from: shape.count - 1, through: 0, by: -1) {
            s[d] = step
            step *= shape[d]
        }
        return s
    }

    /// For every element of `target` (row-major), the flat position of the element of `shape`
    /// that broadcasting reads for it. `shape` must broadcast to `target`.
    public static func broadcastOffsets(_ shape: [Int], to target: [Int]) -> [Int] {
        let total = Tensor.elementCount(of: target)
        var offsets = [Int](repeating: 0, count: total)
        guard total > 0 else { return offsets }
        let strides = broadcastStrides(shape, to: target)
        var index = [Int](repeating: 0, count: target.count)
        var offset = 0
        for i in 0..<total {
            offsets[i] = offset
            var d = target.count - 1
            while d >= 0 {
                index[d] += 1
                offset += strides[d]
                if index[d] < target[d] { break }
                offset -= strides[d] * target[d]
                index[d] = 0
                d -= 1
            }
        }
        return offsets
    }
}

extension Kernels {
    /// Copies `count` elements of `size` bytes from `src` to `dst` positions given by two index
    /// lists (`dst[dstIndex[i]] = src[srcIndex[i]]`), for the data-movement ops of any dtype.
    public static func gatherElements(from src: UnsafeRawPointer, _ srcIndex: [Int], to dst: UnsafeMutableRawPointer,
                                      _ dstIndex: [Int], size: Int) {
        precondition(srcIndex.count == dstIndex.count)
        switch size {
        case 1:
            let s = src.assumingMemoryBound(to: UInt8.self), d = dst.assumingMemoryBound(to: UInt8.self)
            for i in 0..<srcIndex.count { d[dstIndex[i]] = s[srcIndex[i]] }
        case 2:
            let s = src.assumingMemoryBound(to: UInt16.self), d = dst.assumingMemoryBound(to: UInt16.self)
            for i in 0..<srcIndex.count { d[dstIndex[i]] = s[srcIndex[i]] }
        case 4:
            let s = src.assumingMemoryBound(to: UInt32.self), d = dst.assumingMemoryBound(to: UInt32.self)
            for i in 0..<srcIndex.count { d[dstIndex[i]] = s[srcIndex[i]] }
        default:
            let s = src.assumingMemoryBound(to: UInt64.self), d = dst.assumingMemoryBound(to: UInt64.self)
            for i in 0..<srcIndex.count { d[dstIndex[i]] = s[srcIndex[i]] }
        }
    }

    /// A new tensor of `shape` whose element i is `x`'s element `sources[i]`, or where that
    /// is negative, `fill`'s only element (same dtype as `x`).
    public static func pick(_ x: Tensor, _ sources: [Int], shape: [Int], fill: Tensor? = nil) -> Tensor {
        precondition(sources.count == Tensor.elementCount(of: shape))
        precondition(fill == nil || (fill!.dtype == x.dtype && fill!.elementCount == 1))
        let out = Tensor(uninitialized: x.dtype, shape: shape)
        func copy<T>(_: T.Type) {
            let s = UnsafePointer(x.storage.bytes.assumingMemoryBound(to: T.self))
            let d = out.storage.bytes.assumingMemoryBound(to: T.self)
            if let fill {
                let value = fill.storage.bytes.assumingMemoryBound(to: T.self)[0]
                for i in 0..<sources.count { d[i] = sources[i] < 0 ? value : s[sources[i]] }
                return
            }
            for i in 0..<sources.count { d[i] = s[sources[i]] }
        }
        switch x.dtype.byteSize {
        case 1: copy(UInt8.self)
        case 2: copy(UInt16.self)
        case 4: copy(UInt32.self)
        default: copy(UInt64.self)
        }
        return out
    }
}
