import Foundation
import SluiceConfig
import SluiceProtocol

/// What the controller knows at one moment, for `/metrics`.
public struct MetricsSnapshot: Sendable, Equatable {
    /// Each stage's latest running totals, by stage index.
    public var stages: [Int: RoleCounters]
    /// The split in force: layers held per stage index.
    public var ranges: [Range<Int>]
    /// Measured seconds per window per layer (nil: not measured yet).
    public var layerSecondsPerWindow: [Double?]
    public var epoch: UInt32
    /// Rebalances applied (or proposed, under the recommend policy) so far.
    public var rebalances: Int
    /// The source's and the sink's running totals, where they have reported.
    public var source: RoleCounters?
    public var sink: RoleCounters?
    /// End-to-end latency of released batches, where it is collected.
    public var latency: LatencyHistogram?
    /// What each process dropped, by process name ("controller" for its own socket).
    public var drops: [String: DropCounts] = [:]
    /// Peers turned away at the CURVE handshake, by process and reason.
    public var refused: [String: [String: Int]] = [:]
    /// Processes that died, and what the controller did about them.
    public var recovery = RecoveryCounts()
    /// Per stage, what its output link carried while saturated (bytes per second; nil: never
    /// saturated), and how its output is narrowed for it.
    public var linkBytesPerSecond: [Double?] = []
    public var compression: [Compression] = []

    public init(stages: [Int: RoleCounters], ranges: [Range<Int>], layerSecondsPerWindow: [Double?], epoch: UInt32, rebalances: Int,
                source: RoleCounters? = nil, sink: RoleCounters? = nil, latency: LatencyHistogram? = nil) {
        self.stages = stages; self.ranges = ranges; self.layerSecondsPerWindow = layerSecondsPerWindow; self.epoch = epoch
        self.rebalances = rebalances; self.source = source; self.sink = sink; self.latency = latency
    }
}

