import Foundation
import SluiceTestSupport
import Testing
@testable import SluiceConfig

/// Pipeline files are input from outside: whatever they hold, loading ends in a config or in
/// issues that each name the file and a line, never in a trap or an unbounded allocation.
@Suite struct HostileConfigTests {
    static let base = """
    name: demo
    model:
      path: m.onnx
    source:
      type: zmq
      endpoint: tcp://127.0.0.1:5555
      channels: 6
      max_sensors: 100
      sensor_idle_s: 30
    window:
      length: 100
      hop: 50
      layout: channels_first
    batching:
      max_size: 16
      max_delay_ms: 5
    stages:
      count: 3
      split: ["0-2", "3", "4-9"]
      replicas: {1: 2}
    transport:
      kind: tcp
      base_port: 7000
    sink:
      type: jsonl
    controller:
      heartbeat_ms: 100
    rebalance:
      policy: auto
    """

    static func issues(_ yaml: String) -> [ConfigIssue]? {
        do {
            _ = try PipelineConfig.parse(yaml: yaml, file: "p.yaml", checkFiles: false)
            return nil
        } catch let error as ConfigError {
            return error.issues
        } catch {
            Issue.record("not a ConfigError: \(error)")
            return []
        }
    }

    @Test func baseIsValidAndReadsTheSensorLimits() throws {
        let config = try PipelineConfig.parse(yaml: Self.base, file: "p.yaml", checkFiles: false)
        guard case .zmq(let source) = config.source else { Issue.record("not a zmq source"); return }
        #expect(source.maxSensors == 100 && source.sensorIdleSeconds == 30)
        #expect(config.keyLines?["stages.split"] == 19)
        let defaults = try PipelineConfig.parse(yaml: Self.base.replacingOccurrences(of: "  max_sensors: 100\n  sensor_idle_s: 30\n", with: ""),
                                                file: "p.yaml", checkFiles: false)
        guard case .zmq(let plain) = defaults.source else { return }
        #expect(plain.maxSensors == ZMQSource.defaultMaxSensors && plain.sensorIdleSeconds == ZMQSource.defaultSensorIdleSeconds)
    }

    /// Each of these once came back without a line, or trapped, or allocated without bound.
    @Test(arguments: [
        ("name: a\nname: b\n", "name", "is given more than once"),
        ("", "", "the file is empty"),
        ("# nothing\n", "", "the file is empty"),
        ("name: \"a\u{01}b\"\n", "", "control characters are not allowed"),
        ("name: a\u{01}\n", "", "control characters are not allowed"),
        ("a: b\n---\nc: d\n", "", "invalid YAML"),
    ])
    func malformedFilesNameTheirLine(yaml: String, key: String, message: String) throws {
        let found = try #require(Self.issues(yaml))
        #expect(!found.isEmpty)
        for issue in found {
            #expect(issue.line != nil, "\(issue)")
            #expect(!issue.description.unicodeScalars.contains { $0.value < 0x20 }, "\(issue.description)")
        }
        #expect(found.contains { $0.key == key && $0.message.contains(message) }, "\(found)")
    }

    @Test func aDuplicateKeyIsReportedAtItsSecondLine() throws {
        let found = try #require(Self.issues(Self.base.replacingOccurrences(of: "  hop: 50\n", with: "  hop: 50\n  length: 20\n")))
        #expect(found.map(\.description) == ["p.yaml:13: length: is given more than once in one mapping"], "\(found)")
    }

