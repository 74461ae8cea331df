import Foundation
import Logging
import SluiceConfig
import SluiceProtocol
import SluiceTensor
import SluiceTransport
import SluiceWire

/// The sink process: takes finished batches in any order and releases their predictions in
/// sequence order, each exactly once.
public final class SinkRole: PipelineRole {
    private let name: String
    private let context = ZMQContext()
    private let control: ControlChannel
    private var logger: Logger

    private var assignment: SinkAssignment?
    private var pull: ZMQSocket?
    private var writer: PredictionWriter?
    /// Each batch waits with its end-to-end latency (nil: its stamps were implausible).
    private var reorder = ReorderBuffer<(batch: Batch, keys: [WindowKey], latency: Double?)>()
    private lazy var dropLog = DropLog(logger: logger)
    private var latencyHistogram = LatencyHistogram()
    /// Batches a sequence number may run ahead of the next one to release.
    static let maximumBatchesAhead: UInt64 = 1 << 20
    /// Wall clock when this sink took its assignment: no batch of the run was created before it.
    private var assignedAt: UInt64 = 0
    private var expected: UInt64?
    private var summary = SinkSummary()
    private var counters = RoleCounters()
    private var latencies: [Double] = []
    private var traces = TraceSampler()
    private var started = monotonicSeconds()
    private var nextHeartbeat = 0.0
    private var done = false

    public init(name: String, controller endpoint: String) throws {
        self.name = name
        logger = makeLogger(name)
        control = try ControlChannel(context: context, endpoint: endpoint, name: name)
    }

    public func run() -> Int32 {
        control.send(.hello(Hello(role: .sink, name: name, pid: getpid(), host: ProcessInfo.processInfo.hostName)))
        while true {
            var items: [(ZMQSocket, PollEvents)] = [(control.socket, .readable)]
            if let pull { items.append((pull, .readable)) }
            // Wake in time to flush predictions that are due (sink.max_delay_ms), even with no batch coming.
            let flushWait = min(50, max(0, ((writer?.secondsUntilDue ?? 1) * 1000).rounded(.up)))
            _ = try? poll(items, timeoutMilliseconds: Int(flushWait))
            while let message = control.receive(logger: logger) {
                switch message {
                case .assignSink(let sinkAssignment):
                    do {
                        try apply(sinkAssignment)
                        control.send(.ready)
                    } catch {
                        logger.error("cannot take assignment: \(error)")
                        control.send(.failed(message: "\(error)"))
                        return 1
                    }
                case .expect(let total):
                    expected = total.batches
                case .shutdown:
                    // Keep what was already released, also when the run ends early.
                    try? writer?.finish()
                    countUnreleased()
                    dropLog.flush()
                    heartbeatIfDue(force: true)
                    return 0
                default:
                    break
                }
            }
            if StopSignal.received > 0 {
                // Only a launcher that died (or an operator) signals a sink: keep what was written.
                try? writer?.finish()
                return 0
            }
            if control.controllerSilent(for: assignment?.liveness.timeoutSeconds ?? 30) {
                logger.error("the controller went silent; exiting")
                return 1
            }
            // Take what is queued, but come back to the controller within ~10 ms.
            let drainUntil = monotonicSeconds() + 0.01
            while monotonicSeconds() < drainUntil, let frames = try? pull?.receive(dontWait: true) {
                accept(frames)
            }
            do {
                try writer?.flushIfDue()
            } catch {
                logger.error("cannot write the output: \(error)")
                control.send(.failed(message: "cannot write the output: \(error)"))
                return 1
            }
            if let expected, !done, reorder.nextSequence >= expected {
                done = true
                do {
                    try writer?.finish()
                } catch {
                    control.send(.failed(message: "cannot write the output: \(error)"))
                    return 1
                }
                countUnreleased()
                summary.batches = reorder.nextSequence
                summary.duplicates = reorder.duplicates
                summary.rejected = counters.rejected
                summary.drops = dropLog.counts
                summary.implausibleStamps = counters.implausibleStamps
                latencies.sort()
                summary.latencyP50Milliseconds = nearestRank(0.5, of: latencies) ?? 0
                summary.latencyP99Milliseconds = nearestRank(0.99, of: latencies) ?? 0
                summary.traces = traces.traces
                control.send(.sinkDone(summary))
            }
            heartbeatIfDue()
        }
    }

    private func apply(_ new: SinkAssignment) throws {
        writer = try PredictionWriter(config: new.sink, classes: new.classes)
        let socket = try ZMQSocket(context, .pull, lingerMilliseconds: 0, sendHighWaterMark: 2, receiveHighWaterMark: 2)
        try socket.bind(new.pullEndpoint)
        pull = socket
        assignment = new
        assignedAt = wallNanos()
    }

    /// Batches still held behind a gap when every expected batch is out, or when the run ends,
    /// are never output: count them (each once), so the summary already carries them.
    private func countUnreleased() {
        let held = reorder.removePending()
        guard !held.isEmpty else { return }
        dropLog.drop([(held.count, .batch), (held.reduce(0) { $0 + $1.keys.count }, .window)], .neverReleased,
                     "held behind batch \(reorder.nextSequence), which never arrived")
        counters.drops = dropLog.counts
    }

