import Foundation

/// A pipeline file, parsed and checked. Paths are resolved against the file's folder.
/// Codable so the controller can hand each role its part over the control socket.
public struct PipelineConfig: Codable, Sendable, Equatable {
    public var file: String
    public var name: String
    public var model: ModelConfig
    public var source: SourceConfig
    public var window: WindowConfig?
    public var batching: BatchingConfig
    public var stages: StagesConfig
    public var transport: TransportConfig
    public var sink: SinkConfig
    public var controller: ControllerConfig
    public var rebalance: RebalanceConfig
    /// Compute threads all stage processes may use together (replicas × threads summed over
    /// stages); nil: the machine's cores. Source, sink and controller mostly wait, and are not counted.
    public var cores: Int?
    /// The line of each key in the file, by key path ("stages.count"), so that problems found
    /// after parsing (against the model) still name their line.
    public var keyLines: [String: Int]?
    /// What the source does with a window holding NaN or ±infinity (`source.nan_policy`).
    public var nanPolicy: NaNPolicy = .reject
    /// MiB of model input the source keeps until the sink has released it, to replay what a
    /// dead stage process took with it (`source.replay_mib`); a full buffer holds the source back.
    public var replayMiB: Double = 64
    public static let maximumReplayMiB: Double = 1_048_576

    public init(file: String, name: String, model: ModelConfig, source: SourceConfig, window: WindowConfig?, batching: BatchingConfig,
                stages: StagesConfig, transport: TransportConfig, sink: SinkConfig, controller: ControllerConfig,
                rebalance: RebalanceConfig = RebalanceConfig(), cores: Int? = nil) {
        self.file = file; self.name = name; self.model = model; self.source = source; self.window = window; self.batching = batching
        self.stages = stages; self.transport = transport; self.sink = sink; self.controller = controller; self.rebalance = rebalance
        self.cores = cores
    }

    /// A problem with `key` found after parsing, located at the key's line (or its section's).
    public func issue(_ key: String, _ message: String) -> ConfigError {
        var path = key
        var line = keyLines?[path]
        while line == nil, let dot = path.lastIndex(of: ".") {
            path = String(path[..<dot])
            line = keyLines?[path]
        }
        return ConfigError(issues: [ConfigIssue(file: file, line: line ?? 1, key: key, message: message)])
    }

    /// The core budget in force: `cores`, or every core this machine has.
    public var coreBudget: Int { cores ?? ProcessInfo.processInfo.activeProcessorCount }
}

public struct ModelConfig: Codable, Sendable, Equatable {
    public var path: String
    /// Class names in output order; when absent, taken from the model's "classes" metadata.
    public var classes: [String]?
    /// The graph input fed with windows; defaults to the model's only input.
    public var input: String?
    /// The graph output reported by the sink; defaults to the model's first output.
    public var output: String?

    public init(path: String, classes: [String]?, input: String?, output: String?) {
        self.path = path; self.classes = classes; self.input = input; self.output = output
    }
}

/// How fast a recording is replayed.
public enum ReplayRate: Codable, Sendable, Equatable, CustomStringConvertible {
    /// As fast as the pipeline takes it.
    case max
    /// At the recording's own timestamps, sped up by the factor.
    case realtime(speed: Double)

    public var description: String {
        switch self {
        case .max: return "max"
        case .realtime(let speed): return speed == 1 ? "real" : "\(speed)x"
        }
    }
}

public enum SourceConfig: Codable, Sendable, Equatable {
    /// A CSV (sensor,t,channels…[,label]) or NPY recording of per-sensor samples.
    case recording(RecordingSource)
    /// Live sensors push samples to an endpoint this source binds.
    case zmq(ZMQSource)
    /// Ready model inputs, one row per window.
    case tensors(TensorsSource)

    /// A file: a source started again cuts the same windows from it. Live sensors' samples are
    /// read once.
    public var canBeReadAgain: Bool {
        if case .zmq = self { return false }
        return true
    }

