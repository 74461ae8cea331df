import Foundation
import Testing
import SluiceConfig
import SluiceONNX
import SluicePlan
import SluiceProfile
import SluiceProtocol
@testable import SluiceRoles
import SluiceTensor

/// Live rebalancing across real processes. Outcomes are asserted, never timings: where the
/// controller ends up, and that every output equals the single-process result.
extension MultiProcess {
    @Suite struct RebalanceTests {
        static let mlp = packageRoot.path + "/pipelines/models/basicmotions-mlp.onnx"
        static let recordingPath = packageRoot.path + "/pipelines/data/basicmotions-test.csv"

        /// The windows the source sends, cut by the source's own feed, and the model's output for
        /// all of them in this one process.
        static func singleProcessScores(hop: Int, repeats: Int) throws -> Tensor {
            let recording = try Recording.load(RecordingSource(path: recordingPath, rate: .max, channels: nil, sampleRateHz: nil))
            let feed = RecordingFeed(recording: recording, window: WindowConfig(length: 100, hop: hop, layout: .channelsFirst),
                                     rate: .max, repeats: repeats)
            var values: [Float] = []
            var count = 0
            loop: while true {
                switch feed.next(now: 0) {
                case .windows(let windows):
                    for window in windows { values += window.values }
                    count += windows.count
                case .wait: continue
                case .end: break loop
                }
            }
            let model = try ONNXModel.load(path: mlp)
            return try #require(try model.run(inputs: ["window": Tensor(shape: [count, 6, 100], floats: values)])["scores"])
        }

        /// `cores`: the budget; by default one per stage, so no replica is added (the machine's core count does not matter).
        static func pipeline(split: String?, slowdown: String = "", repeats: Int, output: String, port: Int, cores: Int = 3) -> String {
            """
            cores: \(cores)
            model:
              path: \(mlp)
            source:
              type: recording
              path: \(recordingPath)
              repeat: \(repeats)
            window:
              length: 100
              hop: 5
            batching:
              max_size: 16
              max_delay_ms: 10
            stages:
              count: 3
            \(split.map { "  split: \($0)" } ?? "")
            \(slowdown)
            rebalance:
              policy: auto
              interval_s: 0.5
              threshold: 0.15
            transport:
              kind: tcp
              base_port: \(port)
            sink:
              type: npy
              path: \(output)
            """
        }

