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
