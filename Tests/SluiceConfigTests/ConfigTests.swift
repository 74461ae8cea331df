import Foundation
import Testing
@testable import SluiceConfig

/// Writes `yaml` into a fresh folder beside a dummy model and recording, so path checks pass.
private func parse(_ yaml: String) throws -> PipelineConfig {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-config-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    _ = FileManager.default.createFile(atPath: folder.appendingPathComponent("m.onnx").path, contents: Data())
    _ = FileManager.default.createFile(atPath: folder.appendingPathComponent("rec.csv").path, contents: Data())
    defer { try? FileManager.default.removeItem(at: folder) }
    let file = folder.appendingPathComponent("p.yaml").path
    try yaml.write(toFile: file, atomically: true, encoding: .utf8)
    return try PipelineConfig.load(path: file)
}

private func issues(_ yaml: String) -> [String] {
    do {
        _ = try parse(yaml)
        return []
    } catch let error as ConfigError {
        return error.issues.map { "\($0.line.map(String.init) ?? "-"):\($0.key): \($0.message)" }
    } catch {
        return ["unexpected \(error)"]
    }
}

private let valid = """
name: demo
model:
  path: m.onnx
  classes: [a, b]
source:
  type: recording
  path: rec.csv
  rate: 4x
window:
  length: 100
  hop: 50
batching:
  max_size: 16
  max_delay_ms: 5
stages:
  count: 3
  split: ["0-2", "3", "4-9"]
transport:
  kind: tcp
  base_port: 7000
sink:
  type: jsonl
"""

@Test func parsesEverySection() throws {
    let config = try parse(valid)
    #expect(config.name == "demo")
    #expect(config.model.path.hasSuffix("/m.onnx") && config.model.path.hasPrefix("/"))
    #expect(config.model.classes == ["a", "b"])
    guard case .recording(let source) = config.source else { Issue.record("not a recording"); return }
    #expect(source.rate == .realtime(speed: 4))
    #expect(config.window == WindowConfig(length: 100, hop: 50, layout: .channelsFirst))
    #expect(config.batching == BatchingConfig(maxSize: 16, maxDelayMilliseconds: 5))
    #expect(config.stages.split == [LayerSpan(start: 0, end: 3), LayerSpan(start: 3, end: 4), LayerSpan(start: 4, end: 10)])
    #expect(config.transport == TransportConfig(kind: .tcp, host: "127.0.0.1", basePort: 7000))
    #expect(config.sink == SinkConfig(kind: .jsonl, path: "-"))
}

@Test func reportsFileLineAndKey() throws {
    let yaml = valid.replacingOccurrences(of: "  count: 3", with: "  count: 0")
    do {
        _ = try parse(yaml)
        Issue.record("a stage count of 0 was accepted")
    } catch let error as ConfigError {
        let message = error.description
        #expect(message.contains("p.yaml:16: stages.count: must be >= 1"), "\(message)")
    }
}

@Test func reportsEveryProblemAtOnce() {
    let yaml = """
    model:
      path: missing.onnx
    source:
      type: recording
      path: rec.csv
      rate: fast
    window:
      length: -3
    stages:
      count: 2
      colour: blue
    sink:
      type: parquet
    """
    let found = issues(yaml)
    #expect(found.contains { $0.hasPrefix("2:model.path: file not found") }, "\(found)")
    #expect(found.contains("6:source.rate: must be 'max', 'real' or a speed-up such as '4x', not 'fast'"), "\(found)")
    #expect(found.contains("8:window.length: must be >= 1"), "\(found)")
    #expect(found.contains { $0.hasPrefix("11:stages.colour: unknown key") }, "\(found)")
    #expect(found.contains("13:sink.type: must be one of: jsonl, npy, zmq, not 'parquet'"), "\(found)")
}

@Test func requiresTheMainSections() {
    let found = issues("name: x\n")
    #expect(found.contains("1:model: is required"))
    #expect(found.contains("1:source: is required"))
    #expect(found.contains("1:stages: is required"))
}

