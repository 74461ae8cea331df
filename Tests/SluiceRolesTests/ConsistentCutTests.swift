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

/// A rejected message counts in `received` but was never sent by upstream: it must not hold the
/// hop (and every hop below it) at an old heartbeat for the rest of the run.
@Test func aRejectedMessageDoesNotFreezeTheCut() {
    var cut = ConsistentCut()
    cut.record(counters(sent: 4), from: "source")
    var stage = counters(received: 5, sent: 4)
    stage.rejected = 1
    cut.record(stage, from: "stage-0")
    var sink = counters(received: 5, sent: 0, batches: 3)
    sink.rejected = 1
    sink.drops.add(1, .batch, .duplicate)
    cut.record(sink, from: "sink")
    var picked = cut.cut(source: "source", stages: [["stage-0"]], sink: "sink")
    #expect(picked["stage-0"]?.received == 5, "4 accepted of the source's 4 sent")
    #expect(picked["sink"]?.batches == 3, "3 accepted of the stage's 4 sent")
    cut.record(counters(sent: 9), from: "source")
    stage = counters(received: 10, sent: 9)
    stage.rejected = 1
    cut.record(stage, from: "stage-0")
    sink = counters(received: 11, sent: 0, batches: 9)
    sink.rejected = 1
    sink.drops.add(1, .batch, .duplicate)
    cut.record(sink, from: "sink")
    picked = cut.cut(source: "source", stages: [["stage-0"]], sink: "sink")
    #expect(picked["stage-0"]?.sent == 9 && picked["sink"]?.batches == 9, "the cut moved on with the newer heartbeats")
}

/// Replicas picked one at a time: the first takes its newest, and the second has nothing between
/// its last published figure and what is left, so its floor would overshoot. The first must leave
/// room for the second's floor.
@Test func replicasTogetherNeverExceedUpstreamAcrossScrapes() {
    var cut = ConsistentCut()
    cut.record(counters(sent: 10), from: "source")
    cut.record(counters(received: 4, sent: 4), from: "stage-0")
    cut.record(counters(received: 5, sent: 5), from: "stage-0-r1")
    var picked = cut.cut(source: "source", stages: [["stage-0", "stage-0-r1"]], sink: "sink")
    #expect(picked["stage-0"]?.received == 4 && picked["stage-0-r1"]?.received == 5)
    cut.record(counters(received: 6, sent: 6), from: "stage-0")
    cut.record(counters(received: 7, sent: 7), from: "stage-0-r1")
    picked = cut.cut(source: "source", stages: [["stage-0", "stage-0-r1"]], sink: "sink")
    let taken = (picked["stage-0"]?.received ?? 0) + (picked["stage-0-r1"]?.received ?? 0)
    #expect(taken <= 10, "replicas together took \(taken) of 10")
    #expect(picked["stage-0"]?.received == 4 && picked["stage-0-r1"]?.received == 5, "no newer pair fits in 10")
}