    public var kind: String {
        switch self {
        case .recording: return "recording"
        case .zmq: return "zmq"
        case .tensors: return "tensors"
        }
    }
}

public struct RecordingSource: Codable, Sendable, Equatable {
    public var path: String
    public var rate: ReplayRate
    /// Columns used as channels, in order; default: every column but sensor, t and label.
    public var channels: [String]?
    /// For .npy recordings (shape [samples, channels]): the sample rate.
    public var sampleRateHz: Double?
    /// Replay the recording this many times, each pass later in time by the recording's length.
    public var repeats: Int

    public init(path: String, rate: ReplayRate, channels: [String]?, sampleRateHz: Double?, repeats: Int = 1) {
        self.path = path; self.rate = rate; self.channels = channels; self.sampleRateHz = sampleRateHz; self.repeats = repeats
    }
}

public struct ZMQSource: Codable, Sendable, Equatable {
    public var endpoint: String
    public var channels: Int
    /// Finish when no sample arrived for this long (0: wait for an end-of-stream message).
    public var idleTimeoutSeconds: Double
    /// Sensors whose partial windows are held at once, and senders tracked for end of stream. A
    /// chunk from a new sensor or sender while this many are live (after idle ones, and senders
    /// that have ended, are forgotten) is refused: dropped, counted and logged. Only the ids live
    /// at once count: ids that come and go are admitted however many there were before.
    public var maxSensors: Int
    /// A sensor or sender silent this long is forgotten (a sensor's partial window with it).
    public var sensorIdleSeconds: Double
    /// Sensors under CURVE: the socket's own key pair (a `sluice keys` .key file), which senders
    /// pin, and the public keys (.pub files) of the senders let in. Absent: plaintext.
    public var keyFile: String?
    public var senderKeyFiles: [String] = []

    public static let defaultMaxSensors = 10_000
    public static let defaultSensorIdleSeconds = 60.0

    public init(endpoint: String, channels: Int, idleTimeoutSeconds: Double, maxSensors: Int = ZMQSource.defaultMaxSensors,
                sensorIdleSeconds: Double = ZMQSource.defaultSensorIdleSeconds) {
        self.endpoint = endpoint; self.channels = channels; self.idleTimeoutSeconds = idleTimeoutSeconds
        self.maxSensors = maxSensors; self.sensorIdleSeconds = sensorIdleSeconds
    }
}

public struct TensorsSource: Codable, Sendable, Equatable {
    public var path: String
    public var rate: ReplayRate
    /// Rows per second when `rate` is real time.
    public var rowsPerSecond: Double?
    /// Send the rows this many times over.
    public var repeats: Int

    public init(path: String, rate: ReplayRate, rowsPerSecond: Double?, repeats: Int = 1) {
        self.path = path; self.rate = rate; self.rowsPerSecond = rowsPerSecond; self.repeats = repeats
    }
}

/// What becomes of a window holding a value that is not finite (NaN, ±infinity): a model's
/// scores for it are meaningless, and an argmax over NaN names the first class.
public enum NaNPolicy: String, Codable, Sendable, Equatable, CaseIterable {
    /// The window is dropped at the source, counted and logged (the default).
    case reject
    /// The window goes through; where its scores are not all finite the sink names no class.
    case pass
}

public enum WindowLayout: String, Codable, Sendable, Equatable, CaseIterable {
    /// [batch, channels, time], as Conv1d expects.
    case channelsFirst = "channels_first"
    /// [batch, time, channels].
    case channelsLast = "channels_last"
}

public struct WindowConfig: Codable, Sendable, Equatable {
    public var length: Int
    public var hop: Int
    public var layout: WindowLayout

    public init(length: Int, hop: Int, layout: WindowLayout) {
        self.length = length; self.hop = hop; self.layout = layout
    }
}

