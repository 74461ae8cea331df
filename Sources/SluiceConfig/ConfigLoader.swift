import Foundation
import Yams

extension PipelineConfig {
    /// Reads and checks a pipeline file. Throws `ConfigError` listing every problem found.
    public static func load(path: String) throws -> PipelineConfig {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigError(issues: [ConfigIssue(file: path, line: nil, key: "", message: "cannot read the file")])
        }
        return try parse(yaml: String(decoding: data, as: UTF8.self), file: path)
    }

    /// Parses pipeline YAML; relative paths inside resolve against `file`'s folder.
    public static func parse(yaml: String, file: String, checkFiles: Bool = true) throws -> PipelineConfig {
        let root: Node?
        do {
            root = try Yams.compose(yaml: yaml)
        } catch let error as YamlError {
            throw ConfigError(issues: [syntaxIssue(error, file: file, yaml: yaml)])
        }
        let fields = YAMLFields(file: file)
        let baseDirectory = URL(fileURLWithPath: file).deletingLastPathComponent()
        let reader = ConfigReader(fields: fields, baseDirectory: baseDirectory, checkFiles: checkFiles)
        let config = reader.read(root)
        if let config, fields.issues.isEmpty { return config }
        throw ConfigError(issues: fields.issues.isEmpty
            ? [ConfigIssue(file: file, line: 1, key: "", message: "the file is empty (a pipeline needs model, source and stages)")]
            : fields.issues)
    }

    /// Every YAML error as one line located in the file; the parser's multi-line context (which
    /// quotes the file, control characters and all) is left out.
    private static func syntaxIssue(_ error: YamlError, file: String, yaml: String) -> ConfigIssue {
        switch error {
        case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _),
             .composer(let context, let problem, let mark, _):
            let during = context.map { "\($0.text) (line \($0.mark.line)): " } ?? ""
            return ConfigIssue(file: file, line: max(1, mark.line), key: "", message: "invalid YAML: \(during)\(problem)")
        case .reader(let problem, let offset, let value, let yaml):
            // libyaml counts the offset in characters of the decoded text.
            let prefix = offset.map { yaml.unicodeScalars.prefix(max(0, $0)) }
            let line = (prefix?.filter { $0 == "\n" }.count ?? 0) + 1
            return ConfigIssue(file: file, line: line, key: "",
                               message: "invalid YAML: \(problem) (character code \(value)); write it escaped inside double quotes, as \"\\x01\"")
        case .duplicatedKeysInMapping(let duplicates, let context):
            // The parser marks the mapping; the line of the key's second appearance in it is more use.
            let start = max(1, context.mark.line)
            var seen = 0
            var line = start
            for (index, text) in yaml.split(separator: "\n", omittingEmptySubsequences: false).enumerated().dropFirst(start - 1) {
                let trimmed = text.drop { $0 == " " || $0 == "-" }
                if let first = duplicates.first, trimmed.hasPrefix(first + ":") || trimmed.hasPrefix("\"\(first)\":") {
                    seen += 1
                    if seen == 2 { line = index + 1; break }
                }
            }
            return ConfigIssue(file: file, line: line, key: duplicates.joined(separator: ", "),
                               message: "is given more than once in one mapping")
        case .dataCouldNotBeDecoded(let encoding):
            return ConfigIssue(file: file, line: 1, key: "", message: "invalid YAML: the text is not \(encoding)")
        default:
            return ConfigIssue(file: file, line: 1, key: "", message: "invalid YAML: \(error)")
        }
    }
}

/// Turns the YAML tree into a `PipelineConfig`, one section at a time.
private struct ConfigReader {
    let fields: YAMLFields
    let baseDirectory: URL
    let checkFiles: Bool

