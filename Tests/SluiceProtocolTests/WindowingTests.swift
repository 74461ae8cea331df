import Testing
import SluiceConfig
import SluiceTensor
@testable import SluiceProtocol
import SluiceWire

private func feed(_ windows: inout SlidingWindows, sensor: String, samples: [[Float]], labels: [String?]? = nil, t0: Double = 0) -> [Window] {
    var out: [Window] = []
    for (index, sample) in samples.enumerated() {
        let label = labels?[index] ?? nil
        if let window = sample.withUnsafeBufferPointer({ windows.append(sensor: sensor, time: t0 + Double(index), values: $0, label: label) }) {
            out.append(window)
        }
    }
    return out
}

@Test func windowsSlideByHopPerSensor() {
    var windows = SlidingWindows(channels: 2, config: WindowConfig(length: 4, hop: 2, layout: .channelsLast))
    let samples = (0..<9).map { [Float($0), Float(100 + $0)] }
    let out = feed(&windows, sensor: "a", samples: samples)
    // Windows start at samples 0, 2, 4 (the one at 6 would need sample 9).
    #expect(out.map(\.key.start) == [0, 2, 4])
    #expect(out[1].values == [2, 102, 3, 103, 4, 104, 5, 105])
    // Another sensor has its own windows.
    #expect(feed(&windows, sensor: "b", samples: Array(samples.prefix(4))).count == 1)
}

@Test func channelsFirstTransposesEachWindow() {
    var windows = SlidingWindows(channels: 2, config: WindowConfig(length: 3, hop: 3, layout: .channelsFirst))
    let out = feed(&windows, sensor: "a", samples: [[1, 10], [2, 20], [3, 30]])
    #expect(out.first?.values == [1, 2, 3, 10, 20, 30])
    #expect(windows.windowShape == [2, 3])
}

@Test func hopsLongerThanTheWindowSkipSamples() {
    var windows = SlidingWindows(channels: 1, config: WindowConfig(length: 2, hop: 5, layout: .channelsLast))
    let out = feed(&windows, sensor: "a", samples: (0..<12).map { [Float($0)] })
    #expect(out.map(\.values) == [[0, 1], [5, 6], [10, 11]])
}

@Test func windowLabelIsTheMajorityWithTiesToTheLastSample() {
    #expect(SlidingWindows.majority(["a", "a", "b"]) == "a")
    #expect(SlidingWindows.majority(["a", "a", "b", "b"]) == "b")
    #expect(SlidingWindows.majority(["b", "b", "a", "a", "c"]) == "b")
    #expect(SlidingWindows.majority([nil, nil]) == nil)
}

@Test func microBatchesFlushOnSizeAndOnDelay() {
    var batcher = MicroBatcher(maxSize: 3, maxDelaySeconds: 0.5, windowShape: [2])
    let window = { (n: Float) in Window(key: WindowKey(sensor: "s", start: Double(n)), values: [n, n]) }
    #expect(batcher.add(window(0), now: 10) == nil)
    #expect(batcher.add(window(1), now: 10.1) == nil)
    let full = batcher.add(window(2), now: 10.2)
    #expect(full?.input.shape == [3, 2] && full?.input.floats == [0, 0, 1, 1, 2, 2])
    #expect(full?.batchSequence == 0 && full?.firstWindow == 0)
    #expect(batcher.add(window(3), now: 11) == nil)
    #expect(batcher.flushIfDue(now: 11.4) == nil)
    let late = batcher.flushIfDue(now: 11.5)
    #expect(late?.keys.count == 1 && late?.batchSequence == 1 && late?.firstWindow == 3)
    #expect(batcher.flush() == nil)
}

extension ReadyBatch: Equatable {
    public static func == (lhs: ReadyBatch, rhs: ReadyBatch) -> Bool {
        lhs.batchSequence == rhs.batchSequence && lhs.firstWindow == rhs.firstWindow && lhs.keys == rhs.keys
            && lhs.input.shape == rhs.input.shape && lhs.input.floats == rhs.input.floats
    }
}

@Test func idleSensorsAreEvictedWithTheirPartialWindows() {
    var windows = SlidingWindows(channels: 1, config: WindowConfig(length: 4, hop: 4, layout: .channelsLast))
    let sample: [Float] = [1]
    for id in 0..<1000 {
        _ = sample.withUnsafeBufferPointer { windows.append(sensor: "s\(id)", time: 0, values: $0, label: nil, now: Double(id % 2)) }
    }
    #expect(windows.liveSensors == 1000)
    // Sensors last seen at 0 are idle before 0.5; those seen at 1 are not.
    let evicted = windows.evict(lastSeenBefore: 0.5)
    #expect(evicted.count == 500 && windows.liveSensors == 500)
    #expect(!windows.isLive("s0") && windows.isLive("s1"))
    // An evicted sensor starts a fresh window: three more samples do not complete one.
    let out = (0..<3).compactMap { _ in sample.withUnsafeBufferPointer { windows.append(sensor: "s0", time: 1, values: $0, label: nil, now: 2) } }
    #expect(out.isEmpty)
}
