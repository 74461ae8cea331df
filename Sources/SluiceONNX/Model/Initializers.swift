import Foundation
import SluiceTensor

/// Turns `TensorProto`s into tensors: raw_data, the typed fields, or external data files.
enum TensorDecoder {
    static func dtype(onnx code: Int32) -> DType? {
        switch code {
        case 1: return .float32
        case 2: return .uint8
        case 3: return .int8
        case 4: return .uint16
        case 5: return .int16
        case 6: return .int32
        case 7: return .int64
        case 9: return .bool
        case 10: return .float16
        case 11: return .float64
        case 12: return .uint32
        case 13: return .uint64
        case 16: return .bfloat16
        case 8: return .string
        default: return nil
        }
    }

    /// A dtype an op computes in (everything but string), for attributes such as Cast's `to`.
    static func numericDType(onnx code: Int32) -> DType? {
        dtype(onnx: code).flatMap { $0 == .string ? nil : $0 }
    }

    static func onnxTypeName(_ code: Int32) -> String {
        let names: [Int32: String] = [
            0: "UNDEFINED", 1: "FLOAT", 2: "UINT8", 3: "INT8", 4: "UINT16", 5: "INT16", 6: "INT32", 7: "INT64",
            8: "STRING", 9: "BOOL", 10: "FLOAT16", 11: "DOUBLE", 12: "UINT32", 13: "UINT64", 14: "COMPLEX64",
            15: "COMPLEX128", 16: "BFLOAT16",
        ]
        return names[code] ?? "data type \(code)"
    }

    /// The dtype and shape a proto declares, validated: its size in bytes fits an Int, so
    /// every later product of its dimensions is exact.
    static func info(_ proto: Onnx_TensorProto) throws -> (dtype: DType, shape: [Int]) {
        guard let dtype = dtype(onnx: proto.dataType) else {
            throw OpError.unsupported("data type \(onnxTypeName(proto.dataType)) is not supported (only numeric, bool and string tensors are)")
        }
        guard proto.dims.allSatisfy({ $0 >= 0 }) else { throw OpError.invalid("has negative dimensions \(proto.dims)") }
        if proto.hasSegment { throw OpError.unsupported("segmented tensors are not supported") }
        let shape = proto.dims.map { Int($0) }
        guard byteCount(dtype, shape) != nil else {
            throw OpError.invalid("has dimensions \(proto.dims): more bytes than any file holds")
        }
        return (dtype, shape)
    }

    /// Bytes of a tensor of this type, nil when the product overflows (the dimensions are
    /// hostile: no real tensor comes near).
    static func byteCount(_ dtype: DType, _ shape: [Int]) -> Int? {
        // A string element counts one byte here, so its dimensions' product is checked too.
        var count = max(dtype.byteSize, 1)
        for dim in shape {
            guard dim >= 0 else { return nil }
            let (product, overflow) = count.multipliedReportingOverflow(by: dim)
            if overflow { return nil }
            count = product
        }
        return count
    }

    /// Where an external tensor's bytes are: file, offset, length.
    struct ExternalLocation {
        let path: String
        let offset: Int
        let length: Int?
    }

    static func externalLocation(_ proto: Onnx_TensorProto, baseDirectory: String?) throws -> ExternalLocation {
        var entries: [String: String] = [:]
        for entry in proto.externalData { entries[entry.key] = entry.value }
        guard let location = entries["location"], !location.isEmpty else {
            throw OpError.invalid("is stored externally but has no location")
        }
        guard let baseDirectory else {
            throw OpError.unsupported("external data is only supported for initializers")
        }
        guard let offset = Int(entries["offset"] ?? "0"), offset >= 0 else {
            throw OpError.invalid("has an invalid external data offset '\(entries["offset"] ?? "")'")
        }
        var length: Int?
        if let text = entries["length"] {
            guard let value = Int(text), value >= 0 else { throw OpError.invalid("has an invalid external data length '\(text)'") }
            length = value
        }
        return ExternalLocation(path: try confined(location, to: baseDirectory), offset: offset, length: length)
    }