    func read(_ root: Node?) -> PipelineConfig? {
        guard let root else { return nil }
        let top = fields.mapping(root, at: "", allowed: [
            "name", "model", "source", "window", "batching", "stages", "transport", "sink", "controller", "rebalance", "cores",
        ])
        if top.isEmpty && root.mapping == nil { return nil }
        for required in ["model", "source", "stages"] where top[required] == nil {
            fields.report(root, required, "is required")
        }
        let name = fields.string(top, "name", at: "", parent: root)
            ?? URL(fileURLWithPath: fields.file).deletingPathExtension().lastPathComponent
        let model = readModel(top["model"])
        let source = readSource(top["source"])
        // Read beside the source's kind: it applies to the windows of every kind of source.
        let sourceEntries = top["source"]?.mapping.map { mapping in
            Dictionary(mapping.map { ($0.key.string ?? "", $0.value) }, uniquingKeysWith: { first, _ in first })
        } ?? [:]
        let nanPolicy = fields.choice(sourceEntries, "nan_policy", at: "source", default: NaNPolicy.reject)
        let replayMiB = fields.double(sourceEntries, "replay_mib", at: "source", parent: top["source"], minimum: 0,
                                      exclusiveMinimum: true, maximum: PipelineConfig.maximumReplayMiB)
        let window = readWindow(top["window"])
        if let source, source.needsWindow, top["window"] == nil, top["source"] != nil {
            fields.report(root, "window", "is required for a \(source.kind) source (length and hop of the sliding window)")
        }
        let batching = readBatching(top["batching"])
        let stages = readStages(top["stages"])
        let transport = readTransport(top["transport"])
        let sink = readSink(top["sink"], curve: transport?.curve ?? true)
        let controller = readController(top["controller"])
        let rebalance = readRebalance(top["rebalance"])
        let cores = fields.int(top, "cores", at: "", parent: root, minimum: 1, maximum: Limits.cores)
        if let stages, rebalance.policy == .off, stages.compress == .auto || stages.compressPerStage.values.contains(.auto) {
            fields.report(key: "stages.compress", "auto lets the controller narrow a link it measured slow, which needs rebalance.policy: auto or recommend")
        }
        guard let model, let source, let stages, let transport, let sink, let controller, let batching else { return nil }
        var config = PipelineConfig(file: fields.file, name: name, model: model, source: source, window: window,
                                    batching: batching, stages: stages, transport: transport, sink: sink,
                                    controller: controller, rebalance: rebalance, cores: cores)
        config.keyLines = fields.lines
        config.nanPolicy = nanPolicy
        if let replayMiB { config.replayMiB = replayMiB }
        return config
    }

    func resolve(_ path: String) -> String {
        path.hasPrefix("/") ? path : baseDirectory.appendingPathComponent(path).standardizedFileURL.path
    }

    func existingFile(_ entries: [String: Node], _ key: String, at path: String, parent: Node?) -> String? {
        guard let raw = fields.string(entries, key, at: path, parent: parent, required: true) else { return nil }
        let resolved = resolve(raw)
        if checkFiles && !FileManager.default.fileExists(atPath: resolved) {
            fields.report(entries[key], fields.join(path, key), "file not found: \(resolved)")
            return nil
        }
        return resolved
    }

    func readModel(_ node: Node?) -> ModelConfig? {
        guard let node else { return nil }
        let entries = fields.mapping(node, at: "model", allowed: ["path", "classes", "input", "output"])
        let path = existingFile(entries, "path", at: "model", parent: node)
        let classes = fields.stringList(entries, "classes", at: "model")
        let input = fields.string(entries, "input", at: "model", parent: node)
        let output = fields.string(entries, "output", at: "model", parent: node)
        guard let path else { return nil }
        return ModelConfig(path: path, classes: classes, input: input, output: output)
    }

    func readRate(_ entries: [String: Node], at path: String) -> ReplayRate {
        guard let node = entries["rate"] else { return .max }
        let text = node.scalar?.string ?? ""
        switch text {
        case "max": return .max
        case "real": return .realtime(speed: 1)
        default:
            if text.hasSuffix("x"), let speed = Double(text.dropLast()), speed > 0, speed <= Limits.rate {
                return .realtime(speed: speed)
            }
            fields.report(node, "\(path).rate", "must be 'max', 'real' or a speed-up such as '4x', not '\(text)'")
            return .max
        }
    }

