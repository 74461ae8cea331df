import SluiceProtocol

/// Picks, for one `/metrics` scrape, one heartbeat per role such that the counters agree with
/// each other: no hop has taken more batches than its upstream had sent. Heartbeats of different
/// roles arrive at different moments; showing each role's latest would let the sink count more
/// batches than the source had reported sending. Each role's pick is a heartbeat it really sent
/// (so a heartbeat's own figures, like the sink's latency histogram, stay together), never older
/// than the one the previous scrape showed (so counters never go backwards).
struct ConsistentCut {
    /// Recent heartbeats per role, oldest first.
    private var history: [String: [RoleCounters]] = [:]
    private var published: [String: RoleCounters] = [:]
    private let depth = 64

    mutating func record(_ counters: RoleCounters, from role: String) {
        var recent = history[role] ?? []
        recent.append(counters)
        if recent.count > depth { recent.removeFirst(recent.count - depth) }
        history[role] = recent
    }

    /// Each role's pick: the source's latest; along the pipeline, the newest heartbeat of each
    /// process that took no more than its upstream had sent (a stage's replicas share their
    /// upstream's batches).
    mutating func cut(source: String, stages: [[String]], sink: String) -> [String: RoleCounters] {
        var picked: [String: RoleCounters] = [:]
        if let latest = history[source]?.last { picked[source] = latest }
        var upstreamSent = picked[source]?.sent ?? 0
        for instances in stages {
            var budget = upstreamSent
            var sent = 0
            for name in instances {
                guard let choice = pick(name, takingAtMost: budget) else { continue }
                picked[name] = choice
                budget = max(0, budget - choice.received)
                sent += choice.sent
            }
            upstreamSent = sent
        }
        if let choice = pick(sink, takingAtMost: upstreamSent) { picked[sink] = choice }
        for (name, counters) in picked { published[name] = counters }
        return picked
    }

    private func pick(_ role: String, takingAtMost budget: Int) -> RoleCounters? {
        let recent = history[role] ?? []
        let floor = published[role]
        // Heartbeats are running totals: newer ones are never smaller.
        if let choice = recent.last(where: { $0.received <= budget && $0.received >= (floor?.received ?? 0) }) { return choice }
        return floor
    }
}