    /// External data lives in the model's folder: a location that leads elsewhere (absolute,
    /// through "..", or through a symbolic link) is refused before anything is opened, and the
    /// error says nothing of what is there.
    static func confined(_ location: String, to baseDirectory: String) throws -> String {
        let refusal = OpError("external data location '\(location)' is outside the model's folder; external data files must be inside it",
                              kind: .invalidGraph)
        guard !location.hasPrefix("/"), !location.contains("\0") else { throw refusal }
        let base = URL(fileURLWithPath: baseDirectory).standardizedFileURL.path
        let path = URL(fileURLWithPath: base).appendingPathComponent(location).standardizedFileURL.path
        guard path.hasPrefix(base.hasSuffix("/") ? base : base + "/") else { throw refusal }
        // Links resolved: both sides, since the model's folder may itself be reached by a link.
        guard let realBase = realPath(base), let real = realPath(path) else {
            throw OpError("external data file '\(location)' cannot be opened", kind: .fileNotReadable)
        }
        guard real.hasPrefix(realBase.hasSuffix("/") ? realBase : realBase + "/") else { throw refusal }
        return real
    }

    private static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// Checks that a tensor stored in the model holds as many values as its shape needs, so a
    /// declared size is never larger than the file that declares it.
    static func checkInline(_ proto: Onnx_TensorProto, _ dtype: DType, _ shape: [Int]) throws {
        let count = Tensor.elementCount(of: shape)
        let available: Int
        let field: String
        if dtype == .string {
            guard !proto.hasRawData else { throw OpError.invalid("a string tensor has raw_data; its values belong in string_data") }
            guard proto.stringData.count == count else {
                throw OpError.invalid("string_data has \(proto.stringData.count) values, string\(describe(shape)) needs \(count)")
            }
            return
        }
        if proto.hasRawData {
            available = proto.rawData.count / dtype.byteSize
            field = "raw_data has \(proto.rawData.count) bytes"
            guard proto.rawData.count == count * dtype.byteSize else {
                throw OpError.invalid("\(field), \(dtype)\(describe(shape)) needs \(count * dtype.byteSize)")
            }
            return
        }
        switch dtype {
        case .float32: (available, field) = (proto.floatData.count, "float_data")
        case .float64: (available, field) = (proto.doubleData.count, "double_data")
        case .int64: (available, field) = (proto.int64Data.count, "int64_data")
        case .uint32, .uint64: (available, field) = (proto.uint64Data.count, "uint64_data")
        default: (available, field) = (proto.int32Data.count, "int32_data")
        }
        guard available == count else {
            throw OpError.invalid("\(field) has \(available) values, \(dtype)\(describe(shape)) needs \(count)")
        }
    }

