/// Releases items in sequence order, each exactly once, whatever order they arrive in
/// (replicas and rebalancing reorder batches; replays duplicate them).
public struct ReorderBuffer<Item> {
    public private(set) var nextSequence: UInt64
    public private(set) var duplicates = 0
    private var pending: [UInt64: Item] = [:]

    public init(startingAt first: UInt64 = 0) { nextSequence = first }

    public var pendingCount: Int { pending.count }

    /// Takes out the items held back, to be counted as never released when nothing more will be.
    public mutating func removePending() -> [Item] {
        defer { pending.removeAll() }
        return Array(pending.values)
    }

    /// Takes out the items held back, in sequence order, with their numbers.
    public mutating func removePendingInOrder() -> [(sequence: UInt64, item: Item)] {
        defer { pending.removeAll() }
        return pending.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
    }

    /// Whether an item numbered `sequence` was already released or is waiting.
    public func has(_ sequence: UInt64) -> Bool { sequence < nextSequence || pending[sequence] != nil }

    /// Accepts `item` numbered `sequence` and returns every item that is now next in line.
    /// An item already released or already waiting is a duplicate: counted and dropped.
    public mutating func insert(_ item: Item, sequence: UInt64) -> [Item] {
        guard sequence >= nextSequence, pending[sequence] == nil else {
            duplicates += 1
            return []
        }
        pending[sequence] = item
        var released: [Item] = []
        while let next = pending.removeValue(forKey: nextSequence) {
            released.append(next)
            nextSequence += 1
        }
        return released
    }
}
