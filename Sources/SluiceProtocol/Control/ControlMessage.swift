import Foundation
import SluiceWire
import SluiceConfig
import SluicePlan

public enum RoleKind: String, Codable, Sendable {
    case stage, source, sink
}

public struct Hello: Codable, Equatable, Sendable {
    public var role: RoleKind
    public var name: String
    public var pid: Int32
    public var host: String
    /// The control messages' layout the role speaks (`ControlMessage.revision`); absent from
    /// releases before 0.2.
    public var revision: Int?
    /// Where the role bound its data socket itself (`--bind`), as others reach it
    /// (`--advertise`): the controller sends this endpoint, not the planned one, to its peers.
    public var endpoint: String?
    public init(role: RoleKind, name: String, pid: Int32, host: String, revision: Int? = ControlMessage.revision, endpoint: String? = nil) {
        self.role = role; self.name = name; self.pid = pid; self.host = host; self.revision = revision; self.endpoint = endpoint
    }

    /// Whether the role speaks this release's control messages: the only roles a controller takes.
    public var speaksThisRevision: Bool { revision == ControlMessage.revision }
}

/// Timing shared by every role: how often to report, when to give the controller up for dead.
public struct Liveness: Codable, Equatable, Sendable {
    public var heartbeatSeconds: Double
    public var timeoutSeconds: Double
    public init(heartbeatSeconds: Double, timeoutSeconds: Double) {
        self.heartbeatSeconds = heartbeatSeconds; self.timeoutSeconds = timeoutSeconds
    }
}

public struct StageAssignment: Codable, Equatable, Sendable {
    public var stageIndex: Int
    public var epoch: UInt32
    public var modelPath: String
    public var cut: LayerCut
    public var layers: LayerSpan
    /// This stage binds PULL here …
    public var pullEndpoint: String
    /// … and connects PUSH to every process of the next hop here (PUSH spreads batches over them).
    public var pushEndpoints: [String]
    /// The model file's SHA-256 (hex): a stage whose file at `modelPath` is missing or differs
    /// fetches the model from the controller (`fetch_model`) and keeps it by this digest.
    public var modelDigest: String?
    public var modelBytes: Int?
    /// Extra sleep as a fraction of compute time (a test and demo knob; 0 normally).
    public var slowdown: Double
    public var liveness: Liveness
    /// Time each layer and stamp each batch's hop (see `ControllerConfig.profiling`).
    public var profiling: Bool
    /// Compute threads of this process (its kernels' intra-op parallelism).
    public var threads: Int
    /// How this stage's output crosses the link to the next hop (changed live by `compress`).
    public var compression: Compression
    public init(stageIndex: Int, epoch: UInt32, modelPath: String, cut: LayerCut, layers: LayerSpan, pullEndpoint: String,
                pushEndpoints: [String], slowdown: Double, liveness: Liveness, profiling: Bool = true, threads: Int = 1,
                compression: Compression = .none) {
        self.stageIndex = stageIndex; self.epoch = epoch; self.modelPath = modelPath; self.cut = cut; self.layers = layers
        self.pullEndpoint = pullEndpoint; self.pushEndpoints = pushEndpoints; self.slowdown = slowdown; self.liveness = liveness
        self.profiling = profiling; self.threads = threads; self.compression = compression
    }
}

public struct SourceAssignment: Codable, Equatable, Sendable {
    public var source: SourceConfig
    public var window: WindowConfig?
    public var batching: BatchingConfig
    public var inputName: String
    /// The model input's shape without the batch dimension.
    public var windowShape: [Int]
    public var epoch: UInt32
    /// Every process of the first stage.
    public var pushEndpoints: [String]
    public var liveness: Liveness
    public var nanPolicy: NaNPolicy
    /// Bytes of model input the source keeps for replay until the sink has released it; when
    /// they are all taken, the source stops reading its feed (see `source.replay_mib`).
    public var replayBytes: Int
    /// Set for a source started in place of one that died: where it takes up the stream.
    public var resume: SourceResume?
    public init(source: SourceConfig, window: WindowConfig?, batching: BatchingConfig, inputName: String, windowShape: [Int],
                epoch: UInt32, pushEndpoints: [String], liveness: Liveness, nanPolicy: NaNPolicy = .reject,
                replayBytes: Int = SourceAssignment.defaultReplayBytes, resume: SourceResume? = nil) {
        self.source = source; self.window = window; self.batching = batching; self.inputName = inputName
        self.windowShape = windowShape; self.epoch = epoch; self.pushEndpoints = pushEndpoints; self.liveness = liveness
        self.nanPolicy = nanPolicy; self.replayBytes = replayBytes; self.resume = resume
    }

