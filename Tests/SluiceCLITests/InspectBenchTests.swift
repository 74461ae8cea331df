import Foundation
import Testing

@Suite struct InspectTests {
    @Test(arguments: ["inspect", "bench"])
    func helpShowsAnExample(subcommand: String) throws {
        let result = try sluice(subcommand, "--help")
        #expect(result.status == 0)
        #expect(result.stdout.contains("Example:") && result.stdout.contains("sluice \(subcommand)"), "\(result.stdout)")
    }

    @Test func inspectShowsOpsLayersFlopsAndParameters() throws {
        let result = try sluice("inspect", packageRoot.appendingPathComponent("pipelines/models/basicmotions-cnn.onnx").path)
        #expect(result.status == 0, "\(result.stderr)")
        for expected in ["ops: 12 nodes, 8 op types", "Conv", "BatchNormalization", "unsupported: none",
                         "inputs:  window: float32[N, 6, 100]", "MFLOP per window", "parameters: 13.2 KiB in 16 initializers",
                         "fused kernels: 2 (Conv+BatchNormalization+Relu at nodes 1-3", "layers: 8", "cut points: before nodes 1, 4, 5, 8",
                         "metadata: 5 keys", "  channels = acc_x,acc_y,acc_z,gyr_x,gyr_y,gyr_z",
                         "sink uses: scores from 'scores' (the only output; model.output picks another)",
                         "  classes Badminton, Running, Standing, Walking (metadata 'classes'; model.classes overrides)"] {
            #expect(result.stdout.contains(expected), "missing '\(expected)' in \(result.stdout)")
        }
    }

    @Test func inspectListsUnsupportedOpsWithTheirNodesAndExitsWith3() throws {
        let result = try sluice("inspect", fixture("models/unsupported-op.onnx"))
        #expect(result.status == 3)
        #expect(result.stdout.contains("DynamicQuantizeLinear") && result.stdout.contains("(unsupported)"), "\(result.stdout)")
        #expect(result.stdout.contains("node 'weird_node' (DynamicQuantizeLinear): unsupported op DynamicQuantizeLinear (opset 17)"), "\(result.stdout)")
        #expect(result.stderr.contains("1 node(s) use ops this build cannot run"), "\(result.stderr)")
    }

    @Test func inspectNamesTheNodeOpAndReasonWhenTheModelCannotLoad() throws {
        let external = try sluice("inspect", fixture("models/external-missing.onnx"))
        #expect(external.status == 3)
        #expect(external.stderr.contains("initializer 'w', read by node 'project' (MatMul): external data file")
                && external.stderr.contains("missing-weights.bin' cannot be opened"), "\(external.stderr)")
        let shapes = try sluice("inspect", fixture("models/shape-mismatch.onnx"))
        #expect(shapes.status == 3)
        #expect(shapes.stderr.contains("node 'bad_add' (Add): shapes [1, 3] and [4] do not broadcast"), "\(shapes.stderr)")
        let missing = try sluice("inspect", "/nonexistent/model.onnx")
        #expect(missing.status == 3 && missing.stderr.contains("no such file"), "\(missing.stderr)")
    }
}

@Suite struct BenchTests {
    @Test func benchPrintsThroughputAndLatencyPerBatchSize() throws {
        let result = try sluice("bench", fixture("models/tiny-mlp.onnx"), "--batch", "1,4", "--seconds", "0.2")
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("windows/s") && result.stdout.contains("p99 ms"), "\(result.stdout)")
        let rows = result.stdout.split(separator: "\n").filter { $0.hasPrefix("1 ") || $0.hasPrefix("4 ") }
        #expect(rows.count == 2, "\(result.stdout)")
    }

    @Test func benchJSONHasOneObjectPerBatchSize() throws {
        let result = try sluice("bench", fixture("models/conv2d-small.onnx"), "--batch", "2,3", "--seconds", "0.1", "--json")
        #expect(result.status == 0, "\(result.stderr)")
        let objects = try result.stdout.split(separator: "\n").map {
            try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] ?? [:]
        }
        #expect(objects.map { $0["batch"] as? Int } == [2, 3])
        #expect(objects.allSatisfy { ($0["windows_per_second"] as? Double ?? 0) > 0 && ($0["p99_ms"] as? Double ?? 0) > 0 })
    }

    @Test func benchRejectsBadBatchSizesAndUnloadableModels() throws {
        let bad = try sluice("bench", fixture("models/tiny-mlp.onnx"), "--batch", "0,x")
        #expect(bad.status != 0 && bad.stderr.contains("--batch"), "\(bad.stderr)")
        let unsupported = try sluice("bench", fixture("models/unsupported-op.onnx"), "--seconds", "0.1")
        #expect(unsupported.status == 3 && unsupported.stderr.contains("DynamicQuantizeLinear"), "\(unsupported.stderr)")
    }
}
