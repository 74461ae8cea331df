import Foundation
import SluicePlan
import SluiceProtocol
import Testing
@testable import SluiceProfile
import SluiceWire

// MARK: bottleneck

@Test func aDeliberatelySlowStageIsNamed() {
    let stages = [stage(0, 0..<4, busy: 0.35, blocked: 0.61), stage(1, 4..<8, busy: 0.97, blocked: 0.01),
                  stage(2, 8..<12, busy: 0.30, blocked: 0)]
    let found = Bottleneck.find(stages: stages)
    #expect(found.limiter == .stage)
    #expect(found.stage == 1)
    #expect(found.blockedStages == [0])
    #expect(found.summary == "stage 1 limits throughput (busy 97%, stage 0 blocked 61%)")
    #expect(found.rule.contains("downstream of blocked"))
}

@Test func theRuleLooksDownstreamOfBlockedStagesNotAtTheBusiest() {
    // Stage 0 is the busiest, but it is held back: it waits on stage 1, which is the limit.
    let stages = [stage(0, 0..<2, busy: 0.75, blocked: 0.24), stage(1, 2..<4, busy: 0.62, blocked: 0.0),
                  stage(2, 4..<6, busy: 0.10, blocked: 0)]
    let found = Bottleneck.find(stages: stages)
    #expect(found.stage == 1)
    #expect(found.blockedStages == [0])
}

@Test func aSlowSinkShowsEveryStageBlockedAndNamesNoStage() {
    let stages = [stage(0, 0..<4, busy: 0.20, blocked: 0.78), stage(1, 4..<8, busy: 0.25, blocked: 0.72),
                  stage(2, 8..<12, busy: 0.22, blocked: 0.75)]
    let found = Bottleneck.find(stages: stages)
    #expect(found.limiter == .sink)
    #expect(found.stage == nil)
    #expect(found.blockedStages == [0, 1, 2])
    #expect(found.summary.hasPrefix("the sink limits throughput (stage 0 blocked 78%, stage 1 blocked 72%, stage 2 blocked 75%)"))
    let costs = CostInput(ranges: [0..<4, 4..<8, 8..<12], layerSecondsPerWindow: Array(repeating: 1e-4, count: 12),
                          stageSpeeds: [1, 1, 1], boundaryBytesPerWindow: Array(repeating: 0, count: 13))
    let advice = Recommendation.make(bottleneck: found, stages: stages, costs: costs)
    #expect(advice.text.contains("make the sink faster"))
    #expect(advice.moves.isEmpty)
    #expect(!advice.text.contains("moving"))
}

@Test func withNoStageBlockedTheBusiestSaturatedStageLimitsElseTheInput() {
    let saturated = Bottleneck.find(stages: [stage(0, 0..<1, busy: 0.4, blocked: 0.05), stage(1, 1..<2, busy: 0.85, blocked: 0)])
    #expect(saturated.limiter == .stage && saturated.stage == 1)
    #expect(saturated.rule.contains("busiest"))
    let starved = Bottleneck.find(stages: [stage(0, 0..<1, busy: 0.2, blocked: 0), stage(1, 1..<2, busy: 0.3, blocked: 0)])
    #expect(starved.limiter == .input)
    #expect(starved.stage == nil)
    #expect(starved.summary.contains("stage 1, is busy only 30%"))
    #expect(Bottleneck.find(stages: []).limiter == .unknown)
}

// MARK: latency

