import Foundation
import SluicePlan
import SluiceProtocol

/// Layers that would change stage under a better split.
public struct LayerMove: Codable, Equatable, Sendable {
    public var firstLayer: Int
    public var lastLayer: Int
    public var fromStage: Int
    public var toStage: Int

    public init(firstLayer: Int, lastLayer: Int, fromStage: Int, toStage: Int) {
        self.firstLayer = firstLayer; self.lastLayer = lastLayer; self.fromStage = fromStage; self.toStage = toStage
    }

    public var description: String {
        let layers = firstLayer == lastLayer ? "layer \(firstLayer)" : "layers \(firstLayer)-\(lastLayer)"
        return "\(layers) from stage \(fromStage) to stage \(toStage)"
    }
}

/// What to do about the bottleneck, in plain words, with the prediction behind it.
///
/// The prediction is `Partition.optimal` over the measured per-layer costs and stage speeds
/// (the same model the live rebalancer uses), compared with the current split under the same
/// model. Both numbers are predictions of the stages' capacity, not measurements.
public struct Recommendation: Codable, Equatable, Sendable {
    public var text: String
    public var currentSplit: String
    /// The best split for the measured costs; nil when it cannot be computed.
    public var bestSplit: String?
    public var predictedCurrentWindowsPerSecond: Double?
    public var predictedBestWindowsPerSecond: Double?
    /// predictedBest / predictedCurrent − 1.
    public var predictedGain: Double?
    public var moves: [LayerMove]

    public init(text: String, currentSplit: String, bestSplit: String?, predictedCurrentWindowsPerSecond: Double?,
                predictedBestWindowsPerSecond: Double?, predictedGain: Double?, moves: [LayerMove]) {
        self.text = text; self.currentSplit = currentSplit; self.bestSplit = bestSplit
        self.predictedCurrentWindowsPerSecond = predictedCurrentWindowsPerSecond
        self.predictedBestWindowsPerSecond = predictedBestWindowsPerSecond; self.predictedGain = predictedGain; self.moves = moves
    }

    /// - Parameter minimumGain: a better split predicting less than this gain counts as no better
    ///   (measurements are noisy; the live rebalancer uses its own threshold).
    public static func make(bottleneck: Bottleneck, stages: [StageProfile], costs: CostInput, minimumGain: Double = 0.02) -> Recommendation {
        let current = costs.ranges
        let currentSplit = Partition(ranges: current, stageTimes: []).description
        let unmeasured = costs.layerSecondsPerWindow.indices.filter { costs.layerSecondsPerWindow[$0] == nil }
        guard !current.isEmpty, costs.isComplete, current.last?.upperBound == costs.layerSecondsPerWindow.count else {
            let layerCount = costs.layerSecondsPerWindow.count
            let why = layerCount == 0 ? "no layer was measured"
                : !unmeasured.isEmpty ? "\(unmeasured.count == 1 ? "layer" : "layers") \(unmeasured.map(String.init).joined(separator: ", ")) never measured"
                : "the split covers \(current.last?.upperBound ?? 0) layers but \(layerCount) were measured"
            return Recommendation(text: "\(bottleneck.summary); \(why), so no other split can be predicted yet",
                                  currentSplit: currentSplit, bestSplit: nil, predictedCurrentWindowsPerSecond: nil,
                                  predictedBestWindowsPerSecond: nil, predictedGain: nil, moves: [])
        }
        let speeds = costs.stageSpeeds.count == current.count && costs.stageSpeeds.allSatisfy({ $0 > 0 })
            ? costs.stageSpeeds : Array(repeating: 1, count: current.count)
        let before = costs.throughput(current)
        guard let best = try? Partition.optimal(costs: costs.partitionCosts, stages: current.count, speeds: speeds) else {
            return Recommendation(text: "\(bottleneck.summary); the measured costs admit no other split", currentSplit: currentSplit,
                                  bestSplit: nil, predictedCurrentWindowsPerSecond: before, predictedBestWindowsPerSecond: nil,
                                  predictedGain: nil, moves: [])
        }
        let after = best.bottleneck > 0 ? 1 / best.bottleneck : 0
        let gain = before > 0 ? after / before - 1 : 0
        let better = best.ranges != current && gain >= minimumGain
        let moves = better ? Self.moves(from: current, to: best.ranges) : []
        let capacity = rate(before)
        let text: String
        switch bottleneck.limiter {
        case .sink:
            text = "\(bottleneck.summary). By the measured layer costs the stages could sustain \(capacity) windows/s; make the sink faster"
        case .input:
            text = "\(bottleneck.summary). The stages have headroom (the current split sustains up to \(capacity) windows/s by the measured costs), so moving layers would not raise throughput"
        case .unknown:
            text = "\(bottleneck.summary)"
        case .stage:
            if better {
                text = "\(bottleneck.summary); moving \(moves.map(\.description).joined(separator: " and ")) predicts "
                    + "\(signedPercent(gain)) (\(capacity) → \(rate(after)) windows/s; split \(currentSplit) → \(best.description))"
            } else {
                let stage = bottleneck.stage.map { "stage \($0)" } ?? "the limiting stage"
                text = "\(bottleneck.summary); the split \(currentSplit) is already the best for the measured layer costs "
                    + "(predicts \(capacity) windows/s): to go faster, \(stage) needs more compute (a replica or a faster core), not a different split"
            }
        }
        return Recommendation(text: text, currentSplit: currentSplit, bestSplit: best.description,
                              predictedCurrentWindowsPerSecond: before, predictedBestWindowsPerSecond: after, predictedGain: gain,
                              moves: moves)
    }

    /// Runs of consecutive layers whose stage differs between the two splits.
    public static func moves(from current: [Range<Int>], to proposed: [Range<Int>]) -> [LayerMove] {
        func stage(of layer: Int, in ranges: [Range<Int>]) -> Int? { ranges.firstIndex { $0.contains(layer) } }
        let layerCount = max(current.last?.upperBound ?? 0, proposed.last?.upperBound ?? 0)
        var moves: [LayerMove] = []
        for layer in 0..<layerCount {
            guard let from = stage(of: layer, in: current), let to = stage(of: layer, in: proposed), from != to else { continue }
            if let last = moves.last, last.lastLayer == layer - 1, last.fromStage == from, last.toStage == to {
                moves[moves.count - 1].lastLayer = layer
            } else {
                moves.append(LayerMove(firstLayer: layer, lastLayer: layer, fromStage: from, toStage: to))
            }
        }
        return moves
    }
}

/// "612" for 612.4; one decimal below 100.
func rate(_ value: Double) -> String {
    guard value.isFinite else { return "?" }
    return value >= 100 ? String(format: "%.0f", value) : String(format: "%.1f", value)
}

/// "+18%" / "-3%".
func signedPercent(_ fraction: Double) -> String {
    guard fraction.isFinite else { return "?" }
    let value = Int((100 * fraction).rounded())
    return value >= 0 ? "+\(value)%" : "\(value)%"
}
