import SluiceWire

/// A batch as the sink's shell decoded it: what the sink's checks need, when it arrived, and
/// what the shell writes once the batch is released (`payload`, opaque here).
public struct SinkArrival<Payload> {
    public var header: BatchHeader
    /// Windows the batch's tensors bear out (0 where they do not), for drop counts: a count only
    /// a header claims may be forged.
    public var verifiedWindows: Int
    /// First dimension of the model output the batch carries; nil when it carries none of rank ≥ 1.
    public var outputRows: Int?
    /// The metadata frame, which holds the window keys.
    public var metadata: [UInt8]
    /// Wall-clock nanoseconds on arrival.
    public var arrived: UInt64
    public var payload: Payload

    public init(header: BatchHeader, verifiedWindows: Int, outputRows: Int?, metadata: [UInt8], arrived: UInt64, payload: Payload) {
        self.header = header; self.verifiedWindows = verifiedWindows; self.outputRows = outputRows
        self.metadata = metadata; self.arrived = arrived; self.payload = payload
    }
}

/// A batch whose turn has come: the shell writes its predictions, in the order released.
public struct SinkRelease<Payload> {
    public var payload: Payload
    /// The sequence it is released under (a dead live source's batches are numbered on).
    public var batch: UInt64
    public var keys: [WindowKey]
    public var firstWindow: UInt64
    /// Its first rows that the output already holds (written before a sink restart): predicted
    /// and counted, not written again.
    public var alreadyOut: Int = 0
}

extension SinkArrival: Equatable where Payload: Equatable {}
extension SinkRelease: Equatable where Payload: Equatable {}

public enum SinkEvent<Payload> {
    case control(ControlMessage)
    /// The shell opened the output and bound its socket at wall-clock `at` (ns): no batch of the
    /// run was created before it. `outputHolds`: for a sink started in place of a dead one, the
    /// windows its output was found to hold (nil where it cannot be read back: standard output, a pipe).
    case assignmentTaken(at: UInt64, outputHolds: UInt64? = nil)
    case assignmentFailed(String)
    case batch(SinkArrival<Payload>)
    /// Frames that are no batch at all.
    case undecodable(String)
    /// The shell wrote a released batch: its keys and the class predicted for each window (nil: none).
    case written(keys: [WindowKey], predictions: [String?])
    /// Everything written so far has left the process (the output's buffer is empty).
    case outputFlushed
    /// Answers to `finishOutput`, and a failed write at any time.
    case outputFinished
    case outputFailed(String)
    case stopSignal
}

public enum SinkAction<Payload> {
    case send(ControlMessage)
    /// Open the output (without truncating it when the assignment resumes one) and bind the
    /// socket; answer `assignmentTaken` or `assignmentFailed`.
    case takeAssignment(SinkAssignment)
    /// Write this batch's predictions now: releases come in batch order, each batch once.
    case release(SinkRelease<Payload>)
    /// Count and log a drop (the counts are already in `counters.drops`).
    case drop(batches: Int, windows: Int, DropReason, String)
    case log(RoleLogLevel, String)
    /// Write out what the output holds in its buffer now; answer `outputFlushed` (or `outputFailed`).
    case flushOutput
    /// Write out everything and close the output; answer `outputFinished` or `outputFailed`.
    case finishOutput
    /// Close the output as far as it goes, without an answer: the sink ends anyway.
    case closeOutput
    case finish(status: Int32, finalHeartbeat: Bool)
}

extension SinkAction: Equatable where Payload: Equatable {}

/// The sink's protocol, free of sockets, clocks and files: which batches it accepts, the order
/// it releases them in (each exactly once, whatever order they arrive in), when the run is done,
/// and the summary it reports then.
public struct SinkMachine<Payload> {
    /// Batches a sequence number may run ahead of the next one to release: no run has this many
    /// in flight, so holding such a batch would only wait forever (and hold memory) behind a gap.
    public static var maximumBatchesAhead: UInt64 { 1 << 20 }

    private struct Held {
        var release: SinkRelease<Payload>
        /// End-to-end seconds; nil when the batch's stamps were implausible.
        var latency: Double?
        var arrived: UInt64
    }

