import Testing
import SluiceConfig
import SluiceProtocol
import SluiceWire

private func assignment(maxSize: Int = 2, delayMilliseconds: Double = 100, epoch: UInt32 = 3,
                        nanPolicy: NaNPolicy = .reject) -> SourceAssignment {
    SourceAssignment(source: .tensors(TensorsSource(path: "rows.npy", rate: .max, rowsPerSecond: nil)), window: nil,
                     batching: BatchingConfig(maxSize: maxSize, maxDelayMilliseconds: delayMilliseconds),
                     inputName: "x", windowShape: [2], epoch: epoch, pushEndpoints: ["inproc://stage-0"],
                     liveness: Liveness(heartbeatSeconds: 0.5, timeoutSeconds: 5), nanPolicy: nanPolicy)
}

/// A machine that took `assignment` and was told to start.
private func streaming(_ assignment: SourceAssignment = assignment()) -> SourceMachine {
    var source = SourceMachine()
    _ = source.handle(.control(.assignSource(assignment)))
    _ = source.handle(.assigned(assignment))
    _ = source.handle(.control(.start))
    return source
}

private func window(_ n: Int, value: Float? = nil) -> Window {
    Window(key: WindowKey(sensor: "s", start: Double(n)), values: [value ?? Float(n), Float(n)])
}

/// One line per action, enough to compare orders and numbers.
private func lines(_ actions: [SourceAction]) -> [String] {
    actions.map { action in
        switch action {
        case .takeAssignment: return "take assignment"
        case .startStreaming: return "start streaming"
        case .send(let batch):
            return "send \(batch.batchSequence) epoch \(batch.epoch) windows \(batch.keys.map { Int($0.start) }) shape \(batch.input.shape)"
        case .resend(let batch): return "resend \(batch.batchSequence) epoch \(batch.epoch)"
        case .sendControl(.marked(let mark)): return "marked \(mark.epoch) from \(mark.firstBatch)"
        case .sendControl(.sourceDone(let done)): return "done \(done.batches) batches \(done.windows) windows"
        case .sendControl(let message): return message.type
        case .connectReplica(let endpoint): return "connect \(endpoint)"
        case .drop(let count, let unit, let reason, _): return "drop \(unit.counted(count)) \(reason.rawValue)"
        case .log(let level, _): return "log \(level)"
        case .discardLateInput: return "discard"
        case .finish: return "finish"
        case .fail: return "fail"
        }
    }
}

private func feed(_ source: inout SourceMachine, _ numbers: ClosedRange<Int>, now: Double = 0) -> [String] {
    numbers.flatMap { lines(source.handle(.window(window($0), now: now))) }
}

@Test func anAssignmentIsTakenByTheShellThenAnsweredReady() {
    var source = SourceMachine()
    #expect(lines(source.handle(.control(.assignSource(assignment())))) == ["take assignment"])
    #expect(!source.readsInput)
    #expect(lines(source.handle(.assigned(assignment()))) == ["ready"])
    #expect(!source.readsInput, "nothing is read before start")
    #expect(lines(source.handle(.control(.start))) == ["start streaming"])
    #expect(source.readsInput)
}

@Test func anAssignmentTheShellCannotTakeFailsTheSource() {
    var source = SourceMachine()
    #expect(lines(source.handle(.assignmentFailed("no such file"))) == ["log error", "failed", "fail"])
}

@Test func batchesAreNumberedInOrderAndStampedWithTheEpoch() {
    var source = streaming()
    #expect(feed(&source, 0...4) == [
        "send 0 epoch 3 windows [0, 1] shape [2, 2]",
        "send 1 epoch 3 windows [2, 3] shape [2, 2]",
    ])
    #expect(source.handle(.tick(now: 0.05)).isEmpty, "window 4 waits up to 100 ms for company")
    #expect(source.deadline == 0.1)
    #expect(lines(source.handle(.tick(now: 0.1))) == ["send 2 epoch 3 windows [4] shape [1, 2]"])
    #expect(source.deadline == nil)
    #expect(lines(source.handle(.control(.mark(epoch: 4)))) == ["marked 4 from 3"])
    #expect(feed(&source, 5...6) == ["send 3 epoch 4 windows [5, 6] shape [2, 2]"])
}

@Test func aMarkNamesTheNextBatchMadeEvenWhileAnEarlierOneWaitsToBeSent() {
    var source = streaming()
    // Batch 0 is made and handed to the shell, whose send blocks; the mark comes meanwhile.
    #expect(feed(&source, 0...1) == ["send 0 epoch 3 windows [0, 1] shape [2, 2]"])
    #expect(lines(source.handle(.control(.mark(epoch: 7)))) == ["marked 7 from 1"])
    // The windows after the blocked send go into batch 1, the first under the new plan.
    #expect(feed(&source, 2...3) == ["send 1 epoch 7 windows [2, 3] shape [2, 2]"])
}

@Test func aMarkWithWindowsPendingPutsThemUnderTheNewEpoch() {
    var source = streaming()
    #expect(feed(&source, 0...0).isEmpty)
    #expect(lines(source.handle(.control(.mark(epoch: 5)))) == ["marked 5 from 0"])
    #expect(feed(&source, 1...1) == ["send 0 epoch 5 windows [0, 1] shape [2, 2]"])
}

@Test func stopEndsTheInputWithTheLastBatchThenTheCounts() {
    var source = streaming()
    _ = feed(&source, 0...4)
    #expect(source.handle(.control(.stop)).isEmpty)
    #expect(source.stopRequested)
    #expect(lines(source.handle(.inputEnded(samplesInNoWindow: 3))) == [
        "send 2 epoch 3 windows [4] shape [1, 2]",
        "drop 3 samples in no complete window",
        "done 3 batches 5 windows",
        "log info",
    ])
    #expect(!source.readsInput)
}

