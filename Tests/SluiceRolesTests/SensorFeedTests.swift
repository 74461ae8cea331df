import Foundation
import Logging
import Testing
import SluiceConfig
import SluiceProtocol
import SluiceTransport
@testable import SluiceRoles

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
