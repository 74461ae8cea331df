import Foundation
import Logging
import SluiceConfig
import SluiceProtocol
import SluiceTransport
import SluiceWire

/// How a role process ends: its exit status, and whether the controller first gets a last
/// heartbeat (its report waits for final counters).
struct RoleExit: Equatable {
    var status: Int32
    var finalHeartbeat: Bool
}

/// What is specific to one role: its machine, and the code that performs the machine's directives
/// (runs the executor, writes predictions, reads input). The shell does the rest.
protocol RoleAdapter: AnyObject {
    var kind: RoleKind { get }
    /// Timing from the assignment; nil before it (no heartbeats yet).
    var liveness: Liveness? { get }
    /// Where batches arrive, once the assignment opened it: polled, and drained between control messages.
    var dataSocket: ZMQSocket? { get }
    /// Other sockets to wake for, which the role reads itself in `step` (the source's sensor socket).
    var watchedSockets: [ZMQSocket] { get }
    /// How long the next poll may wait when nothing arrives.
    var pollMilliseconds: Int { get }
    func handle(_ message: ControlMessage) -> RoleExit?
    /// SIGINT or SIGTERM arrived (told once).
    func stopSignalled() -> RoleExit?
    func receive(_ frames: [ZMQFrame]) -> RoleExit?
    /// Takes what background work finished (the stage's weight loads); runs also while a send
    /// waits for room, so a blocked role never holds up a move.
    func takeFinishedWork() -> RoleExit?
    /// The role's own work once per round, after the sockets are served.
    func step() -> RoleExit?
    /// Counters for a heartbeat; `final` for the last one before the role exits.
    func counters(final: Bool) -> RoleCounters?
}

extension RoleAdapter {
    var dataSocket: ZMQSocket? { nil }
    var watchedSockets: [ZMQSocket] { [] }
    func receive(_ frames: [ZMQFrame]) -> RoleExit? { nil }
    func takeFinishedWork() -> RoleExit? { nil }
    func step() -> RoleExit? { nil }
}

/// The process around a role's machine: the ZeroMQ context, the control channel to the
/// controller, heartbeats, the controller's liveness, stop signals, and the poll loop over the
/// control socket and the role's data socket. Control messages reach the role the same way
/// whether it is polling or waiting for room to send.
final class RoleShell {
    let name: String
    let context = ZMQContext()
    let control: ControlChannel
    let logger: Logger
    private weak var adapter: RoleAdapter?
    private var nextHeartbeat = 0.0
    private var signalled = false
    /// An exit decided while a send waited for room; taken by the main loop.
    private var pendingExit: RoleExit?
    /// This process's keys, when its links use CURVE; the run's public keys, from the controller.
    private let keys: RoleKeys?
    private var trust = LinkTrust(peers: [:], endpoints: [:])
    /// Made with the first socket that needs it: the run's links under CURVE, or a zmq sink's
    /// output with consumer keys.
    private var authenticator: Authenticator?

    init(name: String, controller endpoint: String, keys: RoleKeys?) throws {
        self.name = name
        self.keys = keys
        let logger = makeLogger(name)
        self.logger = logger
        control = try ControlChannel(context: context, endpoint: endpoint, name: name, keys: keys)
        if keys != nil { _ = try makeAuthenticator() }
    }

    private func makeAuthenticator() throws -> Authenticator {
        if let authenticator { return authenticator }
        let logger = logger
        let made = try Authenticator(context: context) { reason, peer in logger.warning("refused a peer \(reason.rawValue): \(peer)") }
        authenticator = made
        return made
    }