    @Test func hugeSizesAreRefusedBeforeAnythingIsComputedFromThem() throws {
        let cases: [(String, String, String)] = [
            ("[\"0-2\", \"3\", \"4-9\"]", "[\"0-2\", \"3\", \"4-9223372036854775807\"]", "stages.split[2]"),
            ("count: 3", "count: 100000000000", "stages.count"),
            ("length: 100", "length: 1099511627776", "window.length"),
            ("channels: 6", "channels: 4611686018427387904", "source.channels"),
            ("max_size: 16", "max_size: 9223372036854775807", "batching.max_size"),
            ("max_delay_ms: 5", "max_delay_ms: 1e300", "batching.max_delay_ms"),
            ("heartbeat_ms: 100", "heartbeat_ms: 1e300", "controller.heartbeat_ms"),
            ("max_sensors: 100", "max_sensors: 9223372036854775807", "source.max_sensors"),
            // Slept as microseconds in a UInt32: more than an hour trapped the sink.
            ("type: jsonl", "type: jsonl\n  delay_ms: 5000000", "sink.delay_ms"),
        ]
        for (from, to, key) in cases {
            let found = try #require(Self.issues(Self.base.replacingOccurrences(of: from, with: to)), "\(to) was accepted")
            #expect(found.contains { $0.key == key && $0.line != nil }, "\(to): \(found)")
        }
    }

    @Test func valuesQuotedInMessagesCannotWriteControlCharacters() throws {
        let found = try #require(Self.issues(Self.base.replacingOccurrences(of: "policy: auto", with: "policy: \"\\e[31mred\\nfake: line\"")))
        let text = found.map(\.description).joined(separator: "\n")
        #expect(text.contains("rebalance.policy") && !text.contains("\u{1B}") && !text.contains("red\nfake"), "\(text)")
    }

    /// A short, fixed-seed run of tools/fuzz_configs.py's mutations: every rejection names a
    /// line. The long run (10,000+ files through the built binary) is in docs/testing.md.
    @Test func mutatedConfigsAlwaysGetALocatedMessage() {
        var random = ConfigMutator(seed: 0x5EED_C0DE)
        var rejected = 0
        for _ in 0..<400 {
            let yaml = random.mutate(Self.base)
            guard let found = Self.issues(yaml) else { continue }
            rejected += 1
            for issue in found where issue.line == nil {
                Issue.record("no line for \(issue) in:\n\(yaml)")
            }
        }
        #expect(rejected > 100)
    }
}

/// Line-level and byte-level mutations of a pipeline file, as the long fuzzer makes them.
struct ConfigMutator {
    private var random: SplitMix
    init(seed: UInt64) { random = SplitMix(seed: seed) }

    mutating func next() -> UInt64 { random.next() }

    mutating func pick<T>(_ items: [T]) -> T { items[Int(next() % UInt64(items.count))] }

    static let values = ["0", "-1", "1e308", "-1e308", ".nan", ".inf", "9223372036854775807", "9223372036854775808",
                         "-9223372036854775808", "1099511627776", "\"\"", "[]", "{}", "~", "auto", "\"0-9223372036854775807\"",
                         "[\"0-1\", \"2-1\"]", "[\"9223372036854775806-9223372036854775807\"]", "&a x", "*a", "!!binary AAAA",
                         "\"\\u0000\"", "\"\\e[2J\"", "0x7fffffffffffffff", "1_000", "yes", "\"a\\nb\""]

    mutating func mutate(_ text: String) -> String {
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        for _ in 0...(next() % 3) {
            if lines.isEmpty { lines = [""] }
            let index = Int(next() % UInt64(lines.count))
            switch next() % 9 {
            case 0: lines.remove(at: index)
            case 1: lines.insert(lines[index], at: index)  // a duplicate key
            case 2:
                if let colon = lines[index].firstIndex(of: ":") {
                    lines[index] = String(lines[index][...colon]) + " " + pick(Self.values)
                }
            case 3: lines[index] = "  " + lines[index]
            case 4: lines[index] = String(lines[index].dropFirst(min(2, lines[index].count)))
            case 5:
                var scalars = Array(lines[index].unicodeScalars)
                if !scalars.isEmpty {
                    scalars[Int(next() % UInt64(scalars.count))] = Unicode.Scalar(UInt8(next() % 128))
                }
                lines[index] = String(String.UnicodeScalarView(scalars))
            case 6: lines.swapAt(index, Int(next() % UInt64(lines.count)))
            case 7: lines = Array(lines.prefix(index))
            default: lines[index] += pick([":", " #", " [", " {", "\"", "'", "\t", " - x", ": y"])
            }
        }
        return lines.joined(separator: "\n")
    }
}

