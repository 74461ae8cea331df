import SluiceConfig
import SluiceTensor

/// A micro-batch as it crosses a socket: header, opaque window-key metadata, tensors by name.
public struct Batch: @unchecked Sendable {
    public var header: BatchHeader
    /// The metadata frame's bytes, carried through stages unread.
    public var metadata: [UInt8]
    public var tensors: [String: Tensor]

    public init(header: BatchHeader, metadata: [UInt8], tensors: [String: Tensor]) {
        self.header = header
        self.metadata = metadata
        self.tensors = tensors
    }

    /// Frames in wire order: header, metadata, then one frame per tensor in the header's order.
    /// Tensor frames are handed to the transport without a copy.
    public func frames() -> [OutgoingFrame] {
        [.bytes(header.encoded()), .bytes(metadata)] + header.tensors.map { descriptor in
            let tensor = tensors[descriptor.name]!
            return tensor.dtype == .string ? .bytes(StringFrame.encode(tensor.strings)) : .tensor(tensor)
        }
    }

    /// Builds the header's tensor list from `tensors` in the order `names` gives.
    public mutating func setTensors(_ tensors: [String: Tensor], order names: [String]) {
        self.tensors = tensors
        header.tensors = names.map { TensorDescriptor(name: $0, dtype: tensors[$0]!.dtype, shape: tensors[$0]!.shape) }
    }

    /// Decodes received frames. Tensors borrow the frames' memory (no copy) unless it is not
    /// aligned for the element type, in which case that tensor is copied.
    public static func decode(_ frames: [some ReceivedFrame]) throws -> Batch {
        guard frames.count >= 2 else { throw WireError.truncated("\(frames.count) frame(s); a batch has a header and a metadata frame") }
        var header = try frames[0].withBytes { try BatchHeader.decode($0) }
        guard frames.count == 2 + header.tensors.count else {
            throw WireError.malformed("header lists \(header.tensors.count) tensors but \(frames.count - 2) tensor frames arrived")
        }
        var tensors: [String: Tensor] = [:]
        for (index, (descriptor, frame)) in zip(header.tensors, frames.dropFirst(2)).enumerated() {
            guard tensors[descriptor.name] == nil else { throw WireError.malformed("tensor '\(descriptor.name)' appears twice") }
            if descriptor.dtype == .string {
                let strings = try frame.withBytes { try StringFrame.decode($0, count: Tensor.elementCount(of: descriptor.shape), name: descriptor.name) }
                tensors[descriptor.name] = Tensor(shape: descriptor.shape, strings: strings)
                continue
            }
            guard frame.count == descriptor.byteCount else {
                throw WireError.malformed("tensor '\(descriptor.name)' \(descriptor.dtype)\(descriptor.shape) needs \(descriptor.byteCount) bytes, frame has \(frame.count)")
            }
            guard descriptor.encoding == .raw else {
                // Widened back here: the layers, and any link after this one, see float32.
                tensors[descriptor.name] = frame.withBytes { widened($0, descriptor) }
                header.tensors[index].encoding = .raw
                continue
            }
            tensors[descriptor.name] = frame.withBytes { bytes in
                // The storage keeps the frame alive, so the tensor may borrow its bytes.
                if let base = UnsafeMutableRawPointer(mutating: bytes.baseAddress), Int(bitPattern: base) % descriptor.dtype.byteSize == 0 {
                    return Tensor(dtype: descriptor.dtype, shape: descriptor.shape,
                                  storage: TensorStorage(borrowing: base, byteCount: bytes.count, owner: frame))
                }
                let tensor = Tensor(zeros: descriptor.dtype, shape: descriptor.shape)
                if bytes.count > 0 { tensor.storage.bytes.copyMemory(from: bytes.baseAddress!, byteCount: bytes.count) }
                return tensor
            }
        }
        return Batch(header: header, metadata: frames[1].array, tensors: tensors)
    }
}

/// A string tensor's frame: each element as its UTF-8 length (UInt32, little-endian) and bytes.
enum StringFrame {
    static func encode(_ strings: [String]) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(strings.reduce(0) { $0 + 4 + $1.utf8.count })
        for string in strings {
            let length = UInt32(truncatingIfNeeded: string.utf8.count)
            withUnsafeBytes(of: length.littleEndian) { bytes.append(contentsOf: $0) }
            bytes.append(contentsOf: string.utf8.prefix(Int(length)))
        }
        return bytes
    }

    /// The `count` strings a frame holds, every length checked against what is left of it.
    static func decode(_ bytes: UnsafeRawBufferPointer, count: Int, name: String) throws -> [String] {
        // Every element takes at least its 4-byte length: checked before anything is reserved.
        guard count <= bytes.count / 4 else {
            throw WireError.malformed("string tensor '\(name)' claims \(count) elements in a frame of \(bytes.count) bytes")
        }
        var strings: [String] = []
        strings.reserveCapacity(count)
        var offset = 0
        for index in 0..<count {
            guard bytes.count - offset >= 4 else { throw WireError.truncated("string tensor '\(name)' ends before element \(index)") }
            var length: UInt32 = 0
            withUnsafeMutableBytes(of: &length) { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + 4)])) }
            offset += 4
            let size = Int(UInt32(littleEndian: length))
            guard size <= bytes.count - offset else { throw WireError.truncated("string tensor '\(name)' element \(index) claims \(size) bytes past the frame's end") }
            strings.append(String(decoding: UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + size)]), as: UTF8.self))
            offset += size
        }
        guard offset == bytes.count else { throw WireError.malformed("string tensor '\(name)' has \(bytes.count - offset) bytes after its last element") }
        return strings
    }
}

