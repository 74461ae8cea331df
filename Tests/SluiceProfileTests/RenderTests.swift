import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import SluicePlan
import SluiceProtocol
import Testing
@testable import SluiceProfile

private func sampleProfile(name: String = "demo", traceCount: Int = 50) -> ProfileData {
    let ranges = [0..<3, 3..<8, 8..<9]
    let costs = CostInput(ranges: ranges, layerSecondsPerWindow: Array(repeating: 1e-3, count: 9), stageSpeeds: [1, 1, 1],
                          boundaryBytesPerWindow: Array(repeating: 1024, count: 10))
    return ProfileData.make(
        pipeline: name, cut: cut(layers: 9), ranges: ranges,
        stageCounters: [0: counters(busy: 0.58, blocked: 0.40), 1: counters(busy: 0.97, blocked: 0), 2: counters(busy: 0.19, blocked: 0)],
        traces: traces(count: traceCount, stages: 3, compute: [600_000, 1_000_000, 200_000], interval: 400_000),
        costs: costs, rebalances: [], windowsIn: 400, windowsOut: 400, durationSeconds: 2)
}

// MARK: Chrome trace

private struct Slice { var name: String; var pid: Int; var tid: Int; var ts: Double; var end: Double }

@Test func chromeTraceHasWhatPerfettoNeeds() throws {
    let profile = sampleProfile()
    let object = try #require(try JSONSerialization.jsonObject(with: ChromeTrace.render(profile)) as? [String: Any])
    let events = try #require(object["traceEvents"] as? [[String: Any]])
    #expect(!events.isEmpty)
    var slices: [Slice] = []
    for event in events {
        let ph = try #require(event["ph"] as? String)
        #expect(event["name"] is String)
        #expect(event["pid"] is Int && event["tid"] is Int)
        if ph == "X" {
            let ts = try #require((event["ts"] as? NSNumber)?.doubleValue)
            let dur = try #require((event["dur"] as? NSNumber)?.doubleValue)
            #expect(ts >= 0 && dur >= 0)
            slices.append(Slice(name: event["name"] as! String, pid: event["pid"] as! Int, tid: event["tid"] as! Int, ts: ts, end: ts + dur))
        }
    }
    // One "batch N" slice per micro-batch per stage, each with a "compute" slice inside it.
    let batches = slices.filter { $0.name.hasPrefix("batch ") }
    let computes = slices.filter { $0.name == "compute" }
    #expect(batches.count == 50 * 3)
    #expect(computes.count == 50 * 3)
    for compute in computes {
        #expect(batches.contains { $0.pid == compute.pid && $0.tid == compute.tid && $0.ts <= compute.ts && compute.end <= $0.end })
    }
    #expect(slices.filter { $0.name == "queued" }.count == 50 * 4)   // before each stage and the sink
    // Slices on one track nest or are disjoint; partial overlaps would be dropped by the viewer.
    for (_, track) in Dictionary(grouping: slices, by: { "\($0.pid)/\($0.tid)" }) {
        let sorted = track.sorted { ($0.ts, -$0.end) < ($1.ts, -$1.end) }
        var open: [Slice] = []
        for slice in sorted {
            while let last = open.last, last.end <= slice.ts { open.removeLast() }
            if let parent = open.last { #expect(slice.end <= parent.end, "\(slice.name) overlaps \(parent.name)") }
            open.append(slice)
        }
    }
    // Queue lanes: waits overlap in time (the queue builds up), so several lanes are in use.
    #expect(Set(slices.filter { $0.name == "queued" && $0.pid == 2 }.map(\.tid)).count > 1)
    // Times start near zero: relative to the first batch's creation.
    #expect(slices.map(\.ts).min() == 0)
    #expect((slices.map(\.end).max() ?? 0) < 1e6)
}

@Test func chromeTraceFlowsFollowEachBatchAcrossStages() throws {
    let events = try #require(try JSONSerialization.jsonObject(with: ChromeTrace.render(sampleProfile(traceCount: 10))) as? [String: Any])["traceEvents"] as? [[String: Any]]
    let flows = try #require(events).filter { ["s", "f"].contains($0["ph"] as? String) }
    let starts = flows.filter { $0["ph"] as? String == "s" }
    let finishes = flows.filter { $0["ph"] as? String == "f" }
    // Per batch and stage: wait → slice, then slice → the wait before the next stage or the sink.
    #expect(starts.count == 10 * 3 * 2)
    #expect(Set(starts.map { $0["id"] as! Int }) == Set(finishes.map { $0["id"] as! Int }))
    #expect(Set(starts.map { $0["id"] as! Int }).count == starts.count)
    #expect(finishes.allSatisfy { $0["bp"] as? String == "e" })
    let slices = try #require(events).filter { $0["ph"] as? String == "X" }
    // Every flow end lies inside a slice of its own track, so the arrow binds to that slice.
    for flow in flows {
        let ts = (flow["ts"] as! NSNumber).doubleValue
        #expect(slices.contains {
            $0["pid"] as? Int == flow["pid"] as? Int && $0["tid"] as? Int == flow["tid"] as? Int
                && ($0["ts"] as! NSNumber).doubleValue <= ts
                && ts <= ($0["ts"] as! NSNumber).doubleValue + ($0["dur"] as! NSNumber).doubleValue
        })
    }
    // A batch's arrows visit its stages in order: stage 0 (pid 1), 1, 2, then the sink (pid 4).
    let batch3 = flows.filter { $0["name"] as? String == "batch 3" }.sorted { ($0["ts"] as! NSNumber).doubleValue < ($1["ts"] as! NSNumber).doubleValue }
    let pids = batch3.map { $0["pid"] as! Int }
    #expect(pids == pids.sorted())
    #expect(pids.last == 4)
    // Named processes and threads.
    let names = try #require(events).filter { $0["ph"] as? String == "M" && $0["name"] as? String == "process_name" }
        .compactMap { ($0["args"] as? [String: Any])?["name"] as? String }
    #expect(names.contains("stage 1 (layers 3-7)") && names.contains("sink"))
}