@Test func latencySplitAddsUpToTheTotal() {
    let trace = BatchTrace(batchSequence: 3, windowCount: 4, created: 1_000, hops: [
        Hop(stage: 0, received: 1_500, computeStart: 1_600, computeEnd: 2_600, sendStart: 2_700),
        Hop(stage: 1, received: 4_000, computeStart: 4_100, computeEnd: 6_100, sendStart: 6_150),
    ], sinkReceived: 9_000)
    // 1 ns per byte; 10 + 20 + 30 bytes per sample cross the three handoffs, 4 samples.
    let split = LatencySplit(trace: trace, boundaryBytesPerWindow: [10, 20, 30], ranges: [0..<1, 1..<2], secondsPerByte: 1e-9)
    #expect(split.totalNanos == 8_000)
    #expect(split.computeNanos == 3_000)
    #expect(split.handlingNanos == 350)
    #expect(split.transferNanos == 240)
    #expect(split.queueingNanos == 4_410)
    #expect(split.computeNanos + split.handlingNanos + split.transferNanos + split.queueingNanos == split.totalNanos)
}

@Test func latencySplitAddsUpEvenWithSkewedClocks() {
    var rng = SystemRandomNumberGenerator()
    for _ in 0..<2_000 {
        let created = UInt64.random(in: 1_000_000...2_000_000, using: &rng)
        let hops = (0..<Int.random(in: 0...4, using: &rng)).map { stage -> Hop in
            // Other machines' clocks: anywhere around the source's.
            let base = created + UInt64.random(in: 0...1_000_000, using: &rng) - 500_000
            let times = (0..<4).map { _ in base + UInt64.random(in: 0...100_000, using: &rng) }.sorted()
            return Hop(stage: UInt16(stage), received: times[0], computeStart: times[1], computeEnd: times[2], sendStart: times[3])
        }
        let trace = BatchTrace(batchSequence: 0, windowCount: Int.random(in: 1...64, using: &rng), created: created, hops: hops,
                               sinkReceived: created + UInt64.random(in: 0...2_000_000, using: &rng) - 200_000)
        let split = LatencySplit(trace: trace, boundaryBytesPerWindow: Array(repeating: 4096, count: 6),
                                 ranges: (0..<5).map { $0..<($0 + 1) }, secondsPerByte: 1 / 2.5e9)
        #expect(split.computeNanos + split.handlingNanos + split.transferNanos + split.queueingNanos == split.totalNanos)
    }
}

@Test func latencyPercentilesComeFromTheHistogram() {
    // 1 … 1000 ms: p50 500, p90 900, p99 990, max 1000 (to HdrHistogram's 3 digits).
    let splits = (1...1000).map { ms in
        LatencySplit(batchSequence: UInt64(ms), totalNanos: UInt64(ms) * 1_000_000, computeNanos: UInt64(ms) * 250_000,
                     handlingNanos: 0, transferNanos: UInt64(ms) * 250_000, queueingNanos: UInt64(ms) * 500_000)
    }
    let summary = LatencySummary(splits)
    #expect(summary.batches == 1000)
    #expect(abs(summary.total.p50Milliseconds - 500) < 1)
    #expect(abs(summary.total.p90Milliseconds - 900) < 1)
    #expect(abs(summary.total.p99Milliseconds - 990) < 1)
    #expect(summary.total.maxMilliseconds == 1000)
    #expect(abs(summary.compute.p50Milliseconds - 125) < 0.2)
    #expect(abs(summary.queueingShare - 0.5) < 1e-9 && abs(summary.computeShare - 0.25) < 1e-9)
    #expect(abs(summary.queueingShare + summary.transferShare + summary.computeShare + summary.handlingShare - 1) < 1e-9)
}

// MARK: recommendation

/// 9 layers of 1 ms per sample each, measured; no transfer cost.
private func evenCosts(_ ranges: [Range<Int>]) -> CostInput {
    CostInput(ranges: ranges, layerSecondsPerWindow: Array(repeating: 1e-3, count: 9), stageSpeeds: [1, 1, 1],
              boundaryBytesPerWindow: Array(repeating: 0, count: 10))
}

