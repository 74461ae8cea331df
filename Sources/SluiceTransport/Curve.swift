import CZeroMQ
import Foundation

/// A CURVE key pair, both halves in Z85 text (40 characters each).
public struct CurveKeyPair: Equatable, Sendable {
    public let publicKey: String
    public let secretKey: String

    /// A new pair from libzmq (libsodium underneath).
    public static func generate() throws -> CurveKeyPair {
        var publicText = [CChar](repeating: 0, count: 41)
        var secretText = [CChar](repeating: 0, count: 41)
        guard zmq_curve_keypair(&publicText, &secretText) == 0 else { throw ZMQError("zmq_curve_keypair") }
        return CurveKeyPair(publicKey: String(cString: publicText), secretKey: String(cString: secretText))
    }

    /// The pair whose secret half is `secretKey`; nil unless it is a well-formed Z85 key whose
    /// public half is `publicKey` (when one is given): a key file that disagrees with itself
    /// is refused rather than trusted.
    public init?(secretKey: String, publicKey expected: String? = nil) {
        guard CurveKeyPair.isWellFormed(secretKey) else { return nil }
        var publicText = [CChar](repeating: 0, count: 41)
        guard zmq_curve_public(&publicText, secretKey) == 0 else { return nil }
        let derived = String(cString: publicText)
        if let expected, expected != derived { return nil }
        self.init(publicKey: derived, secretKey: secretKey)
    }

    private init(publicKey: String, secretKey: String) {
        self.publicKey = publicKey
        self.secretKey = secretKey
    }

    /// 40 characters of the Z85 alphabet: what libzmq takes as a text key.
    public static func isWellFormed(_ key: String) -> Bool {
        key.utf8.count == 40 && key.utf8.allSatisfy { z85Alphabet.contains($0) }
    }

    /// The 32 bytes a Z85 key stands for (ZAP hands public keys over as bytes).
    static func bytes(ofZ85 key: String) -> [UInt8]? {
        guard isWellFormed(key) else { return nil }
        var bytes = [UInt8](repeating: 0, count: 32)
        return zmq_z85_decode(&bytes, key) == nil ? nil : bytes
    }

    static func z85(of bytes: [UInt8]) -> String? {
        guard bytes.count == 32 else { return nil }
        var text = [CChar](repeating: 0, count: 41)
        return zmq_z85_encode(&text, bytes, 32) == nil ? nil : String(cString: text)
    }

    private static let z85Alphabet = Set("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#".utf8)
}

extension ZMQSocket {
    /// Makes this socket a CURVE server before it binds: every peer must prove it holds a key,
    /// and the process's `Authenticator` (which must exist on this socket's context) decides
    /// which keys are let in.
    /// `domain` picks the allowlist the authenticator checks peers against.
    public func serveCurve(_ keys: CurveKeyPair, domain: String = Authenticator.runDomain) throws {
        try setOption(ZMQ_CURVE_SERVER, 1)
        try setText(ZMQ_CURVE_SECRETKEY, keys.secretKey)
        try setText(ZMQ_ZAP_DOMAIN, domain)
    }

    /// Makes the next `connect` a CURVE client of the peer whose public key is `serverKey`.
    /// libzmq takes the options in force at each connect, so one socket can reach several
    /// servers, each under its own key.
    public func connectCurve(_ keys: CurveKeyPair, serverKey: String) throws {
        try setText(ZMQ_CURVE_SERVERKEY, serverKey)
        try setText(ZMQ_CURVE_PUBLICKEY, keys.publicKey)
        try setText(ZMQ_CURVE_SECRETKEY, keys.secretKey)
    }

    private func setText(_ option: Int32, _ text: String) throws {
        let bytes = Array(text.utf8)
        guard zmq_setsockopt(handle, option, bytes, bytes.count) == 0 else { throw ZMQError("zmq_setsockopt(\(option))") }
    }
}

extension ZMQFrame {
    /// The name the `Authenticator` gave the key this message's peer proved it holds (nil on
    /// sockets without CURVE).
    public var authenticatedName: String? {
        guard let value = zmq_msg_gets(message, "User-Id") else { return nil }
        return String(cString: value)
    }
}

/// Why a peer was turned away at the handshake.
public enum RefusalReason: String, Codable, Sendable, CaseIterable, Comparable {
    /// It spoke without CURVE (plaintext).
    case noKey = "without a key"
    /// Its key is not one of this run's.
    case unknownKey = "with an unknown key"
    /// Its handshake failed otherwise: a wrong server key, garbage, a cut connection (a
    /// plaintext peer that hangs up before this side saw what it spoke is counted here).
    case badHandshake = "with a bad handshake"

