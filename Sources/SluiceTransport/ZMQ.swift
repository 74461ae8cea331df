import CZeroMQ
import Foundation
import SluiceTensor
import SluiceWire

public struct ZMQError: Error, CustomStringConvertible {
    public let operation: String
    public let code: Int32

    init(_ operation: String) {
        self.operation = operation
        code = zmq_errno()
    }

    public var description: String { "\(operation): \(String(cString: zmq_strerror(code)))" }
    var wouldBlock: Bool { code == EAGAIN }
}

/// Owns a libzmq context. Sockets keep their context alive, so it terminates after them.
public final class ZMQContext: @unchecked Sendable {
    let handle: UnsafeMutableRawPointer
    let ioThreads: Int32

    /// One I/O thread by default: on small machines every core is wanted for compute.
    public init(ioThreads: Int32 = 1) {
        self.ioThreads = ioThreads
        handle = zmq_ctx_new()
        zmq_ctx_set(handle, ZMQ_IO_THREADS, ioThreads)
    }

    deinit { zmq_ctx_term(handle) }
}

public enum SocketKind {
    case push, pull, dealer, router, pair, rep, pub

    var code: Int32 {
        switch self {
        case .pair: return ZMQ_PAIR
        case .push: return ZMQ_PUSH
        case .pull: return ZMQ_PULL
        case .dealer: return ZMQ_DEALER
        case .router: return ZMQ_ROUTER
        case .rep: return ZMQ_REP
        case .pub: return ZMQ_PUB
        }
    }
}

/// A received frame. Its bytes stay valid for the life of this object, so tensors can borrow them.
public final class ZMQFrame: ReceivedFrame, @unchecked Sendable {
    let message: UnsafeMutablePointer<zmq_msg_t>

    init() {
        message = .allocate(capacity: 1)
        zmq_msg_init(message)
    }

    deinit {
        zmq_msg_close(message)
        message.deallocate()
    }

    public var count: Int { zmq_msg_size(message) }

    /// The descriptor of the connection the frame came over (nil where libzmq does not say):
    /// pairs a message with the connection events `ConnectionMonitor` reports.
    public var sourceDescriptor: Int32? {
        let descriptor = zmq_msg_get(message, ZMQ_SRCFD)
        return descriptor >= 0 ? descriptor : nil
    }

    /// The frame's bytes, valid only inside `body`: the frame must outlive every use of them,
    /// which an optimized build would not otherwise guarantee.
    public func withBytes<Result>(_ body: (UnsafeRawBufferPointer) throws -> Result) rethrows -> Result {
        try withExtendedLifetime(self) { try body(UnsafeRawBufferPointer(start: zmq_msg_data(message), count: count)) }
    }


    /// The frame as UTF-8 text (routing ids).
    public var text: String { withBytes { String(decoding: $0, as: UTF8.self) } }
}


private let releaseTensorStorage: @convention(c) (UnsafeMutableRawPointer?, UnsafeMutableRawPointer?) -> Void = { _, hint in
    if let hint { Unmanaged<TensorStorage>.fromOpaque(hint).release() }
}

/// Owns one libzmq socket. Linger and high-water marks are set explicitly at creation:
/// libzmq's defaults (infinite linger, 1000 messages) hang shutdowns and hide backpressure.
public final class ZMQSocket: @unchecked Sendable {
    let handle: UnsafeMutableRawPointer
    private let context: ZMQContext
    private var boundIPCPaths: [String] = []
    /// Every endpoint this socket was told to connect to, in order (for messages about them).
    public private(set) var connectedEndpoints: [String] = []

    public init(_ context: ZMQContext, _ kind: SocketKind, lingerMilliseconds: Int32, sendHighWaterMark: Int32,
                receiveHighWaterMark: Int32, identity: String? = nil) throws {
        self.context = context
        guard let socket = zmq_socket(context.handle, kind.code) else { throw ZMQError("zmq_socket") }
        handle = socket
        try setOption(ZMQ_LINGER, lingerMilliseconds)
        try setOption(ZMQ_SNDHWM, sendHighWaterMark)
        try setOption(ZMQ_RCVHWM, receiveHighWaterMark)
        // Roles start in any order, so a connect often comes before its peer binds. libzmq
        // retries after 100 ms by default, which a stream that starts at once would wait out;
        // 10 ms, doubling up to a second, keeps start-up short without spinning on a dead peer.
        try setOption(ZMQ_RECONNECT_IVL, 10)
        try setOption(ZMQ_RECONNECT_IVL_MAX, 1000)
        if let identity {
            let bytes = Array(identity.utf8)
            guard zmq_setsockopt(handle, ZMQ_ROUTING_ID, bytes, bytes.count) == 0 else { throw ZMQError("set routing id") }
        }
    }

    deinit {
        zmq_close(handle)
        for path in boundIPCPaths { unlink(path) }
    }

    public func setOption(_ option: Int32, _ value: Int32) throws {
        var value = value
        guard zmq_setsockopt(handle, option, &value, MemoryLayout<Int32>.size) == 0 else { throw ZMQError("zmq_setsockopt(\(option))") }
    }