    func readSource(_ node: Node?) -> SourceConfig? {
        guard let node else { return nil }
        let kinds = ["recording", "zmq", "tensors"]
        let entries = fields.mapping(node, at: "source", allowed: [
            "type", "path", "rate", "channels", "sample_rate_hz", "endpoint", "idle_timeout_s", "rows_per_second", "repeat",
            "max_sensors", "sensor_idle_s", "nan_policy", "replay_mib", "key", "senders",
        ])
        let repeats = fields.int(entries, "repeat", at: "source", parent: node, minimum: 1, maximum: Limits.repeats) ?? 1
        guard let type = fields.string(entries, "type", at: "source", parent: node, required: true) else { return nil }
        switch type {
        case "recording":
            let path = existingFile(entries, "path", at: "source", parent: node)
            let rate = readRate(entries, at: "source")
            let channels = fields.stringList(entries, "channels", at: "source")
            let sampleRate = fields.double(entries, "sample_rate_hz", at: "source", parent: node, minimum: 0, exclusiveMinimum: true, maximum: Limits.rate)
            if let path, path.hasSuffix(".npy"), sampleRate == nil, entries["sample_rate_hz"] == nil {
                fields.report(node, "source.sample_rate_hz", "is required for an .npy recording (it has no timestamps)")
            }
            guard let path else { return nil }
            return .recording(RecordingSource(path: path, rate: rate, channels: channels, sampleRateHz: sampleRate, repeats: repeats))
        case "zmq":
            let endpoint = fields.string(entries, "endpoint", at: "source", parent: node, required: true)
            let channels = fields.int(entries, "channels", at: "source", parent: node, required: true, minimum: 1, maximum: Limits.channels)
            let idle = fields.double(entries, "idle_timeout_s", at: "source", parent: node, minimum: 0, maximum: Limits.seconds) ?? 0
            if let endpoint, !(endpoint.hasPrefix("tcp://") || endpoint.hasPrefix("ipc://")) {
                fields.report(entries["endpoint"], "source.endpoint", "must start with tcp:// or ipc://")
                return nil
            }
            let maxSensors = fields.int(entries, "max_sensors", at: "source", parent: node, minimum: 1, maximum: 10_000_000)
                ?? ZMQSource.defaultMaxSensors
            let sensorIdle = fields.double(entries, "sensor_idle_s", at: "source", parent: node, minimum: 0, exclusiveMinimum: true, maximum: Limits.seconds)
                ?? ZMQSource.defaultSensorIdleSeconds
            let key = fields.string(entries, "key", at: "source", parent: node).map(resolve)
            let senders = (fields.stringList(entries, "senders", at: "source") ?? []).map(resolve)
            if (key == nil) != senders.isEmpty {
                fields.report(node, "source", "source.key and source.senders go together: the sensor socket's key pair, and the .pub files of the senders let in")
            }
            if key != nil, endpoint?.hasPrefix("tcp://") != true {
                fields.report(entries["key"], "source.key", "is for a tcp endpoint (an ipc socket is guarded by its file's permissions)")
            }
            guard let endpoint, let channels else { return nil }
            var source = ZMQSource(endpoint: endpoint, channels: channels, idleTimeoutSeconds: idle, maxSensors: maxSensors,
                                   sensorIdleSeconds: sensorIdle)
            source.keyFile = key
            source.senderKeyFiles = senders
            return .zmq(source)
        case "tensors":
            let path = existingFile(entries, "path", at: "source", parent: node)
            let rate = readRate(entries, at: "source")
            let rows = fields.double(entries, "rows_per_second", at: "source", parent: node, minimum: 0, exclusiveMinimum: true, maximum: Limits.rate)
            if case .realtime = rate, rows == nil {
                fields.report(node, "source.rows_per_second", "is required when a tensors source has a real-time rate")
            }
            guard let path else { return nil }
            return .tensors(TensorsSource(path: path, rate: rate, rowsPerSecond: rows, repeats: repeats))
        default:
            fields.report(entries["type"], "source.type", "must be one of: \(kinds.joined(separator: ", ")), not '\(type)'")
            return nil
        }
    }