    /// Binds a zmq sink's socket to its consumers: under CURVE with the output's own key, which
    /// lets in only the consumers' keys, and to nothing else.
    func bindOutput(_ network: SinkNetworkConfig) throws -> ZMQSocket {
        // A short queue, and none for a consumer that is not connected: what libzmq holds for a
        // consumer that goes away is lost with it (uncounted), so it holds little.
        let socket = try ZMQSocket(context, network.pattern == .push ? .push : .pub, lingerMilliseconds: 2000,
                                   sendHighWaterMark: 4, receiveHighWaterMark: 10)
        if network.pattern == .push { try socket.queueOnlyToConnectedPeers() }
        if let keyFile = network.keyFile, network.endpoint.hasPrefix("tcp://") {
            try serveOthers(socket, keyFile: keyFile, allowing: network.consumerKeyFiles, domain: "sluice-consumers")
            try makeAuthenticator().watchHandshakes(of: socket, name: network.endpoint)
        }
        try socket.bind(network.endpoint)
        return socket
    }

    /// Makes `socket` a CURVE server for peers outside the run (consumers, sensors) under a key
    /// of its own: only the public keys in `allowing` (.pub files) get in, and only there (a ZAP
    /// domain of their own, so their keys open none of the run's sockets).
    func serveOthers(_ socket: ZMQSocket, keyFile: String, allowing files: [String], domain: String) throws {
        var allowed: [String: String] = [:]
        for file in files { allowed[try KeyFolder.readPublic(file)] = URL(fileURLWithPath: file).lastPathComponent }
        try makeAuthenticator().allow(allowed, domain: domain)
        try socket.serveCurve(try KeyFolder.readPair(keyFile), domain: domain)
    }

    /// Where the role bound its data socket itself, as others reach it (told in `hello`).
    private(set) var advertisedEndpoint: String?

    /// Binds a role's data socket at start, where `binding` says, before the role says hello:
    /// the controller then sends this endpoint to the role's peers.
    func bindAdvertised(_ binding: DataBinding) throws -> ZMQSocket {
        let socket = try ZMQSocket(context, .pull, lingerMilliseconds: 0, sendHighWaterMark: 2, receiveHighWaterMark: 2)
        try bindData(socket, binding.bind)
        let bound = socket.lastEndpoint ?? binding.bind
        advertisedEndpoint = try binding.advertised(bound: bound)
        logger.info("bound \(bound); peers reach it at \(advertisedEndpoint ?? bound)")
        return socket
    }

    /// Binds a socket that takes batches: under CURVE, only the run's processes get in.
    func bindData(_ socket: ZMQSocket, _ endpoint: String) throws {
        if let keys, let authenticator, endpoint.hasPrefix("tcp://") {
            try socket.serveCurve(keys.keys)
            try authenticator.watchHandshakes(of: socket, name: endpoint)
        }
        try socket.bind(endpoint)
    }

    /// Connects a socket that sends batches: under CURVE, to the process the controller said
    /// is bound there, and to no other.
    func connectData(_ socket: ZMQSocket, _ endpoint: String) throws {
        if let keys, endpoint.hasPrefix("tcp://") {
            guard let serverKey = trust.endpoints[endpoint] else {
                throw RoleError("no key is known for \(endpoint): the controller sent none, so no process there can be trusted")
            }
            try socket.connectCurve(keys.keys, serverKey: serverKey)
            securedConnections.append((socket, endpoint))
        }
        try socket.connect(endpoint)
    }

    /// Data connections made under CURVE, to connect again when the process at an endpoint
    /// changes key (one from the pool took a dead one's place there).
    private var securedConnections: [(socket: ZMQSocket, endpoint: String)] = []

    /// A replica joined the next hop: `push` spreads batches over it too from now on.
    func connectReplica(_ push: ZMQSocket?, _ endpoint: String) {
        guard let push else { return }
        do {
            try connectData(push, endpoint)
            logger.info("sending to \(endpoint) too (a new process of the next stage)")
        } catch {
            logger.error("cannot connect to the new replica at \(endpoint): \(error)")
        }
    }

