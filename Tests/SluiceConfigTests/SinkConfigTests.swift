import Foundation
import Testing
import SluiceConfig

/// The sink's keys: how long predictions may wait (`max_delay_ms`) and what an npy sink may
/// write to.
@Suite struct SinkConfigTests {
    static func pipeline(sink: String) -> String {
        """
        model:
          path: m.onnx
        source:
          type: recording
          path: rec.csv
        window:
          length: 100
        stages:
          count: 2
        sink:
        \(sink)
        """
    }

    static func issues(_ yaml: String) -> [(line: Int?, key: String, message: String)] {
        do {
            _ = try PipelineConfig.parse(yaml: yaml, file: "p.yaml", checkFiles: false)
            return []
        } catch let error as ConfigError {
            return error.issues.map { ($0.line, $0.key, $0.message) }
        } catch {
            return [(nil, "?", "\(error)")]
        }
    }

    @Test func maxDelayDefaultsTo100MillisecondsAndIsRead() throws {
        let plain = try PipelineConfig.parse(yaml: Self.pipeline(sink: "  type: jsonl"), file: "p.yaml", checkFiles: false)
        #expect(plain.sink.maxDelayMilliseconds == 100)
        let set = try PipelineConfig.parse(yaml: Self.pipeline(sink: "  type: jsonl\n  max_delay_ms: 0"), file: "p.yaml", checkFiles: false)
        #expect(set.sink.maxDelayMilliseconds == 0)
    }

    @Test(arguments: ["-1", "60001", "soon", ".nan"])
    func aBadMaxDelayNamesItsLineAndKey(value: String) {
        let yaml = Self.pipeline(sink: "  type: jsonl\n  max_delay_ms: \(value)")
        let line = yaml.split(separator: "\n").firstIndex { $0.contains("max_delay_ms") }.map { $0 + 1 }
        let found = Self.issues(yaml)
        #expect(found.contains { $0.key == "sink.max_delay_ms" && $0.line == line }, "\(found)")
    }

    /// One maximum, whatever the value: a minute just over and a year over say the same.
    @Test func maxDelayHasOneMaximum() {
        let messages = ["60001", "604800001", "1e12"].map { value in
            Self.issues(Self.pipeline(sink: "  type: jsonl\n  max_delay_ms: \(value)")).filter { $0.key == "sink.max_delay_ms" }.map(\.message)
        }
        #expect(messages.allSatisfy { $0.count == 1 }, "\(messages)")
        #expect(Set(messages.flatMap { $0 }).count == 1, "\(messages)")
    }

    @Test func anNpySinkOnANamedPipeIsAnError() throws {
        let fifo = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-sink-\(UUID().uuidString).npy").path
        try #require(mkfifo(fifo, 0o600) == 0)
        defer { unlink(fifo) }
        let found = Self.issues(Self.pipeline(sink: "  type: npy\n  path: \(fifo)"))
        #expect(found.contains { $0.key == "sink.path" && $0.message.contains("regular file") }, "\(found)")
    }
}