    /// `source.replay_mib`'s default.
    public static let defaultReplayBytes = 64 << 20
}

public struct SinkAssignment: Codable, Equatable, Sendable {
    public var sink: SinkConfig
    public var pullEndpoint: String
    public var outputName: String
    /// The output whose value names each window's class (a classifier's label); nil: the
    /// class is the best score's.
    public var labelName: String?
    /// The model's own class labels as text, in score order, so a label value finds its
    /// position in `classes` (which may rename them); nil where the model does not say.
    public var modelLabels: [String]?
    public var classes: [String]
    /// Batches must arrive with this cursor: every layer run.
    public var layerCount: Int
    public var liveness: Liveness
    /// Keep a sample of batch timestamps for the profile's trace.
    public var profiling: Bool
    /// Set for a sink started in place of one that died: what that one had written out.
    public var resume: SinkOutputState?
    /// The generation of the source in force (`BatchHeader.sourceGeneration`; nil: 0): a sink
    /// started after the source was, drops what a dead source made.
    public var sourceGeneration: UInt16?
    public init(sink: SinkConfig, pullEndpoint: String, outputName: String, labelName: String? = nil, modelLabels: [String]? = nil,
                classes: [String], layerCount: Int, liveness: Liveness, profiling: Bool = true, resume: SinkOutputState? = nil) {
        self.sink = sink; self.pullEndpoint = pullEndpoint; self.outputName = outputName; self.classes = classes
        self.labelName = labelName; self.modelLabels = modelLabels
        self.layerCount = layerCount; self.liveness = liveness; self.profiling = profiling; self.resume = resume
    }
}

/// What a sink's output holds: every batch before `batches`, written out of the process (not
/// waiting in its buffer). The sink reports it with each heartbeat; the source may forget those
/// batches, and a sink started in place of a dead one takes up the stream from there.
public struct SinkOutputState: Codable, Equatable, Sendable {
    public var batches: UInt64 = 0
    /// Windows in those batches, those of them with a label, and those predicted as labelled.
    public var windows: UInt64 = 0
    public var labelled: UInt64 = 0
    public var correct: UInt64 = 0
    /// Wall-clock ns when the earliest of them was created at the source (0: none yet), so that
    /// throughput still counts from the run's start after a restart.
    public var firstCreated: UInt64 = 0
    public init(batches: UInt64 = 0, windows: UInt64 = 0, labelled: UInt64 = 0, correct: UInt64 = 0, firstCreated: UInt64 = 0) {
        self.batches = batches; self.windows = windows; self.labelled = labelled; self.correct = correct
        self.firstCreated = firstCreated
    }
}

/// Running totals a role reports with every heartbeat; the controller takes differences.
public struct RoleCounters: Codable, Equatable, Sendable {
    /// Set on the heartbeat a role sends as it exits (its answer to `shutdown`): only that one
    /// is final. A periodic heartbeat sent before it may still arrive after the run began closing.
    public var final: Bool?
    public var elapsedSeconds: Double = 0
    public var batches: Int = 0
    public var windows: Int = 0
    /// Computing.
    public var busySeconds: Double = 0
    /// Waiting for input.
    public var idleSeconds: Double = 0
    /// Waiting for the next hop to take output.
    public var blockedSeconds: Double = 0
    /// Messages that failed to decode or run: counted, logged, dropped.
    public var rejected: Int = 0
    public var layers: [LayerTiming] = []
    /// Batches taken from the input and handed downstream (including ones passed through);
    /// the controller reads a hop's queue as what upstream sent less what this role took.
    public var received: Int = 0
    public var sent: Int = 0
    /// Bytes of the batches taken from the input and handed downstream, as they crossed the
    /// link (narrowed, where it is): the controller measures each link's rate from what its
    /// receivers took.
    public var receivedBytes: Int = 0
    public var sentBytes: Int = 0
    /// Stage: the precision its link's narrowing took from what it sent (nil: never narrowed).
    public var narrowing: NarrowingTally?
    /// Resident memory now, and when the role took its assignment (weights loaded).
    public var residentBytes: Int = 0
    public var residentBytesAtStart: Int = 0
    /// Everything this role dropped, by unit and reason (`rejected` counts the messages among them).
    public var drops = DropCounts()
    /// Sink: end-to-end latency of the batches it released, for `/metrics`.
    public var latency: LatencyHistogram?
    /// Stage: time in stage (received to sent) over its recent batches, for the live table.
    public var inStageP50Seconds: Double?
    public var inStageP99Seconds: Double?
    /// Sink: batches whose carried timestamps were implausible (not used for latency or throughput).
    public var implausibleStamps: Int = 0
    /// Source: batches sent again on a replay. Sink: replayed copies of batches it already had, dropped.
    public var replayed: Int = 0
    /// Sink: what its output holds so far.
    public var output: SinkOutputState?
    /// Peers its CURVE sockets turned away at the handshake, by reason (`RefusalReason`).
    public var refusedPeers: [String: Int] = [:]
    public init() {}
}