@Test func nothingIsSentAfterTheEnd() {
    var source = streaming()
    _ = feed(&source, 0...1)
    #expect(lines(source.handle(.inputEnded(samplesInNoWindow: 0))) == ["done 1 batches 2 windows", "log info"])
    #expect(feed(&source, 2...5).isEmpty)
    #expect(lines(source.handle(.tick(now: 10))) == ["discard"], "late input is taken off the feed and counted")
    #expect(source.handle(.inputEnded(samplesInNoWindow: 4)).isEmpty, "the end is told once")
    #expect(lines(source.handle(.control(.mark(epoch: 9)))) == ["marked 9 from 1"])
}

@Test func aNonFiniteWindowIsDroppedUnderRejectAndCountedOutOfTheBatches() {
    var source = streaming()
    #expect(lines(source.handle(.window(window(0, value: .nan), now: 0))) == ["drop 1 window non-finite value"])
    #expect(lines(source.handle(.window(window(1, value: -.infinity), now: 0))) == ["drop 1 window non-finite value"])
    #expect(feed(&source, 2...3) == ["send 0 epoch 3 windows [2, 3] shape [2, 2]"])
    #expect(lines(source.handle(.inputEnded(samplesInNoWindow: 0))) == ["done 1 batches 2 windows", "log info"])
}

@Test func aNonFiniteWindowIsBatchedUnderPass() {
    var source = streaming(assignment(nanPolicy: .pass))
    #expect(lines(source.handle(.window(window(0, value: .nan), now: 0))).isEmpty)
    #expect(feed(&source, 1...1) == ["send 0 epoch 3 windows [0, 1] shape [2, 2]"])
}

@Test func shutdownWhileASendWaitsEndsInOrderLikeAnyShutdown() {
    var idle = streaming()
    let shutdownWhenIdle = lines(idle.handle(.control(.shutdown(reason: "done"))))
    var blocked = streaming()
    #expect(feed(&blocked, 0...1).count == 1)  // batch 0 handed to the shell, which waits to send it
    let shutdownWhenBlocked = lines(blocked.handle(.control(.shutdown(reason: "done"))))
    #expect(shutdownWhenBlocked == ["discard", "finish"])
    #expect(shutdownWhenBlocked == shutdownWhenIdle)
}

@Test func replicasAreConnectedAndOtherMessagesIgnored() {
    var source = streaming()
    #expect(lines(source.handle(.control(.connect(endpoint: "tcp://b:1")))) == ["connect tcp://b:1"])
    #expect(source.handle(.control(.ping)).isEmpty)
    #expect(source.handle(.control(.commit(epoch: 2))).isEmpty)
}

@Test func windowsBeforeTheAssignmentAreNotBatched() {
    var source = SourceMachine()
    #expect(feed(&source, 0...3).isEmpty)
    #expect(source.handle(.inputEnded(samplesInNoWindow: 0)).isEmpty)
    // A mark before the assignment is not answered (it could not name a true next batch): the
    // controller asks a source started in place of a dead one again once it streams.
    #expect(lines(source.handle(.control(.mark(epoch: 1)))) == ["log info"])
}

@Test func keptBatchesAreReplayedInOrderUnderTheEpochInForceUntilTheSinkReleasesThem() {
    var source = streaming()
    _ = feed(&source, 0...7)  // batches 0...3
    #expect(source.keptCount == 4)
    #expect(source.handle(.control(.released(upTo: 2))).isEmpty)
    #expect(source.keptCount == 2)
    _ = source.handle(.control(.mark(epoch: 4)))
    // The sink names where it stands; the source sends the rest again, and keeps what is before
    // it until the sink says it wrote it out (a sink that dies first is sent it again).
    #expect(lines(source.handle(.control(.replay(from: 3)))) == ["log info", "resend 3 epoch 4"])
    #expect(source.keptCount == 2 && source.replayed == 1)
    #expect(lines(source.handle(.control(.replay(from: 3)))) == ["log info", "resend 3 epoch 4"], "kept until released")
}

@Test func aFullReplayBufferHoldsTheFeedBackUntilTheSinkReleases() {
    var full = assignment()
    full.replayBytes = 2 * 2 * 2 * 4  // two batches of two windows of two floats
    var source = streaming(full)
    _ = feed(&source, 0...3)
    #expect(!source.readsInput, "the buffer is full: no window is taken, none dropped")
    _ = source.handle(.control(.released(upTo: 1)))
    #expect(source.readsInput)
    _ = feed(&source, 4...5)
    #expect(!source.readsInput)
    _ = source.handle(.control(.stop))
    #expect(source.readsInput, "a stop still ends the input")
}

@Test func aSourceStartedInPlaceOfADeadOneNumbersOnFromWhereTheSinkStands() {
    var resumed = assignment()
    resumed.resume = SourceResume(batch: 7, window: 3, generation: 2)
    var source = streaming(resumed)
    // Its feed passed over windows 0, 1 and 2 of the input, the sink's already.
    #expect(feed(&source, 3...4) == ["send 7 epoch 3 windows [3, 4] shape [2, 2]"])
    var sent: [SourceBatch] = []
    for action in source.handle(.window(window(5), now: 0)) + source.handle(.window(window(6), now: 0)) {
        if case .send(let batch) = action { sent.append(batch) }
    }
    #expect(sent.map(\.batchSequence) == [8] && sent.map(\.firstWindow) == [5] && sent.map(\.generation) == [2])
}
