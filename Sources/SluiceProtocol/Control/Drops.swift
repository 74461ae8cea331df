import SluiceWire
/// What a dropped count counts. A sensor message (chunk) carries samples; a data message
/// carries one batch of windows; a control frame is a frame on the controller's socket.
public enum DropUnit: String, Codable, Sendable, CaseIterable, Comparable {
    case chunk, sample, window, batch, controlFrame = "control_frame"
    /// A sensor's connection: what it carried when it closed is unknown, so it is counted whole.
    case connection
    /// A live source's process that died: what it held (samples of partial windows, its socket's
    /// queue, windows not yet in a batch) is unknown, so it is counted whole.
    case process

    public static func < (a: DropUnit, b: DropUnit) -> Bool {
        inDeclarationOrder(a, b)
    }

    /// "1 batch", "3 batches", "2 control frames".
    public func counted(_ count: Int) -> String {
        let name = rawValue.replacingOccurrences(of: "_", with: " ")
        if count == 1 { return "1 \(name)" }
        return "\(count) \(name)\(name.hasSuffix("ch") ? "es" : "s")"
    }
}

/// Why something was dropped. One short, fixed phrase per cause, so counts add up across
/// heartbeats and processes and metrics labels stay few.
public enum DropReason: String, Codable, Sendable, CaseIterable, Comparable {
    /// A message that does not decode or breaks a rule of docs/protocol.md.
    case malformed
    /// A sensor chunk that arrived after the source's input had ended.
    case afterEndOfInput = "after end of input"
    /// A sensor chunk of a sender that had already sent its end of stream.
    case afterSenderEnded = "after its sender ended"
    /// Chunks a sender's end of stream counted that never arrived.
    case neverArrived = "never arrived"
    /// Samples of a sensor whose input ended before they filled a window.
    case incompleteWindow = "in no complete window"
    /// A batch whose cursor the receiving stage holds no weights for, or that reached the sink unfinished.
    case misrouted
    /// A batch a stage cannot run that was sent under an older plan before a replay: the sink
    /// has it already, or its replayed copy is on the way under the plan in force. Not a loss.
    case superseded = "superseded by a replay"
    /// A batch whose layers failed to run.
    case failedToRun = "failed to run"
    /// A batch that arrived before the role had its assignment.
    case notAssigned = "before the assignment"
    /// A batch the sink had already released or was already holding (a replay); not a loss.
    case duplicate
    /// Batches the sink held behind a missing one when the run ended.
    case neverReleased = "never released"
    /// A batch numbered so far past the next one the sink releases that no run has that many in
    /// flight: holding it would wait forever behind a gap that never fills.
    case tooFarAhead = "too far ahead"
    /// A control frame from a peer that is no role of this pipeline.
    case unknownPeer = "unknown peer"
    /// A sensor chunk from a new sensor while `source.max_sensors` sensors were live.
    case sensorLimit = "over the sensor limit"
    /// A window holding NaN or ±infinity, under `source.nan_policy: reject`.
    case nonFinite = "non-finite value"
    /// A sensor connection that closed without an end of stream through it (libzmq drops a
    /// connection that sends a message over the size limit; a sender may crash): the chunks it
    /// still carried are lost, uncounted.
    case closedWithoutEnd = "closed without an end of stream"
    /// Batches a live source made that never reached the sink before it died: nothing makes
    /// them again (sensors cannot send the past twice).
    case lostWithSource = "lost with their source"
    /// A live source's process that died with input it had taken and not yet sent on.
    case diedHoldingInput = "died holding input"

    public static func < (a: DropReason, b: DropReason) -> Bool {
        inDeclarationOrder(a, b)
    }

    /// Dropping a duplicate keeps exactly one copy: nothing is lost. Every other reason is a loss
    /// of what it counts (a malformed message may have been a sensor's data or a forger's noise;
    /// either way it is not in the output, so it is never "none lost").
    public var isLoss: Bool { self != .duplicate && self != .superseded }
}

/// Whether `a` is declared before `b`: drop counts sort by unit, then reason, in the order the
/// cases are written.
private func inDeclarationOrder<Case: CaseIterable & Equatable>(_ a: Case, _ b: Case) -> Bool {
    guard let first = Case.allCases.firstIndex(of: a), let second = Case.allCases.firstIndex(of: b) else { return false }
    return first < second
}

