import Foundation
import Testing
import SluiceConfig
import SluiceProtocol
@testable import SluiceRoles
import SluiceTensor
import SluiceTestSupport

/// A source started in place of a dead one passes over the windows the sink has. It must land
/// exactly where the dead one stood: the windows it then cuts are, one for one, the windows an
/// undisturbed source cuts from there, whatever the sensors' interleaving, gaps, repeats and
/// non-finite values.

/// Everything a feed gives until its end.
private func drain(_ feed: WindowFeed) -> (windows: [Window], steps: Int) {
    var windows: [Window] = []
    var steps = 0
    while steps < 100_000 {
        steps += 1
        switch feed.next(now: 0) {
        case .windows(let more): windows += more
        case .wait: continue
        case .end: return (windows, steps)
        }
    }
    Issue.record("the feed never ended")
    return (windows, steps)
}

private func same(_ a: [Window], _ b: [Window]) -> Bool {
    a.count == b.count && zip(a, b).allSatisfy { x, y in
        x.key == y.key && x.values.count == y.values.count && zip(x.values, y.values).allSatisfy { $0 == $1 || ($0.isNaN && $1.isNaN) }
    }
}

/// Three sensors at uneven rates, labelled, a few samples NaN or infinite.
private func recording(samples: Int) -> Recording {
    var recording = Recording(channelNames: ["x", "y"], sensors: [], times: [], samples: [], labels: [])
    var generator = SplitMix(seed: 7)
    for index in 0..<samples {
        let sensor = ["a", "a", "b", "c", "a", "b"][Int(generator.next() % 6)]
        recording.sensors.append(sensor)
        recording.times.append(Double(index) * 0.01)
        let bad = generator.next() % 97 == 0
        recording.samples += [bad ? (index % 2 == 0 ? .nan : .infinity) : Float(index), Float(index % 13)]
        recording.labels.append(index % 40 < 25 ? "walk" : "run")
    }
    return recording
}

/// The windows the source numbers, of those a feed cut: under `reject` a non-finite window gets
/// no number (the source drops it and counts it).
private func numbered(_ windows: [Window], _ policy: NaNPolicy) -> [Window] {
    windows.filter { policy == .pass || $0.values.allSatisfy(\.isFinite) }
}

private func refused(_ windows: [Window], _ policy: NaNPolicy) -> Int { windows.count - numbered(windows, policy).count }

@Test(arguments: [WindowConfig(length: 4, hop: 2, layout: .channelsFirst), WindowConfig(length: 3, hop: 5, layout: .channelsLast)],
      [NaNPolicy.reject, .pass])
func aRecordingPassedOverTakesUpWhereAnUndisturbedReplayStands(window: WindowConfig, policy: NaNPolicy) {
    let input = recording(samples: 3000)
    let allFeed = RecordingFeed(recording: input, window: window, rate: .max, repeats: 2)
    let all = drain(allFeed).windows
    #expect(all.contains { !$0.values.allSatisfy(\.isFinite) }, "the input must hold non-finite windows")
    for n in [0, 1, 17, 600, 2000, 100_000] {
        let feed = RecordingFeed(recording: input, window: window, rate: .max, repeats: 2,
                                 passOver: PassOver(windows: UInt64(n), nanPolicy: policy))
        let resumed = drain(feed).windows
        #expect(same(numbered(resumed, policy), Array(numbered(all, policy).dropFirst(n))), "after passing over \(n) windows (\(policy))")
        #expect(feed.drops.count(.window, .nonFinite) + refused(resumed, policy) == refused(all, policy),
                "the refused windows passed over are counted again, once")
        #expect(feed.samplesInNoWindow == allFeed.samplesInNoWindow)
    }
}

@Test func passingOverALongRecordingLeavesTheControlSocketServed() {
    let input = recording(samples: 200_000)
    let window = WindowConfig(length: 4, hop: 2, layout: .channelsFirst)
    let feed = RecordingFeed(recording: input, window: window, rate: .max, passOver: PassOver(windows: 90_000, nanPolicy: .reject))
    guard case .windows(let first) = feed.next(now: 0) else {
        Issue.record("the feed ended or waited")
        return
    }
    #expect(first.isEmpty, "a step passes over a bounded slice, then lets the shell serve its sockets")
    let (rest, steps) = drain(feed)
    #expect(steps > 2 && !rest.isEmpty)
}

@Test(arguments: [NaNPolicy.reject, .pass])
func tensorRowsPassedOverTakeUpWhereAnUndisturbedReplayStands(policy: NaNPolicy) throws {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-passover-\(UUID().uuidString).npy").path
    defer { try? FileManager.default.removeItem(atPath: path) }
    var values = (0..<(50 * 3)).map(Float.init)
    values[7 * 3 + 1] = .nan
    values[20 * 3] = -.infinity
    try NPY.write(Tensor(shape: [50, 3], floats: values), path: path)
    let config = TensorsSource(path: path, rate: .max, rowsPerSecond: nil, repeats: 2)
    let all = drain(try TensorsFeed(config: config)).windows
    for n in [0, 5, 7, 8, 30, 99, 400] {
        let feed = try TensorsFeed(config: config, passOver: PassOver(windows: UInt64(n), nanPolicy: policy))
        let resumed = drain(feed).windows
        #expect(same(numbered(resumed, policy), Array(numbered(all, policy).dropFirst(n))), "after passing over \(n) rows (\(policy))")
        #expect(feed.drops.count(.window, .nonFinite) + refused(resumed, policy) == refused(all, policy))
    }
}