/// A zmq sink's keys: over tcp with CURVE it must say who may read; its keys never mix with a
/// file sink's.
@Suite struct NetworkSinkConfigTests {
    static func withSink(_ sink: String, curve: String = "on") -> String {
        HostileConfigTests.base
            .replacingOccurrences(of: "sink:\n  type: jsonl\n", with: "sink:\n\(sink)\n")
            .replacingOccurrences(of: "  base_port: 7000\n", with: "  base_port: 7000\n  curve: \(curve)\n")
    }

    @Test func aSecuredSinkOnTcpNamesItsKeyAndConsumers() throws {
        let sink = "  type: zmq\n  endpoint: tcp://0.0.0.0:5800\n  pattern: pub\n  key: k/out.key\n  consumers: [k/a.pub, k/b.pub]"
        let config = try PipelineConfig.parse(yaml: Self.withSink(sink), file: "/p/p.yaml", checkFiles: false)
        #expect(config.sink.network == SinkNetworkConfig(endpoint: "tcp://0.0.0.0:5800", pattern: .pub, keyFile: "/p/k/out.key",
                                                         consumerKeyFiles: ["/p/k/a.pub", "/p/k/b.pub"]))
        let open = try PipelineConfig.parse(yaml: Self.withSink("  type: zmq\n  endpoint: tcp://0.0.0.0:5800", curve: "off"),
                                            file: "/p/p.yaml", checkFiles: false)
        #expect(open.sink.network == SinkNetworkConfig(endpoint: "tcp://0.0.0.0:5800"))
    }

    @Test(arguments: [
        ("  type: zmq\n  endpoint: tcp://0.0.0.0:5800", "sink: a zmq sink on tcp is secured with CURVE: give sink.key"),
        ("  type: zmq\n  endpoint: udp://0.0.0.0:5800\n  key: a\n  consumers: [b]", "sink.endpoint: must be tcp://HOST:PORT or ipc://PATH"),
        ("  type: zmq", "sink.endpoint"),
        ("  type: zmq\n  endpoint: ipc:///tmp/x\n  path: out.jsonl", "sink.path: is for jsonl and npy sinks"),
        ("  type: jsonl\n  endpoint: tcp://0.0.0.0:5800", "sink.endpoint: is for a zmq sink"),
        ("  type: zmq\n  endpoint: ipc:///tmp/x\n  pattern: pair", "sink.pattern: must be one of: push, pub"),
    ])
    func badSinksNameTheirKey(sink: String, expected: String) throws {
        let issues = try #require(HostileConfigTests.issues(Self.withSink(sink)))
        #expect(issues.contains { "\($0)".contains(expected) }, "\(issues)")
    }
}

/// A live source's sensor socket under CURVE names its key pair and the senders let in, together.
@Test func sensorKeysGoTogether() throws {
    let base = HostileConfigTests.base
    let both = base.replacingOccurrences(of: "  sensor_idle_s: 30\n", with: "  sensor_idle_s: 30\n  key: k/sensors.key\n  senders: [k/a.pub]\n")
    let config = try PipelineConfig.parse(yaml: both, file: "/p/p.yaml", checkFiles: false)
    guard case .zmq(let source) = config.source else { Issue.record("not a zmq source"); return }
    #expect(source.keyFile == "/p/k/sensors.key" && source.senderKeyFiles == ["/p/k/a.pub"])
    let alone = base.replacingOccurrences(of: "  sensor_idle_s: 30\n", with: "  sensor_idle_s: 30\n  key: k/sensors.key\n")
    let issues = try #require(HostileConfigTests.issues(alone))
    #expect(issues.contains { "\($0)".contains("source.key and source.senders go together") }, "\(issues)")
    let ipc = both.replacingOccurrences(of: "endpoint: tcp://127.0.0.1:5555", with: "endpoint: ipc:///tmp/s.ipc")
    #expect(try #require(HostileConfigTests.issues(ipc)).contains { "\($0)".contains("source.key: is for a tcp endpoint") })
}
