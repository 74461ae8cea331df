import SluiceConfig
import SluiceTensor
import SluiceWire

/// What the source's shell tells its machine: what the controller said, what the feed gave,
/// and the time. Times are monotonic seconds of the shell's clock.
public enum SourceEvent {
    case control(ControlMessage)
    /// The shell took the assignment it was told to take (its feed and sockets are ready).
    case assigned(SourceAssignment)
    /// The shell could not take the assignment; the message says why.
    case assignmentFailed(String)
    /// A window the feed cut, at `now`.
    case window(Window, now: Double)
    /// The feed has no more input; `samplesInNoWindow` of what it took never filled a window.
    case inputEnded(samplesInNoWindow: Int)
    case tick(now: Double)
}

/// A micro-batch to send to the first stage: the header's fields the protocol decides, the
/// windows' keys and the model input. The shell stamps the creation time as it sends.
public struct SourceBatch {
    public var batchSequence: UInt64
    public var firstWindow: UInt64
    /// The plan the batch is created under (see `ControlMessage.mark`).
    public var epoch: UInt32
    /// Which source process made it (`BatchHeader.sourceGeneration`).
    public var generation: UInt16 = 0
    public var keys: [WindowKey]
    public var inputName: String
    public var input: Tensor
}

/// What the source's machine tells its shell to do, in order.
public enum SourceAction {
    /// Open the feed and the first stage's sockets this assignment names, then answer with
    /// `.assigned` or `.assignmentFailed`.
    case takeAssignment(SourceAssignment)
    /// Read the feed from now on; the run's elapsed time counts from here.
    case startStreaming
    /// Send the batch, waiting while the first stage is full; control messages that come
    /// meanwhile go to this same machine.
    case send(SourceBatch)
    /// Send a kept batch again (a replay), as `send` does.
    case resend(SourceBatch)
    case sendControl(ControlMessage)
    /// Spread batches over this new replica of the first stage too.
    case connectReplica(endpoint: String)
    /// Count this as dropped and log it.
    case drop(count: Int, unit: DropUnit, reason: DropReason, detail: String)
    case log(RoleLogLevel, String)
    /// Take what reached the feed after the input ended off it, counted as dropped.
    case discardLateInput
    /// The run is over: report the counters a last time and exit with status 0.
    case finish
    /// The source cannot go on (the controller has been told): exit with status 1.
    case fail
}

/// The source's protocol, free of sockets, clocks and files: it numbers windows into batches,
/// stamps each batch with the epoch in force when the batch is made, answers marks with the
/// true next batch, ends the input in order (the last partial batch, then the counts) and
/// refuses non-finite windows under `source.nan_policy: reject`.
///
/// Batches are made one window at a time, so a mark handled while an earlier batch waits to
/// be sent answers the batch the next window will go into: every batch made before the mark
/// carries the old epoch, every one made after it the new.
///
/// Every batch sent is kept until the sink has released it (`released`), so that when a stage
/// process dies the batches lost with it can be sent again (`replay`). The kept batches are
/// bounded in bytes: once the bound is reached the source stops reading its feed until
/// releases make room (backpressure, never a drop).
public struct SourceMachine {
    private var batcher: MicroBatcher?
    private var inputName = ""
    private var nanPolicy = NaNPolicy.reject
    /// Batches sent and not yet released by the sink, oldest first, numbered consecutively.
    private var kept: [SourceBatch] = []
    private var keptStart = 0
    public private(set) var keptBytes = 0
    private var replayBytes = SourceAssignment.defaultReplayBytes
    /// Batches sent again on replays, for the counters.
    public private(set) var replayed = 0
    public private(set) var epoch: UInt32 = 0
    private var generation: UInt16 = 0
    /// The last mark answered: a controller started in place of a dead one retires the move by it.
    private var lastMark: Mark?
    /// The controller said start: the shell reads the feed.
    public private(set) var isStreaming = false
    /// Stop (or a signal) came: the shell ends the input at its next read instead of reading.
    public private(set) var stopRequested = false
    /// The input ended and its counts went out: nothing more is batched.
    public private(set) var inputFinished = false

    public init() {}

    /// The next batch to be made (the one a mark answered now would name).
    public var nextBatch: UInt64 { batcher?.nextBatch ?? 0 }

    /// Whether the shell should read the feed now: not while the replay buffer is full.
    public var readsInput: Bool { isStreaming && !inputFinished && batcher != nil && !replayBufferFull }

    /// The kept batches fill their bound: no window is taken until the sink releases some.
    /// A stop still ends the input (its last partial batch is kept beyond the bound).
    public var replayBufferFull: Bool { keptBytes >= replayBytes && !stopRequested }

    /// Batches kept for replay.
    public var keptCount: Int { kept.count - keptStart }

    /// When pending windows must go out at the latest: the shell ticks by then.
    public var deadline: Double? { batcher?.deadline }

    public mutating func handle(_ event: SourceEvent) -> [SourceAction] {
        switch event {
        case .control(let message): return handle(message)
        case .assigned(let assignment): return take(assignment)
        case .assignmentFailed(let reason):
            return [.log(.error, "cannot take assignment: \(reason)"), .sendControl(.failed(message: reason)), .fail]
        case .window(let window, let now): return batch(window, now: now)
        case .inputEnded(let samplesInNoWindow): return endInput(samplesInNoWindow: samplesInNoWindow)
        case .tick(let now):
            // After the end, input still arriving is taken off the feed and counted as dropped.
            if inputFinished { return [.discardLateInput] }
            return batcher?.flushIfDue(now: now).map { [send(stamped($0))] } ?? []
        }
    }