    func readWindow(_ node: Node?) -> WindowConfig? {
        guard let node else { return nil }
        let entries = fields.mapping(node, at: "window", allowed: ["length", "hop", "layout"])
        let length = fields.int(entries, "length", at: "window", parent: node, required: true, minimum: 1, maximum: Limits.windowLength)
        let hop = fields.int(entries, "hop", at: "window", parent: node, minimum: 1, maximum: Limits.windowLength) ?? length
        let layout = fields.choice(entries, "layout", at: "window", default: WindowLayout.channelsFirst)
        guard let length, let hop else { return nil }
        return WindowConfig(length: length, hop: hop, layout: layout)
    }

    func readBatching(_ node: Node?) -> BatchingConfig? {
        let entries = fields.mapping(node, at: "batching", allowed: ["max_size", "max_delay_ms"])
        let size = fields.int(entries, "max_size", at: "batching", parent: node, minimum: 1, maximum: Limits.batchSize) ?? 8
        let delay = fields.double(entries, "max_delay_ms", at: "batching", parent: node, minimum: 0, maximum: Limits.milliseconds) ?? 20
        return BatchingConfig(maxSize: size, maxDelayMilliseconds: delay)
    }

    func readStages(_ node: Node?) -> StagesConfig? {
        guard let node else { return nil }
        let entries = fields.mapping(node, at: "stages", allowed: ["count", "split", "slowdown", "replicas", "threads", "compress"])
        let autoCount = entries["count"] == nil || entries["count"]?.scalar?.string == "auto"
        let count = autoCount ? nil : fields.int(entries, "count", at: "stages", parent: node, required: true, minimum: 1, maximum: Limits.stages)
        if !autoCount && count == nil { return nil }
        var split: [LayerSpan]?
        if let splitNode = entries["split"], splitNode.scalar?.string != "auto" {
            if autoCount {
                fields.report(splitNode, "stages.split", "needs stages.count: with count auto the planner cuts the layers")
                return nil
            }
            split = readSplit(splitNode, count: count)
        }
        let autoReplicas = entries["replicas"]?.scalar?.string == "auto"
        if autoCount {
            for key in ["slowdown", "threads", "replicas"] where entries[key] != nil && !(key == "replicas" && autoReplicas) {
                fields.report(entries[key], "stages.\(key)", "is per stage index, so it needs stages.count (with count auto the planner chooses)")
            }
        }
        let stageKeys = Set((0..<(count ?? 0)).map(String.init))
        let slowdown = perStage(entries["slowdown"], at: "stages.slowdown", keys: stageKeys) {
            fields.double($0, $1, at: "stages.slowdown", parent: $2, minimum: 0, maximum: 1000)
        }
        let replicas = autoReplicas ? [:] : perStage(entries["replicas"], at: "stages.replicas", keys: stageKeys) {
            fields.int($0, $1, at: "stages.replicas", parent: $2, minimum: 1, maximum: Limits.cores)
        }
        let threads = perStage(entries["threads"], at: "stages.threads", keys: stageKeys) {
            fields.int($0, $1, at: "stages.threads", parent: $2, minimum: 1, maximum: Limits.cores)
        }
        // One setting for every link, or one per stage index.
        var compress = CompressionSetting.none
        var compressPerStage: [Int: CompressionSetting] = [:]
        if let node = entries["compress"], node.scalar != nil {
            compress = fields.choice(entries, "compress", at: "stages", default: .none)
        } else if autoCount, entries["compress"] != nil {
            fields.report(entries["compress"], "stages.compress", "per stage index needs stages.count; a single setting (none, fp16, int8, auto) applies to every link")
        } else {
            compressPerStage = perStage(entries["compress"], at: "stages.compress", keys: stageKeys) {
                entries, key, _ in fields.choice(entries, key, at: "stages.compress", default: CompressionSetting.none)
            }
        }
        return StagesConfig(count: count, split: split, slowdown: slowdown, replicas: replicas, autoReplicas: autoReplicas, threads: threads,
                            compress: compress, compressPerStage: compressPerStage)
    }

    /// A mapping of stage index to value, such as `replicas: {1: 2}`.
    func perStage<Value>(_ node: Node?, at path: String, keys: Set<String>,
                         _ value: ([String: Node], String, Node) -> Value?) -> [Int: Value] {
        guard let node, !keys.isEmpty else { return [:] }
        var result: [Int: Value] = [:]
        for (key, item) in fields.mapping(node, at: path, allowed: keys) {
            if let stage = Int(key), let parsed = value([key: item], key, node) { result[stage] = parsed }
        }
        return result
    }

