import SluiceConfig
import SluiceTensor
import SluiceWire

/// One model input: a window of one sensor's samples, already in the model's layout.
public struct Window {
    public var key: WindowKey
    public var values: [Float]

    public init(key: WindowKey, values: [Float]) {
        self.key = key
        self.values = values
    }
}

/// Cuts sliding windows per sensor: window i of a sensor covers its samples
/// [i·hop, i·hop + length). The label of a window is its majority label, ties going to the
/// label of its last sample.
public struct SlidingWindows {
    public let channels: Int
    public let length: Int
    public let hop: Int
    public let layout: WindowLayout

    private struct SensorState {
        var samples: [Float] = []
        var times: [Double] = []
        var labels: [String?] = []
        /// Samples to skip before the next window may start (hop > length leaves gaps).
        var untilNext = 0
        /// When the sensor last sent a sample, on the caller's clock (live sources evict by it).
        var lastSeen = 0.0
        /// Samples taken since the last window was cut: in no window yet.
        var uncovered = 0

        /// Takes one sample; whether it completes a window.
        mutating func take(_ values: UnsafeBufferPointer<Float>, time: Double, label: String?, now: Double, length: Int) -> Bool {
            lastSeen = now
            if untilNext > 0 {
                untilNext -= 1
                return false
            }
            samples.append(contentsOf: values)
            times.append(time)
            labels.append(label)
            uncovered += 1
            guard times.count == length else { return false }
            uncovered = 0
            return true
        }

        /// Moves past a window just completed, to where the next one starts.
        mutating func slide(hop: Int, length: Int, channels: Int) {
            let drop = min(hop, length)
            samples.removeFirst(drop * channels)
            times.removeFirst(drop)
            labels.removeFirst(drop)
            untilNext = max(0, hop - length)
        }
    }

    /// Samples, over every sensor, that are in no window cut so far: when the input ends, the
    /// tails that never filled a window (the samples a `hop > length` skips are not among them).
    public var samplesInNoWindow: Int { sensors.values.reduce(0) { $0 + $1.uncovered } + evictedSamplesInNoWindow }
    /// Of those, the ones evicted sensors held: their partial windows went with them.
    public private(set) var evictedSamplesInNoWindow = 0

    private var sensors: [String: SensorState] = [:]

    /// Sensors with state held (a partial window, or a gap to skip).
    public var liveSensors: Int { sensors.count }

    public func isLive(_ sensor: String) -> Bool { sensors[sensor] != nil }

    /// Forgets every sensor whose last sample came before `before`, with its partial window:
    /// a live source's memory then follows the sensors that still send, not every id ever seen.
    /// Returns the sensors evicted.
    public mutating func evict(lastSeenBefore before: Double) -> [String] {
        let idle = sensors.filter { $0.value.lastSeen < before }.map(\.key)
        for sensor in idle { evictedSamplesInNoWindow += sensors.removeValue(forKey: sensor)?.uncovered ?? 0 }
        return idle
    }

    public init(channels: Int, config: WindowConfig) {
        self.channels = channels
        length = config.length
        hop = config.hop
        layout = config.layout
    }

    /// The tensor shape of one window, without the batch dimension.
    public var windowShape: [Int] { layout == .channelsFirst ? [channels, length] : [length, channels] }

    /// Adds one sample (`channels` values) of `sensor`; returns the window it completes, if any.
    /// `now` is when the sample arrived, on the clock `evict(lastSeenBefore:)` is given.
    public mutating func append(sensor: String, time: Double, values: UnsafeBufferPointer<Float>, label: String?,
                                now: Double = 0) -> Window? {
        let (layout, length, channels) = (layout, length, channels)
        return advance(sensor: sensor, time: time, values: values, label: label, now: now) {
            Window(key: WindowKey(sensor: sensor, start: $0.times[0], label: Self.majority($0.labels)),
                   values: Self.arrange($0.samples, layout: layout, length: length, channels: channels))
        }
    }

    /// What `append` does to the state, without making the window: for passing over input whose
    /// windows were handled already (a source started in place of a dead one). Nil when the
    /// sample completes no window, else whether every value of that window is finite.
    public mutating func passOver(sensor: String, time: Double, values: UnsafeBufferPointer<Float>, label: String?,
                                  now: Double = 0) -> Bool? {
        advance(sensor: sensor, time: time, values: values, label: label, now: now) { $0.samples.allSatisfy(\.isFinite) }
    }