    private var offered: SinkAssignment?
    public private(set) var assignment: SinkAssignment?
    private var assignedAt: UInt64 = 0
    private var reorder = ReorderBuffer<Held>()
    private var expected: UInt64?
    /// The run's figures; complete once `sink_done` is sent.
    public private(set) var summary = SinkSummary()
    /// Running totals for heartbeats (the shell adds the elapsed time).
    public private(set) var counters = RoleCounters()
    public private(set) var isDone = false
    /// `sink_done` went out: `summary` is final.
    private var reported = false
    private var latencyMilliseconds: [Double] = []
    private var traces = TraceSampler()
    /// The first batch of the earliest replay asked of the source: a copy of a batch from here
    /// on that comes again is a replayed copy, expected, not a duplicate.
    public private(set) var replayedFrom: UInt64?
    /// Written, and not yet out of the process; and what the output holds.
    private var unflushed = SinkOutputState()
    private var output = SinkOutputState()
    /// Windows below this were in the output when this sink took over from a dead one.
    private var outputHeld: UInt64?
    /// The first window of the next batch to release.
    private var nextWindow: UInt64 = 0
    /// The source in force, and the first batch that only it may deliver: a dead source's
    /// batches from there on are made again by its successor, perhaps cut otherwise.
    private var sourceGeneration: UInt16 = 0
    private var generationFrom: UInt64 = 0
    /// Generations of live sources that died, each with the batch (in its numbering) up to which
    /// what never came was counted lost: what still arrives of theirs is not made again.
    private var liveGenerations: [UInt16: UInt64] = [:]

    public init() {
        // Heartbeats carry the histogram from the start, empty or not.
        counters.latency = LatencyHistogram()
    }

    /// The next batch to release.
    public var nextSequence: UInt64 { reorder.nextSequence }

    public mutating func handle(_ event: SinkEvent<Payload>) -> [SinkAction<Payload>] {
        switch event {
        case .control(let message):
            return handle(message)
        case .assignmentTaken(let time, let outputHolds):
            guard let offered else { return [] }
            if let resume = offered.resume {
                if let outputHolds, outputHolds < resume.windows {
                    return handle(.assignmentFailed("the output holds \(outputHolds) windows, but the sink that died had written \(resume.windows): it was changed since, so the stream cannot be taken up exactly once"))
                }
                takeOver(resume, outputHolds: outputHolds)
            }
            assignment = offered
            sourceGeneration = offered.sourceGeneration ?? 0
            // A sink that takes over receives batches made before it started, not before the run.
            assignedAt = offered.resume.map(\.firstCreated) ?? time
            return [.send(.ready)]
        case .assignmentFailed(let reason):
            return [.log(.error, "cannot take assignment: \(reason)"), .send(.failed(message: reason)), .finish(status: 1, finalHeartbeat: false)]
        case .batch(let arrival):
            guard let assignment else { return [] }
            counters.received += 1
            return accept(arrival, assignment: assignment) + doneIfEverythingIsOut()
        case .undecodable(let reason):
            guard assignment != nil else { return [] }
            counters.received += 1
            return [reject(batches: 1, windows: 0, .malformed, reason)]
        case .written(let keys, let predictions):
            unflushed.batches += 1
            for (key, prediction) in zip(keys, predictions) {
                unflushed.windows += 1
                if let label = key.label, let prediction {
                    unflushed.labelled += 1
                    if label == prediction { unflushed.correct += 1 }
                }
            }
            summary.windows = written.windows
            summary.labelled = written.labelled
            summary.correct = written.correct
            return []
        case .outputFlushed:
            output = written
            unflushed = SinkOutputState()
            counters.output = output
            return []
        case .outputFinished:
            guard isDone else { return [] }
            return report()
        case .outputFailed(let reason):
            let message = "cannot write the output: \(reason)"
            return [.log(.error, message), .send(.failed(message: message)), .finish(status: 1, finalHeartbeat: false)]
        case .stopSignal:
            // Only a launcher that died (or an operator) signals a sink: keep what was written.
            return [.closeOutput, .finish(status: 0, finalHeartbeat: false)]
        }
    }

    private mutating func handle(_ message: ControlMessage) -> [SinkAction<Payload>] {
        switch message {
        case .assignSink(let new):
            offered = new
            return [.takeAssignment(new)]
        case .expect(let total):
            expected = total.batches
            return doneIfEverythingIsOut()
        case .rejoin:
            guard assignment != nil else { return [] }
            let state = SinkState(nextBatch: reorder.nextSequence, output: output, sourceGeneration: sourceGeneration,
                                  done: reported ? summary : nil)
            return [.send(.rejoined(RoleState(sink: state)))]
        case .sourceLost(let generation, let made?):
            return liveSourceReplaced(by: generation, made: made)
        case .sourceLost(let generation, nil):
            return sourceReplaced(by: generation)
        case .replayNeeded:
            // Noted before the controller can ask the source, so every replayed copy finds it.
            let from = reorder.nextSequence
            replayedFrom = min(replayedFrom ?? from, from)
            return [.send(.replay(from: from))]
        case .shutdown:
            // Keep what was already released, also when the run ends early.
            return [.closeOutput] + dropUnreleased() + [.finish(status: 0, finalHeartbeat: true)]
        default:
            return []
        }
    }