    /// "0-3" or "4" per stage: contiguous, in order, starting at layer 0.
    func readSplit(_ node: Node, count: Int?) -> [LayerSpan]? {
        guard let sequence = node.sequence else {
            fields.report(node, "stages.split", "must be 'auto' or a list of layer ranges such as [\"0-3\", \"4-7\"]")
            return nil
        }
        var ranges: [LayerSpan] = []
        for (index, item) in sequence.enumerated() {
            let text = item.scalar?.string ?? ""
            let span: LayerSpan
            do {
                span = try LayerSpan.parse(text)
            } catch {
                fields.report(item, "stages.split[\(index)]", "\(error)")
                return nil
            }
            let expectedStart = ranges.last?.end ?? 0
            if span.start != expectedStart {
                fields.report(item, "stages.split[\(index)]", "must start at layer \(expectedStart): stages hold contiguous layers in order")
                return nil
            }
            ranges.append(span)
        }
        if let count, ranges.count != count {
            fields.report(node, "stages.split", "has \(ranges.count) ranges but stages.count is \(count)")
            return nil
        }
        return ranges
    }

    func readTransport(_ node: Node?) -> TransportConfig? {
        let entries = fields.mapping(node, at: "transport", allowed: ["kind", "host", "base_port", "curve"])
        let kind = fields.choice(entries, "kind", at: "transport", default: TransportKind.ipc)
        let host = fields.string(entries, "host", at: "transport", parent: node) ?? "127.0.0.1"
        let port = fields.int(entries, "base_port", at: "transport", parent: node, minimum: 1024) ?? 5600
        if port > 65000 { fields.report(entries["base_port"], "transport.base_port", "must be <= 65000") }
        let curve = fields.flag(entries, "curve", at: "transport", default: true)
        return TransportConfig(kind: kind, host: host, basePort: port, curve: curve)
    }

    func readSink(_ node: Node?, curve: Bool) -> SinkConfig? {
        let entries = fields.mapping(node, at: "sink", allowed: ["type", "path", "max_delay_ms", "delay_ms", "endpoint", "pattern", "key", "consumers"])
        let kind = fields.choice(entries, "type", at: "sink", default: SinkKind.jsonl)
        var path = fields.string(entries, "path", at: "sink", parent: node) ?? "-"
        if kind == .npy && path == "-" {
            fields.report(node, "sink.path", "is required for an npy sink (a file to write)")
        }
        if path != "-" { path = resolve(path) }
        if let problem = SinkConfig.pathProblem(kind: kind, path: path) {
            fields.report(entries["path"], "sink.path", problem)
        }
        // Predictions held longer than a minute would look like a stalled run.
        let maxDelay = fields.double(entries, "max_delay_ms", at: "sink", parent: node, minimum: 0, maximum: 60_000) ?? SinkConfig.defaultMaxDelayMilliseconds
        let delay = fields.double(entries, "delay_ms", at: "sink", parent: node, minimum: 0, maximum: 60_000) ?? 0
        var network: SinkNetworkConfig?
        let networkKeys = ["endpoint", "pattern", "key", "consumers"]
        if kind == .zmq {
            if entries["path"] != nil { fields.report(entries["path"], "sink.path", "is for jsonl and npy sinks; a zmq sink sends to consumers at sink.endpoint") }
            let endpoint = fields.string(entries, "endpoint", at: "sink", parent: node, required: true) ?? ""
            if !endpoint.isEmpty, !endpoint.hasPrefix("tcp://"), !endpoint.hasPrefix("ipc://") {
                fields.report(entries["endpoint"], "sink.endpoint", "must be tcp://HOST:PORT or ipc://PATH, not '\(endpoint)'")
            }
            let key = fields.string(entries, "key", at: "sink", parent: node).map(resolve)
            let consumers = (fields.stringList(entries, "consumers", at: "sink") ?? []).map(resolve)
            if curve, endpoint.hasPrefix("tcp://"), key == nil || consumers.isEmpty {
                fields.report(node, "sink", "a zmq sink on tcp is secured with CURVE: give sink.key (its key pair, from `sluice keys`) and sink.consumers (the .pub files of who may read), or set transport.curve: off")
            }
            network = SinkNetworkConfig(endpoint: endpoint, pattern: fields.choice(entries, "pattern", at: "sink", default: SinkPattern.push),
                                        keyFile: curve ? key : nil, consumerKeyFiles: curve ? consumers : [])
        } else {
            for key in networkKeys where entries[key] != nil {
                fields.report(entries[key], "sink.\(key)", "is for a zmq sink (type: zmq)")
            }
        }
        return SinkConfig(kind: kind, path: path, maxDelayMilliseconds: min(maxDelay, 60_000), delayMilliseconds: delay, network: network)
    }