    private func accept(_ frames: [ZMQFrame]) {
        guard let assignment else { return }
        let batch: Batch
        let keys: [WindowKey]
        counters.received += 1
        do {
            batch = try Batch.decode(frames)
            let sequence = batch.header.batchSequence
            let windows = batch.verifiedWindowCount
            guard Int(batch.header.cursor) == assignment.layerCount else {
                throw SinkRejection(reason: .misrouted, windows: windows,
                                    detail: "batch \(sequence) arrived at cursor \(batch.header.cursor); the model has \(assignment.layerCount) layers")
            }
            guard let output = batch.tensors[assignment.outputName], output.rank >= 1, output.shape[0] == Int(batch.header.windowCount) else {
                throw SinkRejection(reason: .malformed, windows: windows,
                                    detail: "batch \(sequence) lacks output '\(assignment.outputName)' with one row per window")
            }
            // No run has this many batches in flight: holding such a batch would only wait forever
            // (and hold memory) behind a gap that never fills.
            guard sequence < reorder.nextSequence || sequence - reorder.nextSequence < SinkRole.maximumBatchesAhead else {
                throw SinkRejection(reason: .tooFarAhead, windows: windows,
                                    detail: "batch \(sequence) is numbered over \(SinkRole.maximumBatchesAhead) ahead of batch \(reorder.nextSequence), the next to release")
            }
            guard batch.header.firstWindow <= UInt64.max - UInt64(batch.header.windowCount) else {
                throw SinkRejection(reason: .malformed, windows: windows,
                                    detail: "batch \(sequence) numbers its windows past the end of the sequence space")
            }
            do {
                keys = try batch.metadata.withUnsafeBytes { try WindowKey.decode($0) }
            } catch {
                throw SinkRejection(reason: .malformed, windows: windows, detail: "batch \(sequence): \(error)")
            }
            guard keys.count == Int(batch.header.windowCount) else {
                throw SinkRejection(reason: .malformed, windows: windows, detail: "batch \(sequence) has \(keys.count) window keys for \(batch.header.windowCount) windows")
            }
        } catch let error as SinkRejection {
            counters.rejected += 1
            dropLog.drop([(1, .batch), (error.windows, .window)], error.reason, error.detail)
            counters.drops = dropLog.counts
            return
        } catch {
            counters.rejected += 1
            dropLog.drop([(1, .batch)], .malformed, "\(error)")
            counters.drops = dropLog.counts
            return
        }
        let arrived = wallNanos()
        // The stamps come from other processes, or from anyone who reached the socket: a batch
        // whose stamps could not be this run's is counted and kept out of every time figure.
        var latency: Double?
        if StampCheck.plausible(batch.header, notBefore: assignedAt, arrived: arrived) {
            if summary.firstCreated == 0 || batch.header.created < summary.firstCreated { summary.firstCreated = batch.header.created }
            latency = Double(arrived - batch.header.created) / 1e9
            if assignment.profiling { traces.add(BatchTrace(header: batch.header, sinkReceived: arrived)) }
        } else {
            counters.implausibleStamps += 1
            if counters.implausibleStamps <= 5 || counters.implausibleStamps.isMultiple(of: 1000) {
                logger.warning("batch \(batch.header.batchSequence) carries implausible timestamps (created \(batch.header.created), arrived \(arrived)); \(counters.implausibleStamps) such so far, left out of latency and throughput")
            }
        }
        let duplicatesBefore = reorder.duplicates
        for released in reorder.insert((batch, keys, latency), sequence: batch.header.batchSequence) {
            if let latency = released.latency {
                latencies.append(latency * 1000)
                latencyHistogram.record(seconds: latency)
            }
            write(released.batch, keys: released.keys)
        }
        if reorder.duplicates > duplicatesBefore {
            dropLog.drop([(1, .batch), (keys.count, .window)], .duplicate, "batch \(batch.header.batchSequence) was already released or waiting")
            counters.drops = dropLog.counts
        }
        if assignment.sink.delayMilliseconds > 0 { usleep(UInt32(min(assignment.sink.delayMilliseconds * 1000, 60e6))) }
    }

    private func write(_ batch: Batch, keys: [WindowKey]) {
        guard let assignment, let writer else { return }
        let now = wallNanos()
        if summary.firstOutput == 0 { summary.firstOutput = now }
        summary.lastOutput = now
        let predicted = writer.write(output: batch.tensors[assignment.outputName]!, keys: keys, firstWindow: batch.header.firstWindow)
        for (key, prediction) in zip(keys, predicted) {
            summary.windows += 1
            if let label = key.label, let prediction {
                summary.labelled += 1
                if label == prediction { summary.correct += 1 }
            }
        }
        counters.batches += 1
        counters.samples += keys.count
    }

    private func heartbeatIfDue(force: Bool = false) {
        guard let assignment, force || monotonicSeconds() >= nextHeartbeat else { return }
        nextHeartbeat = monotonicSeconds() + assignment.liveness.heartbeatSeconds
        counters.elapsedSeconds = monotonicSeconds() - started
        counters.drops = dropLog.counts
        counters.latency = latencyHistogram
        control.send(.heartbeat(counters))
    }
}

/// Why the sink refuses a batch, with what it knew of the batch.
private struct SinkRejection: Error {
    var reason: DropReason
    var windows: Int
    var detail: String
}
