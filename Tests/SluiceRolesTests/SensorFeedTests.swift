import Foundation
import Logging
import Testing
import SluiceConfig
import SluiceProtocol
import SluiceTransport
@testable import SluiceRoles
import SluiceWire

/// The live feed over a real ZeroMQ socket: however many sensor and sender ids arrive, the state
/// it keeps for them stays within `max_sensors`, and what it refuses is counted.
@Test func aFloodOfNewSensorIdsKeepsTheFeedsStateBounded() throws {
    let context = ZMQContext()
    let endpoint = "ipc://\(FileManager.default.temporaryDirectory.path)/sluice-feed-\(UUID().uuidString).ipc"
    let config = ZMQSource(endpoint: endpoint, channels: 2, idleTimeoutSeconds: 0, maxSensors: 8, sensorIdleSeconds: 600)
    let feed = try ZMQSensorFeed(context: context, config: config, window: WindowConfig(length: 4, hop: 4, layout: .channelsLast),
                                 logger: Logger(label: "test"))
    let push = try ZMQSocket(context, .push, lingerMilliseconds: 1000, sendHighWaterMark: 10_000, receiveHighWaterMark: 10)
    try push.connect(endpoint)
    for id in 0..<500 {
        // No sender: each sensor is its own sender, so senders grow with the ids too.
        let header = #"{"v":1,"sensor":"id-\#(id)","t0":0,"dt":0.1,"channels":2,"count":1}"#
        try push.send([.bytes(Array(header.utf8)), .bytes([UInt8](repeating: 0, count: 8))])
        // A malformed one naming yet another sender.
        try push.send([.bytes(Array(#"{"v":1,"sender":"bad-\#(id)","sensor":"x"}"#.utf8))])
    }
    var taken = 0
    let deadline = Date().addingTimeInterval(10)
    while taken < 1000 && Date() < deadline {
        _ = feed.next(now: 1)
        taken = feed.drops.count(.chunk, .sensorLimit) + feed.drops.count(.chunk, .malformed) + min(8, feed.trackedSenders)
    }
    #expect(feed.drops.count(.chunk, .sensorLimit) == 492, "\(feed.drops.summary)")
    #expect(feed.trackedSenders <= 16, "\(feed.trackedSenders) senders tracked")
}

/// A feed over a fresh ipc:// endpoint, and a way to take what it has at a given time.
private struct LiveFeed {
    let context = ZMQContext()
    let endpoint = "ipc://\(FileManager.default.temporaryDirectory.path)/sluice-feed-\(UUID().uuidString).ipc"
    let feed: ZMQSensorFeed

    init(maxSensors: Int, sensorIdleSeconds: Double) throws {
        let config = ZMQSource(endpoint: endpoint, channels: 2, idleTimeoutSeconds: 0, maxSensors: maxSensors,
                               sensorIdleSeconds: sensorIdleSeconds)
        feed = try ZMQSensorFeed(context: context, config: config, window: WindowConfig(length: 1, hop: 1, layout: .channelsLast),
                                 logger: Logger(label: "test"))
    }

    func sender() throws -> ZMQSocket {
        let push = try ZMQSocket(context, .push, lingerMilliseconds: 1000, sendHighWaterMark: 10_000, receiveHighWaterMark: 10)
        try push.connect(endpoint)
        return push
    }

    static func chunk(_ sensor: String, sender: String? = nil) -> [OutgoingFrame] {
        let named = sender.map { #","sender":"\#($0)""# } ?? ""
        return [.bytes(Array(#"{"v":1,"sensor":"\#(sensor)"\#(named),"t0":0,"dt":0.1,"channels":2,"count":1}"#.utf8)),
                .bytes([UInt8](repeating: 0, count: 8))]
    }

    static func end(_ sender: String, chunks: Int) -> [OutgoingFrame] {
        [.bytes(Array(#"{"v":1,"eos":true,"sender":"\#(sender)","chunks":\#(chunks)}"#.utf8))]
    }

    /// Steps the feed at `now` until `done` holds of the windows cut so far (10 s at most).
    @discardableResult
    func take(now: Double, until done: (Int) -> Bool) -> (windows: Int, ended: Bool) {
        var windows = 0
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            switch feed.next(now: now) {
            case .windows(let cut): windows += cut.count
            case .end: return (windows, true)
            case .wait: if done(windows) { return (windows, false) }
            }
        }
        return (windows, false)
    }
}

/// Sensor ids that come and go: long after `max_sensors` different ids (each its own sender)
/// have been seen, a new one is still admitted once the old ones fell silent.
@Test func sensorIdsChurningPastTheLimitAreStillAdmitted() throws {
    let live = try LiveFeed(maxSensors: 8, sensorIdleSeconds: 1)
    let push = try live.sender()
    for id in 0..<40 {
        // Each id sends once, then is silent: two seconds later it is past sensor_idle_s.
        _ = try push.send(LiveFeed.chunk("id-\(id)"))
        let taken = live.take(now: Double(id) * 2) { $0 == 1 || live.feed.drops.count(.chunk) > 0 }
        #expect(taken.windows == 1, "id-\(id): \(live.feed.drops.summary)")
    }
    #expect(live.feed.drops.isEmpty, "\(live.feed.drops.summary)")
    #expect(live.feed.trackedSenders <= 8, "\(live.feed.trackedSenders) senders tracked")
}

/// A table full of sensors that are all still live: every new id is refused and counted, and
/// the refusals do not each scan the table (at most one scan per forcedEvictionInterval).
@Test func aFullTableRefusesNewIdsWithoutScanningForEach() throws {
    let live = try LiveFeed(maxSensors: 8, sensorIdleSeconds: 600)
    let push = try live.sender()
    for id in 0..<8 { _ = try push.send(LiveFeed.chunk("live-\(id)", sender: "one")) }
    live.take(now: 0) { $0 == 8 }
    let scans = live.feed.evictionScans
    for id in 0..<500 { _ = try push.send(LiveFeed.chunk("new-\(id)", sender: "one")) }
    live.take(now: 0.01) { _ in live.feed.drops.count(.chunk, .sensorLimit) == 500 }
    #expect(live.feed.drops.count(.chunk, .sensorLimit) == 500, "\(live.feed.drops.summary)")
    #expect(live.feed.evictionScans - scans <= 1, "\(live.feed.evictionScans - scans) scans for 500 refusals")
}

/// Forgetting a sender neither holds the end back nor loses its count: a sender silent past
/// sensor_idle_s whose connection closed without an end of stream no longer blocks the end
/// (its closed connection is counted), and a sender forgotten while silent that ends later is
/// checked against every chunk it sent.
@Test func forgottenSendersNeitherBlockTheEndNorLoseTheirCount() throws {
    let live = try LiveFeed(maxSensors: 8, sensorIdleSeconds: 1)
    do {
        let crashed = try live.sender()
        _ = try crashed.send(LiveFeed.chunk("a", sender: "crashed"))
        let quiet = try live.sender()
        for _ in 0..<3 { _ = try quiet.send(LiveFeed.chunk("q", sender: "quiet")) }
        live.take(now: 0) { $0 == 4 }
        // Both fall silent past sensor_idle_s and are forgotten; "quiet" then ends, counting 3 chunks.
        live.take(now: 5) { _ in live.feed.forgottenSenders == 2 }
        _ = try quiet.send(LiveFeed.end("quiet", chunks: 3))
    }
    // Both connections are closed now: "crashed" never sent its end of stream.
    let taken = live.take(now: 6) { _ in false }
    #expect(taken.ended, "the input did not end: \(live.feed.drops.summary)")
    #expect(live.feed.forgottenSenders == 2)
    #expect(live.feed.drops.count(.chunk, .neverArrived) == 0, "\(live.feed.drops.summary)")
    #expect(live.feed.drops.count(.connection, .closedWithoutEnd) == 1, "\(live.feed.drops.summary)")
}

/// Devices that connect, send, end and disconnect one after another, while another keeps its
/// connection open: the kernel hands each new connection the descriptor the last one closed,
/// often before the feed has matched that close with its end of stream. No close is counted as
/// a connection lost without its end.
@Test func connectionsThatEndAndReuseADescriptorAreNotCountedLost() throws {
    let context = ZMQContext()
    let endpoint = "tcp://127.0.0.1:6471"
    let config = ZMQSource(endpoint: endpoint, channels: 2, idleTimeoutSeconds: 0, maxSensors: 64, sensorIdleSeconds: 600)
    let feed = try ZMQSensorFeed(context: context, config: config, window: WindowConfig(length: 1, hop: 1, layout: .channelsLast),
                                 logger: Logger(label: "test"))
    func connected() throws -> ZMQSocket {
        let push = try ZMQSocket(context, .push, lingerMilliseconds: 1000, sendHighWaterMark: 10_000, receiveHighWaterMark: 10)
        try push.connect(endpoint)
        return push
    }
    let start = Date()
    let keeper = try connected()
    _ = try keeper.send(LiveFeed.chunk("keeper", sender: "keeper"))
    for device in 0..<12 {
        do {
            let push = try connected()
            _ = try push.send(LiveFeed.chunk("d\(device)", sender: "d\(device)"))
            _ = try push.send(LiveFeed.end("d\(device)", chunks: 1))
        }
        // Two devices close before the feed looks, every other time.
        if device % 2 == 1 { for _ in 0..<20 { _ = feed.next(now: Date().timeIntervalSince(start)); usleep(2_000) } }
    }
    for _ in 0..<100 { _ = feed.next(now: Date().timeIntervalSince(start)); usleep(2_000) }
    #expect(feed.drops.isEmpty, "\(feed.drops.summary)")
    _ = keeper
}


/// A forgotten sender that ends while the table is full of live ones is still checked against
/// every chunk it sent: its end needs no slot in the table.
@Test func aForgottenSendersEndIsCheckedWhileTheTableIsFull() throws {
    let live = try LiveFeed(maxSensors: 2, sensorIdleSeconds: 1)
    let push = try live.sender()
    for _ in 0..<3 { _ = try push.send(LiveFeed.chunk("q", sender: "quiet")) }
    live.take(now: 0) { $0 == 3 }
    live.take(now: 5) { _ in live.feed.forgottenSenders == 1 }
    for sender in ["a", "b"] { _ = try push.send(LiveFeed.chunk(sender, sender: sender)) }
    live.take(now: 5) { $0 == 2 }
    // It claims 5 chunks; 3 arrived.
    _ = try push.send(LiveFeed.end("quiet", chunks: 5))
    live.take(now: 5.01) { _ in live.feed.drops.count(.chunk, .neverArrived) > 0 }
    #expect(live.feed.drops.count(.chunk, .neverArrived) == 2, "\(live.feed.drops.summary)")
}