    /// What the output holds once what waits in its buffer is written out.
    private var written: SinkOutputState {
        SinkOutputState(batches: output.batches + unflushed.batches, windows: output.windows + unflushed.windows,
                        labelled: output.labelled + unflushed.labelled, correct: output.correct + unflushed.correct,
                        firstCreated: summary.firstCreated)
    }

    /// Takes up the stream where a dead sink left it: the batches it wrote out are released
    /// (every copy of them that comes is a replayed one), its counts carry on, and windows that
    /// the output holds beyond them are not written twice.
    private mutating func takeOver(_ resume: SinkOutputState, outputHolds: UInt64?) {
        reorder = ReorderBuffer(startingAt: resume.batches)
        replayedFrom = 0
        output = resume
        summary.windows = resume.windows
        summary.labelled = resume.labelled
        summary.correct = resume.correct
        summary.firstCreated = resume.firstCreated
        nextWindow = resume.windows
        counters.batches = Int(clamping: resume.batches)
        counters.windows = Int(clamping: resume.windows)
        counters.output = resume
        outputHeld = outputHolds
        if outputHolds == nil { summary.mayRepeatFrom = min(summary.mayRepeatFrom ?? resume.windows, resume.windows) }
    }

    private mutating func accept(_ arrival: SinkArrival<Payload>, assignment: SinkAssignment) -> [SinkAction<Payload>] {
        let header = arrival.header
        let keys: [WindowKey]
        switch check(arrival, assignment: assignment) {
        case .failure(let rejection):
            return [reject(batches: 1, windows: arrival.verifiedWindows, rejection.reason, rejection.detail)]
        case .success(let checked):
            keys = checked
        }
        var actions: [SinkAction<Payload>] = []
        // The stamps come from other processes, or from anyone who reached the socket: a batch
        // whose stamps could not be this run's is counted and kept out of every time figure.
        var latency: Double?
        if StampCheck.plausible(header, notBefore: assignedAt, arrived: arrival.arrived) {
            if summary.firstCreated == 0 || header.created < summary.firstCreated { summary.firstCreated = header.created }
            latency = Double(arrival.arrived - header.created) / 1e9
            if assignment.profiling { traces.add(BatchTrace(header: header, sinkReceived: arrival.arrived)) }
        } else {
            counters.implausibleStamps += 1
            if counters.implausibleStamps <= 5 || counters.implausibleStamps.isMultiple(of: 1000) {
                actions.append(.log(.warning, "batch \(header.batchSequence) carries implausible timestamps (created \(header.created), arrived \(arrival.arrived)); \(counters.implausibleStamps) such so far, left out of latency and throughput"))
            }
        }
        if let countedUpTo = liveGenerations[header.sourceGeneration] {
            // A dead live source's batch that came after the sink gave up waiting for it.
            let counted = header.batchSequence < countedUpTo
            return actions + [drop(batches: 1, windows: keys.count, counted ? .duplicate : .lostWithSource,
                                   "batch \(header.batchSequence) of the live source that died (generation \(header.sourceGeneration)) came after the stream went on without it\(counted ? "; it was counted lost then" : "")")]
        }
        if header.sourceGeneration != sourceGeneration, header.batchSequence >= generationFrom || header.sourceGeneration > sourceGeneration {
            // Made by a source that died (its successor makes it again), or by none the sink knows.
            return actions + [drop(batches: 1, windows: keys.count, header.sourceGeneration < sourceGeneration ? .superseded : .misrouted,
                                   "batch \(header.batchSequence) of source generation \(header.sourceGeneration); generation \(sourceGeneration) makes every batch from \(generationFrom) on")]
        }
        if let replayedFrom, header.batchSequence >= replayedFrom, reorder.has(header.batchSequence) {
            // Sent again on a replay while the first copy got through: expected, dropped quietly.
            counters.replayed += 1
            return actions
        }
        let duplicatesBefore = reorder.duplicates
        let held = Held(release: SinkRelease(payload: arrival.payload, batch: header.batchSequence, keys: keys, firstWindow: header.firstWindow), latency: latency,
                        arrived: arrival.arrived)
        for released in reorder.insert(held, sequence: header.batchSequence) { actions.append(release(released)) }
        if reorder.duplicates > duplicatesBefore {
            actions.append(drop(batches: 1, windows: keys.count, .duplicate, "batch \(header.batchSequence) was already released or waiting"))
        }
        return actions
    }