        static func report(_ path: String) throws -> RunReport {
            try JSONDecoder().decode(RunReport.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
        }

        /// The best split for the costs the controller measured while it could still move, and
        /// the predicted throughput of that and of the split it ended on.
        static func offlineOptimum(_ report: RunReport) throws -> (best: Partition, finalRate: Double, bestRate: Double) {
            let layerSeconds = try #require(report.plannedLayerSecondsPerWindow)
            let speeds = try #require(report.plannedStageSpeeds)
            let costs = PartitionCosts(layerCosts: layerSeconds.map { $0 ?? 0 })
            let best = try Partition.optimal(costs: costs, stages: 3, speeds: speeds)
            let final = report.split.map(\.layers)
            let finalTime = Partition.stageTimes(of: final, costs: costs, speeds: speeds).max()!
            return (best, 1 / finalTime, 1 / best.bottleneck)
        }

        @Test func aBadSplitIsFixedLiveWithoutLosingOrChangingAnOutput() throws {
            let output = temporaryPath("scores.npy")
            let reportPath = temporaryPath("report.json")
            let file = try writePipeline(Self.pipeline(split: "[\"0-3\", \"4\", \"5\"]", repeats: 10, output: output, port: 6400))
            let result = try sluice("run", file, "--report", reportPath, timeout: 300)
            #expect(result.status == 0, "\(result.stderr)")
            let report = try Self.report(reportPath)
            // The heavy layers (1: 600x1024, 2: 1024x1024, 3: 1024x512) end on separate stages:
            // the offline optimum for these uneven layers, whatever the noise.
            #expect(LayerSpan.describe(report.initialSplit) == "0-3,4,5")
            #expect(LayerSpan.describe(report.split) == "0-1,2,3-5", "\(result.stderr)")
            let moves = report.rebalances.filter(\.applied)
            #expect(!moves.isEmpty && moves.count <= 3, "oscillating? \(moves.map { "\($0.oldPlan)->\($0.newPlan)" })")
            let optimum = try Self.offlineOptimum(report)
            #expect(optimum.finalRate * 1.15 >= optimum.bestRate, "ended at \(report.split), optimum \(optimum.best)")
            #expect(report.windowsOut == report.windowsIn && report.duplicatesDropped == 0 && report.rejected == 0)

            let produced = try NPY.read(path: output)
            let expected = try Self.singleProcessScores(hop: 5, repeats: 10)
            #expect(produced.shape == expected.shape)
            #expect(allClose(produced.floats, expected.floats, rtol: 1e-5, atol: 1e-7))
        }

        @Test func aSlowedStageShedsLayersToTheOthers() throws {
            let output = temporaryPath("scores.npy")
            let reportPath = temporaryPath("report.json")
            // Stage 1 sleeps three times its compute after every batch, as if the machine were busy.
            let file = try writePipeline(Self.pipeline(split: "[\"0-1\", \"2\", \"3-5\"]", slowdown: "  slowdown: {1: 3.0}",
                                                       repeats: 20, output: output, port: 6500))
            let result = try sluice("run", file, "--report", reportPath, timeout: 300)
            #expect(result.status == 0, "\(result.stderr)")
            let report = try Self.report(reportPath)
            #expect(report.stageSpeeds.count == 3 && report.stageSpeeds[1] < 0.5, "stage 1 speed \(report.stageSpeeds)")
            let final = report.split.map(\.layers)
            let flops = try PipelinePlan.make(config: PipelineConfig.load(path: file)).cut.layers.map(\.flopsPerWindow)
            let stage1Flops = final[1].reduce(0) { $0 + flops[$1] }
            #expect(stage1Flops < flops[2], "stage 1 still holds \(report.split): \(result.stderr)")
            let optimum = try Self.offlineOptimum(report)
            #expect(optimum.finalRate * 1.15 >= optimum.bestRate, "ended at \(report.split), optimum \(optimum.best): \(result.stderr)")

            let produced = try NPY.read(path: output)
            let expected = try Self.singleProcessScores(hop: 5, repeats: 20)
            #expect(allClose(produced.floats, expected.floats, rtol: 1e-5, atol: 1e-7))
        }
    }
}

extension MultiProcess {
    @Suite struct ReplicaTests {
        @Test func spareCoresBecomeReplicasWhileTheStreamFlows() throws {
            let output = temporaryPath("scores.npy")
            let reportPath = temporaryPath("report.json")
            // Stage 1 holds the heaviest layer and runs at a quarter speed; a fourth core is spare.
            let file = try writePipeline(RebalanceTests.pipeline(split: "[\"0-1\", \"2\", \"3-5\"]", slowdown: "  slowdown: {1: 3.0}",
                                                                 repeats: 20, output: output, port: 7100, cores: 4))
            let result = try sluice("run", file, "--report", reportPath, timeout: 300)
            #expect(result.status == 0, "\(result.stderr)")
            let report = try RebalanceTests.report(reportPath)
            #expect(report.initialReplicas == [1, 1, 1])
            // One replica was started, joined and computed batches: four processes on four cores.
            #expect((report.replicas ?? []).reduce(0, +) == 4, "\(report.replicas): \(result.stderr)")
            let grown = report.rebalances.filter { $0.applied && $0.newReplicas != nil }
            #expect(grown.count == 1, "\(report.rebalances.map(\.newPlan))")
            let added = report.batchesByProcess.filter { $0.key.hasSuffix(".1") }
            #expect(added.count == 1 && added.values.allSatisfy { $0 > 0 }, "\(report.batchesByProcess)")
            #expect(result.stderr.contains("joined stage"), "\(result.stderr)")
            // Nothing lost, duplicated or changed while the process joined and layers moved.
            #expect(report.windowsOut == report.windowsIn && report.duplicatesDropped == 0 && report.rejected == 0)
            let produced = try NPY.read(path: output)
            let expected = try RebalanceTests.singleProcessScores(hop: 5, repeats: 20)
            #expect(produced.shape == expected.shape)
            #expect(allClose(produced.floats, expected.floats, rtol: 1e-5, atol: 1e-7))
        }

        @Test func aReplicatedStageSharesItsBatchesAndEveryOutputStaysInOrder() throws {
            let output = temporaryPath("scores.npy")
            let reportPath = temporaryPath("report.json")
            let file = try writePipeline(RebalanceTests.pipeline(split: "[\"0-1\", \"2\", \"3-5\"]",
                                                                 slowdown: "  replicas: {1: 2}", repeats: 4, output: output, port: 6900)
                .replacingOccurrences(of: "policy: auto", with: "policy: off"))
            let result = try sluice("run", file, "--report", reportPath, timeout: 300)
            #expect(result.status == 0, "\(result.stderr)")
            let report = try RebalanceTests.report(reportPath)
            // Both processes of stage 1 took batches: PUSH spreads them over its peers. (Batches go
            // only to connected peers: the run is long enough for the second one's connection to
            // come up under a loaded machine, where two recordings' worth was once too short.)
            #expect((report.batchesByProcess["stage-1"] ?? 0) > 0 && (report.batchesByProcess["stage-1.1"] ?? 0) > 0,
                    "\(report.batchesByProcess)")
            #expect(report.stages[1].batches == (report.batchesByProcess["stage-1"] ?? 0) + (report.batchesByProcess["stage-1.1"] ?? 0))
            #expect(report.windowsOut == report.windowsIn && report.duplicatesDropped == 0)
            // Batches overtake each other between the replicas; the sink puts them back in order.
            let produced = try NPY.read(path: output)
            let expected = try RebalanceTests.singleProcessScores(hop: 5, repeats: 4)
            #expect(produced.shape == expected.shape)
            #expect(allClose(produced.floats, expected.floats, rtol: 1e-5, atol: 1e-7))
        }
    }
}
