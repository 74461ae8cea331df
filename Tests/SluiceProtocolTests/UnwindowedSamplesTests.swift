import Testing
import SluiceConfig
@testable import SluiceProtocol

private func feed(_ windows: inout SlidingWindows, _ sensor: String, samples: Int, now: Double = 0) -> Int {
    var cut = 0
    for index in 0..<samples {
        let value: [Float] = [Float(index)]
        if value.withUnsafeBufferPointer({ windows.append(sensor: sensor, time: Double(index), values: $0, label: nil, now: now) }) != nil {
            cut += 1
        }
    }
    return cut
}

/// Samples that end up in no window are what the source reports as dropped "in no complete window".
@Test func samplesInNoWindowAreTheTailsThatNeverFilledOne() {
    var windows = SlidingWindows(channels: 1, config: WindowConfig(length: 4, hop: 2, layout: .channelsLast))
    #expect(feed(&windows, "a", samples: 5) == 1)  // samples 0-3 in a window; 4 waits
    #expect(feed(&windows, "b", samples: 3) == 0)
    #expect(windows.samplesInNoWindow == 1 + 3)
    // An evicted sensor's partial window is gone, and still counted.
    _ = windows.evict(lastSeenBefore: 1)
    #expect(windows.liveSensors == 0 && windows.samplesInNoWindow == 4)
    // hop > length: the skipped samples are skipped by design, not counted.
    var gappy = SlidingWindows(channels: 1, config: WindowConfig(length: 2, hop: 3, layout: .channelsLast))
    #expect(feed(&gappy, "a", samples: 4) == 1)  // 0-1 in a window, 2 skipped, 3 waits
    #expect(gappy.samplesInNoWindow == 1)
}