    /// The source died and one of generation `generation` takes its place: it makes every batch
    /// from the next to release on again, from its first window, perhaps cut into batches
    /// otherwise. What is held of the dead one's is dropped (it comes again), and so is what
    /// still arrives of it; its counts no longer hold. What was released is written out first:
    /// no process keeps those batches any more, so a sink that dies later must find them in
    /// its output.
    private mutating func sourceReplaced(by generation: UInt16) -> [SinkAction<Payload>] {
        guard generation > sourceGeneration else { return [.log(.warning, "ignoring source_lost for generation \(generation): generation \(sourceGeneration) is in force")] }
        sourceGeneration = generation
        generationFrom = reorder.nextSequence
        expected = nil
        var actions: [SinkAction<Payload>] = [.flushOutput]
        let held = reorder.removePending()
        if !held.isEmpty {
            actions.append(drop(batches: held.count, windows: held.reduce(0) { $0 + $1.release.keys.count }, .superseded,
                                "held behind batch \(generationFrom) when the source that made them died; its successor makes them again"))
        }
        return actions + [.send(.resumeSource(SourceResume(batch: generationFrom, window: nextWindow, generation: generation), written: written))]
    }

    /// Counts a batch whose turn has come, and has the shell write it.
    private mutating func release(_ released: Held) -> SinkAction<Payload> {
        if let latency = released.latency {
            latencyMilliseconds.append(latency * 1000)
            counters.latency?.record(seconds: latency)
        }
        if summary.firstOutput == 0 { summary.firstOutput = released.arrived }
        summary.lastOutput = released.arrived
        counters.batches += 1
        counters.windows += released.release.keys.count
        nextWindow = released.release.firstWindow + UInt64(released.release.keys.count)
        return .release(notWrittenTwice(released.release))
    }

    /// A live source died and one of generation `generation` takes its place. Nothing makes the
    /// dead one's batches again, so the sink keeps them: once they stopped arriving (the
    /// controller waits for the pipeline to go quiet before it says so), what it holds is
    /// released in order, each gap before it counted lost, and so is the stretch up to `made`,
    /// what the dead source last reported making. Released, they are numbered on from what the
    /// sink released before, so its counts stay positions (a sink taking over later resumes
    /// after them) and `window_seq` stays dense; the new source numbers on from there. What the
    /// dead process held and never sent cannot be counted: its death is. If it had ended its
    /// input, nothing more comes, and the run is done once this is out.
    private mutating func liveSourceReplaced(by generation: UInt16, made: SourceDone) -> [SinkAction<Payload>] {
        guard generation > sourceGeneration else { return [.log(.warning, "ignoring source_lost for generation \(generation): generation \(sourceGeneration) is in force")] }
        var actions: [SinkAction<Payload>] = []
        // Where the dead source's next batch and window would have been, in its numbering.
        var batch = reorder.nextSequence
        var window = nextWindow
        var lostBatches: UInt64 = 0
        var lostWindows: UInt64 = 0
        for (sequence, held) in reorder.removePendingInOrder() {
            lostBatches += sequence - batch
            lostWindows += held.release.firstWindow > window ? held.release.firstWindow - window : 0
            batch = sequence + 1
            window = held.release.firstWindow + UInt64(held.release.keys.count)
            var renumbered = held
            renumbered.release.firstWindow = nextWindow
            renumbered.release.batch = reorder.nextSequence
            for released in reorder.insert(renumbered, sequence: reorder.nextSequence) { actions.append(release(released)) }
        }
        lostBatches += made.batches > batch ? made.batches - batch : 0
        lostWindows += made.windows > window ? made.windows - window : 0
        liveGenerations[sourceGeneration] = max(batch, made.batches)
        sourceGeneration = generation
        generationFrom = reorder.nextSequence
        // Its input had ended: it had sent every batch (`made` is exact) and held nothing more.
        let inputEnded = expected != nil
        expected = inputEnded ? reorder.nextSequence : nil
        if lostBatches > 0 || lostWindows > 0 {
            actions.append(drop(batches: Int(clamping: lostBatches), windows: Int(clamping: lostWindows), .lostWithSource,
                                "made by the live source that died, and never reached the sink; the stream goes on from batch \(generationFrom)"))
        }
        if !inputEnded {
            counters.drops.add(1, .process, .diedHoldingInput)
            actions.append(.log(.warning, "the live source died: what it had taken from its sensors and not yet sent on (partial windows, its socket's queue) is lost, uncounted"))
        }
        return actions + [.flushOutput,
            .send(.resumeSource(SourceResume(batch: generationFrom, window: nextWindow, generation: generation), written: written))]
            + doneIfEverythingIsOut()
    }