@Test func aClearlyBetterSplitIsRecommendedInPlainWords() {
    let ranges = [0..<3, 3..<8, 8..<9]
    let stages = [stage(0, ranges[0], busy: 0.58, blocked: 0.40), stage(1, ranges[1], busy: 0.97, blocked: 0.0),
                  stage(2, ranges[2], busy: 0.19, blocked: 0)]
    let advice = Recommendation.make(bottleneck: Bottleneck.find(stages: stages), stages: stages, costs: evenCosts(ranges))
    #expect(advice.text == "stage 1 limits throughput (busy 97%, stage 0 blocked 40%); moving layers 6-7 from stage 1 to stage 2 "
        + "predicts +67% (200 → 333 windows/s; split 0-2,3-7,8 → 0-2,3-5,6-8)")
    #expect(advice.moves == [LayerMove(firstLayer: 6, lastLayer: 7, fromStage: 1, toStage: 2)])
    #expect(advice.bestSplit == "0-2,3-5,6-8")
    #expect(abs((advice.predictedGain ?? 0) - 2.0 / 3.0) < 1e-9)
}

@Test func anOptimalSplitIsSaidToBeOptimal() {
    let ranges = [0..<3, 3..<6, 6..<9]
    let stages = [stage(0, ranges[0], busy: 0.9, blocked: 0.05), stage(1, ranges[1], busy: 0.95, blocked: 0.0),
                  stage(2, ranges[2], busy: 0.9, blocked: 0)]
    let advice = Recommendation.make(bottleneck: Bottleneck.find(stages: stages), stages: stages, costs: evenCosts(ranges))
    #expect(advice.text.contains("the split 0-2,3-5,6-8 is already the best for the measured layer costs (predicts 333 windows/s)"))
    #expect(advice.moves.isEmpty)
}

@Test func aSlowerStageMachineGetsFewerLayers() {
    // Stage 2 runs at half speed: the best split gives it fewer layers than the others.
    var costs = evenCosts([0..<3, 3..<6, 6..<9])
    costs.stageSpeeds = [1, 1, 0.5]
    let stages = [stage(0, 0..<3, busy: 0.5, blocked: 0.45), stage(1, 3..<6, busy: 0.5, blocked: 0.45),
                  stage(2, 6..<9, busy: 0.98, blocked: 0)]
    let advice = Recommendation.make(bottleneck: Bottleneck.find(stages: stages), stages: stages, costs: costs)
    #expect(advice.bestSplit == "0-3,4-7,8")
    #expect(advice.text.contains("stage 2 limits throughput"))
    #expect(advice.text.contains("moving layer 3 from stage 1 to stage 0 and layers 6-7 from stage 2 to stage 1"))
}

@Test func unmeasuredLayersAreNamedInsteadOfAPrediction() {
    var costs = evenCosts([0..<3, 3..<6, 6..<9])
    costs.layerSecondsPerWindow[4] = nil
    let stages = [stage(0, 0..<3, busy: 0.9, blocked: 0.05), stage(1, 3..<6, busy: 0.95, blocked: 0), stage(2, 6..<9, busy: 0.9, blocked: 0)]
    let advice = Recommendation.make(bottleneck: Bottleneck.find(stages: stages), stages: stages, costs: costs)
    #expect(advice.text.hasSuffix("layer 4 never measured, so no other split can be predicted yet"))
    #expect(advice.bestSplit == nil)
}

// MARK: the assembled profile

