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
        [.bytes(header.encoded()), .bytes(metadata)] + header.tensors.map { .tensor(tensors[$0.name]!) }
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
        let header = try frames[0].withBytes { try BatchHeader.decode($0) }
        guard frames.count == 2 + header.tensors.count else {
            throw WireError.malformed("header lists \(header.tensors.count) tensors but \(frames.count - 2) tensor frames arrived")
        }
        var tensors: [String: Tensor] = [:]
        for (descriptor, frame) in zip(header.tensors, frames.dropFirst(2)) {
            guard frame.count == descriptor.byteCount else {
                throw WireError.malformed("tensor '\(descriptor.name)' \(descriptor.dtype)\(descriptor.shape) needs \(descriptor.byteCount) bytes, frame has \(frame.count)")
            }
            guard tensors[descriptor.name] == nil else { throw WireError.malformed("tensor '\(descriptor.name)' appears twice") }
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

extension Batch {
    /// The header's window count where the tensors bear it out (each has it as its first
    /// dimension), else 0. A dropped batch's windows are counted from this: a count that only a
    /// header claims, forged or corrupted, would make the drop figures untrue.
    public var verifiedWindowCount: Int {
        let count = Int(header.windowCount)
        return !tensors.isEmpty && tensors.values.allSatisfy({ $0.rank >= 1 && $0.shape[0] == count }) ? count : 0
    }
}