    /// Queue messages only to peers whose connection is up (ZMQ_IMMEDIATE): a peer that went
    /// away takes what was queued to it, and nothing more is queued for it while it is away.
    public func queueOnlyToConnectedPeers() throws {
        try setOption(ZMQ_IMMEDIATE, 1)
    }

    /// How long closing the socket (and ending its context) waits for queued messages to leave.
    public func setLinger(milliseconds: Int32) throws {
        try setOption(ZMQ_LINGER, milliseconds)
    }

    /// Larger inbound messages are refused by libzmq (the peer is disconnected) before any of
    /// their bytes are held: a bound on what one hostile sender can make this process allocate.
    public func setMaximumMessageBytes(_ bytes: Int64) throws {
        var value = bytes
        guard zmq_setsockopt(handle, ZMQ_MAXMSGSIZE, &value, MemoryLayout<Int64>.size) == 0 else { throw ZMQError("zmq_setsockopt(ZMQ_MAXMSGSIZE)") }
    }

    /// Watches this socket's peers come and go: the returned socket receives libzmq's monitor
    /// events for connections accepted and closed (read them with `ConnectionMonitor`).
    /// The socket's context must run one I/O thread: a failed handshake is told apart from a
    /// ZeroMQ peer's close by the order of the two events, which only one thread keeps.
    public func monitorConnections(_ context: ZMQContext) throws -> ConnectionMonitor {
        precondition(self.context.ioThreads == 1, "monitorConnections needs a socket whose context has one I/O thread, not \(self.context.ioThreads)")
        let endpoint = "inproc://sluice-monitor-\(UInt(bitPattern: handle))"
        guard zmq_socket_monitor(handle, endpoint, ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED
                                 | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL
                                 | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) == 0 else {
            throw ZMQError("zmq_socket_monitor")
        }
        let pair = try ZMQSocket(context, .pair, lingerMilliseconds: 0, sendHighWaterMark: 1000, receiveHighWaterMark: 100_000)
        try pair.connect(endpoint)
        return ConnectionMonitor(socket: pair)
    }

    /// Binds, first removing a socket file an earlier run left behind at an ipc:// endpoint.
    public func bind(_ endpoint: String) throws {
        if endpoint.hasPrefix("ipc://") {
            let path = String(endpoint.dropFirst("ipc://".count))
            unlink(path)
            boundIPCPaths.append(path)
        }
        guard zmq_bind(handle, endpoint) == 0 else { throw ZMQError("bind \(endpoint)") }
    }

    public func disconnect(_ endpoint: String) throws {
        guard zmq_disconnect(handle, endpoint) == 0 else { throw ZMQError("disconnect \(endpoint)") }
        connectedEndpoints.removeAll { $0 == endpoint }
    }

    /// The endpoint the last bind took, with the port the system picked for port 0.
    public var lastEndpoint: String? {
        var buffer = [CChar](repeating: 0, count: 1024)
        var size = buffer.count
        guard zmq_getsockopt(handle, ZMQ_LAST_ENDPOINT, &buffer, &size) == 0 else { return nil }
        return String(cString: buffer)
    }

    public func connect(_ endpoint: String) throws {
        guard zmq_connect(handle, endpoint) == 0 else { throw ZMQError("connect \(endpoint)") }
        connectedEndpoints.append(endpoint)
    }

    /// Sends a multipart message. With `dontWait`, returns false instead of blocking when the
    /// peer's queue is full; once the first frame is queued, the rest follow atomically.
    @discardableResult
    public func send(_ frames: [OutgoingFrame], dontWait: Bool = false) throws -> Bool {
        for (index, frame) in frames.enumerated() {
            var flags: Int32 = index < frames.count - 1 ? ZMQ_SNDMORE : 0
            if dontWait && index == 0 { flags |= ZMQ_DONTWAIT }
            let message = UnsafeMutablePointer<zmq_msg_t>.allocate(capacity: 1)
            defer { message.deallocate() }
            switch frame {
            case .bytes(let bytes):
                guard zmq_msg_init_size(message, bytes.count) == 0 else { throw ZMQError("zmq_msg_init_size") }
                bytes.withUnsafeBytes { if $0.count > 0 { zmq_msg_data(message).copyMemory(from: $0.baseAddress!, byteCount: $0.count) } }
            case .tensor(let tensor):
                let hint = Unmanaged.passRetained(tensor.storage).toOpaque()
                guard zmq_msg_init_data(message, tensor.storage.bytes, tensor.byteCount, releaseTensorStorage, hint) == 0 else {
                    Unmanaged<TensorStorage>.fromOpaque(hint).release()
                    throw ZMQError("zmq_msg_init_data")
                }
            }
            var sent = zmq_msg_send(message, handle, flags)
            // A signal (Ctrl-C) may interrupt a send; retrying keeps multipart messages whole.
            while sent < 0 && zmq_errno() == EINTR { sent = zmq_msg_send(message, handle, flags) }
            if sent < 0 {
                let error = ZMQError("send")
                zmq_msg_close(message)
                if error.wouldBlock && index == 0 { return false }
                throw error
            }
        }
        return true
    }