    /// Checks at load that an external tensor's file exists and holds its bytes.
    static func checkExternal(_ proto: Onnx_TensorProto, baseDirectory: String) throws {
        let (dtype, shape) = try info(proto)
        guard dtype != .string else { throw OpError.invalid("a string tensor cannot be stored externally") }
        let location = try externalLocation(proto, baseDirectory: baseDirectory)
        guard let expected = byteCount(dtype, shape) else { throw OpError.invalid("is larger than any file") }
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: location.path),
              let size = (attributes[.size] as? NSNumber)?.intValue else {
            throw OpError("external data file '\(location.path)' cannot be opened", kind: .fileNotReadable)
        }
        if let length = location.length, length != expected {
            throw OpError.invalid("external data length \(length) does not match \(dtype)\(describe(shape)) (\(expected) bytes)")
        }
        let (end, overflow) = location.offset.addingReportingOverflow(expected)
        guard !overflow, end <= size else {
            throw OpError("external data file '\(location.path)' has \(size) bytes; this tensor needs \(expected) bytes from offset \(location.offset)",
                          kind: .fileNotReadable)
        }
    }

    /// Decodes a proto into a new tensor (never sharing the proto's buffers).
    static func decode(_ proto: Onnx_TensorProto, name: String, baseDirectory: String?) throws -> Tensor {
        let (dtype, shape) = try info(proto)
        let count = Tensor.elementCount(of: shape)
        // The bytes must be there before anything is allocated for them. For a tensor stored in
        // the model this also holds the field its dtype reads (raw_data or the typed list) to
        // exactly `count` values, which every copy below relies on.
        // An external tensor's file must hold its bytes (checked against the file's size, inside
        // the model's folder); one where no folder is known (a Constant's value) is refused.
        if proto.dataLocation == .external {
            guard let baseDirectory else { throw OpError.unsupported("external data is only supported for initializers") }
            try checkExternal(proto, baseDirectory: baseDirectory)
        } else {
            try checkInline(proto, dtype, shape)
        }
        if dtype == .string {
            // Text from a file: invalid UTF-8 is replaced, never trusted.
            return Tensor(shape: shape, strings: proto.stringData.map { String(decoding: $0, as: UTF8.self) })
        }
        let tensor = Tensor(zeros: dtype, shape: shape)
        if proto.dataLocation == .external {
            let location = try externalLocation(proto, baseDirectory: baseDirectory)
            guard let handle = FileHandle(forReadingAtPath: location.path) else {
                throw OpError("external data file '\(location.path)' cannot be opened", kind: .fileNotReadable)
            }
            defer { try? handle.close() }
            let data: Data
            do {
                try handle.seek(toOffset: UInt64(location.offset))
                data = try handle.read(upToCount: tensor.byteCount) ?? Data()
            } catch {
                throw OpError("external data file '\(location.path)' cannot be read: \(error)", kind: .fileNotReadable)
            }
            guard data.count == tensor.byteCount else {
                throw OpError("external data file '\(location.path)' ends before this tensor's \(tensor.byteCount) bytes", kind: .fileNotReadable)
            }
            data.withUnsafeBytes { raw in
                if let base = raw.baseAddress { tensor.storage.bytes.copyMemory(from: base, byteCount: data.count) }
            }
            return tensor
        }
        if proto.hasRawData {
            let raw = proto.rawData
            raw.withUnsafeBytes { bytes in
                if let base = bytes.baseAddress { tensor.storage.bytes.copyMemory(from: base, byteCount: min(raw.count, tensor.byteCount)) }
            }
            return tensor
        }
        switch dtype {
        case .float32:
            tensor.withUnsafeMutableBufferPointer(as: Float.self) { for i in 0..<count { $0[i] = proto.floatData[i] } }
        case .float64:
            tensor.withUnsafeMutableBufferPointer(as: Double.self) { for i in 0..<count { $0[i] = proto.doubleData[i] } }
        case .int64:
            tensor.withUnsafeMutableBufferPointer(as: Int64.self) { for i in 0..<count { $0[i] = proto.int64Data[i] } }
        case .int32:
            tensor.withUnsafeMutableBufferPointer(as: Int32.self) { for i in 0..<count { $0[i] = proto.int32Data[i] } }
        case .float16, .bfloat16, .uint16, .int16:
            // 16-bit types travel as their bit patterns, one per int32.
            tensor.withUnsafeMutableBufferPointer(as: UInt16.self) {
                for i in 0..<count { $0[i] = UInt16(truncatingIfNeeded: proto.int32Data[i]) }
            }
        case .uint32:
            tensor.withUnsafeMutableBufferPointer(as: UInt32.self) {
                for i in 0..<count { $0[i] = UInt32(truncatingIfNeeded: proto.uint64Data[i]) }
            }
        case .uint64:
            tensor.withUnsafeMutableBufferPointer(as: UInt64.self) { for i in 0..<count { $0[i] = proto.uint64Data[i] } }
        case .int8:
            tensor.withUnsafeMutableBufferPointer(as: Int8.self) {
                for i in 0..<count { $0[i] = Int8(truncatingIfNeeded: proto.int32Data[i]) }
            }
        case .uint8, .bool:
            tensor.withUnsafeMutableBufferPointer(as: UInt8.self) {
                for i in 0..<count { $0[i] = UInt8(truncatingIfNeeded: proto.int32Data[i]) }
            }
        case .string: break
        }
        return tensor
    }
}

/// An initializer the model knows of: its type, and where to get its bytes. Decoding happens
/// on demand, into a fresh tensor, so that an executor holds only the weights it asked for.
final class Initializer: @unchecked Sendable {
    enum Source {
        case proto(Onnx_TensorProto, baseDirectory: String)
        case tensor(Tensor)
    }

    let name: String
    let dtype: DType
    let shape: [Int]
    private let source: Source

    init(name: String, proto: Onnx_TensorProto, baseDirectory: String) throws {
        let (dtype, shape) = try TensorDecoder.info(proto)
        if proto.dataLocation == .external {
            try TensorDecoder.checkExternal(proto, baseDirectory: baseDirectory)
        } else {
            try TensorDecoder.checkInline(proto, dtype, shape)
        }
        self.name = name
        self.dtype = dtype
        self.shape = shape
        source = .proto(proto, baseDirectory: baseDirectory)
    }

    init(name: String, tensor: Tensor) {
        self.name = name
        dtype = tensor.dtype
        shape = tensor.shape
        source = .tensor(tensor)
    }

    var type: ValueType { ValueType(dtype, shape) }
    /// Exact: `TensorDecoder.info` checked the product when the initializer was read.
    var byteCount: Int { Tensor.elementCount(of: shape) * dtype.byteSize }

    func tensor() throws -> Tensor {
        switch source {
        case .tensor(let t): return t
        case .proto(let proto, let baseDirectory): return try TensorDecoder.decode(proto, name: name, baseDirectory: baseDirectory)
        }
    }
}