// MARK: SVG

private final class SVGCounter: NSObject, XMLParserDelegate {
    var elements: [String: Int] = [:]
    var texts: [String] = []
    private var inText = false
    func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?,
                attributes: [String: String] = [:]) {
        elements[name, default: 0] += 1
        inText = name == "text"
        if inText { texts.append("") }
    }
    func parser(_ parser: XMLParser, foundCharacters string: String) {
        if inText { texts[texts.count - 1] += string }
    }
    func parser(_ parser: XMLParser, didEndElement name: String, namespaceURI: String?, qualifiedName: String?) {
        if name == "text" { inText = false }
    }
}

@Test func svgChartIsWellFormedXMLWithBarsAndATimeline() throws {
    let profile = sampleProfile(name: "a<b & \"c\"")
    let svg = SVGChart.render(profile)
    let parser = XMLParser(data: Data(svg.utf8))
    let counter = SVGCounter()
    parser.delegate = counter
    #expect(parser.parse(), "\(parser.parserError.map { "\($0)" } ?? "")")
    #expect(counter.elements["svg"] == 1)
    // Background, the bar segments that are not empty (stage 0: 3, stage 1: busy and idle, stage 2: busy and idle),
    // 3 legend swatches, 3 timeline rows, 50 × 3 compute spans.
    #expect(counter.elements["rect", default: 0] == 1 + 7 + 3 + 3 + 150)
    #expect(counter.texts.contains { $0.hasPrefix("a<b & \"c\"") })
    #expect(counter.texts.contains("◀ bottleneck"))
    #expect(counter.texts.contains("stage 1 (layers 3-7)"))
}

// MARK: text

