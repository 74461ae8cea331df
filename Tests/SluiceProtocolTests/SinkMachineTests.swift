import Testing
import SluiceConfig
import SluiceWire
@testable import SluiceProtocol

private let assignment = SinkAssignment(sink: SinkConfig(kind: .jsonl, path: "-"), pullEndpoint: "inproc://sink", outputName: "y",
                                        classes: ["a", "b"], layerCount: 4, liveness: Liveness(heartbeatSeconds: 1, timeoutSeconds: 5))
private let assignedAt: UInt64 = 1_000

private func assigned() -> SinkMachine<UInt64> {
    var sink = SinkMachine<UInt64>()
    #expect(sink.handle(.control(.assignSink(assignment))) == [.takeAssignment(assignment)])
    #expect(sink.handle(.assignmentTaken(at: assignedAt)) == [.send(.ready)])
    return sink
}

/// Batch `sequence` of two windows, finished by every layer, as the sink's shell hands it over.
private func arrival(_ sequence: UInt64, cursor: UInt16 = 4, windows: UInt32 = 2, rows: Int? = 2, keys: Int = 2,
                     created: UInt64 = 2_000, arrived: UInt64 = 3_000_000, firstWindow: UInt64? = nil) -> SinkEvent<UInt64> {
    let header = BatchHeader(batchSequence: sequence, firstWindow: firstWindow ?? sequence * 2, windowCount: windows, epoch: 1,
                             cursor: cursor, created: created, tensors: [])
    let metadata = WindowKey.encode((0..<keys).map { WindowKey(sensor: "s", start: Double($0), label: "a") })
    return .batch(SinkArrival(header: header, verifiedWindows: Int(windows), outputRows: rows, metadata: metadata, arrived: arrived,
                              payload: sequence))
}

private func released(_ actions: [SinkAction<UInt64>]) -> [UInt64] {
    actions.compactMap { if case .release(let release) = $0 { return release.payload } else { return nil } }
}

private func drops(_ actions: [SinkAction<UInt64>]) -> [DropReason] {
    actions.compactMap { if case .drop(_, _, let reason, _) = $0 { return reason } else { return nil } }
}

@Test func releasesBatchesInSequenceOrderEachOnce() {
    var sink = assigned()
    #expect(released(sink.handle(arrival(2))).isEmpty)
    #expect(released(sink.handle(arrival(0))) == [0])
    let duplicate = sink.handle(arrival(2))
    #expect(released(duplicate).isEmpty)
    #expect(drops(duplicate) == [.duplicate])
    #expect(released(sink.handle(arrival(1))) == [1, 2])
    #expect(sink.counters.batches == 3)
    #expect(sink.counters.windows == 6)
    #expect(sink.counters.drops.count(.batch, .duplicate) == 1)
    #expect(sink.counters.rejected == 0)
}

@Test func refusesBatchesItCannotRelease() {
    var sink = assigned()
    let cases: [(SinkEvent<UInt64>, DropReason)] = [
        (arrival(0, cursor: 3), .misrouted),
        (arrival(0, rows: nil), .malformed),
        (arrival(0, rows: 1), .malformed),
        (arrival(SinkMachine<UInt64>.maximumBatchesAhead), .tooFarAhead),
        (arrival(0, firstWindow: UInt64.max - 1), .malformed),
        (arrival(0, keys: 1), .malformed),
        (.undecodable("two frames"), .malformed),
    ]
    for (event, reason) in cases {
        let actions = sink.handle(event)
        #expect(released(actions).isEmpty)
        #expect(drops(actions) == [reason])
    }
    #expect(sink.counters.rejected == cases.count)
    #expect(sink.counters.received == cases.count)
    // The last one ahead that is still held.
    #expect(released(sink.handle(arrival(SinkMachine<UInt64>.maximumBatchesAhead - 1))).isEmpty)
    #expect(sink.counters.rejected == cases.count)
}