@Test func rejectsSplitsThatAreNotContiguous() {
    let found = issues(valid.replacingOccurrences(of: "[\"0-2\", \"3\", \"4-9\"]", with: "[\"0-2\", \"4-9\", \"10\"]"))
    #expect(found.contains("17:stages.split[1]: must start at layer 3: stages hold contiguous layers in order"), "\(found)")
    let wrongCount = issues(valid.replacingOccurrences(of: "[\"0-2\", \"3\", \"4-9\"]", with: "[\"0-2\", \"3-9\"]"))
    #expect(wrongCount.contains("17:stages.split: has 2 ranges but stages.count is 3"), "\(wrongCount)")
}

@Test func reportsYAMLSyntaxErrorsWithTheirLine() {
    let found = issues("model:\n  path: [unclosed\nsource: x\n")
    #expect(found.count == 1)
    #expect(found.first?.contains("invalid YAML") == true, "\(found)")
    #expect(found.first?.hasPrefix("-") == false, "\(found)")
}

@Test func sensorSourcesNeedAWindow() {
    let found = issues(valid.replacingOccurrences(of: "window:\n  length: 100\n  hop: 50\n", with: ""))
    #expect(found.contains { $0.contains(":window: is required for a recording source") }, "\(found)")
}

@Test func profilingCanBeSwitchedOffAndRebalancingTuned() throws {
    let config = try parse(valid + "\ncontroller:\n  profiling: off\nrebalance:\n  policy: auto\n  interval_s: 0.5\n  threshold: 0.2\n  warmup_s: 3\n")
    #expect(config.controller.profiling == false)
    #expect(config.rebalance == RebalanceConfig(policy: .auto, intervalSeconds: 0.5, threshold: 0.2, warmupSeconds: 3))
    let found = issues(valid + "\ncontroller:\n  profiling: sometimes\nrebalance:\n  policy: often\n")
    #expect(found.contains("24:controller.profiling: must be on or off, not 'sometimes'"), "\(found)")
    #expect(found.contains("26:rebalance.policy: must be one of: off, recommend, auto, not 'often'"), "\(found)")
}

@Test func aCoreBudgetLetsThePlannerChooseStagesReplicasAndThreads() throws {
    let planned = try parse(valid.replacingOccurrences(of: "  count: 3\n  split: [\"0-2\", \"3\", \"4-9\"]\n", with: "  count: auto\n") + "\ncores: 12\n")
    #expect(planned.cores == 12 && planned.coreBudget == 12)
    #expect(planned.stages.count == nil && planned.stages.plansShapes)
    let fixedCount = try parse(valid.replacingOccurrences(of: "  split: [\"0-2\", \"3\", \"4-9\"]\n", with: "  replicas: auto\n  threads: {1: 2}\n"))
    #expect(fixedCount.stages.count == 3 && fixedCount.stages.autoReplicas && fixedCount.stages.threads == [1: 2])
    #expect(fixedCount.cores == nil && fixedCount.coreBudget == ProcessInfo.processInfo.activeProcessorCount)
    let explicit = try parse(valid.replacingOccurrences(of: "  split: [\"0-2\", \"3\", \"4-9\"]\n", with: "  replicas: {1: 2}\n"))
    #expect(!explicit.stages.plansShapes && explicit.stages.replicas == [1: 2])

    let found = issues(valid.replacingOccurrences(of: "  count: 3\n", with: "  count: auto\n") + "\ncores: 0\n")
    #expect(found.contains("17:stages.split: needs stages.count: with count auto the planner cuts the layers"), "\(found)")
    #expect(found.contains("23:cores: must be >= 1"), "\(found)")
    let perStage = issues(valid.replacingOccurrences(of: "  count: 3\n  split: [\"0-2\", \"3\", \"4-9\"]\n", with: "  threads: {0: 2}\n"))
    #expect(perStage.contains { $0.hasPrefix("16:stages.threads: is per stage index, so it needs stages.count") }, "\(perStage)")
}

