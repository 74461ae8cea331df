import SluicePlan
import SluiceProtocol

/// What the controller watches of a run besides running it: each stage's counters (its
/// processes' combined), how deep the queue before each stage was over the run, and how many
/// windows the sink had released when. A value with no clock and no socket: it is fed what the
/// controller's machine sees (the roles' messages, and the controller's clock with the phase the
/// run is in), so the profile and the run report are built from figures a test can replay.
public struct RunObserver: Sendable {
    /// Stages of the pipeline (replicas are processes of one stage).
    public let stageCount: Int
    /// Seconds between two observations of the queues and the sink: a heartbeat.
    public let interval: Double
    public let sourceName: String
    public let sinkName: String
    /// Each role's latest counters, by role name.
    public private(set) var counters: [String: RoleCounters] = [:]
    /// What the source said it sent, once it finished.
    public private(set) var sourceDone: SourceDone?
    /// [seconds on the controller's clock, windows the sink had released], once an interval
    /// while the run streams or drains: the throughput before, during and after each move.
    public private(set) var sinkTimeline: [[Double]] = []
    private var depthSums: [Int: (total: Double, observations: Int)] = [:]
    private var nextObservation = -Double.infinity

    public init(stageCount: Int, interval: Double, sourceName: String = "source", sinkName: String = "sink") {
        self.stageCount = max(0, stageCount)
        self.interval = interval
        self.sourceName = sourceName
        self.sinkName = sinkName
    }

    /// A message from a role of this pipeline (the caller leaves out senders it does not know).
    public mutating func received(_ message: ControlMessage, from role: String) {
        switch message {
        case .heartbeat(let roleCounters): counters[role] = roleCounters
        case .sourceDone(let done): sourceDone = done
        // A controller that took the run over learns the source's counts from its state.
        case .rejoined(let state): if let done = state.source?.done { sourceDone = done }
        default: break
        }
    }

    /// The controller's clock reads `now` and the run is in `phase`. Queues are measured only
    /// while the source streams (a drain empties them, which says nothing of the split); the
    /// sink's progress also while draining.
    public mutating func tick(now: Double, phase: ControllerMachine.Phase) {
        guard phase == .running || phase == .draining, now >= nextObservation else { return }
        nextObservation = now + interval
        if let sink = counters[sinkName] {
            sinkTimeline.append([now, Double(sink.windows)])
        }
        guard phase == .running else { return }
        for (stage, depth) in currentQueueDepths() {
            let sum = depthSums[stage] ?? (0, 0)
            depthSums[stage] = (sum.total + Double(depth), sum.observations + 1)
        }
    }

    /// Each stage's counters, its processes' combined (in role-name order, so sums come out
    /// the same however heartbeats arrived).
    public var stageCounters: [Int: RoleCounters] {
        Self.byStage(counters)
    }

    /// `counters` of stage processes grouped by stage, each stage's processes combined.
    public static func byStage(_ counters: [String: RoleCounters]) -> [Int: RoleCounters] {
        var names: [Int: [String]] = [:]
        for name in counters.keys.sorted() {
            guard let stage = StageInstance.stage(of: name) else { continue }
            names[stage, default: []].append(name)
        }
        return names.compactMapValues { stageNames in
            let parts = stageNames.compactMap { counters[$0] }
            return parts.isEmpty ? nil : RoleCounters.combined(parts)
        }
    }

    /// Batches between each stage and its upstream, averaged over the observations taken
    /// while the source streamed, rounded to whole batches.
    public var queueDepths: [Int: Int] {
        depthSums.mapValues { Int(($0.total / Double(max($0.observations, 1))).rounded()) }
    }

    /// Batches between each stage and its upstream now: sent there, not yet taken (queued in
    /// ZeroMQ and kernel buffers). Heartbeats are a moment apart, so this is approximate.
    public func currentQueueDepths() -> [Int: Int] {
        var depths: [Int: Int] = [:]
        let stages = stageCounters
        for index in 0..<stageCount {
            guard let stage = stages[index], let upstream = index == 0 ? counters[sourceName] : stages[index - 1] else { continue }
            // Counters come off the wire: a role that reports nonsense gets no queue, not a trap.
            let (waiting, overflow) = upstream.sent.subtractingReportingOverflow(stage.received)
            depths[index] = overflow ? 0 : max(0, waiting)
        }
        return depths
    }
}