    /// Marks the rows of a released batch that the output held when this sink took over.
    private mutating func notWrittenTwice(_ release: SinkRelease<Payload>) -> SinkRelease<Payload> {
        guard let held = outputHeld else { return release }
        var release = release
        let windows = UInt64(release.keys.count)
        release.alreadyOut = Int(min(windows, held > release.firstWindow ? held - release.firstWindow : 0))
        if release.firstWindow + windows >= held { outputHeld = nil }
        return release
    }

    private struct Rejection: Error {
        var reason: DropReason
        var detail: String
        init(_ reason: DropReason, _ detail: String) { self.reason = reason; self.detail = detail }
    }

    /// The batch's window keys, if it is one the sink may hold and release.
    private func check(_ arrival: SinkArrival<Payload>, assignment: SinkAssignment) -> Result<[WindowKey], Rejection> {
        let header = arrival.header
        let sequence = header.batchSequence
        guard Int(header.cursor) == assignment.layerCount else {
            return .failure(Rejection(.misrouted, "batch \(sequence) arrived at cursor \(header.cursor); the model has \(assignment.layerCount) layers"))
        }
        guard let rows = arrival.outputRows, rows == Int(header.windowCount) else {
            let label = assignment.labelName.map { " and label '\($0)'" } ?? ""
            return .failure(Rejection(.malformed, "batch \(sequence) lacks output '\(assignment.outputName)'\(label) with one row per window"))
        }
        let next = reorder.nextSequence
        guard sequence < next || sequence - next < SinkMachine.maximumBatchesAhead else {
            return .failure(Rejection(.tooFarAhead, "batch \(sequence) is numbered over \(SinkMachine.maximumBatchesAhead) ahead of batch \(next), the next to release"))
        }
        guard header.firstWindow <= UInt64.max - UInt64(header.windowCount) else {
            return .failure(Rejection(.malformed, "batch \(sequence) numbers its windows past the end of the sequence space"))
        }
        let keys: [WindowKey]
        do {
            keys = try arrival.metadata.withUnsafeBytes { try WindowKey.decode($0) }
        } catch {
            return .failure(Rejection(.malformed, "batch \(sequence): \(error)"))
        }
        guard keys.count == Int(header.windowCount) else {
            return .failure(Rejection(.malformed, "batch \(sequence) has \(keys.count) window keys for \(header.windowCount) windows"))
        }
        return .success(keys)
    }

    private mutating func doneIfEverythingIsOut() -> [SinkAction<Payload>] {
        guard let expected, !isDone, reorder.nextSequence >= expected else { return [] }
        isDone = true
        return [.finishOutput]
    }

    /// The output is complete: what never came out is counted, and the controller hears the summary.
    private mutating func report() -> [SinkAction<Payload>] {
        let unreleased = dropUnreleased()
        summary.batches = reorder.nextSequence
        summary.duplicates = reorder.duplicates
        summary.rejected = counters.rejected
        summary.drops = counters.drops
        summary.implausibleStamps = counters.implausibleStamps
        summary.replayedCopies = counters.replayed
        latencyMilliseconds.sort()
        summary.latencyP50Milliseconds = nearestRank(0.5, of: latencyMilliseconds) ?? 0
        summary.latencyP99Milliseconds = nearestRank(0.99, of: latencyMilliseconds) ?? 0
        summary.traces = traces.traces
        reported = true
        return unreleased + [.send(.sinkDone(summary))]
    }

    /// Batches still held behind a gap when every expected batch is out, or when the run ends,
    /// are never output: count them (each once), so the summary already carries them.
    private mutating func dropUnreleased() -> [SinkAction<Payload>] {
        let held = reorder.removePending()
        guard !held.isEmpty else { return [] }
        return [drop(batches: held.count, windows: held.reduce(0) { $0 + $1.release.keys.count }, .neverReleased,
                     "held behind batch \(reorder.nextSequence), which never arrived")]
    }

    private mutating func reject(batches: Int, windows: Int, _ reason: DropReason, _ detail: String) -> SinkAction<Payload> {
        counters.rejected += 1
        return drop(batches: batches, windows: windows, reason, detail)
    }

    private mutating func drop(batches: Int, windows: Int, _ reason: DropReason, _ detail: String) -> SinkAction<Payload> {
        counters.drops.add(batches, .batch, reason)
        counters.drops.add(windows, .window, reason)
        return .drop(batches: batches, windows: windows, reason, detail)
    }
}