@Test func isDoneOnceEveryExpectedBatchIsOutAndCountsWhatNeverCameOut() {
    var sink = assigned()
    #expect(sink.handle(.control(.expect(SourceDone(batches: 2, windows: 4)))).isEmpty)
    _ = sink.handle(arrival(5))
    #expect(!sink.handle(arrival(0)).contains(.finishOutput))
    let last = sink.handle(arrival(1))
    #expect(released(last) == [1])
    #expect(last.last == .finishOutput)
    #expect(sink.isDone)
    let report = sink.handle(.outputFinished)
    #expect(drops(report) == [.neverReleased])
    guard case .send(.sinkDone(let summary))? = report.last else {
        Issue.record("no sink_done: \(report)")
        return
    }
    #expect(summary.batches == 2)
    #expect(summary.drops.count(.batch, .neverReleased) == 1)
    #expect(summary.drops.count(.window, .neverReleased) == 2)
    #expect(summary.firstCreated == 2_000)
    // Done only once.
    #expect(sink.handle(arrival(2)).filter { $0 == .finishOutput }.isEmpty)
}

@Test func expectArrivingAfterTheLastBatchFinishesAtOnce() {
    var sink = assigned()
    _ = sink.handle(arrival(0))
    #expect(sink.handle(.control(.expect(SourceDone(batches: 1, windows: 2)))) == [.finishOutput])
}

@Test func keepsImplausibleStampsOutOfLatency() {
    var sink = assigned()
    _ = sink.handle(arrival(0, created: assignedAt - 1))
    _ = sink.handle(arrival(1, created: 4_000_000, arrived: 3_000_000))
    _ = sink.handle(arrival(2, created: 2_000, arrived: 1_002_000))
    #expect(sink.counters.implausibleStamps == 2)
    #expect(sink.counters.latency?.count == 1)
    _ = sink.handle(.control(.expect(SourceDone(batches: 3, windows: 6))))
    guard case .send(.sinkDone(let summary))? = sink.handle(.outputFinished).last else {
        Issue.record("no sink_done")
        return
    }
    #expect(summary.latencyP50Milliseconds == 1)
    #expect(summary.implausibleStamps == 2)
}

@Test func countsLabelledAndCorrectPredictionsFromWhatWasWritten() {
    var sink = assigned()
    let keys = [WindowKey(sensor: "s", start: 0, label: "a"), WindowKey(sensor: "s", start: 1, label: "b"), WindowKey(sensor: "s", start: 2)]
    #expect(sink.handle(.written(keys: keys, predictions: ["a", "a", "b"])).isEmpty)
    #expect(sink.summary.windows == 3)
    #expect(sink.summary.labelled == 2)
    #expect(sink.summary.correct == 1)
}

@Test func shutdownKeepsWhatWasReleasedAndCountsTheRest() {
    var sink = assigned()
    _ = sink.handle(arrival(1))
    let actions = sink.handle(.control(.shutdown(reason: "done")))
    #expect(actions.first == .closeOutput)
    #expect(drops(actions) == [.neverReleased])
    #expect(actions.last == .finish(status: 0, finalHeartbeat: true))
    var signalled = assigned()
    #expect(signalled.handle(.stopSignal) == [.closeOutput, .finish(status: 0, finalHeartbeat: false)])
}

@Test func aFailedOutputOrAssignmentEndsTheSink() {
    var sink = SinkMachine<UInt64>()
    _ = sink.handle(.control(.assignSink(assignment)))
    #expect(sink.handle(arrival(0)).isEmpty)  // not yet assigned: nothing is bound to receive it
    #expect(sink.handle(.assignmentFailed("no room")).suffix(2) == [.send(.failed(message: "no room")), .finish(status: 1, finalHeartbeat: false)])
    var writing = assigned()
    #expect(writing.handle(.outputFailed("disk full")).suffix(2)
            == [.send(.failed(message: "cannot write the output: disk full")), .finish(status: 1, finalHeartbeat: false)])
}

@Test func replayedCopiesAreDroppedQuietlyWhileOlderDuplicatesStillCount() {
    var sink = assigned()
    _ = sink.handle(arrival(0))
    _ = sink.handle(arrival(1))
    _ = sink.handle(arrival(3))
    // A stage died: the sink names the first batch it has not released, for the source to replay from.
    #expect(sink.handle(.control(.replayNeeded)) == [.send(.replay(from: 2))])
    let copy = sink.handle(arrival(3))
    #expect(released(copy).isEmpty && drops(copy).isEmpty)
    #expect(released(sink.handle(arrival(2))) == [2, 3])
    #expect(drops(sink.handle(arrival(2))).isEmpty)
    // Batch 0 was released before the replay's first batch: another copy is a true duplicate.
    #expect(drops(sink.handle(arrival(0))) == [.duplicate])
    #expect(sink.counters.replayed == 2)
    #expect(sink.counters.drops.count(.batch, .duplicate) == 1)
}