extension Batch {
    /// The header's window count where the tensors bear it out (each has it as its first
    /// dimension), else 0. A dropped batch's windows are counted from this: a count that only a
    /// header claims, forged or corrupted, would make the drop figures untrue.
    public var verifiedWindowCount: Int {
        let count = Int(header.windowCount)
        return !tensors.isEmpty && tensors.values.allSatisfy({ $0.rank >= 1 && $0.shape[0] == count }) ? count : 0
    }
}

/// Relative error a link's narrowing put into the tensors it carried: the root of Σ(x − x̃)² over Σx².
public struct NarrowingTally: Codable, Equatable, Sendable {
    public var squaredError: Double = 0
    public var squaredNorm: Double = 0
    public init() {}

    /// nil until a nonzero value crossed the link.
    public var relativeError: Double? { squaredNorm > 0 ? (squaredError / squaredNorm).squareRoot() : nil }

    public mutating func add(_ other: NarrowingTally) {
        squaredError += other.squaredError
        squaredNorm += other.squaredNorm
    }
}

extension Batch {
    /// Narrows every float32 tensor for the link (`compression`), adding what that costs in
    /// precision to `tally`. The tensors then hold the narrowed bytes, fit only to be sent; a
    /// tensor holding NaN or infinity stays float32 under int8, which has no room for them.
    public mutating func compress(_ compression: Compression, tally: inout NarrowingTally) {
        guard compression != .none else { return }
        for (index, descriptor) in header.tensors.enumerated() where descriptor.dtype == .float32 && descriptor.encoding == .raw {
            guard let tensor = tensors[descriptor.name] else { continue }
            let count = tensor.elementCount
            let narrowed: Tensor
            let encoding: TensorEncoding
            switch compression {
            case .none: continue
            case .fp16:
                narrowed = Tensor(zeros: .float16, shape: tensor.shape)
                encoding = .float16
                tensor.withUnsafeBufferPointer(as: Float.self) { source in
                    narrowed.withUnsafeMutableBufferPointer(as: UInt16.self) { target in
                        guard count > 0 else { return }
                        Narrowing.toHalf(source.baseAddress!, target.baseAddress!, count: count)
                        Narrowing.accumulateHalfError(exact: source.baseAddress!, halves: target.baseAddress!, count: count,
                                                      error: &tally.squaredError, norm: &tally.squaredNorm)
                    }
                }
            case .int8:
                let largest = tensor.withUnsafeBufferPointer(as: Float.self) { source in
                    count > 0 ? Narrowing.maximumMagnitude(source.baseAddress!, count: count) : 0
                }
                guard largest.isFinite else { continue }
                narrowed = Tensor(zeros: .int8, shape: tensor.shape)
                let scale = Narrowing.int8Scale(maximumMagnitude: largest)
                encoding = .int8(scale: scale)
                tensor.withUnsafeBufferPointer(as: Float.self) { source in
                    narrowed.withUnsafeMutableBufferPointer(as: Int8.self) { target in
                        guard count > 0 else { return }
                        Narrowing.toInt8(source.baseAddress!, target.baseAddress!, count: count, maximumMagnitude: largest)
                        Narrowing.accumulateInt8Error(exact: source.baseAddress!, narrowed: target.baseAddress!, count: count, scale: scale,
                                                      error: &tally.squaredError, norm: &tally.squaredNorm)
                    }
                }
            }
            tensors[descriptor.name] = narrowed
            header.tensors[index].encoding = encoding
        }
    }

    /// A float32 tensor from a narrowed frame's bytes (their count already checked).
    static func widened(_ bytes: UnsafeRawBufferPointer, _ descriptor: TensorDescriptor) -> Tensor {
        let tensor = Tensor(zeros: .float32, shape: descriptor.shape)
        let count = tensor.elementCount
        guard count > 0, let base = bytes.baseAddress else { return tensor }
        tensor.withUnsafeMutableBufferPointer(as: Float.self) { target in
            switch descriptor.encoding {
            case .raw:
                break
            case .float16:
                // A frame need not start on a 2-byte boundary: copy it to one that does.
                let halves = [UInt16](unsafeUninitializedCapacity: count) { buffer, initialized in
                    UnsafeMutableRawPointer(buffer.baseAddress!).copyMemory(from: base, byteCount: count * 2)
                    initialized = count
                }
                Narrowing.fromHalf(halves, target.baseAddress!, count: count)
            case .int8(let scale):
                Narrowing.fromInt8(base.assumingMemoryBound(to: Int8.self), target.baseAddress!, count: count, scale: scale)
            }
        }
        return tensor
    }
}
