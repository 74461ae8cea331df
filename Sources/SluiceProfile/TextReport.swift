import Foundation
import SluiceConfig

/// The terminal report: stage table, layer table, latency, rebalances, recommendation.
public enum TextReport {
    public static func render(_ profile: ProfileData) -> String {
        var lines: [String] = []
        let windowsIn = profile.windowsIn.map(String.init) ?? "?"
        lines.append("sluice profile: \(profile.pipeline): \(windowsIn) windows in, \(profile.windowsOut) out in "
            + String(format: "%.2f s", profile.durationSeconds) + " (\(rate(profile.windowsPerSecond)) windows/s)")
        lines.append("")
        lines += stageTable(profile)
        lines.append("")
        lines += layerTable(profile)
        lines.append("")
        lines += latencySection(profile.latency)
        if !profile.rebalances.isEmpty {
            lines.append("")
            lines.append("rebalances")
            for record in profile.rebalances {
                let measured = [record.measuredBeforeWindowsPerSecond, record.measuredAfterWindowsPerSecond].map { $0.map(rate) ?? "?" }
                lines.append("  \(record.applied ? "moved" : "proposed") at \(String(format: "%.1f", record.atSeconds)) s (epoch \(record.epoch)): "
                    + "\(LayerSpan.describe(record.oldSplit)) → \(LayerSpan.describe(record.newSplit)), predicted \(rate(record.predictedOldWindowsPerSecond)) → "
                    + "\(rate(record.predictedNewWindowsPerSecond)) windows/s, measured \(measured[0]) → \(measured[1])")
            }
        }
        lines.append("")
        lines.append("recommendation")
        lines.append("  " + profile.recommendation.text)
        return lines.joined(separator: "\n") + "\n"
    }

    public static func stageTable(_ profile: ProfileData) -> [String] {
        var rows = [["stage", "layers", "replicas", "busy%", "idle%", "blocked%", "batches/s", "windows/s", "ms/batch", "queue",
                     "p50 ms", "p99 ms", ""]]
        for stage in profile.stages {
            let mark = profile.bottleneck.limiter == .stage && profile.bottleneck.stage == stage.index ? "◀ bottleneck" : ""
            rows.append([String(stage.index), stage.layers, String(stage.replicas),
                         fixed(100 * stage.busyFraction, 1), fixed(100 * stage.idleFraction, 1), fixed(100 * stage.blockedFraction, 1),
                         fixed(stage.batchesPerSecond, 1), fixed(stage.windowsPerSecond, 1), fixed(stage.millisecondsPerBatch, 3),
                         stage.queueDepth.map(String.init) ?? "-",
                         stage.inStageP50Seconds.map { fixed(1000 * $0, 3) } ?? "-",
                         stage.inStageP99Seconds.map { fixed(1000 * $0, 3) } ?? "-", mark])
        }
        var lines = ["stages"] + table(rows, leftAligned: [1, 12]).map { "  " + $0 }
        lines.append("  bottleneck: \(profile.bottleneck.summary)")
        lines.append("    rule: \(profile.bottleneck.rule)")
        return lines
    }

    static func layerTable(_ profile: ProfileData) -> [String] {
        var rows = [["layer", "stage", "ops", "FLOPs/window", "params", "ms/window", "of stage", "out bytes/window"]]
        for layer in profile.layers {
            rows.append([String(layer.index), layer.stage >= 0 ? String(layer.stage) : "-", opsSummary(layer.opTypes),
                         si(layer.flopsPerWindow), bytes(layer.parameterBytes),
                         layer.secondsPerWindow.map { fixed(1000 * $0, 4) } ?? "-",
                         layer.shareOfStage.map { fixed(100 * $0, 1) + "%" } ?? "-", bytes(layer.outputBytesPerWindow)])
        }
        return ["layers"] + table(rows, leftAligned: [2]).map { "  " + $0 }
    }

    static func latencySection(_ latency: LatencySummary?) -> [String] {
        guard let latency else { return ["latency", "  no micro-batch was traced"] }
        var rows = [["", "p50 ms", "p90 ms", "p99 ms", "max ms", "share"]]
        func row(_ name: String, _ p: Percentiles, _ share: Double?) {
            rows.append([name, fixed(p.p50Milliseconds, 3), fixed(p.p90Milliseconds, 3), fixed(p.p99Milliseconds, 3),
                         fixed(p.maxMilliseconds, 3), share.map { fixed(100 * $0, 1) + "%" } ?? ""])
        }
        row("end to end", latency.total, nil)
        row("queueing", latency.queueing, latency.queueingShare)
        row("transfer (est.)", latency.transfer, latency.transferShare)
        row("compute", latency.compute, latency.computeShare)
        row("handling", latency.handling, latency.handlingShare)
        return ["latency over \(latency.batches) traced micro-batches (source to sink)"] + table(rows, leftAligned: [0]).map { "  " + $0 }
    }

    /// "Conv×3, Relu×3, Gemm" in order of first appearance, cut to 32 characters.
    static func opsSummary(_ ops: [String]) -> String {
        var order: [String] = []
        var counts: [String: Int] = [:]
        for op in ops {
            if counts[op] == nil { order.append(op) }
            counts[op, default: 0] += 1
        }
        let text = order.map { counts[$0]! > 1 ? "\($0)×\(counts[$0]!)" : $0 }.joined(separator: ", ")
        return text.count > 32 ? String(text.prefix(31)) + "…" : text
    }

    /// Columns padded to their widest cell; right-aligned unless listed.
    static func table(_ rows: [[String]], leftAligned: Set<Int>) -> [String] {
        let columns = rows.map(\.count).max() ?? 0
        let widths = (0..<columns).map { column in rows.map { column < $0.count ? $0[column].count : 0 }.max() ?? 0 }
        return rows.map { row in
            row.enumerated().map { column, cell in
                let pad = String(repeating: " ", count: widths[column] - cell.count)
                return leftAligned.contains(column) ? cell + pad : pad + cell
            }.joined(separator: "  ").trimmingTrailingSpaces()
        }
    }
}

func fixed(_ value: Double, _ decimals: Int) -> String {
    value.isFinite ? String(format: "%.\(decimals)f", value) : "?"
}

/// 1.2k, 3.4M, 5.6G.
func si(_ value: Double) -> String {
    let units: [(Double, String)] = [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")]
    for (scale, unit) in units where abs(value) >= scale { return String(format: "%.1f", value / scale) + unit }
    return String(format: "%.0f", value)
}

func bytes(_ count: Int) -> String {
    let value = Double(count)
    for (shift, unit) in [(30, "GiB"), (20, "MiB"), (10, "KiB")] where count >= 1 << shift {
        return String(format: "%.1f ", value / Double(1 << shift)) + unit
    }
    return "\(count) B"
}

extension String {
    func trimmingTrailingSpaces() -> String {
        var copy = self
        while copy.last == " " { copy.removeLast() }
        return copy
    }
}
