import Histogram
import SluiceProtocol
import SluiceWire

/// One micro-batch's end-to-end latency, split into buckets that add up to it exactly:
/// `total == compute + handling + transfer + queueing`.
///
/// - compute: Σ over hops of computeEnd − computeStart: running the stage's layers (with any
///   slowdown of the stage itself).
/// - handling: Σ over hops of (computeStart − received) + (sendStart − computeEnd): decoding the
///   header, the cursor decision, attaching outputs. Same-process clock, so exact.
/// - transfer: an estimate, not a measurement: for each handoff (source → first stage, stage →
///   stage, last stage → sink) the bytes that cross it divided by the link rate, capped at the
///   handoff's measured time.
/// - queueing: the rest of the handoffs: waiting in ZeroMQ queues at either end, and the time a
///   sender spent blocked because the receiver had no room.
///
/// A handoff is measured across two processes' wall clocks; the handoffs are taken together as
/// total − compute − handling, so clock offsets between machines cancel except the source's
/// against the sink's.
public struct LatencySplit: Codable, Equatable, Sendable {
    public var batchSequence: UInt64
    public var totalNanos: UInt64
    public var computeNanos: UInt64
    public var handlingNanos: UInt64
    public var transferNanos: UInt64
    public var queueingNanos: UInt64

    public init(batchSequence: UInt64, totalNanos: UInt64, computeNanos: UInt64, handlingNanos: UInt64, transferNanos: UInt64,
                queueingNanos: UInt64) {
        self.batchSequence = batchSequence; self.totalNanos = totalNanos; self.computeNanos = computeNanos
        self.handlingNanos = handlingNanos; self.transferNanos = transferNanos; self.queueingNanos = queueingNanos
    }

    /// - Parameters:
    ///   - boundaryBytesPerWindow: bytes per window at each boundary (index 0: the model input).
    ///   - ranges: the split, to know which boundary leaves each stage (the one after its range).
    ///   - secondsPerByte: the link's cost; 1 / 2.5e9 is PUSH→PULL over tcp on one machine.
    public init(trace: BatchTrace, boundaryBytesPerWindow: [Int], ranges: [Range<Int>], secondsPerByte: Double) {
        batchSequence = trace.batchSequence
        totalNanos = trace.sinkReceived &- min(trace.created, trace.sinkReceived)
        var compute: UInt64 = 0
        var handling: UInt64 = 0
        for hop in trace.hops {
            compute = saturatingSum(compute, difference(hop.computeEnd, hop.computeStart))
            handling = saturatingSum(handling, difference(hop.computeStart, hop.received), difference(hop.sendStart, hop.computeEnd))
        }
        // Clocks of different machines can disagree; never let the buckets exceed the total.
        computeNanos = min(compute, totalNanos)
        handlingNanos = min(handling, totalNanos - computeNanos)
        let handoffs = totalNanos - computeNanos - handlingNanos
        var bytes = boundaryBytesPerWindow.first ?? 0
        for hop in trace.hops {
            let stage = Int(hop.stage)
            if stage < ranges.count, ranges[stage].upperBound < boundaryBytesPerWindow.count {
                bytes += boundaryBytesPerWindow[ranges[stage].upperBound]
            }
        }
        let estimate = Double(bytes) * Double(trace.windowCount) * secondsPerByte * 1e9
        transferNanos = estimate.isFinite && estimate > 0 ? min(handoffs, UInt64(estimate.rounded())) : 0
        queueingNanos = handoffs - transferNanos
    }
}

private func difference(_ later: UInt64, _ earlier: UInt64) -> UInt64 { later > earlier ? later - earlier : 0 }

private func saturatingSum(_ values: UInt64...) -> UInt64 {
    values.reduce(0) { total, value in
        let (sum, overflow) = total.addingReportingOverflow(value)
        return overflow ? .max : sum
    }
}

/// p50 / p90 / p99 / max of one quantity over the batches, in milliseconds.
public struct Percentiles: Codable, Equatable, Sendable {
    public var p50Milliseconds: Double
    public var p90Milliseconds: Double
    public var p99Milliseconds: Double
    public var maxMilliseconds: Double

    public init(p50Milliseconds: Double, p90Milliseconds: Double, p99Milliseconds: Double, maxMilliseconds: Double) {
        self.p50Milliseconds = p50Milliseconds; self.p90Milliseconds = p90Milliseconds; self.p99Milliseconds = p99Milliseconds
        self.maxMilliseconds = maxMilliseconds
    }

    /// Percentiles of nanosecond values, through an HdrHistogram at 3 significant digits.
    public init(nanoseconds values: [UInt64]) {
        var histogram = Histogram<UInt64>(numberOfSignificantValueDigits: .three)
        for value in values { histogram.record(value) }
        func ms(_ percentile: Double) -> Double { values.isEmpty ? 0 : Double(histogram.valueAtPercentile(percentile)) / 1e6 }
        self.init(p50Milliseconds: ms(50), p90Milliseconds: ms(90), p99Milliseconds: ms(99),
                  maxMilliseconds: Double(values.max() ?? 0) / 1e6)
    }
}

/// End-to-end latency over the traced batches and its split. Percentiles of each bucket are
/// taken on their own, so they do not add up to the total's; the shares do (they are sums
/// over all batches).
public struct LatencySummary: Codable, Equatable, Sendable {
    public var batches: Int
    public var total: Percentiles
    public var queueing: Percentiles
    public var transfer: Percentiles
    public var compute: Percentiles
    public var handling: Percentiles
    /// Each bucket's part of all batches' latency together (they add up to 1).
    public var queueingShare: Double
    public var transferShare: Double
    public var computeShare: Double
    public var handlingShare: Double

    public init(_ splits: [LatencySplit]) {
        batches = splits.count
        total = Percentiles(nanoseconds: splits.map(\.totalNanos))
        queueing = Percentiles(nanoseconds: splits.map(\.queueingNanos))
        transfer = Percentiles(nanoseconds: splits.map(\.transferNanos))
        compute = Percentiles(nanoseconds: splits.map(\.computeNanos))
        handling = Percentiles(nanoseconds: splits.map(\.handlingNanos))
        let sum = splits.reduce(0.0) { $0 + Double($1.totalNanos) }
        func share(_ path: KeyPath<LatencySplit, UInt64>) -> Double {
            sum > 0 ? splits.reduce(0.0) { $0 + Double($1[keyPath: path]) } / sum : 0
        }
        queueingShare = share(\.queueingNanos)
        transferShare = share(\.transferNanos)
        computeShare = share(\.computeNanos)
        handlingShare = share(\.handlingNanos)
    }
}

/// Time in stage (sendStart − received) per stage index, from the traces.
struct InStageTimes {
    private var byStage: [Int: [UInt64]] = [:]

    init(traces: [BatchTrace]) {
        for trace in traces {
            for hop in trace.hops { byStage[Int(hop.stage), default: []].append(difference(hop.sendStart, hop.received)) }
        }
    }

    /// Seconds at `percentile` (0…100) for `stage`; nil without data.
    func percentile(stage: Int, _ percentile: Double) -> Double? {
        guard let values = byStage[stage], !values.isEmpty else { return nil }
        var histogram = Histogram<UInt64>(numberOfSignificantValueDigits: .three)
        for value in values { histogram.record(value) }
        return Double(histogram.valueAtPercentile(percentile)) / 1e9
    }
}