    public static func < (a: RefusalReason, b: RefusalReason) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }
}

/// The ZAP handler of one process: it admits to its CURVE sockets only peers whose public key
/// is on the allowlist, tells the socket the name that key belongs to (`authenticatedName`),
/// and counts and reports every peer it turns away, with its address. It answers libzmq on a
/// thread of its own, so handshakes go on while the role computes.
public final class Authenticator: @unchecked Sendable {
    /// The run's own sockets; a socket that serves others (a zmq sink's consumers) has a domain
    /// of its own, so that their keys open nothing else.
    public static let runDomain = "sluice"
    private let context: ZMQContext
    private let lock = NSLock()
    /// Per ZAP domain: public key bytes → the name of the peer that holds it.
    private var allowed: [String: [[UInt8]: String]] = [:]
    private var refusals: [RefusalReason: Int] = [:]
    private var pendingMonitors: [(endpoint: String, name: String)] = []
    private var stopping = false
    private let report: @Sendable (RefusalReason, String) -> Void
    private var thread: Thread?
    private let done = DispatchSemaphore(value: 0)

    /// `report` is called (on the handler's thread) with each refusal and a description of
    /// the peer, for the log.
    public init(context: ZMQContext, report: @escaping @Sendable (RefusalReason, String) -> Void) throws {
        self.context = context
        self.report = report
        let handler = try ZMQSocket(context, .rep, lingerMilliseconds: 0, sendHighWaterMark: 1000, receiveHighWaterMark: 1000)
        // libzmq asks every CURVE socket's handshake here, in this context.
        try handler.bind("inproc://zeromq.zap.01")
        let thread = Thread { [unowned self] in self.serve(handler) }
        thread.name = "zap"
        self.thread = thread
        thread.start()
    }

    deinit { stop() }

    /// Stops answering; the handler's socket closes before the context can end.
    public func stop() {
        lock.lock()
        let wasRunning = !stopping && thread != nil
        stopping = true
        lock.unlock()
        if wasRunning { done.wait() }
    }

    /// Lets in `keys` (public key in Z85 → name) to the sockets of `domain` from now on, besides
    /// those already allowed. Keys that are not well formed are left out and returned.
    @discardableResult
    public func allow(_ keys: [String: String], domain: String = runDomain) -> [String] {
        var malformed: [String] = []
        lock.lock()
        defer { lock.unlock() }
        for (key, name) in keys {
            if let bytes = CurveKeyPair.bytes(ofZ85: key) { allowed[domain, default: [:]][bytes] = name } else { malformed.append(key) }
        }
        return malformed
    }

    /// Peers turned away so far, by reason.
    public var refused: [RefusalReason: Int] {
        lock.lock()
        defer { lock.unlock() }
        return refusals
    }

    /// Watches `socket`'s handshakes, to count and report peers that never reach the allowlist
    /// (plaintext ones, wrong server keys). `name` says which socket, in reports.
    public func watchHandshakes(of socket: ZMQSocket, name: String) throws {
        let endpoint = "inproc://sluice-handshakes-\(UInt(bitPattern: socket.handle))"
        guard zmq_socket_monitor(socket.handle, endpoint, ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED
                                 | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL
                                 | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) == 0 else {
            throw ZMQError("zmq_socket_monitor")
        }
        lock.lock()
        pendingMonitors.append((endpoint, name))
        lock.unlock()
    }

    /// Every refusal is counted; the first ten of each reason are reported, then one in each
    /// power of two, so that a peer retrying all day cannot flood the log.
    private func count(_ reason: RefusalReason, _ peer: String) {
        lock.lock()
        refusals[reason, default: 0] += 1
        let count = refusals[reason, default: 0]
        lock.unlock()
        if count <= 10 || count & (count - 1) == 0 { report(reason, count > 10 ? "\(peer) (refusal \(count) \(reason.rawValue))" : peer) }
    }

    private func name(of credentials: [UInt8], in domain: String) -> String? {
        lock.lock()
        defer { lock.unlock() }
        return allowed[domain]?[credentials]
    }

    /// A role that binds its own address (`--bind`) takes connections before the controller has
    /// told it the run's keys, and a peer that came too early would be refused for good (libzmq
    /// does not try a refused handshake again): until a domain has keys, its handshakes wait
    /// for them, at most `keysWaitSeconds`.
    private func waitForKeys(of domain: String) {
        let deadline = Date().addingTimeInterval(Self.keysWaitSeconds)
        while Date() < deadline {
            lock.lock()
            let known = !(allowed[domain]?.isEmpty ?? true) || stopping
            lock.unlock()
            if known { return }
            usleep(10_000)
        }
    }

    public static let keysWaitSeconds = 10.0

