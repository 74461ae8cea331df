import SluiceProtocol
import Testing
@testable import SluiceProfile

/// Counters of a role that took `received` batches from upstream and handed `sent` on.
private func flow(received: Int = 0, sent: Int = 0, batches: Int = 0, windows: Int = 0) -> RoleCounters {
    var counters = RoleCounters()
    counters.received = received
    counters.sent = sent
    counters.batches = batches
    counters.windows = windows
    return counters
}

private extension RunObserver {
    mutating func heartbeat(_ role: String, _ counters: RoleCounters) {
        received(.heartbeat(counters), from: role)
    }
}

@Test func replicasOfAStageAreCombinedAndOtherRolesLeftOut() {
    var observer = RunObserver(stageCount: 2, interval: 0.1)
    observer.heartbeat("source", flow(sent: 50))
    observer.heartbeat("stage-0", flow(received: 50, sent: 50, batches: 50))
    observer.heartbeat("stage-1", flow(received: 30, sent: 30, batches: 30))
    observer.heartbeat("stage-1.1", flow(received: 15, sent: 15, batches: 15))
    observer.heartbeat("sink", flow(received: 45, batches: 45, windows: 360))
    let stages = observer.stageCounters
    #expect(stages.keys.sorted() == [0, 1])
    #expect(stages[0]?.batches == 50)
    #expect(stages[1]?.batches == 45)
    #expect(stages[1] == RoleCounters.combined([flow(received: 30, sent: 30, batches: 30), flow(received: 15, sent: 15, batches: 15)]))
    // A later heartbeat replaces a role's running totals; it does not add to them.
    observer.heartbeat("stage-1.1", flow(received: 20, sent: 20, batches: 20))
    #expect(observer.stageCounters[1]?.batches == 50)
}

@Test func queuesAreWhatUpstreamSentLessWhatTheStageTook() {
    var observer = RunObserver(stageCount: 3, interval: 0.1)
    observer.heartbeat("source", flow(sent: 100))
    observer.heartbeat("stage-0", flow(received: 96, sent: 90))
    observer.heartbeat("stage-1", flow(received: 60, sent: 60))
    observer.heartbeat("stage-1.1", flow(received: 28, sent: 28))
    // Stage 2 has not reported: its queue is unknown, not zero.
    #expect(observer.currentQueueDepths() == [0: 4, 1: 2])
    // A stage ahead of its upstream's last heartbeat shows an empty queue, not a negative one.
    observer.heartbeat("stage-2", flow(received: 95))
    #expect(observer.currentQueueDepths()[2] == 0)
}

@Test func queueDepthsAreAveragedOncePerIntervalWhileStreamingOnly() {
    var observer = RunObserver(stageCount: 1, interval: 1)
    observer.heartbeat("source", flow(sent: 10))
    observer.heartbeat("stage-0", flow(received: 8))
    observer.tick(now: 0.5, phase: .preparing)          // not streaming yet: not observed
    #expect(observer.queueDepths.isEmpty)
    observer.tick(now: 1.0, phase: .running)             // depth 2
    observer.heartbeat("source", flow(sent: 20))
    observer.heartbeat("stage-0", flow(received: 12))
    observer.tick(now: 1.5, phase: .running)             // within the interval: not observed
    observer.tick(now: 2.0, phase: .running)             // depth 8
    observer.heartbeat("source", flow(sent: 40))
    observer.tick(now: 3.0, phase: .draining)            // depth 28, but a drain says nothing of the split
    #expect(observer.queueDepths == [0: 5])
}

@Test func theSinkTimelineFollowsTheRunFromStartThroughTheDrain() {
    var observer = RunObserver(stageCount: 1, interval: 0.5)
    observer.tick(now: 0.0, phase: .running)             // no sink heartbeat yet: no point
    observer.heartbeat("sink", flow(batches: 2, windows: 16))
    observer.tick(now: 0.2, phase: .running)             // within the interval of the last tick
    observer.tick(now: 0.6, phase: .running)
    observer.heartbeat("sink", flow(batches: 5, windows: 40))
    observer.tick(now: 1.1, phase: .draining)
    observer.heartbeat("sink", flow(batches: 6, windows: 48))
    observer.tick(now: 1.7, phase: .closing)             // the run is over: no more points
    observer.tick(now: 1.8, phase: .finished)
    #expect(observer.sinkTimeline == [[0.6, 16], [1.1, 40]])
}

@Test func byStageGroupsAnyCountersItIsGiven() {
    let grouped = RunObserver.byStage(["stage-0": flow(batches: 3), "stage-0.2": flow(batches: 4), "stage-3": flow(batches: 1),
                                       "source": flow(batches: 9), "sink": flow(batches: 9)])
    #expect(grouped.mapValues(\.batches) == [0: 7, 3: 1])
}

@Test func theSourcesLastWordIsKeptAndOtherMessagesChangeNothing() {
    var observer = RunObserver(stageCount: 1, interval: 1)
    observer.heartbeat("sink", flow(batches: 2, windows: 16))
    observer.received(.ready, from: "sink")
    observer.received(.sourceDone(SourceDone(batches: 9, windows: 72)), from: "source")
    #expect(observer.sourceDone == SourceDone(batches: 9, windows: 72))
    #expect(observer.counters == ["sink": flow(batches: 2, windows: 16)])
}
