import SluiceTensor

/// What to send in one frame: bytes, copied into the message, or a tensor's storage, handed
/// to the transport without a copy and released when the transport is done with it.
public enum OutgoingFrame {
    case bytes([UInt8])
    case tensor(Tensor)

    public var byteCount: Int {
        switch self {
        case .bytes(let bytes): return bytes.count
        case .tensor(let tensor): return tensor.byteCount
        }
    }
}

/// A frame as the transport received it. Its bytes stay valid for the life of the object, so
/// decoded tensors can borrow them (keeping the frame alive as their storage's owner).
public protocol ReceivedFrame: AnyObject {
    var count: Int { get }
    /// The bytes, valid only inside `body`.
    func withBytes<Result>(_ body: (UnsafeRawBufferPointer) throws -> Result) rethrows -> Result
}

extension ReceivedFrame {
    public var array: [UInt8] { withBytes { Array($0) } }
}