/// Counts of what a role dropped, by unit and reason. Running totals, like every counter a
/// role reports.
public struct DropCounts: Codable, Equatable, Sendable {
    public struct Entry: Codable, Equatable, Sendable {
        public var unit: DropUnit
        public var reason: DropReason
        public var count: Int
        public init(unit: DropUnit, reason: DropReason, count: Int) { self.unit = unit; self.reason = reason; self.count = count }
    }

    /// Sorted by unit, then reason; no zero counts.
    public private(set) var entries: [Entry] = []

    public init() {}

    public mutating func add(_ count: Int, _ unit: DropUnit, _ reason: DropReason) {
        guard count > 0 else { return }
        if let index = entries.firstIndex(where: { $0.unit == unit && $0.reason == reason }) {
            let (sum, overflow) = entries[index].count.addingReportingOverflow(count)
            entries[index].count = overflow ? .max : sum
        } else {
            entries.append(Entry(unit: unit, reason: reason, count: count))
            entries.sort { ($0.unit, $0.reason) < ($1.unit, $1.reason) }
        }
    }

    public mutating func add(_ other: DropCounts) {
        for entry in other.entries { add(entry.count, entry.unit, entry.reason) }
    }

    public func count(_ unit: DropUnit, _ reason: DropReason? = nil) -> Int {
        entries.filter { $0.unit == unit && (reason == nil || $0.reason == reason) }.reduce(0) { $0 &+ $1.count }
    }

    public var isEmpty: Bool { entries.isEmpty }
    /// Anything of the stream dropped for a reason other than being a duplicate. A control
    /// frame carries no windows: dropping one (a peer speaking under another's name, say) loses
    /// none.
    public var anyLoss: Bool { entries.contains { $0.reason.isLoss && $0.unit != .controlFrame } }

    /// "3 chunks after end of input, 30 samples after end of input" (empty when nothing was dropped).
    public var summary: String {
        entries.map { "\($0.unit.counted($0.count)) \($0.reason.rawValue)" }
            .joined(separator: ", ")
    }
}

/// Cumulative-bucket histogram of end-to-end latency in seconds, for Prometheus: the sink records
/// each batch it releases and sends the histogram with its heartbeats; `/metrics` renders it.
public struct LatencyHistogram: Codable, Equatable, Sendable {
    /// Prometheus's default buckets, down to a millisecond.
    public static let defaultBounds: [Double] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

    /// Upper bounds in seconds, ascending; +Inf is implied.
    public let bounds: [Double]
    /// counts[i]: observations ≤ bounds[i] and above bounds[i-1]; the last entry is above every bound.
    public private(set) var counts: [UInt64]
    public private(set) var sum: Double = 0
    public private(set) var count: UInt64 = 0

    public init(bounds: [Double] = LatencyHistogram.defaultBounds) {
        self.bounds = bounds.filter(\.isFinite).sorted()
        counts = Array(repeating: 0, count: self.bounds.count + 1)
    }

    public mutating func record(seconds: Double) {
        guard seconds.isFinite else { return }
        let value = max(0, seconds)
        let bucket = bounds.firstIndex { value <= $0 } ?? bounds.count
        counts[bucket] += 1
        sum += value
        count += 1
    }

    public mutating func record(_ trace: BatchTrace) {
        record(seconds: Double(trace.sinkReceived &- min(trace.created, trace.sinkReceived)) / 1e9)
    }

    /// Observations ≤ each bound, then the total (the +Inf bucket).
    public var cumulativeCounts: [UInt64] {
        var running: UInt64 = 0
        return counts.map { running += $0; return running }
    }
}

/// Checks the wall-clock stamps a batch carries before anything is measured with them: they come
/// from other processes (or from anyone who can reach a socket) and are not to be trusted.
public enum StampCheck {
    /// Plausible: created no earlier than `notBefore` (when the checking process took its
    /// assignment: no batch of this run can be older) and no later than `arrived`; every hop's
    /// four stamps in order and within [created, arrived].
    public static func plausible(_ header: BatchHeader, notBefore: UInt64, arrived: UInt64) -> Bool {
        guard header.created >= notBefore, header.created <= arrived else { return false }
        for hop in header.hops {
            guard hop.received >= header.created, hop.received <= hop.computeStart, hop.computeStart <= hop.computeEnd,
                  hop.computeEnd <= hop.sendStart, hop.sendStart <= arrived else { return false }
        }
        return true
    }
}