    func readController(_ node: Node?) -> ControllerConfig? {
        let entries = fields.mapping(node, at: "controller", allowed: ["heartbeat_ms", "timeout_s", "profiling"])
        let heartbeat = fields.double(entries, "heartbeat_ms", at: "controller", parent: node, minimum: 10, maximum: Limits.milliseconds) ?? 250
        let timeout = fields.double(entries, "timeout_s", at: "controller", parent: node, minimum: 1, maximum: Limits.seconds) ?? 10
        let profiling = fields.flag(entries, "profiling", at: "controller", default: true)
        return ControllerConfig(heartbeatMilliseconds: heartbeat, timeoutSeconds: timeout, profiling: profiling)
    }
}

extension SinkConfig {
    /// Why a sink of `kind` cannot write to `path`, or nil where it can (or the file does not
    /// exist yet). The npy header holds the row count, rewritten in place at the end: a pipe or a
    /// device cannot take that. Checked for the pipeline file's `sink.path` and for a path that
    /// replaces it (`--predictions`), so both are refused before any process starts.
    public static func pathProblem(kind: SinkKind, path: String) -> String? {
        var info = stat()
        guard kind == .npy, path != "-", stat(path, &info) == 0, (info.st_mode & S_IFMT) != S_IFREG else { return nil }
        return "must be a regular file for an npy sink (its header is rewritten with the row count at the end); for a pipe or a device use type: jsonl"
    }
}

extension ConfigReader {
    func readRebalance(_ node: Node?) -> RebalanceConfig {
        let entries = fields.mapping(node, at: "rebalance", allowed: ["policy", "interval_s", "threshold", "warmup_s"])
        let defaults = RebalanceConfig()
        return RebalanceConfig(
            policy: fields.choice(entries, "policy", at: "rebalance", default: defaults.policy),
            intervalSeconds: fields.double(entries, "interval_s", at: "rebalance", parent: node, minimum: 0.1, maximum: Limits.seconds) ?? defaults.intervalSeconds,
            threshold: fields.double(entries, "threshold", at: "rebalance", parent: node, minimum: 0, maximum: 1000) ?? defaults.threshold,
            warmupSeconds: fields.double(entries, "warmup_s", at: "rebalance", parent: node, minimum: 0, maximum: Limits.seconds) ?? defaults.warmupSeconds)
    }
}

extension SourceConfig {
    /// Sensor sources cut windows; a tensors source already holds model inputs.
    public var needsWindow: Bool {
        if case .tensors = self { return false }
        return true
    }
}

/// Upper bounds on sizes and times a pipeline file may ask for: far beyond any real pipeline,
/// small enough that everything computed from them (products, sums, conversions to integer
/// milliseconds or nanoseconds) stays exact and allocations stay bounded.
enum Limits {
    static let stages = 1024
    static let cores = 4096
    static let channels = 1 << 16
    static let windowLength = 1 << 24
    static let batchSize = 1 << 16
    static let repeats = 1 << 20
    /// Layer indices in stages.split.
    static let layers = 1 << 24
    /// A week, in seconds and in milliseconds.
    static let seconds = 604_800.0
    static let milliseconds = 604_800_000.0
    /// Samples, rows or replay speed-up per second.
    static let rate = 1e9
}