@Test func textReportHasTheTablesTheLatencyAndTheRecommendation() {
    let text = TextReport.render(sampleProfile())
    #expect(text.contains("◀ bottleneck"))
    #expect(text.contains("bottleneck: stage 1 limits throughput (busy 97%, stage 0 blocked 40%)"))
    #expect(text.contains("rule: busiest stage downstream of blocked stages"))
    #expect(text.contains("moving layers 6-7 from stage 1 to stage 2 predicts +67%"))
    #expect(text.contains("Gemm, Relu"))
    #expect(text.contains("1.0 KiB"))
    for bucket in ["end to end", "queueing", "transfer (est.)", "compute", "handling"] { #expect(text.contains(bucket)) }
    // The stage table's rows line up under its header.
    let lines = text.split(separator: "\n").map(String.init)
    let header = lines.firstIndex { $0.contains("busy%") }!
    #expect(lines[header + 1].count <= lines[header].count + "  ◀ bottleneck".count)
    #expect(lines[header + 2].contains("◀ bottleneck"))
}

// MARK: Prometheus

private func sampleSnapshot() -> MetricsSnapshot {
    var latency = LatencyHistogram()
    for ms in [0.5, 3, 3, 7, 40, 2_000, 60_000] { latency.record(seconds: ms / 1000) }
    var drops = DropCounts()
    drops.add(3, .chunk, .afterEndOfInput)
    drops.add(30, .sample, .afterEndOfInput)
    var snapshot = MetricsSnapshot(
        stages: [0: counters(busy: 0.58, blocked: 0.40, layers: [LayerTiming(layer: 0, seconds: 1.5, windows: 8000), LayerTiming(layer: 1, seconds: 2.25, windows: 8000)]),
                 1: counters(busy: 0.97, blocked: 0, layers: [LayerTiming(layer: 1, seconds: 0.25, windows: 800), LayerTiming(layer: 2, seconds: 9.5, windows: 8000)])],
        ranges: [0..<2, 2..<3], layerSecondsPerWindow: [1.875e-4, nil, 1.1875e-3], epoch: 3, rebalances: 2,
        source: counters(busy: 0.1, blocked: 0.8), sink: counters(busy: 0.1, blocked: 0), latency: latency)
    snapshot.drops = ["source": drops]
    snapshot.linkBytesPerSecond = [250_000, nil]
    snapshot.compression = [.fp16, .none]
    return snapshot
}

@Test func prometheusTextCarriesTheCountersGaugesAndHistogram() {
    let text = PrometheusExposition.render(sampleSnapshot())
    let lines = Set(text.split(separator: "\n").map(String.init))
    #expect(lines.contains("# TYPE sluice_stage_busy_seconds_total counter"))
    #expect(lines.contains("sluice_stage_busy_seconds_total{stage=\"1\"} 9.7"))
    #expect(lines.contains("sluice_stage_batches_total{stage=\"0\"} 1000"))
    #expect(lines.contains("sluice_layer_compute_seconds_total{layer=\"1\"} 2.5"))   // summed over the two stages that held it
    #expect(lines.contains("sluice_layer_seconds_per_window{layer=\"2\"} 0.0011875"))
    #expect(!text.contains("sluice_layer_seconds_per_window{layer=\"1\"}"))            // never measured: absent, not 0
    #expect(lines.contains("sluice_stage_last_layer{stage=\"0\"} 1"))
    #expect(lines.contains("sluice_pipeline_epoch 3"))
    #expect(lines.contains("sluice_rebalances_total 2"))
    #expect(lines.contains("sluice_end_to_end_latency_seconds_bucket{le=\"0.001\"} 1"))
    #expect(lines.contains("sluice_end_to_end_latency_seconds_bucket{le=\"0.005\"} 3"))
    #expect(lines.contains("sluice_end_to_end_latency_seconds_bucket{le=\"10\"} 6"))
    #expect(lines.contains("sluice_end_to_end_latency_seconds_bucket{le=\"+Inf\"} 7"))
    #expect(lines.contains("sluice_end_to_end_latency_seconds_count 7"))
    #expect(lines.contains("sluice_dropped_total{role=\"source\",unit=\"sample\",reason=\"after end of input\"} 30"))
    #expect(lines.contains("sluice_link_bytes_per_second{stage=\"0\"} 250000"))
    #expect(!text.contains("sluice_link_bytes_per_second{stage=\"1\"}"))                // never saturated: absent
    #expect(lines.contains("sluice_link_compression{stage=\"0\",compression=\"fp16\"} 1"))
    #expect(lines.contains("sluice_link_compression{stage=\"1\",compression=\"none\"} 1"))
    // Every family has HELP and TYPE, and labels are only stage and layer indices (and, for drops,
    // role, unit and reason).
    #expect(text.components(separatedBy: "# HELP ").count == text.components(separatedBy: "# TYPE ").count)
    for line in lines where !line.hasPrefix("#") {
        if let open = line.firstIndex(of: "{") {
            let label = line[line.index(after: open)...].prefix { $0 != "=" }
            #expect(["stage", "layer", "le", "role"].contains(String(label)), "\(line)")
        }
    }
}

private let promtool = ["/usr/bin/promtool", "/usr/local/bin/promtool", "/bin/promtool"].first { FileManager.default.isExecutableFile(atPath: $0) }

@Test(.enabled(if: promtool != nil, "promtool is not installed: `apt-get install prometheus` (tools/setup.sh does) provides it"))
func prometheusTextPassesPromtool() throws {
    for snapshot in [sampleSnapshot(), MetricsSnapshot(stages: [:], ranges: [], layerSecondsPerWindow: [], epoch: 1, rebalances: 0)] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: promtool!)
        process.arguments = ["check", "metrics"]
        let input = Pipe()
        let output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = output
        try process.run()
        input.fileHandleForWriting.write(Data(PrometheusExposition.render(snapshot).utf8))
        try input.fileHandleForWriting.close()
        let said = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "promtool: \(said)")
        #expect(said.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "promtool: \(said)")
    }
}
