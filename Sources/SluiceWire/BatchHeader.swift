import SluiceTensor

/// Why a data message was rejected. The receiver counts it, logs it and drops the message.
public enum WireError: Error, Equatable, CustomStringConvertible {
    case truncated(String)
    case malformed(String)
    case unsupportedVersion(UInt8)

    public var description: String {
        switch self {
        case .truncated(let detail): return "truncated message: \(detail)"
        case .malformed(let detail): return "malformed message: \(detail)"
        case .unsupportedVersion(let version): return "unsupported wire version \(version) (this build speaks \(BatchHeader.version))"
        }
    }
}

/// How a tensor frame's bytes hold its elements: as the dtype says, or a float32 tensor
/// narrowed for a slow link (half precision, or int8 times a scale).
public enum TensorEncoding: Equatable, Sendable {
    case raw
    case float16
    case int8(scale: Float)

    var code: UInt8 {
        switch self {
        case .raw: return 0
        case .float16: return 1
        case .int8: return 2
        }
    }

    func bytesPerElement(of dtype: DType) -> Int {
        switch self {
        case .raw: return dtype.byteSize
        case .float16: return 2
        case .int8: return 1
        }
    }
}

/// Name, element type and shape of one tensor frame, and how its bytes encode the elements.
public struct TensorDescriptor: Equatable, Sendable {
    public var name: String
    /// The tensor's element type once decoded (float32 for a narrowed one).
    public var dtype: DType
    public var shape: [Int]
    public var encoding: TensorEncoding

    public init(name: String, dtype: DType, shape: [Int], encoding: TensorEncoding = .raw) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.encoding = encoding
    }

    /// Bytes of the frame: elements times the encoding's width.
    public var byteCount: Int { Tensor.elementCount(of: shape) * encoding.bytesPerElement(of: dtype) }
}

/// One stage's visit to a batch, in nanoseconds of the wall clock (CLOCK_REALTIME), so hops
/// of different processes line up.
public struct Hop: Codable, Equatable, Sendable {
    public var stage: UInt16
    public var received: UInt64
    public var computeStart: UInt64
    public var computeEnd: UInt64
    public var sendStart: UInt64

    public init(stage: UInt16, received: UInt64, computeStart: UInt64, computeEnd: UInt64, sendStart: UInt64) {
        self.stage = stage
        self.received = received
        self.computeStart = computeStart
        self.computeEnd = computeEnd
        self.sendStart = sendStart
    }
}

/// The first frame of every data-plane message (docs/protocol.md has the byte layout).
public struct BatchHeader: Equatable, Sendable {
    public static let magic: [UInt8] = Array("SLB1".utf8)
    public static let version: UInt8 = 2
    /// No frame of a micro-batch comes near this (2^32 elements); larger claims are corrupt.
    public static let maximumTensorElements = 1 << 32

    /// Sequence number of the micro-batch; the sink releases batches in this order.
    public var batchSequence: UInt64
    /// Sequence numbers of the windows inside: firstWindow ..< firstWindow + windowCount.
    public var firstWindow: UInt64
    public var windowCount: UInt32
    /// Plan epoch the batch was sent under.
    public var epoch: UInt32
    /// Which source process made the batch: 0 the run's first, one more for each started in
    /// place of a dead one. A batch a dead source made is superseded by its successor's.
    public var sourceGeneration: UInt16
    /// Index of the next layer to run on this batch (the layer count once all have run).
    public var cursor: UInt16
    /// When the source created the batch (ns, wall clock).
    public var created: UInt64
    public var hops: [Hop]
    public var tensors: [TensorDescriptor]

    public init(batchSequence: UInt64, firstWindow: UInt64, windowCount: UInt32, epoch: UInt32, cursor: UInt16,
                created: UInt64, hops: [Hop] = [], tensors: [TensorDescriptor], sourceGeneration: UInt16 = 0) {
        self.sourceGeneration = sourceGeneration
        self.batchSequence = batchSequence
        self.firstWindow = firstWindow
        self.windowCount = windowCount
        self.epoch = epoch
        self.cursor = cursor
        self.created = created
        self.hops = hops
        self.tensors = tensors
    }

    public func encoded() -> [UInt8] {
        var writer = ByteWriter()
        for byte in Self.magic { writer.write(byte) }
        writer.write(Self.version)
        writer.write(UInt8(0))        // flags, reserved
        writer.write(sourceGeneration)
        writer.write(batchSequence)
        writer.write(firstWindow)
        writer.write(windowCount)
        writer.write(epoch)
        writer.write(cursor)
        writer.write(UInt8(hops.count))
        writer.write(UInt8(tensors.count))
        writer.write(created)
        for hop in hops {
            writer.write(hop.stage)
            writer.write(hop.received)
            writer.write(hop.computeStart)
            writer.write(hop.computeEnd)
            writer.write(hop.sendStart)
        }
        for tensor in tensors {
            writer.write(string: tensor.name)
            writer.write(tensor.dtype.rawValue)
            writer.write(tensor.encoding.code)
            if case .int8(let scale) = tensor.encoding { writer.write(scale.bitPattern) }
            writer.write(UInt8(tensor.shape.count))
            for dim in tensor.shape { writer.write(Int64(dim)) }
        }
        return writer.bytes
    }

