import Foundation

public struct NPYError: Error, CustomStringConvertible {
    public let path: String
    public let reason: String
    public var description: String { "\(path): not a readable .npy file: \(reason)" }
}

/// Reads and writes NumPy's .npy format (versions 1.0–3.0, little-endian, C order).
public enum NPY {
    private static let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]  // "\x93NUMPY"

    public static func read(path: String) throws -> Tensor {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw NPYError(path: path, reason: "cannot open the file")
        }
        return try decode(data, path: path)
    }

    /// The shape an .npy header declares, from the file's first bytes; nil when they are not one.
    public static func shape(ofHeader data: Data) -> [Int]? {
        try? parseHeader([UInt8](data), path: "").shape
    }

    /// Checks the magic, version and header dict; every size is checked before it is used.
    static func parseHeader(_ bytes: [UInt8], path: String) throws -> (dtype: DType, shape: [Int], dataStart: Int) {
        guard bytes.count >= 10, Array(bytes[0..<6]) == magic else {
            throw NPYError(path: path, reason: "missing the \\x93NUMPY magic")
        }
        let major = bytes[6]
        let headerLength: Int
        let headerStart: Int
        switch major {
        case 1:
            headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
            headerStart = 10
        case 2, 3:
            guard bytes.count >= 12 else { throw NPYError(path: path, reason: "truncated header") }
            headerLength = Int(bytes[8]) | Int(bytes[9]) << 8 | Int(bytes[10]) << 16 | Int(bytes[11]) << 24
            headerStart = 12
        default:
            throw NPYError(path: path, reason: "unsupported format version \(major)")
        }
        guard bytes.count >= headerStart + headerLength else { throw NPYError(path: path, reason: "truncated header") }
        let header = String(decoding: bytes[headerStart..<(headerStart + headerLength)], as: UTF8.self)

        guard let descr = value(of: "descr", in: header)?.trimmingCharacters(in: CharacterSet(charactersIn: "'\" ")) else {
            throw NPYError(path: path, reason: "header has no descr")
        }
        if let order = value(of: "fortran_order", in: header), order.hasPrefix("True") {
            throw NPYError(path: path, reason: "Fortran-order arrays are not supported; save with np.ascontiguousarray")
        }
        guard let shapeText = value(of: "shape", in: header) else { throw NPYError(path: path, reason: "header has no shape") }
        // Every dimension a non-negative integer (a dropped or negative one would change the shape).
        var shape: [Int] = []
        for part in shapeText.trimmingCharacters(in: CharacterSet(charactersIn: "() ")).split(separator: ",") {
            let text = part.trimmingCharacters(in: .whitespaces)
            if text.isEmpty { continue }
            guard let dim = Int(text), dim >= 0 else { throw NPYError(path: path, reason: "shape \(shapeText) has a dimension '\(text)' that is not a size") }
            shape.append(dim)
        }

        let dtype: DType
        switch descr {
        case "<f4": dtype = .float32
        case "<f8": dtype = .float64
        case "<f2": dtype = .float16
        case "<i8": dtype = .int64
        case "<i4": dtype = .int32
        case "|i1": dtype = .int8
        case "|u1": dtype = .uint8
        case "|b1": dtype = .bool
        case "<i2": dtype = .int16
        case "<u2": dtype = .uint16
        case "<u4": dtype = .uint32
        case "<u8": dtype = .uint64
        default: throw NPYError(path: path, reason: "unsupported dtype '\(descr)' (use little-endian float32, float64, float16, int64, int32, int16, int8, uint64, uint32, uint16, uint8 or bool)")
        }
        return (dtype, shape, headerStart + headerLength)
    }

    public static func decode(_ data: Data, path: String = "<memory>") throws -> Tensor {
        let bytes = [UInt8](data)
        let (dtype, shape, dataStart) = try parseHeader(bytes, path: path)
        // The bytes the shape needs, computed without overflow and found in the file before
        // anything is allocated for them.
        var elements = 1
        for dim in shape {
            let (product, overflow) = elements.multipliedReportingOverflow(by: dim)
            guard !overflow else { throw NPYError(path: path, reason: "shape \(shape) is too large for any file") }
            elements = product
        }
        let (byteCount, overflow) = elements.multipliedReportingOverflow(by: dtype.byteSize)
        guard !overflow, bytes.count - dataStart >= byteCount else {
            throw NPYError(path: path, reason: "expected \(overflow ? "more" : String(byteCount)) bytes of data for \(dtype)\(shape), found \(bytes.count - dataStart)")
        }
        let tensor = Tensor(zeros: dtype, shape: shape)
        bytes.withUnsafeBytes { raw in
            guard let base = raw.baseAddress, byteCount > 0 else { return }
            tensor.storage.bytes.copyMemory(from: base + dataStart, byteCount: byteCount)
        }
        return tensor
    }

    public static func encode(_ tensor: Tensor) -> Data {
        if tensor.dtype == .string { return encodeStrings(tensor) }
        var data = header(dtype: tensor.dtype, shape: tensor.shape)
        data.append(Data(bytes: tensor.storage.bytes, count: tensor.byteCount))
        return data
    }

    /// Strings as NumPy's fixed-width unicode ('<U' and the longest string's length in code
    /// points, each padded with zeros), which `numpy.load` reads without pickle.
    static func encodeStrings(_ tensor: Tensor) -> Data {
        let strings = tensor.strings.map { Array($0.unicodeScalars.map(\.value)) }
        let width = max(1, strings.map(\.count).max() ?? 1)
        var data = header(dtype: .string, shape: tensor.shape, descriptor: "<U\(width)")
        var units = [UInt32](repeating: 0, count: strings.count * width)
        for (i, scalars) in strings.enumerated() {
            for (j, scalar) in scalars.enumerated() { units[i * width + j] = scalar.littleEndian }
        }
        units.withUnsafeBytes { data.append(contentsOf: $0) }
        return data
    }

    /// The format's type code for a dtype.
    static func descriptor(_ dtype: DType) -> String {
        switch dtype {
        case .float32: return "<f4"
        case .float64: return "<f8"
        case .float16: return "<f2"
        case .int64: return "<i8"
        case .int32: return "<i4"
        case .int8: return "|i1"
        case .uint8: return "|u1"
        case .bool: return "|b1"
        case .int16: return "<i2"
        case .uint16: return "<u2"
        case .uint32: return "<u4"
        case .uint64: return "<u8"
        // NumPy has no bfloat16: its bit patterns, as ONNX's own test data stores them.
        case .bfloat16: return "<u2"
        // Never written: a string tensor has no fixed-width bytes (NPYRowWriter refuses it).
        case .string: return "|O"
        }
    }

    /// Everything before the data: magic, version, header length and the header dict, padded
    /// so the data starts on a 64-byte boundary (as NumPy does) and to at least `minimumLength`
    /// bytes, so that a header rewritten later with a larger row count keeps the same length.
    public static func header(dtype: DType, shape: [Int], minimumLength: Int = 0, descriptor typeCode: String? = nil) -> Data {
        let shapeText = shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
        var header = "{'descr': '\(typeCode ?? descriptor(dtype))', 'fortran_order': False, 'shape': \(shapeText), }"
        let unpadded = magic.count + 4 + header.utf8.count + 1
        var padding = (64 - unpadded % 64) % 64
        while unpadded + padding < minimumLength { padding += 64 }
        header += String(repeating: " ", count: padding) + "\n"
        var data = Data(magic)
        data.append(contentsOf: [1, 0, UInt8(header.utf8.count & 0xFF), UInt8((header.utf8.count >> 8) & 0xFF)])
        data.append(contentsOf: Array(header.utf8))
        return data
    }

    /// Writes the file in place with open(2): the path may be a device, a pipe or a symlink,
    /// and stays one.
    public static func write(_ tensor: Tensor, path: String) throws {
        try OutputFile.write(encode(tensor), to: path)
    }

    /// The text after `'key':` in a header dict, up to the next top-level comma.
    private static func value(of key: String, in header: String) -> String? {
        guard let keyRange = header.range(of: "'\(key)':") else { return nil }
        var depth = 0
        var result = ""
        for ch in header[keyRange.upperBound...] {
            if ch == "(" { depth += 1 }
            if ch == ")" { depth -= 1 }
            if (ch == "," && depth == 0) || ch == "}" { break }
            result.append(ch)
        }
        return result.trimmingCharacters(in: .whitespaces)
    }
}