public struct BatchingConfig: Codable, Sendable, Equatable {
    public var maxSize: Int
    public var maxDelayMilliseconds: Double

    public init(maxSize: Int, maxDelayMilliseconds: Double) {
        self.maxSize = maxSize; self.maxDelayMilliseconds = maxDelayMilliseconds
    }
}

public struct StagesConfig: Codable, Sendable, Equatable {
    /// Stage processes in the chain; nil (`auto`): the planner chooses under the core budget.
    public var count: Int?
    /// Explicit layer ranges, one per stage (half-open); nil lets the planner balance them.
    public var split: [LayerSpan]?
    /// Test and demo knob: stage index → extra sleep as a fraction of its compute time.
    public var slowdown: [Int: Double]
    /// Stage index → processes running it (data parallelism behind one PUSH; default 1).
    public var replicas: [Int: Int]
    /// `replicas: auto`: the planner chooses every stage's replicas and threads under the core budget.
    public var autoReplicas: Bool
    /// Stage index → compute threads of each of its processes (default 1, or the planner's choice).
    public var threads: [Int: Int]
    /// How every stage's output crosses its link, unless `compressPerStage` names the stage.
    public var compress: CompressionSetting
    public var compressPerStage: [Int: CompressionSetting]

    public init(count: Int?, split: [LayerSpan]?, slowdown: [Int: Double], replicas: [Int: Int] = [:], autoReplicas: Bool = false,
                threads: [Int: Int] = [:], compress: CompressionSetting = .none, compressPerStage: [Int: CompressionSetting] = [:]) {
        self.count = count; self.split = split; self.slowdown = slowdown; self.replicas = replicas
        self.autoReplicas = autoReplicas; self.threads = threads; self.compress = compress; self.compressPerStage = compressPerStage
    }

    /// What the pipeline asks for on stage `index`'s output link.
    public func compression(ofStage index: Int) -> CompressionSetting { compressPerStage[index] ?? compress }

    /// Whether the planner chooses replicas and threads (`count: auto` or `replicas: auto`).
    public var plansShapes: Bool { count == nil || autoReplicas }
}

/// How a stage's float32 output crosses its link to the next hop: as it is, narrowed to half
/// precision, or to int8 with one scale per tensor (its largest magnitude maps to 127).
public enum Compression: String, Codable, Sendable, Equatable, CaseIterable {
    case none, fp16, int8

    /// Bytes on the link per byte of float32.
    public var floatBytesRatio: Double {
        switch self {
        case .none: return 1
        case .fp16: return 0.5
        case .int8: return 0.25
        }
    }
}

/// What a pipeline asks for on a link (`stages.compress`): a fixed compression, or `auto`, where
/// the controller narrows the link to fp16 once its measured transfer is what limits the
/// pipeline and narrowing gains more than moving the cut (needs `rebalance.policy: auto`).
public enum CompressionSetting: String, Codable, Sendable, Equatable, CaseIterable {
    case none, fp16, int8, auto

    /// The compression a link starts with: `auto` starts uncompressed.
    public var initial: Compression { Compression(rawValue: rawValue) ?? .none }
}

public enum TransportKind: String, Codable, Sendable, Equatable, CaseIterable {
    case ipc
    case tcp
}

public struct TransportConfig: Codable, Sendable, Equatable {
    public var kind: TransportKind
    public var host: String
    /// tcp: the controller listens on basePort, stage i on basePort+1+i, the sink after them.
    public var basePort: Int
    /// tcp: every socket encrypted and authenticated with CURVE, each process under its own
    /// key (ipc sockets live in a folder only this user can open).
    public var curve: Bool

    public init(kind: TransportKind, host: String, basePort: Int, curve: Bool = true) {
        self.kind = kind; self.host = host; self.basePort = basePort; self.curve = curve
    }

    /// Whether the run's sockets use CURVE.
    public var secured: Bool { kind == .tcp && curve }
}