/// A sink taking over from a dead one that wrote out batches 0..<3 (6 windows, 4 labelled, 3
/// right), whose output was found to hold 7 windows.
private func tookOver(outputHolds: UInt64?) -> SinkMachine<UInt64> {
    var resumed = assignment
    resumed.resume = SinkOutputState(batches: 3, windows: 6, labelled: 4, correct: 3, firstCreated: 500)
    var sink = SinkMachine<UInt64>()
    _ = sink.handle(.control(.assignSink(resumed)))
    #expect(sink.handle(.assignmentTaken(at: assignedAt, outputHolds: outputHolds)) == [.send(.ready)])
    return sink
}

private func alreadyOut(_ actions: [SinkAction<UInt64>]) -> [Int] {
    actions.compactMap { if case .release(let release) = $0 { return release.alreadyOut } else { return nil } }
}

@Test func aSinkThatTakesOverStartsAfterWhatWasWrittenOutAndWritesNoWindowTwice() {
    var sink = tookOver(outputHolds: 7)
    // A copy of a batch the dead sink wrote out, still in flight: a replayed copy, not a duplicate.
    let early = sink.handle(arrival(1))
    #expect(released(early).isEmpty && drops(early).isEmpty)
    #expect(sink.counters.replayed == 1)
    // Batch 3 holds windows 6 and 7; the output holds window 6 already.
    let third = sink.handle(arrival(3))
    #expect(released(third) == [3] && alreadyOut(third) == [1])
    #expect(alreadyOut(sink.handle(arrival(4))) == [0])
    #expect(sink.counters.batches == 5 && sink.counters.windows == 10)
    // Every window of the released batches is counted, the ones found in the output included.
    _ = sink.handle(.written(keys: [WindowKey(sensor: "s", start: 0, label: "a"), WindowKey(sensor: "s", start: 1, label: "b")],
                             predictions: ["a", "a"]))
    #expect(sink.summary.windows == 8 && sink.summary.labelled == 6 && sink.summary.correct == 4)
    #expect(sink.counters.output?.batches == 3, "reported written out before the output was flushed")
    _ = sink.handle(.outputFlushed)
    #expect(sink.counters.output == SinkOutputState(batches: 4, windows: 8, labelled: 6, correct: 4, firstCreated: 500))
    #expect(sink.summary.mayRepeatFrom == nil)
}

@Test func aSinkThatCannotReadBackItsOutputSaysWhichWindowsMayRepeat() {
    var sink = tookOver(outputHolds: nil)
    #expect(alreadyOut(sink.handle(arrival(3))) == [0])
    #expect(sink.summary.mayRepeatFrom == 6)
}

@Test func aSinkRefusesToTakeOverAnOutputThatLostWhatWasWrittenOut() {
    var resumed = assignment
    resumed.resume = SinkOutputState(batches: 3, windows: 6)
    var sink = SinkMachine<UInt64>()
    _ = sink.handle(.control(.assignSink(resumed)))
    let actions = sink.handle(.assignmentTaken(at: assignedAt, outputHolds: 4))
    #expect(actions.contains(.finish(status: 1, finalHeartbeat: false)), "\(actions)")
}

private func ofGeneration(_ generation: UInt16, _ event: SinkEvent<UInt64>) -> SinkEvent<UInt64> {
    guard case .batch(var arrival) = event else { return event }
    arrival.header.sourceGeneration = generation
    return .batch(arrival)
}