@Test func profileAssemblesStagesLayersAndAnalysis() throws {
    let ranges = [0..<3, 3..<8, 8..<9]
    let traced = traces(count: 200, stages: 3, compute: [600_000, 1_000_000, 200_000])
    let layerTimings = (3..<8).map { LayerTiming(layer: $0, seconds: Double($0), windows: 1000) }
    let profile = ProfileData.make(
        pipeline: "demo", cut: cut(layers: 9), ranges: ranges,
        stageCounters: [0: counters(busy: 0.58, blocked: 0.40), 1: counters(busy: 0.97, blocked: 0, layers: layerTimings),
                        2: counters(busy: 0.19, blocked: 0)],
        traces: traced, costs: evenCosts(ranges), rebalances: [], windowsIn: 1600, windowsOut: 1600, durationSeconds: 8,
        queueDepths: [1: 3])
    #expect(profile.windowsPerSecond == 200)
    #expect(profile.stages.map(\.layers) == ["0-2", "3-7", "8"])
    #expect(profile.stages[1].queueDepth == 3 && profile.stages[0].queueDepth == nil)
    #expect(profile.stages.allSatisfy { $0.replicas == 1 })
    for stage in profile.stages {
        #expect(abs(stage.busyFraction + stage.idleFraction + stage.blockedFraction - 1) < 1e-9)
    }
    // Time in stage: 2 µs handling + compute + 1 µs before the send.
    let p50 = try #require(profile.stages[1].inStageP50Seconds)
    #expect(abs(p50 - 0.001003) < 0.000002)
    #expect(profile.bottleneck.stage == 1)
    #expect(profile.recommendation.moves == [LayerMove(firstLayer: 6, lastLayer: 7, fromStage: 1, toStage: 2)])
    #expect(profile.layers.map(\.stage) == [0, 0, 0, 1, 1, 1, 1, 1, 2])
    for stage in 0..<3 {
        let shares = profile.layers.filter { $0.stage == stage }.compactMap(\.shareOfStage)
        #expect(abs(shares.reduce(0, +) - 1) < 1e-9)
    }
    let latency = try #require(profile.latency)
    #expect(latency.batches == 200)
    #expect(latency.compute.p50Milliseconds > 1.7 && latency.compute.p50Milliseconds < 1.9)
}

@Test func profileJSONHasSortedKeysDerivedFieldsAndReadsBack() throws {
    let ranges = [0..<3, 3..<8, 8..<9]
    let profile = ProfileData.make(
        pipeline: "demo", cut: cut(layers: 9), ranges: ranges,
        stageCounters: [0: counters(busy: 0.58, blocked: 0.40), 1: counters(busy: 0.97, blocked: 0), 2: counters(busy: 0.19, blocked: 0)],
        traces: traces(count: 20, stages: 3, compute: [600_000, 1_000_000, 200_000]), costs: evenCosts(ranges),
        rebalances: [try JSONDecoder().decode(RebalanceRecord.self, from: Data("""
            {"atSeconds": 3, "epoch": 2, "oldSplit": "0-3,4-7,8", "newSplit": "0-2,3-7,8", "predictedOldWindowsPerSecond": 180,
             "predictedNewWindowsPerSecond": 200, "measuredBeforeWindowsPerSecond": 170, "applied": true}
            """.utf8))],
        windowsIn: nil, windowsOut: 160, durationSeconds: 1)
    let data = profile.json()
    let text = String(decoding: data, as: UTF8.self)
    #expect(text.contains("\"busyFraction\""))
    #expect(text.contains("\"millisecondsPerBatch\""))
    let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    #expect(Set(object.keys).isSuperset(of: ["pipeline", "stages", "layers", "traces", "bottleneck", "latency", "recommendation", "rebalances", "costs"]))
    let keys = object.keys.sorted()
    // Top-level keys only: the first indentation level of the pretty-printed text.
    let positions = keys.map { text.range(of: "\n  \"\($0)\" :")!.lowerBound }
    #expect(positions == positions.sorted())
    let back = try JSONDecoder().decode(ProfileData.self, from: data)
    #expect(back == profile)
}

@Test func traceSamplerStaysBoundedAndSpreadOverTheRun() {
    var sampler = TraceSampler(capacity: 64)
    for trace in traces(count: 10_000, stages: 1, compute: [1_000]) { sampler.add(trace) }
    #expect(sampler.traces.count <= 64 && sampler.traces.count >= 32)
    let sequences = sampler.traces.map(\.batchSequence)
    #expect(sequences.first == 0)
    #expect((sequences.last ?? 0) > 9_000)
    #expect(Set(zip(sequences.dropFirst(), sequences).map { $0 - $1 }).count == 1)   // evenly spaced
}