public enum SinkKind: String, Codable, Sendable, Equatable, CaseIterable {
    case jsonl
    case npy
    /// Predictions as JSON lines in ZeroMQ messages, for consumers over the network.
    case zmq
}

/// How a `zmq` sink hands predictions out.
public enum SinkPattern: String, Codable, Sendable, Equatable, CaseIterable {
    /// To one consumer at a time (several share them out); the pipeline waits while none takes them.
    case push
    /// To every subscriber; one that is absent or slow misses what it could not take.
    case pub
}

/// Where a `zmq` sink binds, and who may read from it.
public struct SinkNetworkConfig: Codable, Sendable, Equatable {
    public var endpoint: String
    public var pattern: SinkPattern
    /// Over tcp with CURVE: the output's own key pair (a `sluice keys` .key file), which
    /// consumers pin, and the public keys (.pub files) of the consumers let in.
    public var keyFile: String?
    public var consumerKeyFiles: [String]

    public init(endpoint: String, pattern: SinkPattern = .push, keyFile: String? = nil, consumerKeyFiles: [String] = []) {
        self.endpoint = endpoint; self.pattern = pattern; self.keyFile = keyFile; self.consumerKeyFiles = consumerKeyFiles
    }
}

public struct SinkConfig: Codable, Sendable, Equatable {
    public var kind: SinkKind
    /// "-" is standard output (jsonl only).
    public var path: String
    /// The longest a released batch's predictions wait in the sink's buffer before they are
    /// written and flushed (0: each batch at once).
    public var maxDelayMilliseconds: Double
    /// Test and demo knob: extra time the sink takes per micro-batch, as a slow consumer would.
    public var delayMilliseconds: Double
    /// `zmq` sinks: where predictions go out.
    public var network: SinkNetworkConfig?

    public static let defaultMaxDelayMilliseconds = 100.0

    public init(kind: SinkKind, path: String, maxDelayMilliseconds: Double = SinkConfig.defaultMaxDelayMilliseconds,
                delayMilliseconds: Double = 0, network: SinkNetworkConfig? = nil) {
        self.kind = kind; self.path = path; self.maxDelayMilliseconds = maxDelayMilliseconds; self.delayMilliseconds = delayMilliseconds
        self.network = network
    }
}

public struct ControllerConfig: Codable, Sendable, Equatable {
    public var heartbeatMilliseconds: Double
    /// A role that is silent this long is taken for dead.
    public var timeoutSeconds: Double
    /// Per-layer timings and per-batch timestamps (for profiles, traces and live rebalancing).
    /// Off, stages run their whole range in one call and record nothing per layer or batch.
    public var profiling: Bool

    public init(heartbeatMilliseconds: Double, timeoutSeconds: Double, profiling: Bool = true) {
        self.heartbeatMilliseconds = heartbeatMilliseconds; self.timeoutSeconds = timeoutSeconds; self.profiling = profiling
    }
}

public enum RebalancePolicy: String, Codable, Sendable, Equatable, CaseIterable {
    /// Keep the initial split.
    case off
    /// Log (and report) the better split, but do not move layers.
    case recommend
    /// Move layers live when the predicted gain is worth it.
    case auto
}

public struct RebalanceConfig: Codable, Sendable, Equatable {
    public var policy: RebalancePolicy
    /// How often the controller reconsiders the split, and the least time between two moves.
    public var intervalSeconds: Double
    /// Move only when the predicted throughput gain exceeds this fraction (0.1 = 10%).
    public var threshold: Double
    /// Measure this long after the stream starts before the first move (caches and queues settle).
    public var warmupSeconds: Double

    public init(policy: RebalancePolicy = .recommend, intervalSeconds: Double = 2, threshold: Double = 0.1, warmupSeconds: Double = 0) {
        self.policy = policy; self.intervalSeconds = intervalSeconds; self.threshold = threshold; self.warmupSeconds = warmupSeconds
    }
}