    public static func decode(_ buffer: UnsafeRawBufferPointer) throws -> BatchHeader {
        var reader = ByteReader(buffer)
        var magic: [UInt8] = []
        for _ in 0..<4 { magic.append(try reader.read(UInt8.self, "magic")) }
        guard magic == Self.magic else { throw WireError.malformed("bad magic \(magic), expected \"SLB1\"") }
        let version = try reader.read(UInt8.self, "version")
        guard version == Self.version else { throw WireError.unsupportedVersion(version) }
        _ = try reader.read(UInt8.self, "flags")
        let sourceGeneration = try reader.read(UInt16.self, "source generation")
        let batchSequence = try reader.read(UInt64.self, "batch sequence")
        let firstWindow = try reader.read(UInt64.self, "first window")
        let windowCount = try reader.read(UInt32.self, "window count")
        let epoch = try reader.read(UInt32.self, "epoch")
        let cursor = try reader.read(UInt16.self, "cursor")
        let hopCount = Int(try reader.read(UInt8.self, "hop count"))
        // Every stage adds a hop: a full count leaves no room for the next one.
        guard hopCount < Int(UInt8.max) else { throw WireError.malformed("\(hopCount) hops: no room for another stage") }
        let tensorCount = Int(try reader.read(UInt8.self, "tensor count"))
        let created = try reader.read(UInt64.self, "created")
        var hops: [Hop] = []
        for index in 0..<hopCount {
            hops.append(Hop(stage: try reader.read(UInt16.self, "hop \(index) stage"),
                            received: try reader.read(UInt64.self, "hop \(index) received"),
                            computeStart: try reader.read(UInt64.self, "hop \(index) compute start"),
                            computeEnd: try reader.read(UInt64.self, "hop \(index) compute end"),
                            sendStart: try reader.read(UInt64.self, "hop \(index) send start")))
        }
        var tensors: [TensorDescriptor] = []
        for index in 0..<tensorCount {
            let name = try reader.readString("tensor \(index) name")
            let code = try reader.read(UInt8.self, "tensor \(index) dtype")
            guard let dtype = DType(rawValue: code) else { throw WireError.malformed("tensor '\(name)' has unknown dtype \(code)") }
            let encoding: TensorEncoding
            switch try reader.read(UInt8.self, "tensor \(index) encoding") {
            case 0: encoding = .raw
            case 1: encoding = .float16
            case 2:
                let scale = Float(bitPattern: try reader.read(UInt32.self, "tensor \(index) int8 scale"))
                guard scale.isFinite, scale >= 0 else { throw WireError.malformed("tensor '\(name)' has int8 scale \(scale)") }
                encoding = .int8(scale: scale)
            case let other: throw WireError.malformed("tensor '\(name)' has unknown encoding \(other)")
            }
            guard encoding == .raw || dtype == .float32 else {
                throw WireError.malformed("tensor '\(name)' is \(dtype) narrowed for the link: only float32 tensors are")
            }
            let rank = Int(try reader.read(UInt8.self, "tensor \(index) rank"))
            var shape: [Int] = []
            for axis in 0..<rank {
                let dim = try reader.read(Int64.self, "tensor '\(name)' dim \(axis)")
                guard dim >= 0, dim <= Self.maximumTensorElements else { throw WireError.malformed("tensor '\(name)' has dimension \(dim)") }
                shape.append(Int(dim))
            }
            let elements = shape.reduce((1, false)) { partial, dim in
                let product = partial.0.multipliedReportingOverflow(by: dim)
                return (product.partialValue, partial.1 || product.overflow)
            }
            guard !elements.1, elements.0 <= Self.maximumTensorElements else {
                throw WireError.malformed("tensor '\(name)' shape \(shape) is larger than \(Self.maximumTensorElements) elements")
            }
            tensors.append(TensorDescriptor(name: name, dtype: dtype, shape: shape, encoding: encoding))
        }
        guard reader.remaining == 0 else { throw WireError.malformed("\(reader.remaining) unexpected bytes after the header") }
        return BatchHeader(batchSequence: batchSequence, firstWindow: firstWindow, windowCount: windowCount, epoch: epoch,
                           cursor: cursor, created: created, hops: hops, tensors: tensors, sourceGeneration: sourceGeneration)
    }
}