    /// Receives every frame of the next message, or nil when `dontWait` and none is queued.
    public func receive(dontWait: Bool = false) throws -> [ZMQFrame]? {
        var frames: [ZMQFrame] = []
        repeat {
            let frame = ZMQFrame()
            if zmq_msg_recv(frame.message, handle, dontWait && frames.isEmpty ? ZMQ_DONTWAIT : 0) < 0 {
                let error = ZMQError("receive")
                if error.wouldBlock && frames.isEmpty { return nil }
                throw error
            }
            frames.append(frame)
        } while zmq_msg_more(frames.last!.message) == 1
        return frames
    }
}

public struct PollEvents: OptionSet, Sendable {
    public let rawValue: Int16
    public init(rawValue: Int16) { self.rawValue = rawValue }
    public static let readable = PollEvents(rawValue: Int16(ZMQ_POLLIN))
    public static let writable = PollEvents(rawValue: Int16(ZMQ_POLLOUT))
}

/// Waits up to `timeoutMilliseconds` (-1: forever) for any of the sockets to be ready; returns
/// the ready events per socket, in order. Interrupted waits (signals) return no events.
public func poll(_ items: [(ZMQSocket, PollEvents)], timeoutMilliseconds: Int) throws -> [PollEvents] {
    var pollItems = items.map { zmq_pollitem_t(socket: $0.0.handle, fd: 0, events: $0.1.rawValue, revents: 0) }
    if zmq_poll(&pollItems, Int32(pollItems.count), timeoutMilliseconds) < 0 {
        let error = ZMQError("poll")
        if error.code == EINTR { return Array(repeating: [], count: items.count) }
        throw error
    }
    return pollItems.map { PollEvents(rawValue: $0.revents) }
}

/// A libzmq monitor message: the event and its value (a descriptor or an error code). Frame 0
/// holds a u16 event and a u32 value in native byte order, little-endian on every platform
/// Sluice builds for; frame 1 the endpoint.
func monitorEvent(_ frames: [ZMQFrame]) -> (event: Int32, value: Int32)? {
    guard let first = frames.first, first.count >= 6 else { return nil }
    return first.withBytes { bytes in
        (Int32(UInt16(bytes[0]) | UInt16(bytes[1]) << 8),
         Int32(bitPattern: UInt32(bytes[2]) | UInt32(bytes[3]) << 8 | UInt32(bytes[4]) << 16 | UInt32(bytes[5]) << 24))
    }
}

/// Counts the peers connected to a bound socket, from its monitor events.
public final class ConnectionMonitor {
    public let socket: ZMQSocket
    /// Connections accepted and not closed since.
    public private(set) var open = 0
    public private(set) var accepted = 0
    /// Descriptors of ZeroMQ peers' connections closed since `takeClosed()` last ran. A connection
    /// that failed its handshake (a port scan, a health check, not a ZeroMQ peer) is not among them.
    private var closed: [Int32] = []
    private var handshakeFailed = false

    init(socket: ZMQSocket) { self.socket = socket }

    public func takeClosed() -> [Int32] {
        defer { closed.removeAll() }
        return closed
    }

    /// Takes every queued event.
    public func update() {
        while let frames = try? socket.receive(dontWait: true) {
            guard let (event, value) = monitorEvent(frames) else { continue }
            // libzmq reports a failed handshake right before that connection's close, from the one
            // I/O thread that runs both: the close that follows is not a ZeroMQ peer's.
            let failedBefore = handshakeFailed
            handshakeFailed = false
            switch event {
            case ZMQ_EVENT_ACCEPTED:
                accepted += 1
                open += 1
            case ZMQ_EVENT_DISCONNECTED:
                open = max(0, open - 1)
                if !failedBefore { closed.append(value) }
            case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL, ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL, ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
                handshakeFailed = true
            default:
                break
            }
        }
    }
}

/// Waits up to `timeoutMilliseconds` for any ZeroMQ socket or plain descriptor to be ready
/// (zmq_poll takes both); returns the ready events of each, in order.
public func poll(_ items: [(ZMQSocket, PollEvents)], descriptors: [(Int32, PollEvents)],
                 timeoutMilliseconds: Int) throws -> (sockets: [PollEvents], descriptors: [PollEvents]) {
    var pollItems = items.map { zmq_pollitem_t(socket: $0.0.handle, fd: 0, events: $0.1.rawValue, revents: 0) }
        + descriptors.map { zmq_pollitem_t(socket: nil, fd: $0.0, events: $0.1.rawValue, revents: 0) }
    if zmq_poll(&pollItems, Int32(pollItems.count), timeoutMilliseconds) < 0 {
        let error = ZMQError("poll")
        if error.code == EINTR { return (Array(repeating: [], count: items.count), Array(repeating: [], count: descriptors.count)) }
        throw error
    }
    let events = pollItems.map { PollEvents(rawValue: $0.revents) }
    return (Array(events[..<items.count]), Array(events[items.count...]))
}
