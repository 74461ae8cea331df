import Foundation
import SluicePlan
import SluiceProfile
import SluiceProtocol
import SluiceWire

/// A stage that ran `elapsed` seconds with the given shares of busy and blocked time.
func stage(_ index: Int, _ layers: Range<Int>, busy: Double, blocked: Double, elapsed: Double = 10, batches: Int = 1000,
           windows: Int = 8000) -> StageProfile {
    StageProfile(index: index, layers: layers, elapsedSeconds: elapsed, busySeconds: busy * elapsed,
                 idleSeconds: (1 - busy - blocked) * elapsed, blockedSeconds: blocked * elapsed, batches: batches, windows: windows)
}

func counters(busy: Double, blocked: Double, elapsed: Double = 10, batches: Int = 1000, windows: Int = 8000,
              layers: [LayerTiming] = []) -> RoleCounters {
    var counters = RoleCounters()
    counters.elapsedSeconds = elapsed
    counters.busySeconds = busy * elapsed
    counters.blockedSeconds = blocked * elapsed
    counters.idleSeconds = (1 - busy - blocked) * elapsed
    counters.batches = batches
    counters.windows = windows
    counters.layers = layers
    return counters
}

/// A model of `count` layers, each 1 MFLOP per sample with 1 KiB boundaries.
func cut(layers count: Int, outputBytes: Int = 1024) -> LayerCut {
    LayerCut(layers: (0..<count).map {
        Layer(index: $0, nodeStart: 2 * $0, nodeEnd: 2 * $0 + 2, opTypes: ["Gemm", "Relu"], flopsPerWindow: 1e6,
              parameterBytes: 4096, outputs: ["h\($0)"], outputBytesPerWindow: outputBytes)
    }, inputs: ["x"], inputBytesPerWindow: 512)
}

/// Micro-batches through a pipeline with fixed per-stage compute, 8 windows each, one every
/// `interval` ns; stage s takes `compute[s]` ns and hands off after `handoff` ns.
func traces(count: Int, stages: Int, compute: [UInt64], handoff: UInt64 = 50_000, interval: UInt64 = 1_000_000,
            origin: UInt64 = 1_700_000_000_000_000_000) -> [BatchTrace] {
    var free = Array(repeating: origin, count: stages)   // when each stage is next free
    return (0..<count).map { sequence in
        let created = origin + UInt64(sequence) * interval
        var left = created
        var hops: [Hop] = []
        for s in 0..<stages {
            let received = max(left + handoff, free[s])
            let computeStart = received + 2_000
            let computeEnd = computeStart + compute[s]
            let sendStart = computeEnd + 1_000
            hops.append(Hop(stage: UInt16(s), received: received, computeStart: computeStart, computeEnd: computeEnd, sendStart: sendStart))
            free[s] = sendStart
            left = sendStart
        }
        return BatchTrace(batchSequence: UInt64(sequence), windowCount: 8, created: created, hops: hops, sinkReceived: left + handoff)
    }
}