extension RoleCounters {
    /// The totals of several processes of one stage (replicas) as one: times, counts and
    /// per-layer timings add up, so fractions of the summed wall time stay averages.
    public static func combined(_ parts: [RoleCounters]) -> RoleCounters {
        guard parts.count > 1 else { return parts.first ?? RoleCounters() }
        var total = RoleCounters()
        var layers: [Int: LayerTiming] = [:]
        for part in parts {
            total.elapsedSeconds += part.elapsedSeconds
            total.batches += part.batches
            total.windows += part.windows
            total.busySeconds += part.busySeconds
            total.idleSeconds += part.idleSeconds
            total.blockedSeconds += part.blockedSeconds
            total.rejected += part.rejected
            total.received += part.received
            total.sent += part.sent
            total.sentBytes += part.sentBytes
            total.receivedBytes += part.receivedBytes
            if let narrowing = part.narrowing {
                var sum = total.narrowing ?? NarrowingTally()
                sum.add(narrowing)
                total.narrowing = sum
            }
            total.residentBytes += part.residentBytes
            total.residentBytesAtStart += part.residentBytesAtStart
            total.drops.add(part.drops)
            total.implausibleStamps += part.implausibleStamps
            total.replayed += part.replayed
            total.refusedPeers.merge(part.refusedPeers, uniquingKeysWith: +)
            // Replicas' recent times in stage: the slower replica's figure, a bound for both.
            total.inStageP50Seconds = [total.inStageP50Seconds, part.inStageP50Seconds].compactMap { $0 }.max()
            total.inStageP99Seconds = [total.inStageP99Seconds, part.inStageP99Seconds].compactMap { $0 }.max()
            for timing in part.layers {
                var sum = layers[timing.layer] ?? LayerTiming(layer: timing.layer, seconds: 0, windows: 0)
                sum.seconds += timing.seconds
                sum.windows += timing.windows
                layers[timing.layer] = sum
            }
        }
        total.layers = layers.keys.sorted().map { layers[$0]! }
        return total
    }
}

public struct SourceDone: Codable, Equatable, Sendable {
    public var batches: UInt64
    public var windows: UInt64
    public init(batches: UInt64, windows: UInt64) { self.batches = batches; self.windows = windows }
}

/// What the sink saw, reported once every expected batch is out.
public struct SinkSummary: Codable, Equatable, Sendable {
    public var batches: UInt64 = 0
    public var windows: UInt64 = 0
    public var labelled: UInt64 = 0
    public var correct: UInt64 = 0
    public var duplicates: Int = 0
    public var rejected: Int = 0
    /// What the sink dropped, by unit and reason (duplicates and rejected batches among them).
    public var drops = DropCounts()
    /// Batches whose carried timestamps were implausible: left out of latency and throughput.
    public var implausibleStamps: Int = 0
    /// Copies of batches already released or waiting that came again after a replay: expected,
    /// dropped, and neither a duplicate in the output nor a loss.
    public var replayedCopies: Int = 0
    /// Set when a sink took over from a dead one without reading back its output (standard
    /// output, a pipe): windows from this one on, up to where the dead sink stopped, may be in
    /// the output twice.
    public var mayRepeatFrom: UInt64?
    /// Wall-clock ns when the first batch was created at the source, and of the first and last
    /// output, for throughput.
    public var firstCreated: UInt64 = 0
    public var firstOutput: UInt64 = 0
    public var lastOutput: UInt64 = 0
    /// Source-to-sink latency per batch, milliseconds.
    public var latencyP50Milliseconds: Double = 0
    public var latencyP99Milliseconds: Double = 0
    /// Timestamps of a bounded, evenly spread sample of the batches, for profiles and traces.
    public var traces: [BatchTrace] = []
    public init() {}
}