    /// Adds one sample; when it completes a window, reads it with `completed`, then slides on.
    private mutating func advance<Completed>(sensor: String, time: Double, values: UnsafeBufferPointer<Float>, label: String?, now: Double,
                                             completed: (SensorState) -> Completed) -> Completed? {
        precondition(values.count == channels, "sample of \(values.count) values for \(channels) channels")
        // Mutated in place: a copy taken out of the dictionary and written back would copy the
        // sensor's whole window of samples and labels on every sample.
        guard sensors[sensor, default: SensorState()].take(values, time: time, label: label, now: now, length: length) else { return nil }
        let result = sensors[sensor].map(completed)
        sensors[sensor]?.slide(hop: hop, length: length, channels: channels)
        return result
    }

    /// Samples arrive time-major ([length, channels]); channels-first transposes.
    private static func arrange(_ samples: [Float], layout: WindowLayout, length: Int, channels: Int) -> [Float] {
        guard layout == .channelsFirst else { return samples }
        var out = [Float](repeating: 0, count: samples.count)
        for t in 0..<length {
            for c in 0..<channels { out[c * length + t] = samples[t * channels + c] }
        }
        return out
    }

    static func majority(_ labels: [String?]) -> String? {
        var counts: [String: Int] = [:]
        var order: [String] = []
        for case let label? in labels {
            if counts[label] == nil { order.append(label) }
            counts[label, default: 0] += 1
        }
        guard let best = counts.values.max() else { return nil }
        if let last = labels.last ?? nil, counts[last] == best { return last }
        return order.first { counts[$0] == best }
    }
}

/// A micro-batch ready to send: consecutive windows, numbered.
public struct ReadyBatch {
    public var batchSequence: UInt64
    public var firstWindow: UInt64
    public var keys: [WindowKey]
    public var input: Tensor
}

/// Groups windows into micro-batches, flushing when full or when the oldest window has waited
/// `maxDelay` seconds, so slow sensors still see bounded latency.
public struct MicroBatcher {
    public let maxSize: Int
    public let maxDelay: Double
    public let windowShape: [Int]
    public private(set) var nextBatch: UInt64 = 0
    public private(set) var nextWindow: UInt64 = 0
    private var values: [Float] = []
    private var keys: [WindowKey] = []
    private var oldest: Double?

    /// `firstBatch`, `firstWindow`: the numbers the first batch and window get (a source started
    /// in place of a dead one goes on from where the sink stands).
    public init(maxSize: Int, maxDelaySeconds: Double, windowShape: [Int], firstBatch: UInt64 = 0, firstWindow: UInt64 = 0) {
        nextBatch = firstBatch
        nextWindow = firstWindow
        self.maxSize = maxSize
        maxDelay = maxDelaySeconds
        self.windowShape = windowShape
        values.reserveCapacity(maxSize * Tensor.elementCount(of: windowShape))
    }

    public var pendingCount: Int { keys.count }

    /// When the pending windows must go out at the latest.
    public var deadline: Double? { oldest.map { $0 + maxDelay } }

    public mutating func add(_ window: Window, now: Double) -> ReadyBatch? {
        precondition(window.values.count == Tensor.elementCount(of: windowShape), "window does not match \(windowShape)")
        if keys.isEmpty { oldest = now }
        values.append(contentsOf: window.values)
        keys.append(window.key)
        return keys.count >= maxSize ? flush() : nil
    }

    public mutating func flushIfDue(now: Double) -> ReadyBatch? {
        guard let deadline, now >= deadline else { return nil }
        return flush()
    }

    public mutating func flush() -> ReadyBatch? {
        guard !keys.isEmpty else { return nil }
        let batch = ReadyBatch(batchSequence: nextBatch, firstWindow: nextWindow, keys: keys,
                               input: Tensor(shape: [keys.count] + windowShape, floats: values))
        nextBatch += 1
        nextWindow += UInt64(keys.count)
        values.removeAll(keepingCapacity: true)
        keys.removeAll(keepingCapacity: true)
        oldest = nil
        return batch
    }
}
