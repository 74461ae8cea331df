/// Thresholds of the bottleneck rule.
public struct BottleneckRule: Codable, Equatable, Sendable {
    /// A stage blocked at least this share of its wall time is backpressured: it waits on
    /// something downstream.
    public var blockedThreshold: Double
    /// With no stage blocked, the busiest stage limits throughput only when it is busy at least
    /// this share of the time; below that every stage waits for input and the source limits.
    public var saturatedThreshold: Double

    public init(blockedThreshold: Double = 0.2, saturatedThreshold: Double = 0.5) {
        self.blockedThreshold = blockedThreshold
        self.saturatedThreshold = saturatedThreshold
    }
}

/// What limits a pipeline's throughput, and the rule that found it.
///
/// The rule is Flink's backpressure walk: go from the source towards the sink; a stage that is
/// blocked waits for room downstream, so the limit lies downstream of every blocked stage. It is
/// the busiest stage after the last blocked one. When the last stage itself is blocked, nothing
/// that computes limits the pipeline: the sink does (it takes outputs slower than the stages
/// make them), and no split of the layers helps. When no stage is blocked, the busiest stage
/// limits if it is saturated; otherwise every stage has headroom and the input rate limits.
public struct Bottleneck: Codable, Equatable, Sendable {
    public enum Limiter: String, Codable, Sendable {
        /// A stage: `stage` names it.
        case stage
        /// The sink (or whatever takes the last stage's output): every stage up to the last is held back.
        case sink
        /// The source's input rate: no stage is blocked or saturated.
        case input
        /// Nothing was measured.
        case unknown
    }

    public var limiter: Limiter
    /// The limiting stage when `limiter == .stage`.
    public var stage: Int?
    /// Stages found blocked (backpressured), in pipeline order.
    public var blockedStages: [Int]
    /// The rule that found it, in words.
    public var rule: String
    /// One line: what limits throughput and the numbers that show it.
    public var summary: String

    public init(limiter: Limiter, stage: Int?, blockedStages: [Int], rule: String, summary: String) {
        self.limiter = limiter; self.stage = stage; self.blockedStages = blockedStages; self.rule = rule; self.summary = summary
    }

    public static func find(stages: [StageProfile], rule: BottleneckRule = BottleneckRule()) -> Bottleneck {
        let measured = stages.filter { $0.elapsedSeconds > 0 }
        guard !measured.isEmpty else {
            return Bottleneck(limiter: .unknown, stage: nil, blockedStages: [], rule: "no stage reported its time",
                              summary: "no stage reported its time: nothing to say about the bottleneck")
        }
        let blocked = measured.filter { $0.blockedFraction >= rule.blockedThreshold }
        let blockedText = blocked.map { "stage \($0.index) blocked \(percent($0.blockedFraction))" }.joined(separator: ", ")
        let threshold = percent(rule.blockedThreshold)
        if let lastBlocked = blocked.last {
            let downstream = measured.filter { $0.index > lastBlocked.index }
            guard let busiest = busiest(downstream) else {
                return Bottleneck(
                    limiter: .sink, stage: nil, blockedStages: blocked.map(\.index),
                    rule: "busiest stage downstream of blocked stages (blocked ≥ \(threshold) of wall time): the last stage is itself blocked, so the sink downstream of it limits",
                    summary: "the sink limits throughput (\(blockedText)): stages wait for it to take outputs, so no split of the layers helps")
            }
            return Bottleneck(
                limiter: .stage, stage: busiest.index, blockedStages: blocked.map(\.index),
                rule: "busiest stage downstream of blocked stages (blocked ≥ \(threshold) of wall time)",
                summary: "stage \(busiest.index) limits throughput (busy \(percent(busiest.busyFraction)), \(blockedText))")
        }
        let top = busiest(measured)!
        if top.busyFraction >= rule.saturatedThreshold {
            return Bottleneck(
                limiter: .stage, stage: top.index, blockedStages: [],
                rule: "no stage is blocked (≥ \(threshold) of wall time): the busiest stage",
                summary: "stage \(top.index) limits throughput (busy \(percent(top.busyFraction)), no stage blocked)")
        }
        return Bottleneck(
            limiter: .input, stage: nil, blockedStages: [],
            rule: "no stage is blocked (≥ \(threshold)) or saturated (busy ≥ \(percent(rule.saturatedThreshold))): the input rate",
            summary: "the input rate limits throughput: no stage is blocked and the busiest, stage \(top.index), is busy only \(percent(top.busyFraction))")
    }

    private static func busiest(_ stages: [StageProfile]) -> StageProfile? {
        // The first of equals: the one nearest the source.
        stages.reduce(nil) { best, stage in
            guard let best else { return stage }
            return stage.busyFraction > best.busyFraction ? stage : best
        }
    }
}

/// "61%" for 0.61.
func percent(_ fraction: Double) -> String {
    fraction.isFinite ? "\(Int((100 * fraction).rounded()))%" : "?"
}
