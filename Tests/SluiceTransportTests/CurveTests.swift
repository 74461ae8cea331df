import Foundation
import Testing
@testable import SluiceTransport

private func tcpEndpoint() -> String { "tcp://127.0.0.1:\(Int.random(in: 20000...32767))" }

/// A refusal the authenticator reported, as its log line would carry it.
private final class Refusals: @unchecked Sendable {
    private let lock = NSLock()
    private var seen: [(RefusalReason, String)] = []
    func add(_ reason: RefusalReason, _ peer: String) { lock.withLock { seen.append((reason, peer)) } }
    var all: [(RefusalReason, String)] { lock.withLock { seen } }
}

/// Waits up to ten seconds for `condition` (a loaded machine is slow to handshake).
private func eventually(_ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(10)
    while Date() < deadline {
        if condition() { return true }
        usleep(10_000)
    }
    return condition()
}

/// A CURVE server with an allowlist, and three clients: one with an allowed key, one with a key
/// of its own and one in plaintext. Only the first one's messages arrive, carrying its name;
/// the other two are counted, each under its reason, with the address it came from.
@Test func onlyAllowlistedKeysGetMessagesInAndEachRefusalIsCounted() throws {
    let serverContext = ZMQContext()
    let refusals = Refusals()
    let authenticator = try Authenticator(context: serverContext) { refusals.add($0, $1) }
    let serverKeys = try CurveKeyPair.generate()
    let member = try CurveKeyPair.generate()
    let stranger = try CurveKeyPair.generate()
    #expect(authenticator.allow([member.publicKey: "stage-1"]).isEmpty)
    let pull = try ZMQSocket(serverContext, .pull, lingerMilliseconds: 0, sendHighWaterMark: 100, receiveHighWaterMark: 100)
    try pull.serveCurve(serverKeys)
    try authenticator.watchHandshakes(of: pull, name: "the test socket")
    let endpoint = tcpEndpoint()
    try pull.bind(endpoint)

    let clientContext = ZMQContext()
    func client(_ keys: CurveKeyPair?) throws -> ZMQSocket {
        let push = try ZMQSocket(clientContext, .push, lingerMilliseconds: 0, sendHighWaterMark: 100, receiveHighWaterMark: 100)
        if let keys { try push.connectCurve(keys, serverKey: serverKeys.publicKey) }
        try push.connect(endpoint)
        return push
    }
    let forger = try client(stranger)
    let plaintext = try client(nil)
    let real = try client(member)
    for _ in 0..<5 {
        _ = try forger.send([.bytes(Array("forged".utf8))], dontWait: true)
        _ = try plaintext.send([.bytes(Array("plain".utf8))], dontWait: true)
    }
    try real.send([.bytes(Array("real".utf8))])

    let frames = try #require(try pull.receive())
    #expect(frames.first?.text == "real")
    #expect(frames.first?.authenticatedName == "stage-1")
    // A plaintext peer that hangs up before the server saw what it spoke fails as a bad handshake.
    #expect(eventually {
        authenticator.refused[.unknownKey, default: 0] >= 1
            && authenticator.refused[.noKey, default: 0] + authenticator.refused[.badHandshake, default: 0] >= 1
    })
    usleep(200_000)
    #expect(try pull.receive(dontWait: true) == nil, "nothing but the member's message gets in")
    let unknown = try #require(refusals.all.first { $0.0 == .unknownKey })
    #expect(unknown.1.contains("127.0.0.1") && unknown.1.contains(stranger.publicKey))
    // A plaintext peer is refused by libzmq before any ZAP request: its address is read off its
    // connection, which on loopback may close before it can be.
    let plain = try #require(refusals.all.first { $0.0 == .noKey || $0.0 == .badHandshake })
    #expect(plain.1.hasSuffix("on the test socket"))
}

/// A role bound with `--bind` hears from its peers before the controller told it the run's keys:
/// a member that connects then waits for them, and gets in once they come.
@Test func aMemberThatComesBeforeTheKeysIsLetInOnceTheyCome() throws {
    let serverContext = ZMQContext()
    let authenticator = try Authenticator(context: serverContext) { _, _ in }
    let serverKeys = try CurveKeyPair.generate()
    let member = try CurveKeyPair.generate()
    let pull = try ZMQSocket(serverContext, .pull, lingerMilliseconds: 0, sendHighWaterMark: 100, receiveHighWaterMark: 100)
    try pull.serveCurve(serverKeys)
    let endpoint = tcpEndpoint()
    try pull.bind(endpoint)
    let push = try ZMQSocket(ZMQContext(), .push, lingerMilliseconds: 0, sendHighWaterMark: 100, receiveHighWaterMark: 100)
    try push.connectCurve(member, serverKey: serverKeys.publicKey)
    try push.connect(endpoint)
    _ = try push.send([.bytes(Array("early".utf8))], dontWait: true)
    usleep(500_000)
    authenticator.allow([member.publicKey: "stage-2"])
    #expect(eventually { ((try? pull.receive(dontWait: true)) ?? nil)?.first?.authenticatedName == "stage-2" })
    #expect(authenticator.refused.isEmpty)
}

/// A client that has the wrong key for the server never gets a message through.
@Test func aClientWithTheWrongServerKeyIsRefused() throws {
    let serverContext = ZMQContext()
    let authenticator = try Authenticator(context: serverContext) { _, _ in }
    let serverKeys = try CurveKeyPair.generate()
    let member = try CurveKeyPair.generate()
    authenticator.allow([member.publicKey: "sink"])
    let pull = try ZMQSocket(serverContext, .pull, lingerMilliseconds: 0, sendHighWaterMark: 100, receiveHighWaterMark: 100)
    try pull.serveCurve(serverKeys)
    try authenticator.watchHandshakes(of: pull, name: "sink")
    let endpoint = tcpEndpoint()
    try pull.bind(endpoint)
    let push = try ZMQSocket(ZMQContext(), .push, lingerMilliseconds: 0, sendHighWaterMark: 100, receiveHighWaterMark: 100)
    try push.connectCurve(member, serverKey: try CurveKeyPair.generate().publicKey)
    try push.connect(endpoint)
    _ = try push.send([.bytes([1])], dontWait: true)
    #expect(eventually { authenticator.refused[.badHandshake, default: 0] >= 1 })
    #expect(try pull.receive(dontWait: true) == nil)
}

@Test func keyPairsCheckThemselves() throws {
    let keys = try CurveKeyPair.generate()
    #expect(CurveKeyPair(secretKey: keys.secretKey) == keys)
    #expect(CurveKeyPair(secretKey: keys.secretKey, publicKey: keys.publicKey) == keys)
    #expect(CurveKeyPair(secretKey: keys.secretKey, publicKey: try CurveKeyPair.generate().publicKey) == nil)
    #expect(CurveKeyPair(secretKey: "too short") == nil)
    #expect(CurveKeyPair(secretKey: String(repeating: "\"", count: 40)) == nil)
}