    /// Runs `adapter`'s role until it finishes (its status), or until the controller is silent for
    /// its timeout or polling fails (1).
    func run(_ adapter: RoleAdapter) -> Int32 {
        self.adapter = adapter
        sayHello(adapter)
        while true {
            if let exit = exitNow(adapter) { return end(exit, adapter) }
            var items: [(ZMQSocket, PollEvents)] = [(control.socket, .readable)]
            let data = adapter.dataSocket
            if let data { items.append((data, .readable)) }
            items += adapter.watchedSockets.map { ($0, .readable) }
            let ready: [PollEvents]
            do {
                ready = try poll(items, timeoutMilliseconds: max(0, adapter.pollMilliseconds))
            } catch {
                logger.error("poll failed: \(error)")
                return 1
            }
            if let exit = serveControl(adapter) { return end(exit, adapter) }
            if controllerSilent(adapter) {
                let hint = keys == nil && control.endpoint.hasPrefix("tcp://") && adapter.liveness == nil
                    ? " (a controller on tcp with CURVE answers only roles started with --key and --controller-key)" : ""
                logger.error("the controller has been silent for \(Int(timeout(adapter))) s; exiting\(hint)")
                return 1
            }
            if let data, ready.count > 1, ready[1].contains(.readable) {
                // Drain what is queued, but come back to the control socket within ~10 ms, so a
                // move or a shutdown never waits behind a backlog.
                let drainUntil = monotonicSeconds() + 0.01
                while pendingExit == nil, monotonicSeconds() < drainUntil, let frames = try? data.receive(dontWait: true) {
                    pendingExit = adapter.receive(frames)
                }
            }
            if let exit = pendingExit ?? adapter.step() { return end(exit, adapter) }
            heartbeatIfDue(adapter)
        }
    }

    /// Timeouts (`controller.timeout_s`) a send may wait for room before the next hop is taken
    /// for out of reach: past the controller's own wait for a dead process (its timeout) and for
    /// the one started in its place (three more).
    static let unreachableAfter = 5.0

    /// What came of a send: whether the frames left, and how long the role waited for room.
    struct Sent {
        var delivered: Bool
        var blockedSeconds: Double
    }

    /// Sends on `socket` without blocking the control plane: while the next hop has no room, the
    /// controller's messages still reach the role's machine, heartbeats still go out, and a stop
    /// or an exit decided meanwhile abandons the send (the main loop then ends the role).
    func send(_ frames: [OutgoingFrame], on socket: ZMQSocket) -> Sent {
        guard let adapter, pendingExit == nil else { return Sent(delivered: false, blockedSeconds: 0) }
        var blocked = 0.0
        var waitStart = monotonicSeconds()
        do {
            while try !socket.send(frames, dontWait: true) {
                _ = try poll([(socket, .writable), (control.socket, .readable)], timeoutMilliseconds: 100)
                blocked += monotonicSeconds() - waitStart
                waitStart = monotonicSeconds()
                if pendingExit == nil { pendingExit = exitNow(adapter) ?? serveControl(adapter) }
                if pendingExit == nil, controllerSilent(adapter) {
                    logger.error("the controller went silent while this role waited to send; exiting")
                    pendingExit = RoleExit(status: 1, finalHeartbeat: false)
                }
                // A next hop that took nothing for this long is not slow but out of reach: the
                // run fails naming the link, rather than wait for it forever.
                // (A socket that binds, a zmq sink's to its consumers, waits for them as long as it takes.)
                if pendingExit == nil, !socket.connectedEndpoints.isEmpty, blocked > Self.unreachableAfter * timeout(adapter) {
                    let reason = "nothing at \(socket.connectedEndpoints.joined(separator: ", ")) took a batch for \(Int(blocked)) s: "
                        + "the next hop is down, unreachable from this host, or refusing this process's key"
                    logger.error("\(reason)")
                    control.send(.failed(message: reason))
                    pendingExit = RoleExit(status: 1, finalHeartbeat: false)
                }
                if pendingExit != nil { return Sent(delivered: false, blockedSeconds: blocked) }
                heartbeatIfDue(adapter)
            }
        } catch {
            logger.error("send failed: \(error)")
            return Sent(delivered: false, blockedSeconds: blocked + monotonicSeconds() - waitStart)
        }
        return Sent(delivered: true, blockedSeconds: blocked + monotonicSeconds() - waitStart)
    }

