import SluiceConfig

/// What a stage does with a batch, given the batch's cursor.
public enum StageDecision: Equatable, Sendable {
    /// Run these layers, then forward with the cursor at their end.
    case run(Range<Int>)
    /// The batch is already past this stage's range: forward it untouched.
    case passThrough
    /// The stage lacks the weights for the batch's next layer (a protocol violation: counted, logged, dropped).
    case reject(String)
}

/// A stage's layer bookkeeping, free of sockets: which range it runs now, which layers it holds
/// weights for, and how a boundary move changes both.
///
/// Moves are two-phase. `prepare` widens the held layers to old ∪ new range (the caller loads
/// the new weights, then acks); `commit` switches the range new batches run to; `retire`, sent
/// once no batch that any stage handled under an older range can still arrive, drops the
/// weights outside the range. Between prepare and retire a batch may arrive with a cursor
/// anywhere in the held layers (an upstream stage not yet committed stopped early, or ran on
/// past a boundary), and the cursor rule still runs every layer exactly once.
public struct StageMachine: Equatable, Sendable {
    public private(set) var range: Range<Int>
    public private(set) var held: Range<Int>
    public private(set) var epoch: UInt32
    public private(set) var preparing: (epoch: UInt32, range: Range<Int>)?

    public init(range: Range<Int>, epoch: UInt32) {
        self.range = range
        held = range
        self.epoch = epoch
    }

    public static func == (lhs: StageMachine, rhs: StageMachine) -> Bool {
        lhs.range == rhs.range && lhs.held == rhs.held && lhs.epoch == rhs.epoch
            && lhs.preparing?.epoch == rhs.preparing?.epoch && lhs.preparing?.range == rhs.preparing?.range
    }

    public func decide(cursor: Int) -> StageDecision {
        if cursor >= range.upperBound { return .passThrough }
        guard held.contains(cursor) else {
            return .reject("next layer \(cursor) is outside the layers this stage holds (\(held.lowerBound)..<\(held.upperBound))")
        }
        return .run(cursor..<range.upperBound)
    }

    /// Starts a move to `newRange`; returns the layers whose weights must be held before acking.
    public mutating func prepare(epoch newEpoch: UInt32, range newRange: Range<Int>) -> Range<Int> {
        preparing = (newEpoch, newRange)
        held = min(held.lowerBound, newRange.lowerBound)..<max(held.upperBound, newRange.upperBound)
        return held
    }

    /// Switches to the prepared range. Returns false for an epoch that was never prepared.
    public mutating func commit(epoch newEpoch: UInt32) -> Bool {
        guard let preparing, preparing.epoch == newEpoch else { return false }
        range = preparing.range
        epoch = newEpoch
        self.preparing = nil
        return true
    }

    /// Drops weights outside the committed range; returns the layers still held.
    public mutating func retire(epoch retiredUpTo: UInt32) -> Range<Int> {
        if retiredUpTo >= epoch, preparing == nil { held = range }
        return held
    }
}
