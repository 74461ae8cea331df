import SluiceConfig
import SluicePlan
import SluiceProtocol
import Testing

/// Three layers whose first boundary is four times the second: a slow link after stage 0
/// is relieved by cutting later, and further by narrowing what crosses it.
private let cut = LayerCut(layers: [
    Layer(index: 0, nodeStart: 0, nodeEnd: 1, opTypes: ["F"], flopsPerWindow: 1, parameterBytes: 4, outputs: ["a"], outputBytesPerWindow: 4000),
    Layer(index: 1, nodeStart: 1, nodeEnd: 2, opTypes: ["F"], flopsPerWindow: 1, parameterBytes: 4, outputs: ["b"], outputBytesPerWindow: 1000),
    Layer(index: 2, nodeStart: 2, nodeEnd: 3, opTypes: ["F"], flopsPerWindow: 1, parameterBytes: 4, outputs: ["c"], outputBytesPerWindow: 16),
], inputs: ["x"], inputBytesPerWindow: 400)

private func counters(elapsed: Double, busy: Double = 0, blocked: Double = 0, idle: Double = 0, received: Int = 0,
                      layers: [LayerTiming] = []) -> RoleCounters {
    var counters = RoleCounters()
    counters.elapsedSeconds = elapsed
    counters.busySeconds = busy
    counters.blockedSeconds = blocked
    counters.idleSeconds = idle
    counters.receivedBytes = received
    counters.layers = layers
    return counters
}

/// Two heartbeats a second apart from stage 0 (layer 0), stage 1 (layers 1-2) and the sink.
/// Between them 1 MB crossed stage 0's link; `saturated`: stage 0 waited for room most of
/// that second while stage 1 waited for input.
private func measured(compress: CompressionSetting, saturated: Bool = true) -> RebalanceCoordinator {
    let config = RebalanceConfig(policy: .auto, intervalSeconds: 0.5, threshold: 0.1, warmupSeconds: 0)
    var coordinator = RebalanceCoordinator(ranges: [0..<1, 1..<3], epoch: 1,
                                           rebalancer: Rebalancer(config: config, cut: cut, stages: 2, compression: [compress, .none]))
    let perWindow = 1e-4
    for second in 1...2 {
        let elapsed = Double(second)
        let windows = 250 * second
        _ = coordinator.heartbeat(from: "stage-0", counters: counters(
            elapsed: elapsed, busy: perWindow * Double(windows), blocked: saturated ? 0.8 * elapsed : 0, received: 400 * windows,
            layers: [LayerTiming(layer: 0, seconds: perWindow * Double(windows), windows: windows)]), sinkName: "sink")
        _ = coordinator.heartbeat(from: "stage-1", counters: counters(
            elapsed: elapsed, busy: 2 * perWindow * Double(windows), idle: saturated ? 0.9 * elapsed : 0, received: 1_000_000 * second,
            layers: [LayerTiming(layer: 1, seconds: perWindow * Double(windows), windows: windows),
                     LayerTiming(layer: 2, seconds: perWindow * Double(windows), windows: windows)]), sinkName: "sink")
        _ = coordinator.heartbeat(from: "sink", counters: counters(elapsed: elapsed, idle: 0.99 * elapsed, received: 16 * windows), sinkName: "sink")
    }
    return coordinator
}

@Test func aSaturatedLinkIsMeasuredByWhatCrossedIt() {
    let coordinator = measured(compress: .none)
    let perByte = coordinator.rebalancer.model.linkSecondsPerByte
    #expect(perByte[0].map { abs($0 - 1e-6) < 1e-9 } == true, "1 MB in 1 s: \(perByte)")
    #expect(perByte[1] == nil, "nothing waited on stage 1's link")
    // Stage 0's link now costs 4 ms a window, 40 times its compute.
    #expect(coordinator.rebalancer.model.stageTimes([0..<1, 1..<3])[0] > 3.9e-3)
}

@Test func anUnsaturatedLinkIsNotTakenForSlow() {
    let coordinator = measured(compress: .auto, saturated: false)
    #expect(coordinator.rebalancer.model.linkSecondsPerByte == [nil, nil])
}

@Test func underAutoTheSlowLinkIsNarrowedAsTheCutMoves() {
    var coordinator = measured(compress: .auto)
    let actions = coordinator.tick(now: 2, allowNewMoves: true)
    #expect(actions.contains(.send(to: "stage-0", .compress(.fp16))), "\(actions)")
    #expect(actions.contains { if case .send(to: "stage-0", .prepare(let move)) = $0 { return move.ranges == [LayerSpan(0..<2), LayerSpan(2..<3)] } else { return false } },
            "\(actions)")
    let record = coordinator.history.last
    #expect(record?.newCompression == [.fp16, .none])
    #expect(record?.change == "moves the cut and narrows stage 0's link to fp16")
    #expect(record?.newPlan == "0-1 fp16,2")
    #expect(coordinator.compression == [.fp16, .none])
}

@Test func withoutAutoOnlyTheCutMoves() {
    var coordinator = measured(compress: .none)
    let actions = coordinator.tick(now: 2, allowNewMoves: true)
    #expect(!actions.contains { if case .send(_, .compress) = $0 { return true } else { return false } }, "\(actions)")
    #expect(coordinator.history.last?.newSplit == [LayerSpan(0..<2), LayerSpan(2..<3)])
    #expect(coordinator.history.last?.newCompression == nil)
    #expect(coordinator.history.last?.change == "moves the cut")
}