/// Where a source started in place of a dead one takes up the stream: the first batch and
/// window the sink has not released, and the generation it stamps on its batches.
public struct SourceResume: Codable, Equatable, Sendable {
    public var batch: UInt64
    public var window: UInt64
    public var generation: UInt16
    public init(batch: UInt64, window: UInt64, generation: UInt16) { self.batch = batch; self.window = window; self.generation = generation }
}

/// Where a role stands, told to a controller started in place of a dead one (`rejoined`), which
/// rebuilds the run from it: exactly one of the three is set.
public struct RoleState: Codable, Equatable, Sendable {
    public var stage: StageState?
    public var source: SourceState?
    public var sink: SinkState?
    public init(stage: StageState? = nil, source: SourceState? = nil, sink: SinkState? = nil) {
        self.stage = stage; self.source = source; self.sink = sink
    }
}

public struct StageState: Codable, Equatable, Sendable {
    /// Its assignment, with the range and epoch in force now.
    public var assignment: StageAssignment
    /// The layers it holds weights for, and the move it prepared and has not committed.
    public var held: LayerSpan
    public var preparing: PreparedRange?
    public init(assignment: StageAssignment, held: LayerSpan, preparing: PreparedRange?) {
        self.assignment = assignment; self.held = held; self.preparing = preparing
    }
}

public struct PreparedRange: Codable, Equatable, Sendable {
    public var epoch: UInt32
    public var layers: LayerSpan
    public init(epoch: UInt32, layers: LayerSpan) { self.epoch = epoch; self.layers = layers }
}

public struct SourceState: Codable, Equatable, Sendable {
    /// The epoch it stamps on batches now, the next batch it makes, its generation, and its
    /// counts once its input ended.
    public var epoch: UInt32
    public var nextBatch: UInt64
    public var generation: UInt16
    public var done: SourceDone?
    /// The last mark it answered (nil: none yet), and whether it was told to start.
    public var lastMark: Mark?
    public var streaming: Bool
    public init(epoch: UInt32, nextBatch: UInt64, generation: UInt16, done: SourceDone?, lastMark: Mark? = nil, streaming: Bool = true) {
        self.epoch = epoch; self.nextBatch = nextBatch; self.generation = generation; self.done = done; self.lastMark = lastMark
        self.streaming = streaming
    }
}

public struct SinkState: Codable, Equatable, Sendable {
    /// The next batch it releases, what its output holds, the source generation it takes, and
    /// its summary once every expected batch is out.
    public var nextBatch: UInt64
    public var output: SinkOutputState
    public var sourceGeneration: UInt16
    public var done: SinkSummary?
    public init(nextBatch: UInt64, output: SinkOutputState, sourceGeneration: UInt16, done: SinkSummary?) {
        self.nextBatch = nextBatch; self.output = output; self.sourceGeneration = sourceGeneration; self.done = done
    }
}