    private mutating func handle(_ message: ControlMessage) -> [SourceAction] {
        switch message {
        case .assignSource(let assignment): return [.takeAssignment(assignment)]
        case .start:
            isStreaming = true
            return [.startStreaming]
        case .stop:
            stopRequested = true
            return []
        case .mark(let newEpoch):
            // Before its assignment a source cannot name its next batch (a source starting in
            // place of a dead one is asked again once it streams).
            guard batcher != nil else { return [.log(.info, "ignoring mark for epoch \(newEpoch) before the assignment")] }
            // Every stage now runs the new plan: batches from here on are wholly handled under it.
            epoch = newEpoch
            lastMark = Mark(epoch: newEpoch, firstBatch: nextBatch)
            return [.sendControl(.marked(Mark(epoch: newEpoch, firstBatch: nextBatch)))]
        case .connect(let endpoint): return [.connectReplica(endpoint: endpoint)]
        case .released(let upTo):
            release(upTo: upTo)
            return []
        case .replay(let from):
            return replay(from: from)
        case .rejoin:
            guard let batcher else { return [] }
            let done = inputFinished ? SourceDone(batches: batcher.nextBatch, windows: batcher.nextWindow) : nil
            return [.sendControl(.rejoined(RoleState(source: SourceState(epoch: epoch, nextBatch: batcher.nextBatch, generation: generation,
                                                                         done: done, lastMark: lastMark, streaming: isStreaming))))]
        case .shutdown:
            // What reached the feed too late is counted, not silently left there.
            return [.discardLateInput, .finish]
        default:
            return []
        }
    }

    private mutating func take(_ assignment: SourceAssignment) -> [SourceAction] {
        batcher = MicroBatcher(maxSize: assignment.batching.maxSize,
                               maxDelaySeconds: assignment.batching.maxDelayMilliseconds / 1000,
                               windowShape: assignment.windowShape,
                               firstBatch: assignment.resume?.batch ?? 0, firstWindow: assignment.resume?.window ?? 0)
        generation = assignment.resume?.generation ?? 0
        inputName = assignment.inputName
        nanPolicy = assignment.nanPolicy
        epoch = assignment.epoch
        replayBytes = max(assignment.replayBytes, 1)
        return [.sendControl(.ready)]
    }

    private mutating func batch(_ window: Window, now: Double) -> [SourceAction] {
        guard !inputFinished, batcher != nil else { return [] }
        // No score computed from NaN or ±infinity means anything.
        if nanPolicy != .pass, let bad = window.values.firstIndex(where: { !$0.isFinite }) {
            return [.drop(count: 1, unit: .window, reason: .nonFinite,
                          detail: "sensor '\(window.key.sensor.prefix(64))' at \(window.key.start): value \(window.values[bad]) at position \(bad) (source.nan_policy: reject)")]
        }
        return batcher?.add(window, now: now).map { [send(stamped($0))] } ?? []
    }

    private mutating func endInput(samplesInNoWindow: Int) -> [SourceAction] {
        guard !inputFinished, batcher != nil else { return [] }
        var actions: [SourceAction] = []
        if let last = batcher?.flush() { actions.append(send(stamped(last))) }
        inputFinished = true
        // Samples sent but in no window: the model never saw them, so they are counted.
        if samplesInNoWindow > 0 {
            actions.append(.drop(count: samplesInNoWindow, unit: .sample, reason: .incompleteWindow,
                                 detail: "their sensors' input ended before they filled one"))
        }
        let done = SourceDone(batches: nextBatch, windows: batcher?.nextWindow ?? 0)
        actions.append(.sendControl(.sourceDone(done)))
        actions.append(.log(.info, "input finished: \(done.windows) windows in \(done.batches) batches"))
        return actions
    }

    /// Sends a new batch and keeps it for replay.
    private mutating func send(_ batch: SourceBatch) -> SourceAction {
        kept.append(batch)
        keptBytes += batch.input.byteCount
        return .send(batch)
    }

    private mutating func release(upTo: UInt64) {
        while keptStart < kept.count, kept[keptStart].batchSequence < upTo {
            keptBytes -= kept[keptStart].input.byteCount
            keptStart += 1
        }
        // Compact now and then rather than shift the array on every release.
        if keptStart > 64 && keptStart * 2 > kept.count {
            kept.removeFirst(keptStart)
            keptStart = 0
        }
    }

    /// Every kept batch from `from` on, again, in order. Each restarts at cursor 0 (the shell
    /// sends every batch so) and carries the epoch in force now: it is routed and run under the
    /// plan in force as it is sent again, exactly as a batch made now would be, so the cursor
    /// rule holds for it whatever plan it was first sent under.
    private mutating func replay(from: UInt64) -> [SourceAction] {
        // Batches before `from` the sink has released, but perhaps not yet written out: they
        // are kept until `released` says so (a sink that dies now is sent them again).
        let again = kept[keptStart...].filter { $0.batchSequence >= from }.map { batch -> SourceAction in
            var batch = batch
            batch.epoch = epoch
            return .resend(batch)
        }
        replayed += again.count
        return [.log(.info, "replaying \(again.count) batches from batch \(from)")] + again
    }

    private func stamped(_ ready: ReadyBatch) -> SourceBatch {
        SourceBatch(batchSequence: ready.batchSequence, firstWindow: ready.firstWindow, epoch: epoch, generation: generation,
                    keys: ready.keys, inputName: inputName, input: ready.input)
    }
}
