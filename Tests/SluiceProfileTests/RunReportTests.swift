import Foundation
import SluiceConfig
import SluicePlan
import SluiceProtocol
import Testing
@testable import SluiceProfile

private let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures/reports")

private func olderReport() throws -> Data {
    try Data(contentsOf: fixtures.appendingPathComponent("run-report-before-profile-view.json"))
}

@Test func aReportInTheOlderFormatReadsBackAndPrintsAsItDid() throws {
    let report = try RunReport.read(olderReport())
    let printed = try String(contentsOf: fixtures.appendingPathComponent("run-report-before-profile-view.txt"), encoding: .utf8)
    // Printed as it was then, but for the one word that changed: a window is no longer called a sample.
    #expect(report.text + "\n" == printed.replacingOccurrences(of: "samples/s", with: "windows/s"))
    #expect(report.stages.map(\.index) == [0, 1, 2])
    #expect(report.stages.map(\.layerRange) == [0..<2, 2..<3, 3..<6])
    #expect(report.stages[1].residentBytes == 41_664_512)
    #expect(report.plannedLayerSecondsPerWindow?.count == 6)
}

@Test func anOlderReportsProcessCountsComeFromItsReplicas() throws {
    var object = try #require(try JSONSerialization.jsonObject(with: olderReport()) as? [String: Any])
    object["replicas"] = [1, 2, 1]
    let report = try RunReport.read(JSONSerialization.data(withJSONObject: object))
    #expect(report.stages.map(\.replicas) == [1, 2, 1])
    #expect(report.text.contains("\n  1      2            2    1240 "), "\(report.text)")
}

@Test func theReportIsTheProfileWithWhatOnlyTheEndOfARunKnows() throws {
    var observer = RunObserver(stageCount: 3, interval: 0.5)
    var stage1 = counters(busy: 0.97, blocked: 0, batches: 200)
    stage1.residentBytes = 64 << 20
    var sinkCounters = counters(busy: 0.1, blocked: 0, batches: 200, windows: 1600)
    sinkCounters.drops.add(2, .batch, .duplicate)
    for (role, roleCounters) in [("source", counters(busy: 0.1, blocked: 0.5, batches: 200)), ("stage-0", counters(busy: 0.58, blocked: 0.4)),
                                 ("stage-1", stage1), ("stage-2", counters(busy: 0.19, blocked: 0)), ("sink", sinkCounters)] {
        observer.received(.heartbeat(roleCounters), from: role)
    }
    observer.tick(now: 1, phase: .running)
    let ranges = [0..<3, 3..<8, 8..<9]
    let profile = ProfileData.make(pipeline: "demo", cut: cut(layers: 9), ranges: ranges, stageCounters: observer.stageCounters,
                                   traces: [], costs: CostInput(ranges: ranges, layerSecondsPerWindow: Array(repeating: 1e-3, count: 9),
                                                                stageSpeeds: [1, 1, 1], boundaryBytesPerWindow: Array(repeating: 0, count: 10)),
                                   rebalances: [], windowsIn: 1600, windowsOut: 1600,
                                   durationSeconds: 8, replicas: [1: 2])
    var summary = SinkSummary()
    summary.batches = 200
    summary.windows = 1600
    summary.duplicates = 2
    var controllerDrops = DropCounts()
    controllerDrops.add(1, .controlFrame, .malformed)
    let report = RunReport(profile: profile, outcome: .completed(summary), observed: observer,
                           processes: ["stage-0", "stage-1", "stage-1.1", "stage-2"], initialRanges: [0..<4, 4..<8, 8..<9],
                           initialReplicas: [1, 1, 1], lastPlanningModel: nil, startedAt: 0.25, controllerDrops: controllerDrops)
    #expect(report.stages == profile.stages)
    #expect(report.stages[1].residentBytes == 64 << 20)
    #expect(LayerSpan.describe(report.split) == "0-2,3-7,8" && LayerSpan.describe(report.initialSplit) == "0-3,4-7,8")
    #expect(report.replicas == [1, 2, 1])
    #expect(report.layerSecondsPerWindow == profile.costs.layerSecondsPerWindow)
    #expect(report.batchesByProcess == ["stage-0": 1000, "stage-1": 200, "stage-1.1": 0, "stage-2": 1000])
    #expect(report.sinkTimeline == [[1, 1600]] && report.startedAtSeconds == 0.25)
    #expect(report.dropped?["controller"] == controllerDrops && report.dropped?["sink"]?.count(.batch, .duplicate) == 2)
    #expect(report.text.contains("\n  1      3-7          2     200     9.700    48.500     97.0      3.0        0.0"), "\(report.text)")
    // What is written reads back as it was.
    let back = try JSONDecoder().decode(RunReport.self, from: report.json())
    #expect(back.json() == report.json())
    #expect(back.stages == report.stages)
}