/// Control-plane messages: one JSON object per ZeroMQ frame, `{"type": …, "body": …}`.
public enum ControlMessage: Equatable, Sendable {
    case hello(Hello)
    case assignStage(StageAssignment)
    case assignSource(SourceAssignment)
    case assignSink(SinkAssignment)
    /// The role has loaded what it needs and bound its sockets.
    case ready
    /// Source: begin streaming.
    case start
    case heartbeat(RoleCounters)
    case sourceDone(SourceDone)
    /// Sink: this many batches will arrive in all.
    case expect(SourceDone)
    case sinkDone(SinkSummary)
    /// Source: stop reading input and finish as at end of input.
    case stop
    case shutdown(reason: String)
    /// A role cannot go on; the controller stops the pipeline with this message.
    case failed(message: String)
    /// Controller liveness for roles that have nothing else to hear.
    case ping
    /// Stages: load weights for your range in this plan (keep the old ones), then ack.
    case prepare(Move)
    /// Stage: weights for the move are loaded.
    case prepared(epoch: UInt32)
    /// Stages: run the prepared range on every batch from now on.
    case commit(epoch: UInt32)
    /// Stage: the committed range is in force.
    case committed(epoch: UInt32)
    /// Source: stamp new batches with this epoch and say which batch is the first.
    case mark(epoch: UInt32)
    /// Source: batches from `firstBatch` on were created after every stage committed.
    case marked(Mark)
    /// Stages: no batch handled under an older range is in flight any more; drop unused weights.
    case retire(epoch: UInt32)
    /// Controller → the source or a stage: a replica joined the next hop; connect PUSH to it too.
    case connect(endpoint: String)
    /// Controller → source: the sink has released every batch before `upTo`; the source
    /// forgets them (they will never be replayed).
    case released(upTo: UInt64)
    /// Controller → sink: a stage process died and batches in flight were lost with it. The
    /// sink answers `replay` with the first batch it has not released.
    case replayNeeded
    /// Sink → controller, then controller → source: send again, in order, every kept batch
    /// from `from` on.
    case replay(from: UInt64)
    /// Controller → sink: the source died; a new one, of this generation, makes the batches the
    /// sink has not released again. The sink drops what it holds of the dead one's and answers
    /// `resume_source`. `made` is present when the dead source was live: nothing makes its
    /// batches again, so the sink releases what reached it and counts the rest lost, up to at
    /// least `made` (what the dead one reported making), and the new source numbers on after it.
    case sourceLost(generation: UInt16, made: SourceDone? = nil)
    /// Sink → controller: where the new source starts, and what the sink's output holds then
    /// (all it released: it wrote its buffer out first).
    case resumeSource(SourceResume, written: SinkOutputState)
    /// Controller → a role it does not know yet: it was started in place of a dead controller;
    /// the role says `hello` again, then `rejoined`.
    case rejoin
    /// Role → controller: where it stands.
    case rejoined(RoleState)
    /// Controller → a role, before its assignment and whenever a process joins the run: the
    /// run's public keys. Never reaches a role's machine: its shell secures sockets with it.
    case trust(LinkTrust)
    /// Stage → controller: send the model file whose digest is this, from `offset` on.
    case fetchModel(ModelRequest)
    /// Controller → stage: a piece of the model file. Never reaches the stage's machine.
    case modelPiece(ModelPiece)
    /// A stage process started without a name offers itself to the run's pool, under a
    /// routing id of its own making (`hello.name`), again every second while it waits.
    case join(Hello)
    /// Controller → a process that joined: it is this stage process from now on (it says hello
    /// again under this name). Answered with `ping` while no place is free.
    case named(String)
    /// Controller → every process of a stage: narrow its output for the link from now on
    /// (its receivers widen whatever arrives, so no two-phase change is needed).
    case compress(Compression)
}

public struct ModelRequest: Codable, Equatable, Sendable {
    /// The model file's SHA-256, as the assignment names it.
    public var digest: String
    public var offset: Int
    /// Only the weights these layers read (nil: the whole file): see `ONNXModel.weightsFile`.
    public var layers: LayerSpan?
    public init(digest: String, offset: Int, layers: LayerSpan? = nil) { self.digest = digest; self.offset = offset; self.layers = layers }
}

public struct ModelPiece: Codable, Equatable, Sendable {
    /// The request's digest and layers, which the piece answers.
    public var digest: String
    public var layers: LayerSpan?
    /// The SHA-256 of the file sent, when it holds only `layers`' weights (nil: the whole
    /// model's file, `digest`).
    public var fileDigest: String?
    public var offset: Int
    /// The length of the file sent.
    public var total: Int
    /// The bytes, base64.
    public var data: String
    public init(digest: String, offset: Int, total: Int, data: String, layers: LayerSpan? = nil, fileDigest: String? = nil) {
        self.digest = digest; self.offset = offset; self.total = total; self.data = data; self.layers = layers; self.fileDigest = fileDigest
    }
}

/// Who may connect to a role's sockets, and whose key each endpoint it connects to proves it
/// holds (CURVE). Public keys only, in Z85 text.
public struct LinkTrust: Codable, Equatable, Sendable {
    /// Every process of the run, by name: only these keys are let into a role's bound sockets.
    public var peers: [String: String]
    /// The public key of the process bound at each data endpoint.
    public var endpoints: [String: String]
    public init(peers: [String: String], endpoints: [String: String]) { self.peers = peers; self.endpoints = endpoints }
}

/// A new plan: one layer range per stage, under a new epoch.
public struct Move: Codable, Equatable, Sendable {
    public var epoch: UInt32
    public var ranges: [LayerSpan]
    public init(epoch: UInt32, ranges: [LayerSpan]) { self.epoch = epoch; self.ranges = ranges }
}