/// A live source died: nothing makes its batches again, so what reached the sink is released,
/// every gap counted lost, and the new source numbers on after what the sink released.
@Test func aDeadLiveSourcesBatchesAreReleasedAndWhatNeverCameIsCountedLost() {
    var sink = assigned()
    _ = sink.handle(arrival(0))
    _ = sink.handle(arrival(2))  // batch 1 never comes: it died in the source's queue
    _ = sink.handle(arrival(3))
    _ = sink.handle(arrival(5))  // batch 4 too
    // It reported 7 batches, 14 windows made: 6 was made too and never came either.
    let lost = sink.handle(.control(.sourceLost(generation: 1, made: SourceDone(batches: 7, windows: 14))))
    #expect(released(lost) == [2, 3, 5], "\(lost)")
    // Numbered on from what was released: the sink's counts stay positions, window_seq dense.
    let firstWindows = lost.compactMap { if case .release(let release) = $0 { return release.firstWindow } else { return nil } }
    #expect(firstWindows == [2, 4, 6])
    #expect(sink.counters.drops.count(.batch, .lostWithSource) == 3 && sink.counters.drops.count(.window, .lostWithSource) == 6)
    #expect(sink.counters.drops.count(.process, .diedHoldingInput) == 1, "what it held unsent cannot be counted: its death is")
    let flushed = lost.firstIndex(of: .flushOutput) ?? lost.endIndex
    #expect(lost.lastIndex { if case .release = $0 { return true } else { return false } } ?? 0 < flushed, "written out before the answer")
    #expect(lost.last == .send(.resumeSource(SourceResume(batch: 4, window: 8, generation: 1),
                                             written: SinkOutputState(batches: 0, windows: 0, firstCreated: 2_000))), "\(lost)")
    #expect(!sink.isDone, "the new source's input has not ended")
    // A straggler of the dead one's that comes after: lost too, not made again by anyone.
    #expect(drops(sink.handle(arrival(7))) == [.lostWithSource])
    #expect(drops(sink.handle(arrival(4))) == [.duplicate], "counted lost already")
    #expect(released(sink.handle(ofGeneration(1, arrival(4, firstWindow: 8)))) == [4])
    #expect(sink.counters.drops.count(.batch, .lostWithSource) == 4)
    #expect(sink.counters.drops.anyLoss)
}

/// A live source that dies after its input ended is not replaced: what it made that reaches
/// the sink comes out, and the run is done.
@Test func aLiveSourceThatDiesAfterItsInputEndedLeavesTheRunToFinish() {
    var sink = assigned()
    _ = sink.handle(arrival(0))
    _ = sink.handle(arrival(2))
    #expect(sink.handle(.control(.expect(SourceDone(batches: 3, windows: 6)))).isEmpty)
    let lost = sink.handle(.control(.sourceLost(generation: 1, made: SourceDone(batches: 3, windows: 6))))
    #expect(released(lost) == [2] && sink.isDone, "\(lost)")
    #expect(lost.contains(.finishOutput), "\(lost)")
    #expect(sink.counters.drops.count(.batch, .lostWithSource) == 1)
    #expect(sink.counters.drops.count(.process, .diedHoldingInput) == 0, "having ended its input, it held nothing more")
}

@Test func aDeadSourcesBatchesAreDroppedOnceItsSuccessorTakesOver() {
    var sink = assigned()
    _ = sink.handle(arrival(0))
    _ = sink.handle(.written(keys: [WindowKey(sensor: "s", start: 0), WindowKey(sensor: "s", start: 1)], predictions: [nil, nil]))
    _ = sink.handle(arrival(2))  // held behind batch 1, which the dead source never got out
    #expect(sink.handle(.control(.expect(SourceDone(batches: 9, windows: 18)))).isEmpty)
    let lost = sink.handle(.control(.sourceLost(generation: 1)))
    #expect(drops(lost) == [.superseded], "the held batch is made again by the new source")
    #expect(lost.first == .flushOutput, "what was released is written out before the source starts again: \(lost)")
    #expect(lost.contains(.send(.resumeSource(SourceResume(batch: 1, window: 2, generation: 1),
                                              written: SinkOutputState(batches: 1, windows: 2, firstCreated: 2_000)))), "\(lost)")
    // The dead source's copy of batch 1 arrives late: the new source's, cut otherwise, counts.
    #expect(drops(sink.handle(arrival(1))) == [.superseded])
    #expect(released(sink.handle(ofGeneration(1, arrival(1, windows: 3, rows: 3, keys: 3, firstWindow: 2)))) == [1])
    // A copy of what was released before the new source took over is still a replayed one.
    #expect(drops(sink.handle(arrival(0))) == [.duplicate])
    // The dead source's counts no longer hold: the run is not done at batch 9.
    #expect(drops(sink.handle(ofGeneration(2, arrival(2)))) == [.misrouted], "a generation the sink was not told of")
    #expect(!sink.isDone)
    #expect(sink.counters.drops.count(.batch, .superseded) == 2)
}
