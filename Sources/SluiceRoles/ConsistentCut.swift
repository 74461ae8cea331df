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

    func hasHeard(from role: String) -> Bool { history[role] != nil }

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
            // Each replica may take only what the others' last published figures leave: picking
            // greedily could leave a later replica with nothing newer that fits, and its floor
            // (which it must not go below) would then push the sum past what upstream sent.
            var reserved = instances.reduce(0) { saturating($0, plus: published[$1]?.accepted ?? 0) }
            var sent = 0
            for name in instances {
                let floor = published[name]?.accepted ?? 0
                reserved = saturating(reserved, plus: -floor)
                guard let choice = pick(name, takingAtMost: max(0, saturating(upstreamSent, plus: -reserved))) else { continue }
                picked[name] = choice
                reserved = saturating(reserved, plus: choice.accepted)
                sent = saturating(sent, plus: max(0, choice.sent))
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
        if let choice = recent.last(where: { $0.accepted <= budget && $0.accepted >= (floor?.accepted ?? 0) }) { return choice }
        return floor
    }
}

private extension RoleCounters {
    /// Batches this role took that its upstream could have sent. `received` also counts messages
    /// it rejected and replays it dropped as duplicates, which anyone reaching the socket can
    /// send: compared with upstream's `sent`, one such message would hold this hop, and every hop
    /// below it, at an old heartbeat for the rest of the run.
    var accepted: Int {
        max(0, saturating(saturating(received, plus: -max(0, rejected)), plus: -max(0, drops.count(.batch, .duplicate))))
    }
}

/// Heartbeats come over a socket: their counts are added without trapping on a forged extreme.
private func saturating(_ a: Int, plus b: Int) -> Int {
    let (sum, overflow) = a.addingReportingOverflow(b)
    return overflow ? (b > 0 ? .max : .min) : sum
}
