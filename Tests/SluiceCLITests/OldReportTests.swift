import Foundation
import Testing

/// A report written before the run report was a view of the profile still gives its
/// measurements to `sluice plan`.
@Test func planPredictsFromAReportInTheOlderFormat() throws {
    let report = fixture("reports/run-report-before-profile-view.json")
    let result = try sluice("plan", pipelineFile("rebalance-demo.yaml"), "--measurements", report, "--what-if", "0-2,3,4-5")
    #expect(result.status == 0, "\(result.stderr)")
    let predictions = result.stdout.components(separatedBy: "\n").drop { !$0.hasPrefix("predictions") }
    #expect(Array(predictions.prefix(4)) == [
        "predictions (measured costs, stage speeds 1.00/1.00/1.00):",
        "current    0-3,4,5          9522 windows/s (bottleneck stage 0)",
        "what-if    0-2,3,4-5        12043 windows/s (bottleneck stage 0)",
        "optimal    0-1,2,3-5        20419 windows/s (bottleneck stage 1)",
    ], "\(result.stdout)")
}

/// A report whose stage 0 link was measured slow: `sluice plan` predicts from that link, and
/// a what-if may narrow it.
@Test func planPredictsFromMeasuredLinksAndNarrowing() throws {
    let data = try Data(contentsOf: URL(fileURLWithPath: fixture("reports/run-report-before-profile-view.json")))
    guard var report = try JSONSerialization.jsonObject(with: data) as? [String: Any] else { Issue.record("not a JSON object"); return }
    report["links"] = [
        ["stage": 0, "bytesSent": 1_000_000, "measuredBytesPerSecond": 250_000, "compression": "none"],
        ["stage": 1, "bytesSent": 1_000, "compression": "none"],
        ["stage": 2, "bytesSent": 1_000, "compression": "none"],
    ]
    let path = temporaryPath("slow-link-report.json")
    try JSONSerialization.data(withJSONObject: report).write(to: URL(fileURLWithPath: path))
    let result = try sluice("plan", pipelineFile("rebalance-demo.yaml"), "--measurements", path,
                            "--what-if", "0-3 fp16,4,5", "--what-if", "0-3 int8,4,5")
    #expect(result.status == 0, "\(result.stderr)")
    let lines = result.stdout.components(separatedBy: "\n")
    #expect(lines.contains("  stage 0's output link measured at 0.25 MB/s"), "\(result.stdout)")
    func rate(_ prefix: String) -> Double? {
        lines.first { $0.hasPrefix(prefix) }.flatMap { line in
            line.dropFirst(prefix.count).split(separator: " ").first.flatMap { Double($0) }
        }
    }
    // Layer 3's output, 2 KiB a window, crosses 250 kB/s: about 122 windows/s, twice that in
    // half precision, nearly four times in int8 (stage 0's compute now shows).
    let current = rate("current    0-3,4,5          ") ?? 0
    let half = rate("what-if    0-3 fp16,4,5     ") ?? 0
    let quarter = rate("what-if    0-3 int8,4,5     ") ?? 0
    #expect(current > 110 && current < 125, "\(result.stdout)")
    #expect(half / current > 1.9 && half / current < 2.01, "\(result.stdout)")
    #expect(quarter / current > 3.5 && quarter / current < 4.01, "\(result.stdout)")

    let unknown = try sluice("plan", pipelineFile("rebalance-demo.yaml"), "--measurements", path, "--what-if", "0-3 zstd,4,5")
    #expect(unknown.status != 0)
    #expect(unknown.stderr.contains("each optionally followed by fp16 or int8"), "\(unknown.stderr)")
}