@Test func aLayerSpanIsWrittenAndReadAsPeopleSeeIt() throws {
    #expect(LayerSpan(3..<6).description == "3-5")
    #expect(LayerSpan(4..<5).description == "4")
    for text in ["3-5", "4", "0-0", " 2 - 7 "] {
        let span = try #require(LayerSpan(parsing: text))
        #expect(LayerSpan(parsing: span.description) == span)
    }
    #expect(LayerSpan(parsing: "3-5")?.layers == 3..<6)
    for bad in ["", "-", "5-3", "-1", "1-", "a-b", "1-2-3", "9223372036854775807"] {
        #expect(LayerSpan(parsing: bad) == nil, "'\(bad)'")
    }
    #expect(LayerSpan.split(parsing: "0-2,3,4-9")?.map(\.layers) == [0..<3, 3..<4, 4..<10])
    #expect(LayerSpan.split(parsing: "0-2,4-9") == nil)  // a gap
    #expect(LayerSpan.split(parsing: "1-2,3") == nil)    // not from layer 0
    #expect(LayerSpan.describe([0..<3, 3..<4, 4..<10]) == "0-2,3,4-9")
    let json = try JSONEncoder().encode([LayerSpan(0..<3)])
    #expect(String(decoding: json, as: UTF8.self) == #"["0-2"]"#)
    #expect(try JSONDecoder().decode([LayerSpan].self, from: json) == [LayerSpan(0..<3)])
    #expect(throws: DecodingError.self) { try JSONDecoder().decode([LayerSpan].self, from: Data(#"["3-1"]"#.utf8)) }
}

@Test func theReplayBufferIsSizedInMiBAndMustBePositive() throws {
    let yaml = """
    model:
      path: m.onnx
    source:
      type: recording
      path: rec.csv
      replay_mib: 2.5
    window:
      length: 4
      hop: 2
    stages:
      count: 2
    sink:
      type: jsonl
      path: "-"
    """
    #expect(try parse(yaml).replayMiB == 2.5)
    #expect(try parse(yaml.replacingOccurrences(of: "  replay_mib: 2.5\n", with: "")).replayMiB == 64)
    #expect(issues(yaml.replacingOccurrences(of: "2.5", with: "0")) == ["6:source.replay_mib: must be > 0.0"])
    #expect(issues(yaml.replacingOccurrences(of: "2.5", with: "lots")) == ["6:source.replay_mib: must be a number, not 'lots'"])
}

@Test func linksAreNarrowedAsStagesCompressSays() throws {
    let split = "  split: [\"0-2\", \"3\", \"4-9\"]\n"
    let every = try parse(valid.replacingOccurrences(of: split, with: split + "  compress: fp16\n"))
    #expect((0..<3).map { every.stages.compression(ofStage: $0) } == [.fp16, .fp16, .fp16])
    let perStage = try parse(valid.replacingOccurrences(of: split, with: split + "  compress: {0: int8, 2: auto}\n") + "\nrebalance:\n  policy: auto\n")
    #expect((0..<3).map { perStage.stages.compression(ofStage: $0) } == [.int8, .none, .auto])
    #expect(CompressionSetting.auto.initial == .none && CompressionSetting.int8.initial == .int8)
    #expect(try parse(valid).stages.compression(ofStage: 1) == .none)

    let unknown = issues(valid.replacingOccurrences(of: split, with: split + "  compress: zip\n"))
    #expect(unknown.contains("18:stages.compress: must be one of: none, fp16, int8, auto, not 'zip'"), "\(unknown)")
    let badStage = issues(valid.replacingOccurrences(of: split, with: split + "  compress: {1: bf16, 7: fp16}\n"))
    #expect(badStage.contains { $0.hasPrefix("18:stages.compress.1: must be one of: none, fp16, int8, auto") }, "\(badStage)")
    #expect(badStage.contains { $0.hasPrefix("18:stages.compress") && $0.contains("7") }, "\(badStage)")
    // Auto is the controller's choice, which it makes only when it rebalances (recommend by default).
    #expect(try parse(valid.replacingOccurrences(of: split, with: split + "  compress: auto\n")).stages.compress == .auto)
    let autoAlone = issues(valid.replacingOccurrences(of: split, with: split + "  compress: auto\n") + "\nrebalance:\n  policy: off\n")
    #expect(autoAlone.contains { $0.hasPrefix("18:stages.compress: auto lets the controller narrow a link") }, "\(autoAlone)")
    let autoCount = issues(valid.replacingOccurrences(of: "  count: 3\n" + split, with: "  count: auto\n  compress: {0: fp16}\n"))
    #expect(autoCount.contains { $0.hasPrefix("17:stages.compress: per stage index needs stages.count") }, "\(autoCount)")
}
