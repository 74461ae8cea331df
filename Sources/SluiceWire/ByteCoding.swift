/// Little-endian writing and bounds-checked reading for the binary batch header.
struct ByteWriter {
    private(set) var bytes: [UInt8] = []

    mutating func write<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    mutating func write(string: String) {
        let utf8 = Array(string.utf8)
        write(UInt16(utf8.count))
        bytes.append(contentsOf: utf8)
    }
}

struct ByteReader {
    private let buffer: UnsafeRawBufferPointer
    private(set) var offset = 0

    init(_ buffer: UnsafeRawBufferPointer) { self.buffer = buffer }

    mutating func read<T: FixedWidthInteger>(_ type: T.Type, _ field: String) throws -> T {
        let size = MemoryLayout<T>.size
        guard offset + size <= buffer.count else {
            throw WireError.truncated("header ends inside \(field) (byte \(offset) of \(buffer.count))")
        }
        var value: T = 0
        withUnsafeMutableBytes(of: &value) { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: buffer[offset..<(offset + size)])) }
        offset += size
        return T(littleEndian: value)
    }

    mutating func readString(_ field: String) throws -> String {
        let length = Int(try read(UInt16.self, "\(field) length"))
        guard offset + length <= buffer.count else { throw WireError.truncated("header ends inside \(field)") }
        defer { offset += length }
        guard let text = String(validating: UnsafeRawBufferPointer(rebasing: buffer[offset..<(offset + length)]), as: UTF8.self) else {
            throw WireError.malformed("\(field) is not valid UTF-8")
        }
        return text
    }

    var remaining: Int { buffer.count - offset }
}
