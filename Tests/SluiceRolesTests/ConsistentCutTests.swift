import Testing
import SluiceProtocol
@testable import SluiceRoles

private func counters(received: Int = 0, sent: Int, batches: Int? = nil) -> RoleCounters {
    var counters = RoleCounters()
    counters.received = received
    counters.sent = sent
    counters.batches = batches ?? sent
    return counters
}

/// A scrape must never show a hop that took more than its upstream had sent, and no counter may
/// go backwards from one scrape to the next.
@Test func aScrapeNeverShowsMoreDownstreamThanUpstreamSent() {
    var cut = ConsistentCut()
    cut.record(counters(sent: 10), from: "source")
    cut.record(counters(received: 8, sent: 8), from: "stage-0")
    cut.record(counters(received: 6, sent: 0, batches: 6), from: "sink")
    // The sink and the stage report again before the source does: their newest heartbeats are
    // ahead of the source's.
    cut.record(counters(received: 10, sent: 10), from: "stage-0")
    cut.record(counters(received: 12, sent: 0, batches: 12), from: "sink")
    cut.record(counters(received: 12, sent: 12), from: "stage-0")
    var picked = cut.cut(source: "source", stages: [["stage-0"]], sink: "sink")
    #expect(picked["stage-0"]?.received == 10, "the stage's newest heartbeat within the source's 10")
    #expect(picked["sink"]?.batches == 6, "the sink's 12 is ahead of what the stage had sent")
    cut.record(counters(sent: 14), from: "source")
    picked = cut.cut(source: "source", stages: [["stage-0"]], sink: "sink")
    #expect(picked["stage-0"]?.received == 12 && picked["sink"]?.batches == 12)
}

@Test func replicasShareTheirUpstreamsBatches() {
    var cut = ConsistentCut()
    cut.record(counters(sent: 10), from: "source")
    cut.record(counters(received: 6, sent: 6), from: "stage-0")
    cut.record(counters(received: 3, sent: 3), from: "stage-0-r1")
    cut.record(counters(received: 6, sent: 6), from: "stage-0-r1")
    let picked = cut.cut(source: "source", stages: [["stage-0", "stage-0-r1"]], sink: "sink")
    let taken = (picked["stage-0"]?.received ?? 0) + (picked["stage-0-r1"]?.received ?? 0)
    #expect(taken <= 10, "replicas together took \(taken) of 10")
    #expect(picked["stage-0-r1"]?.received == 3)
}