public struct Mark: Codable, Equatable, Sendable {
    public var epoch: UInt32
    public var firstBatch: UInt64
    public init(epoch: UInt32, firstBatch: UInt64) { self.epoch = epoch; self.firstBatch = firstBatch }
}

extension ControlMessage: Codable {
    private enum Keys: String, CodingKey { case type, body }
    private struct Reason: Codable { var reason: String }
    private struct Failure: Codable { var message: String }
    private struct Epoch: Codable { var epoch: UInt32 }
    private struct Peer: Codable { var endpoint: String }
    private struct Named: Codable { var name: String }
    private struct Narrowed: Codable { var compression: Compression }
    private struct Released: Codable { var upTo: UInt64 }
    private struct Replay: Codable { var from: UInt64 }
    private struct Generation: Codable { var generation: UInt16; var made: SourceDone? }
    private struct Takeover: Codable { var resume: SourceResume; var written: SinkOutputState }

    public var type: String {
        switch self {
        case .hello: return "hello"
        case .assignStage: return "assign_stage"
        case .assignSource: return "assign_source"
        case .assignSink: return "assign_sink"
        case .ready: return "ready"
        case .start: return "start"
        case .heartbeat: return "heartbeat"
        case .sourceDone: return "source_done"
        case .expect: return "expect"
        case .sinkDone: return "sink_done"
        case .stop: return "stop"
        case .shutdown: return "shutdown"
        case .failed: return "failed"
        case .ping: return "ping"
        case .prepare: return "prepare"
        case .prepared: return "prepared"
        case .commit: return "commit"
        case .committed: return "committed"
        case .mark: return "mark"
        case .marked: return "marked"
        case .retire: return "retire"
        case .connect: return "connect"
        case .released: return "released"
        case .replayNeeded: return "replay_needed"
        case .replay: return "replay"
        case .sourceLost: return "source_lost"
        case .resumeSource: return "resume_source"
        case .rejoin: return "rejoin"
        case .rejoined: return "rejoined"
        case .trust: return "trust"
        case .fetchModel: return "fetch_model"
        case .modelPiece: return "model_piece"
        case .join: return "join"
        case .named: return "named"
        case .compress: return "compress"
        }
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: Keys.self)
        try container.encode(type, forKey: .type)
        switch self {
        case .hello(let body): try container.encode(body, forKey: .body)
        case .assignStage(let body): try container.encode(body, forKey: .body)
        case .assignSource(let body): try container.encode(body, forKey: .body)
        case .assignSink(let body): try container.encode(body, forKey: .body)
        case .heartbeat(let body): try container.encode(body, forKey: .body)
        case .sourceDone(let body), .expect(let body): try container.encode(body, forKey: .body)
        case .sinkDone(let body): try container.encode(body, forKey: .body)
        case .shutdown(let reason): try container.encode(Reason(reason: reason), forKey: .body)
        case .failed(let message): try container.encode(Failure(message: message), forKey: .body)
        case .prepare(let move): try container.encode(move, forKey: .body)
        case .prepared(let epoch), .commit(let epoch), .committed(let epoch), .mark(let epoch), .retire(let epoch):
            try container.encode(Epoch(epoch: epoch), forKey: .body)
        case .marked(let mark): try container.encode(mark, forKey: .body)
        case .connect(let endpoint): try container.encode(Peer(endpoint: endpoint), forKey: .body)
        case .released(let upTo): try container.encode(Released(upTo: upTo), forKey: .body)
        case .replay(let from): try container.encode(Replay(from: from), forKey: .body)
        case .sourceLost(let generation, let made): try container.encode(Generation(generation: generation, made: made), forKey: .body)
        case .resumeSource(let resume, let written): try container.encode(Takeover(resume: resume, written: written), forKey: .body)
        case .rejoined(let state): try container.encode(state, forKey: .body)
        case .trust(let trust): try container.encode(trust, forKey: .body)
        case .fetchModel(let request): try container.encode(request, forKey: .body)
        case .modelPiece(let piece): try container.encode(piece, forKey: .body)
        case .join(let hello): try container.encode(hello, forKey: .body)
        case .named(let name): try container.encode(Named(name: name), forKey: .body)
        case .compress(let compression): try container.encode(Narrowed(compression: compression), forKey: .body)
        case .ready, .start, .stop, .ping, .replayNeeded, .rejoin: break
        }
    }

    public init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: Keys.self)
        let type = try container.decode(String.self, forKey: .type)
        switch type {
        case "hello": self = .hello(try container.decode(Hello.self, forKey: .body))
        case "assign_stage": self = .assignStage(try container.decode(StageAssignment.self, forKey: .body))
        case "assign_source": self = .assignSource(try container.decode(SourceAssignment.self, forKey: .body))
        case "assign_sink": self = .assignSink(try container.decode(SinkAssignment.self, forKey: .body))
        case "ready": self = .ready
        case "start": self = .start
        case "heartbeat": self = .heartbeat(try container.decode(RoleCounters.self, forKey: .body))
        case "source_done": self = .sourceDone(try container.decode(SourceDone.self, forKey: .body))
        case "expect": self = .expect(try container.decode(SourceDone.self, forKey: .body))
        case "sink_done": self = .sinkDone(try container.decode(SinkSummary.self, forKey: .body))
        case "stop": self = .stop
        case "shutdown": self = .shutdown(reason: try container.decode(Reason.self, forKey: .body).reason)
        case "failed": self = .failed(message: try container.decode(Failure.self, forKey: .body).message)
        case "ping": self = .ping
        case "prepare": self = .prepare(try container.decode(Move.self, forKey: .body))
        case "prepared": self = .prepared(epoch: try container.decode(Epoch.self, forKey: .body).epoch)
        case "commit": self = .commit(epoch: try container.decode(Epoch.self, forKey: .body).epoch)
        case "committed": self = .committed(epoch: try container.decode(Epoch.self, forKey: .body).epoch)
        case "mark": self = .mark(epoch: try container.decode(Epoch.self, forKey: .body).epoch)
        case "marked": self = .marked(try container.decode(Mark.self, forKey: .body))
        case "retire": self = .retire(epoch: try container.decode(Epoch.self, forKey: .body).epoch)
        case "connect": self = .connect(endpoint: try container.decode(Peer.self, forKey: .body).endpoint)
        case "released": self = .released(upTo: try container.decode(Released.self, forKey: .body).upTo)
        case "replay_needed": self = .replayNeeded
        case "rejoin": self = .rejoin
        case "rejoined": self = .rejoined(try container.decode(RoleState.self, forKey: .body))
        case "trust": self = .trust(try container.decode(LinkTrust.self, forKey: .body))
        case "fetch_model": self = .fetchModel(try container.decode(ModelRequest.self, forKey: .body))
        case "model_piece": self = .modelPiece(try container.decode(ModelPiece.self, forKey: .body))
        case "join": self = .join(try container.decode(Hello.self, forKey: .body))
        case "named": self = .named(try container.decode(Named.self, forKey: .body).name)
        case "compress": self = .compress(try container.decode(Narrowed.self, forKey: .body).compression)
        case "replay": self = .replay(from: try container.decode(Replay.self, forKey: .body).from)
        case "source_lost":
            let lost = try container.decode(Generation.self, forKey: .body)
            self = .sourceLost(generation: lost.generation, made: lost.made)
        case "resume_source":
            let takeover = try container.decode(Takeover.self, forKey: .body)
            self = .resumeSource(takeover.resume, written: takeover.written)
        default:
            throw DecodingError.dataCorruptedError(forKey: .type, in: container, debugDescription: "unknown control message type '\(type)'")
        }
    }

    public func encoded() -> [UInt8] {
        // Measurements may be non-finite (a rate over no time): they travel as strings rather
        // than fail the encoding. Nothing else here can fail; were it to, the empty frame is
        // rejected by the receiver as malformed, counted and logged, and no process traps.
        let encoder = JSONEncoder()
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return (try? encoder.encode(self)).map { Array($0) } ?? []
    }

    /// The layout of the control messages' bodies, raised with any change to one. A role
    /// says it in its hello; the controller takes only roles that speak its own (2: Sluice 0.2,
    /// windows and layer spans; 3: a dead sink, source or controller is started again; 0.1's hello says none).
    public static let revision = 6

    public static func decode(_ bytes: UnsafeRawBufferPointer) throws -> ControlMessage {
        do {
            let decoder = JSONDecoder()
            decoder.nonConformingFloatDecodingStrategy = JSONText.nonFiniteDecoding
            return try decoder.decode(ControlMessage.self, from: Data(bytes))
        } catch {
            throw WireError.malformed("control frame is not a control message: \(error)")
        }
    }
}
