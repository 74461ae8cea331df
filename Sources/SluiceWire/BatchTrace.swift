/// One micro-batch's journey: created at the source, one hop per stage that ran layers on it
/// (a stage that passed it through adds none), received at the sink. Nanoseconds of the wall
/// clock (CLOCK_REALTIME), so processes line up.
public struct BatchTrace: Codable, Equatable, Sendable {
    public var batchSequence: UInt64
    public var windowCount: Int
    public var created: UInt64
    public var hops: [Hop]
    public var sinkReceived: UInt64

    public init(batchSequence: UInt64, windowCount: Int, created: UInt64, hops: [Hop], sinkReceived: UInt64) {
        self.batchSequence = batchSequence; self.windowCount = windowCount; self.created = created; self.hops = hops
        self.sinkReceived = sinkReceived
    }

    /// What the sink records for a batch it received at `sinkReceived`.
    public init(header: BatchHeader, sinkReceived: UInt64) {
        self.init(batchSequence: header.batchSequence, windowCount: Int(header.windowCount), created: header.created,
                  hops: header.hops, sinkReceived: sinkReceived)
    }
}

/// Keeps a bounded, evenly spread sample of traces over a run of any length: every batch until
/// `capacity` are held, then every second one of those and every second one after, and so on.
/// The sink can feed it every batch; memory stays at `capacity` traces.
public struct TraceSampler: Sendable {
    public let capacity: Int
    public private(set) var traces: [BatchTrace] = []
    /// Keep one batch in `stride`.
    public private(set) var stride = 1
    private var seen = 0

    public init(capacity: Int = 4096) { self.capacity = max(2, capacity) }

    public mutating func add(_ trace: BatchTrace) {
        defer { seen += 1 }
        guard seen % stride == 0 else { return }
        traces.append(trace)
        if traces.count >= capacity {
            traces = traces.enumerated().filter { $0.offset % 2 == 0 }.map(\.element)
            stride *= 2
        }
    }
}