    private func serve(_ handler: ZMQSocket) {
        var monitors: [HandshakeWatch] = []
        defer {
            monitors.removeAll()
            done.signal()
        }
        while true {
            lock.lock()
            let stop = stopping
            let newMonitors = pendingMonitors
            pendingMonitors.removeAll()
            lock.unlock()
            if stop { return }
            for (endpoint, name) in newMonitors {
                guard let pair = try? ZMQSocket(context, .pair, lingerMilliseconds: 0, sendHighWaterMark: 1000, receiveHighWaterMark: 100_000),
                      (try? pair.connect(endpoint)) != nil else { continue }
                monitors.append(HandshakeWatch(socket: pair, name: name))
            }
            let items = [(handler, PollEvents.readable)] + monitors.map { ($0.socket, PollEvents.readable) }
            guard let ready = try? poll(items, timeoutMilliseconds: 50) else { continue }
            if ready[0].contains(.readable), let request = try? handler.receive(dontWait: true) {
                _ = try? handler.send(answer(request).map { .bytes($0) })
            }
            for (index, watch) in monitors.enumerated() where ready[index + 1].contains(.readable) {
                watch.update { self.count($0, $1) }
            }
        }
    }

    /// The reply to one ZAP request (rfc.zeromq.org/spec/27): 200 with the key's name, or 400.
    private func answer(_ request: [ZMQFrame]) -> [[UInt8]] {
        let frames = request.map { $0.withBytes { Array($0) } }
        // version, request id, domain, address, routing id, mechanism, credentials…
        guard frames.count >= 6 else { return [Array("1.0".utf8), [], Array("400".utf8), Array("malformed request".utf8), [], []] }
        let requestID = frames[1]
        let domain = String(decoding: frames[2], as: UTF8.self)
        let address = String(decoding: frames[3], as: UTF8.self)
        let mechanism = String(decoding: frames[5], as: UTF8.self)
        func reply(_ status: String, _ text: String, user: String = "") -> [[UInt8]] {
            [Array("1.0".utf8), requestID, Array(status.utf8), Array(text.utf8), Array(user.utf8), []]
        }
        guard mechanism == "CURVE", frames.count >= 7 else {
            count(.noKey, "\(address) (mechanism \(mechanism))")
            return reply("400", "CURVE only")
        }
        let key = frames[6]
        waitForKeys(of: domain)
        guard let name = name(of: key, in: domain) else {
            count(.unknownKey, "\(address) (key \(CurveKeyPair.z85(of: key) ?? "of \(key.count) bytes"))")
            return reply("400", "unknown key")
        }
        return reply("200", "OK", user: name)
    }
}

/// One secured socket's handshake events, read on the authenticator's thread.
private final class HandshakeWatch {
    let socket: ZMQSocket
    let name: String
    /// Peer addresses by connection descriptor, taken when the connection is accepted.
    private var addresses: [Int32: String] = [:]
    /// Failed handshakes whose connection has not closed yet, oldest first (nil: refused by ZAP,
    /// which counted it). Failure events carry no descriptor; libzmq's one I/O thread reports
    /// each before its connection's close, so closes take them in order.
    private var failures: [RefusalReason?] = []

    init(socket: ZMQSocket, name: String) {
        self.socket = socket
        self.name = name
    }

    func update(_ refuse: (RefusalReason, String) -> Void) {
        while let frames = try? socket.receive(dontWait: true) {
            guard let (event, value) = monitorEvent(frames) else { continue }
            switch event {
            case ZMQ_EVENT_ACCEPTED:
                addresses[value] = peerAddress(value)
            case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
                failures.append(value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH ? .noKey : .badHandshake)
            case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
                failures.append(.badHandshake)
            case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
                failures.append(nil)
            case ZMQ_EVENT_DISCONNECTED:
                let descriptor = value
                if !failures.isEmpty, let reason = failures.removeFirst() {
                    refuse(reason, "\(addresses[descriptor] ?? "a peer gone before its address was read") on \(name)")
                }
                addresses[descriptor] = nil
            default:
                break
            }
        }
    }

    private func peerAddress(_ descriptor: Int32) -> String {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let got = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(descriptor, $0, &length) }
        }
        guard got == 0 else { return "a peer gone before its address was read" }
        var host = [CChar](repeating: 0, count: Int(NI_MAXHOST))
        var port = [CChar](repeating: 0, count: Int(NI_MAXSERV))
        let named = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                getnameinfo($0, length, &host, socklen_t(host.count), &port, socklen_t(port.count), NI_NUMERICHOST | NI_NUMERICSERV)
            }
        }
        return named == 0 ? "\(String(cString: host)):\(String(cString: port))" : "a peer whose address has no name"
    }
}