    /// An exit already decided, or the role's answer to a stop signal (asked once).
    private func exitNow(_ adapter: RoleAdapter) -> RoleExit? {
        if let pendingExit { return pendingExit }
        guard StopSignal.received > 0, !signalled else { return nil }
        signalled = true
        return adapter.stopSignalled()
    }

    private func serveControl(_ adapter: RoleAdapter) -> RoleExit? {
        while let message = control.receive(logger: logger) {
            if case .trust(let trust) = message {
                take(trust)
                continue
            }
            // A controller started in place of a dead one: it learns who this is first.
            if message == .rejoin { sayHello(adapter) }
            if let exit = adapter.handle(message) { return exit }
        }
        return adapter.takeFinishedWork()
    }

    private func take(_ trust: LinkTrust) {
        let before = self.trust
        self.trust = trust
        for (socket, endpoint) in securedConnections where before.endpoints[endpoint] != trust.endpoints[endpoint] {
            guard let keys, let serverKey = trust.endpoints[endpoint] else { continue }
            do {
                try socket.disconnect(endpoint)
                try socket.connectCurve(keys.keys, serverKey: serverKey)
                try socket.connect(endpoint)
                logger.info("connected to \(endpoint) again: another process holds it now, under its own key")
            } catch {
                logger.error("cannot connect to \(endpoint) again under its new key: \(error)")
            }
        }
        let malformed = authenticator?.allow(Dictionary(trust.peers.map { ($0.value, $0.key) }, uniquingKeysWith: { first, _ in first })) ?? []
        if !malformed.isEmpty { logger.warning("the controller sent \(malformed.count) keys that are not CURVE keys; they let nobody in") }
    }

    private func sayHello(_ adapter: RoleAdapter) {
        control.send(.hello(Hello(role: adapter.kind, name: name, pid: getpid(), host: ProcessInfo.processInfo.hostName,
                                  endpoint: advertisedEndpoint)))
    }

    private func timeout(_ adapter: RoleAdapter) -> Double { adapter.liveness?.timeoutSeconds ?? 30 }

    private func controllerSilent(_ adapter: RoleAdapter) -> Bool { control.controllerSilent(for: timeout(adapter)) }

    private func end(_ exit: RoleExit, _ adapter: RoleAdapter) -> Int32 {
        if exit.finalHeartbeat {
            heartbeatIfDue(adapter, final: true)
            awaitAcknowledgement(adapter, seconds: 2)
        }
        return exit.status
    }

    /// Waits, at most `seconds`, for the controller to answer the final heartbeat (a second
    /// `shutdown`): ZeroMQ sends from its own thread, and what it still holds when the process
    /// ends is lost, so under load the controller's report kept a stage's older counters.
    private func awaitAcknowledgement(_ adapter: RoleAdapter, seconds: Double) {
        guard adapter.liveness != nil else { return }
        let deadline = monotonicSeconds() + seconds
        while monotonicSeconds() < deadline {
            let left = Int(max(1, (deadline - monotonicSeconds()) * 1000))
            guard (try? poll([(control.socket, .readable)], timeoutMilliseconds: min(left, 100))) != nil else { return }
            while let message = control.receive(logger: logger) {
                if case .shutdown = message { return }
            }
        }
    }

    private func heartbeatIfDue(_ adapter: RoleAdapter, final: Bool = false) {
        guard let liveness = adapter.liveness, final || monotonicSeconds() >= nextHeartbeat,
              var counters = adapter.counters(final: final) else { return }
        for (reason, count) in authenticator?.refused ?? [:] { counters.refusedPeers[reason.rawValue] = count }
        if final { counters.final = true }
        nextHeartbeat = monotonicSeconds() + liveness.heartbeatSeconds
        control.send(.heartbeat(counters))
    }
}

extension Logger {
    /// Logs a line a role's machine asked for.
    func log(_ level: RoleLogLevel, _ message: String) {
        switch level {
        case .debug: debug("\(message)")
        case .info: info("\(message)")
        case .warning: warning("\(message)")
        case .error: self.error("\(message)")
        }
    }
}
