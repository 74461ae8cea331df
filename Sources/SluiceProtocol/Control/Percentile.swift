/// The nearest-rank percentile of `sorted` (ascending): the smallest value with at least a share
/// `p` of the values at or below it, so every figure is one really measured. Nil when empty.
public func nearestRank(_ p: Double, of sorted: [Double]) -> Double? {
    guard !sorted.isEmpty else { return nil }
    let rank = Int((Double(sorted.count) * min(max(p, 0), 1)).rounded(.up))
    return sorted[max(0, min(sorted.count - 1, rank - 1))]
}