/// Prometheus text exposition format, version 0.0.4: base units, `_total` counters, a
/// `_seconds` histogram, labels only `stage` and `layer` (a handful of values each), for drops
/// `role`, `unit` and `reason` (process names and two fixed lists), and for a link's narrowing
/// `compression` (three values).
public enum PrometheusExposition {
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    public static func render(_ snapshot: MetricsSnapshot) -> String {
        var out = ""
        let stages = snapshot.stages.sorted { $0.key < $1.key }
        func family(_ name: String, _ type: String, _ help: String, _ samples: [(labels: String, value: Double)]) {
            guard !samples.isEmpty else { return }
            out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
            for sample in samples { out += "\(name)\(sample.labels) \(number(sample.value))\n" }
        }
        func perStage(_ value: (RoleCounters) -> Double) -> [(labels: String, value: Double)] {
            stages.map { (labels: "{stage=\"\($0.key)\"}", value: value($0.value)) }
        }

        family("sluice_stage_batches_total", "counter", "Micro-batches a stage ran layers on.", perStage { Double($0.batches) })
        family("sluice_stage_windows_total", "counter", "Windows a stage ran layers on.", perStage { Double($0.windows) })
        family("sluice_stage_busy_seconds_total", "counter", "Seconds a stage spent computing, its own slowdowns included.",
               perStage { $0.busySeconds })
        family("sluice_stage_idle_seconds_total", "counter", "Seconds a stage spent waiting for input.", perStage { $0.idleSeconds })
        family("sluice_stage_blocked_seconds_total", "counter", "Seconds a stage spent waiting for room downstream (backpressure).",
               perStage { $0.blockedSeconds })
        family("sluice_stage_elapsed_seconds_total", "counter", "Wall-clock seconds a stage has run: busy + idle + blocked.",
               perStage { $0.elapsedSeconds })
        family("sluice_stage_rejected_messages_total", "counter", "Messages a stage could not decode or run and dropped.",
               perStage { Double($0.rejected) })
        family("sluice_stage_sent_bytes_total", "counter", "Bytes a stage sent on its output link, as they crossed it (narrowed, where it is).",
               perStage { Double($0.sentBytes) })
        family("sluice_link_bytes_per_second", "gauge", "What a stage's output link carried while saturated (its senders waiting for room, its receivers for input).",
               snapshot.linkBytesPerSecond.enumerated().compactMap { stage, rate in rate.map { (labels: "{stage=\"\(stage)\"}", value: $0) } })
        family("sluice_link_compression", "gauge", "How a stage's output is narrowed for its link (1 for the one in force).",
               snapshot.compression.enumerated().map { (labels: "{stage=\"\($0.offset)\",compression=\"\($0.element.rawValue)\"}", value: 1) })
        family("sluice_stage_first_layer", "gauge", "First layer a stage holds.",
               snapshot.ranges.enumerated().map { (labels: "{stage=\"\($0.offset)\"}", value: Double($0.element.lowerBound)) })
        family("sluice_stage_last_layer", "gauge", "Last layer a stage holds (inclusive).",
               snapshot.ranges.enumerated().map { (labels: "{stage=\"\($0.offset)\"}", value: Double($0.element.upperBound - 1)) })

        // A layer that moved has totals on more than one stage: its total is their sum.
        var layerSeconds: [Int: Double] = [:]
        var layerWindows: [Int: Double] = [:]
        for (_, counters) in stages {
            for timing in counters.layers {
                layerSeconds[timing.layer, default: 0] += timing.seconds
                layerWindows[timing.layer, default: 0] += Double(timing.windows)
            }
        }
        family("sluice_layer_compute_seconds_total", "counter", "Seconds spent computing a layer, over every stage that held it.",
               layerSeconds.sorted { $0.key < $1.key }.map { (labels: "{layer=\"\($0.key)\"}", value: $0.value) })
        family("sluice_layer_windows_total", "counter", "Windows a layer was computed on.",
               layerWindows.sorted { $0.key < $1.key }.map { (labels: "{layer=\"\($0.key)\"}", value: $0.value) })
        family("sluice_layer_seconds_per_window", "gauge", "Measured compute seconds per window of a layer (moving average).",
               snapshot.layerSecondsPerWindow.enumerated().compactMap { index, seconds in
                   seconds.map { (labels: "{layer=\"\(index)\"}", value: $0) }
               })
        family("sluice_pipeline_epoch", "gauge", "Plan epoch in force.", [(labels: "", value: Double(snapshot.epoch))])
        family("sluice_rebalances_total", "counter", "Layer moves decided by the rebalancer.",
               [(labels: "", value: Double(snapshot.rebalances))])
        family("sluice_process_deaths_total", "counter",
               "Stage, source and sink processes that died (seen to exit or silent past the timeout), since this controller started.",
               [(labels: "", value: Double(snapshot.recovery.deaths))])
        family("sluice_process_restarts_total", "counter", "Processes started in place of dead ones, since this controller started.",
               [(labels: "", value: Double(snapshot.recovery.restarts))])
        family("sluice_controller_restarts_total", "counter", "1 when this controller was started in place of a dead one.",
               [(labels: "", value: Double(snapshot.recovery.controllerRestarts))])
        family("sluice_replayed_batches_total", "counter", "Micro-batches the source sent again after a death.",
               [(labels: "", value: Double(snapshot.source?.replayed ?? snapshot.recovery.replayedBatches))])
        if let source = snapshot.source {
            family("sluice_source_batches_total", "counter", "Micro-batches the source sent.", [(labels: "", value: Double(source.batches))])
            family("sluice_source_windows_total", "counter", "Windows the source sent.", [(labels: "", value: Double(source.windows))])
            family("sluice_source_blocked_seconds_total", "counter", "Seconds the source waited for room in the first stage.",
                   [(labels: "", value: source.blockedSeconds)])
        }
        if let sink = snapshot.sink {
            family("sluice_sink_batches_total", "counter", "Micro-batches the sink released.", [(labels: "", value: Double(sink.batches))])
            family("sluice_sink_windows_total", "counter", "Windows the sink released.", [(labels: "", value: Double(sink.windows))])
        }
        var dropSamples: [(labels: String, value: Double)] = []
        for (role, counts) in snapshot.drops.sorted(by: { $0.key < $1.key }) {
            for entry in counts.entries {
                dropSamples.append((labels: "{role=\"\(label(role))\",unit=\"\(entry.unit.rawValue)\",reason=\"\(entry.reason.rawValue)\"}",
                                    value: Double(entry.count)))
            }
        }
        family("sluice_dropped_total", "counter", "Chunks, samples, windows, batches and control frames a process dropped, by reason.",
               dropSamples)
        let refusedSamples = snapshot.refused.sorted { $0.key < $1.key }.flatMap { role, reasons in
            reasons.sorted { $0.key < $1.key }.map { (labels: "{role=\"\(label(role))\",reason=\"\(label($0.key))\"}", value: Double($0.value)) }
        }
        family("sluice_refused_peers_total", "counter", "Peers a process's CURVE sockets turned away at the handshake, by reason.",
               refusedSamples)
        if let latency = snapshot.latency {
            let name = "sluice_end_to_end_latency_seconds"
            out += "# HELP \(name) Seconds from a micro-batch's creation at the source to its arrival at the sink.\n"
            out += "# TYPE \(name) histogram\n"
            let cumulative = latency.cumulativeCounts
            for (index, bound) in latency.bounds.enumerated() {
                out += "\(name)_bucket{le=\"\(number(bound))\"} \(cumulative[index])\n"
            }
            out += "\(name)_bucket{le=\"+Inf\"} \(latency.count)\n"
            out += "\(name)_sum \(number(latency.sum))\n"
            out += "\(name)_count \(latency.count)\n"
        }
        return out
    }

    /// A label value with `\`, `"` and newlines escaped, as the text format wants them.
    static func label(_ value: String) -> String {
        value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "\n", with: "\\n")
    }

    /// A sample value as Prometheus reads it: integers without a fraction, +Inf/-Inf/NaN spelled its way.
    static func number(_ value: Double) -> String {
        if value.isNaN { return "NaN" }
        if value.isInfinite { return value > 0 ? "+Inf" : "-Inf" }
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return "\(value)"
    }
}
