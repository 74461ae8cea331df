import Foundation
import Logging
import SluiceConfig
import SluiceHTTP
import SluicePlan
import SluiceProfile
import SluiceProtocol
import SluiceTransport
import SluiceWire

/// The controller process: the socket shell around `ControllerMachine`. It hands out
/// assignments, watches heartbeats, drains on stop, and reports the run.
public final class ControllerRole {
    private let plan: PipelinePlan
    private let endpoints: Endpoints
    private let context = ZMQContext()
    private let router: ZMQSocket
    private var machine: ControllerMachine
    private var logger = makeLogger("controller")
    private var started = monotonicSeconds()
    private let metrics: MetricsServer?
    private let metricsHost: String
    private let liveEvery: Double?
    private var nextLive = 0.0
    /// Stage processes this controller started during the run (replicas added live).
    private let spawnStages: Bool
    private var spawned: [Process] = []
    private let processWatch = ProcessWatch()
    /// Control frames this controller dropped, by reason.
    private lazy var controlDrops = DropLog(logger: logger)
    /// Heartbeats kept to give each scrape of `/metrics` counters that agree with each other.
    private var metricsCut = ConsistentCut()
    /// Messages taken off the control socket per turn of the loop.
    static let messagesPerTurn = 64
    /// Under CURVE: the run's keys, the handler that admits them, and which process is bound at
    /// each data endpoint (from the assignments sent and the states rejoined).
    private var keys: ControllerKeys?
    private let authenticator: Authenticator?
    private var endpointOwners: [String: String] = [:]
    /// The model file's digest and length, for stages on hosts without it (`fetch_model`).
    private let model: (path: String, digest: String, bytes: Int)?
    /// Files of some layers' weights made for stages on hosts without the model, newest last.
    private var weightFiles: [(layers: LayerSpan, digest: String, bytes: Data)] = []
    /// Largest piece of the model sent in one control message. Pieces share the control
    /// connection with heartbeats, which wait behind the one in flight: over a 2 Mbit/s link a
    /// 1 MiB piece (base64) held them for 6 s, and the stage took its controller for dead.
    static let modelPieceBytes = 256 << 10
    /// Each stage process's and the sink's planned data endpoint, and where the processes that
    /// bound their own (`--bind`, on other hosts) said they are reached instead.
    private var plannedEndpoints: [String: String] = [:]
    private var advertisedEndpoints: [String: String] = [:]
    /// Stage processes that joined without a name, and the places given to them.
    private var pool = Pool()

    /// `metricsPort`: serve Prometheus text at http://`metricsHost`:port/metrics while running
    /// (this machine only unless told otherwise: the figures say what the run does).
    /// `liveEvery`: print the stage table to standard error this often (seconds).
    /// `runDirectory`: where ipc endpoints of replicas added during the run go. `spawnStages`:
    /// start those replicas as processes of this executable (under `sluice run`); otherwise the
    /// log says which `sluice stage` to start by hand.
    public init(plan: PipelinePlan, endpoints: Endpoints, runDirectory: String, spawnStages: Bool = false,
                metricsPort: UInt16? = nil, metricsHost: String = "127.0.0.1", liveEvery: Double? = nil, rejoining: Bool = false,
                keys: ControllerKeys? = nil) throws {
        self.plan = plan
        self.keys = keys
        // Over ipc every process shares this host's files: no stage fetches, and none hashes.
        let modelPath = plan.config.model.path
        let attributes = try? FileManager.default.attributesOfItem(atPath: modelPath)
        model = plan.config.transport.kind == .tcp
            ? SHA256.file(modelPath).map { (modelPath, $0, (attributes?[.size] as? NSNumber)?.intValue ?? 0) } : nil
        self.endpoints = endpoints
        self.liveEvery = liveEvery
        self.spawnStages = spawnStages
        metrics = try metricsPort.map { try MetricsServer(host: metricsHost, port: $0) }
        self.metricsHost = metricsHost
        router = try ZMQSocket(context, .router, lingerMilliseconds: 2000, sendHighWaterMark: 10_000, receiveHighWaterMark: 10_000)
        let logger = logger
        if let keys {
            let authenticator = try Authenticator(context: context) { reason, peer in logger.warning("refused a peer \(reason.rawValue): \(peer)") }
            authenticator.allow(keys.peers)
            try router.serveCurve(keys.own)
            try authenticator.watchHandshakes(of: router, name: endpoints.control)
            self.authenticator = authenticator
        } else {
            authenticator = nil
        }
        try router.bind(endpoints.control)
        let coordinator = RebalanceCoordinator(
            ranges: plan.partition.ranges, epoch: 1,
            rebalancer: Rebalancer(config: plan.config.rebalance, cut: plan.cut, stages: plan.partition.ranges.count,
                                   replicas: plan.replicaCounts, threads: plan.shapes.map(\.threads), cores: plan.config.coreBudget,
                                   parallelFractions: CorePlanner.parallelFractions(cut: plan.cut, graph: plan.graph),
                                   compression: plan.partition.ranges.indices.map { plan.config.stages.compression(ofStage: $0) }),
            instances: plan.stageNames)
        let assignments = plan.assignments(endpoints)
        for (name, assignment) in assignments {
            if case .assignStage(let stage) = assignment { plannedEndpoints[name] = stage.pullEndpoint }
            if case .assignSink(let sink) = assignment { plannedEndpoints[name] = sink.pullEndpoint }
        }
        for (name, endpoint) in plannedEndpoints { endpointOwners[endpoint] = name }
        machine = ControllerMachine(assignments: assignments,
                                    liveness: Liveness(heartbeatSeconds: plan.config.controller.heartbeatMilliseconds / 1000,
                                                       timeoutSeconds: plan.config.controller.timeoutSeconds),
                                    coordinator: coordinator, replicaEndpoint: plan.replicaEndpoints(runDirectory: runDirectory),
                                    rejoining: rejoining)
    }

    /// Runs the pipeline to its end; returns the report and the process exit code.
    public func run() -> (report: RunReport, exitCode: Int32) {
        logger.info("listening on \(endpoints.control) for \(plan.partition.ranges.count) stages (\(plan.stageNames.count) processes), a source and a sink")
        if let metrics { logger.info("metrics at http://\(metricsHost.contains(":") ? "[\(metricsHost)]" : metricsHost):\(metrics.port)/metrics") }
        var handledSignals: Int32 = 0
        while true {
            if StopSignal.received > handledSignals {
                handledSignals = StopSignal.received
                if let outcome = perform(machine.handle(.stopRequested)) { return finish(outcome) }
            }
            if let outcome = perform(machine.handle(.tick(now: monotonicSeconds() - started))) { return finish(outcome) }
            let served = metrics?.pollDescriptors.map { ($0.descriptor, $0.writing ? PollEvents.writable : .readable) } ?? []
            let watched = processWatch.pollDescriptors
            let polled = try? poll([(router, .readable)], descriptors: served + watched.map { ($0.fd, PollEvents.readable) }, timeoutMilliseconds: 20)
            if let polled {
                let readable = polled.descriptors.dropFirst(served.count).map { $0.contains(.readable) }
                for exited in processWatch.exited(watched, readable: readable) {
                    if let outcome = perform(machine.handle(.roleExited(exited.name, how: "its process \(exited.pid) exited"))) { return finish(outcome) }
                }
            }
            metrics?.serviceReady { PrometheusExposition.render(snapshot()) }
            observer.tick(now: monotonicSeconds() - started, phase: machine.phase)
            if let liveEvery, monotonicSeconds() >= nextLive, machine.phase == .running || machine.phase == .draining {
                nextLive = monotonicSeconds() + liveEvery
                writeStandardError(TextReport.stageTable(profile(traces: [], windowsOut: nil)).joined(separator: "\n") + "\n")
            }
            // A bounded turn: however fast messages arrive, the timers of the next turn (pings,
            // liveness, /metrics, the live table) run within one turn's worth of messages.
            var taken = 0
            while taken < Self.messagesPerTurn, let frames = try? router.receive(dontWait: true) {
                taken += 1
                guard frames.count == 2 else {
                    controlDrops.drop([(1, .controlFrame)], .malformed, "a control message of \(frames.count) frames")
                    continue
                }
                let sender = frames[0].text
                let message: ControlMessage
                do {
                    message = try frames[1].withBytes { try ControlMessage.decode($0) }
                } catch {
                    controlDrops.drop([(1, .controlFrame)], .malformed, "from '\(sender)': \(error)")
                    continue
                }
                let keyName = frames[1].authenticatedName
                // A process of the pool offers itself under a routing id of its own making.
                if case .join(let hello) = message {
                    offer(from: sender, hello, keyName: keyName)
                    continue
                }
                // Under CURVE a process is the name its key is filed under, whatever routing id it
                // gives, or the name this controller gave the key's process from the pool.
                if keys != nil, keyName != sender, keyName == nil || pool.granted[sender] != keyName {
                    controlDrops.drop([(1, .controlFrame)], .unknownPeer, "from '\(sender)', sent under the key of '\(keyName ?? "nobody")'")
                    continue
                }
                if case .hello = message { pool.registered(sender) }
                let known = machine.knows(sender)
                let isHeartbeat: Bool
                if case .heartbeat = message { isHeartbeat = true } else { isHeartbeat = false }
                if known, !isHeartbeat { observer.received(message, from: sender) }
                if known, case .heartbeat(let counters) = message { metricsCut.record(counters, from: sender) }
                // A process refused for its release is not the role: its exit is no death of one.
                if known, case .hello(let hello) = message, hello.speaksThisRevision {
                    if let endpoint = hello.endpoint { takeAdvertised(endpoint, of: sender) }
                    processWatch.watch(sender, hello)
                    // A process started in place of a dead one counts from zero: the cut starts
                    // over, or its figures (and every hop's after it) would stay at the dead one's.
                    if metricsCut.hasHeard(from: sender) { metricsCut = ConsistentCut() }
                }
                if case .rejoined(let state) = message, let assignment = state.stage?.assignment { endpointOwners[assignment.pullEndpoint] = sender }
                if known, case .fetchModel(let request) = message {
                    sendModel(request, to: sender)
                    continue
                }
                var actions = machine.handle(.received(from: sender, message))
                // The report's counts are the controller's: with what a process that died under
                // this name had dropped (its successor counts from zero).
                if known, isHeartbeat { observer.received(machine.counters[sender].map { .heartbeat($0) } ?? message, from: sender) }
                if !known {
                    // Still answered (a stage started by hand under a wrong name learns so), but
                    // counted and logged at a bounded rate rather than once per message.
                    controlDrops.drop([(1, .controlFrame)], .unknownPeer, "\(message.type) from '\(sender)', no role of this pipeline")
                    actions.removeAll { if case .log = $0 { return true } else { return false } }
                }
                if let outcome = perform(actions) { return finish(outcome) }
            }
        }
    }

    private func perform(_ actions: [ControllerAction]) -> ControllerOutcome? {
        var outcome: ControllerOutcome?
        for action in actions {
            switch action {
            case .send(let name, let planned):
                let message = advertised(planned)
                if keys != nil { sendTrust(before: message, to: name) }
                send(message, to: name)
            case .log(let text):
                logger.info("\(text)")
            case .spawn(let role):
                start(role)
            case .fence(let role):
                if let pid = processWatch.kill(role) {
                    logger.warning("fenced \(role): killed its process \(pid), declared dead for its silence, before one is started in its place")
                } else {
                    logger.warning("cannot fence \(role): its process is not watched on this host; should it come back, it and the process started in its place would both act as \(role)")
                }
            case .addReplica:
                break  // the machine turns these into `spawn`
            case .finish(let result):
                outcome = result
            }
        }
        return outcome
    }

    private var ownRefusals: [String: Int] {
        Dictionary(uniqueKeysWithValues: (authenticator?.refused ?? [:]).map { ($0.key.rawValue, $0.value) })
    }

    /// A process that bound its own data socket is reached there, not at its planned endpoint.
    private func takeAdvertised(_ endpoint: String, of name: String) {
        guard let planned = plannedEndpoints[name] ?? machine.pullEndpoint(of: name) else {
            logger.warning("\(name) says it is reached at \(endpoint.prefix(120)), but binds nothing this run plans; ignored")
            return
        }
        guard Self.isReachable(endpoint) else {
            logger.warning("\(name) says it is reached at '\(endpoint.prefix(120))', which is no tcp://HOST:PORT or ipc://PATH endpoint; ignored")
            return
        }
        let earlier = advertisedEndpoints[planned]
        advertisedEndpoints[planned] = endpoint
        endpointOwners[endpoint] = name
        guard earlier != endpoint else { return }
        logger.info("\(name) is reached at \(endpoint)\(earlier.map { ", no longer at \($0)" } ?? "")")
        // A process in a dead one's place, elsewhere (a pod from the pool): the hop before it
        // sends there too from now on.
        guard earlier != nil, let stage = StageInstance.stage(of: name) else { return }
        let upstream = stage == 0 ? ["source"] : (machine.stageInstances.indices.contains(stage - 1) ? machine.stageInstances[stage - 1] : [])
        for peer in upstream {
            if keys != nil { send(.trust(trust), to: peer) }
            send(.connect(endpoint: endpoint), to: peer)
        }
    }

    /// What a role may say it is reached at: short, and tcp://HOST:PORT or ipc://PATH.
    static func isReachable(_ endpoint: String) -> Bool {
        guard endpoint.utf8.count <= 256, !endpoint.contains(where: { $0.isWhitespace || $0.asciiValue.map { $0 < 32 } ?? false }) else { return false }
        if endpoint.hasPrefix("ipc://") { return endpoint.count > 6 }
        guard endpoint.hasPrefix("tcp://"), let colon = endpoint.lastIndex(of: ":"), let port = Int(endpoint[endpoint.index(after: colon)...]) else { return false }
        return (1...65535).contains(port) && endpoint.distance(from: endpoint.startIndex, to: colon) > 6
    }

    /// A piece of the model file for a stage on a host without it: the whole file, or one
    /// holding only the weights of the layers asked for.
    private func sendModel(_ request: ModelRequest, to name: String) {
        guard let model, request.digest == model.digest else {
            logger.warning("\(name) asked for a model this controller does not serve (digest \(request.digest.prefix(64)))")
            return
        }
        guard let layers = request.layers else { return sendWholeModel(model, from: request.offset, to: name) }
        let count = plan.cut.layers.count
        guard layers.start >= 0, layers.start < layers.end, layers.end <= count else {
            logger.warning("\(name) asked for the weights of layers \(layers), outside the model's \(count)")
            return
        }
        let file: (digest: String, bytes: Data)
        if let made = weightFiles.first(where: { $0.layers == layers }) {
            file = (made.digest, made.bytes)
        } else {
            do {
                let bytes = try plan.model.weightsFile(for: plan.cut.layers[layers.start].nodeStart..<plan.cut.layers[layers.end - 1].nodeEnd)
                var hash = SHA256()
                hash.update(bytes)
                file = (hash.hexDigest(), bytes)
            } catch {
                logger.error("cannot make the weights of layers \(layers) for \(name): \(error)")
                return
            }
            // A few ranges at a time: the stages' own and the next move's.
            weightFiles.append((layers, file.digest, file.bytes))
            if weightFiles.count > 8 { weightFiles.removeFirst() }
        }
        guard request.offset >= 0, request.offset < file.bytes.count else {
            logger.warning("\(name) asked for the weights of layers \(layers) from byte \(request.offset) of \(file.bytes.count)")
            return
        }
        if request.offset == 0 {
            logger.info("sending the weights of layers \(layers) (\(file.bytes.count) of the model's \(model.bytes) bytes) to \(name), whose host does not have the model")
        }
        let piece = file.bytes[(file.bytes.startIndex + request.offset)..<(file.bytes.startIndex + min(file.bytes.count, request.offset + Self.modelPieceBytes))]
        send(.modelPiece(ModelPiece(digest: model.digest, offset: request.offset, total: file.bytes.count,
                                    data: Data(piece).base64EncodedString(), layers: layers, fileDigest: file.digest)), to: name)
    }

    private func sendWholeModel(_ model: (path: String, digest: String, bytes: Int), from offset: Int, to name: String) {
        guard offset >= 0, offset < model.bytes, let file = FileHandle(forReadingAtPath: model.path) else {
            logger.warning("\(name) asked for the model from byte \(offset) of \(model.bytes)")
            return
        }
        defer { try? file.close() }
        guard (try? file.seek(toOffset: UInt64(offset))) != nil,
              let data = try? file.read(upToCount: min(Self.modelPieceBytes, model.bytes - offset)), !data.isEmpty else {
            logger.error("cannot read \(model.path) at \(offset) for \(name)")
            return
        }
        if offset == 0 { logger.info("sending the model (\(model.bytes) bytes) to \(name), whose host does not have it") }
        send(.modelPiece(ModelPiece(digest: model.digest, offset: offset, total: model.bytes, data: data.base64EncodedString())), to: name)
    }

    /// `message` as it leaves: every planned endpoint of a process that bound its own replaced
    /// by where it is reached (the machine keeps planning with the planned ones), and a stage's
    /// assignment with the model's digest.
    private func advertised(_ message: ControlMessage) -> ControlMessage {
        func reached(_ endpoint: String) -> String { advertisedEndpoints[endpoint] ?? endpoint }
        switch message {
        case .assignStage(var assignment):
            assignment.pullEndpoint = reached(assignment.pullEndpoint)
            assignment.pushEndpoints = assignment.pushEndpoints.map(reached)
            assignment.modelDigest = model?.digest
            assignment.modelBytes = model?.bytes
            return .assignStage(assignment)
        case .assignSource(var assignment):
            assignment.pushEndpoints = assignment.pushEndpoints.map(reached)
            return .assignSource(assignment)
        case .assignSink(var assignment):
            assignment.pullEndpoint = reached(assignment.pullEndpoint)
            return .assignSink(assignment)
        case .connect(let endpoint):
            return .connect(endpoint: reached(endpoint))
        default:
            return message
        }
    }

    private func send(_ message: ControlMessage, to name: String) {
        do {
            try router.send([.bytes(Array(name.utf8)), .bytes(message.encoded())], dontWait: true)
        } catch {
            logger.warning("cannot reach \(name): \(error)")
        }
    }

    /// A role learns the run's keys before each assignment (it binds and connects by them), and
    /// before each replica it is to connect to.
    private func sendTrust(before message: ControlMessage, to name: String) {
        switch message {
        case .assignStage(let assignment): endpointOwners[assignment.pullEndpoint] = name
        case .assignSink(let assignment): endpointOwners[assignment.pullEndpoint] = name
        case .assignSource, .connect: break
        default: return
        }
        send(.trust(trust), to: name)
    }

    private var trust: LinkTrust {
        var peers = Dictionary((keys?.peers ?? [:]).map { ($0.value, $0.key) }, uniquingKeysWith: { first, _ in first })
        for (role, keyName) in pool.granted { if let key = peers[keyName] { peers[role] = key } }
        return LinkTrust(peers: peers, endpoints: endpointOwners.compactMapValues { peers[$0] })
    }

    /// Every process of the run learns the keys anew (one joined, or took a place).
    private func broadcastTrust(except excluded: String? = nil) {
        guard keys != nil else { return }
        let trust = trust
        for name in trust.peers.keys where name != excluded && name != ControllerKeys.controllerName { send(.trust(trust), to: name) }
    }

    /// A process of the pool asks for a place: a stage process of the plan that has not
    /// registered, or one wanted since (a dead one's, a replica); otherwise it waits.
    private func offer(from id: String, _ hello: Hello, keyName: String?) {
        guard hello.speaksThisRevision else {
            send(.shutdown(reason: "this controller speaks control revision \(ControlMessage.revision): run the same Sluice release everywhere"), to: id)
            return
        }
        let now = monotonicSeconds()
        let machine = machine
        if let place = pool.placeGiven(to: id, now: now)
            ?? pool.freePlace(planned: machine.unregisteredStages, stillWanted: { machine.awaitsProcess($0) }, now: now) {
            grant(place, to: id, keyName: keyName, hello: hello)
        } else {
            pool.wait(id, keyName: keyName, hello: hello, now: now)
            send(.ping, to: id)
        }
    }

    private func grant(_ place: String, to id: String, keyName: String?, hello: Hello) {
        pool.give(place, to: id, keyName: keyName ?? "", now: monotonicSeconds())
        broadcastTrust()
        logger.info("\(place) is the process that joined the pool as \(keyName.map { "key '\($0)', " } ?? "")pid \(hello.pid) on \(hello.host)")
        send(.named(place), to: id)
    }

    /// Makes (or finds) the key of a process about to be started, and tells every role to let it in.
    private func admit(_ role: String) throws -> [String] {
        guard var keys else { return [] }
        if !keys.peers.values.contains(role) {
            let pair = try keys.folder.make(role, reuse: true)
            keys.peers[pair.publicKey] = role
            self.keys = keys
            authenticator?.allow([pair.publicKey: role])
            broadcastTrust(except: role)
        }
        return keys.roleArguments(role)
    }

    private func start(_ role: String) {
        if StageInstance.stage(of: role) != nil {
            if let joiner = pool.takeWaiting(now: monotonicSeconds()) {
                grant(role, to: joiner.id, keyName: joiner.keyName, hello: joiner.hello)
                return
            }
            // Started by hand, the place also goes to the next process that joins the pool.
            if !spawnStages { pool.wanted.append(role) }
        }
        // The launcher names the source and sink after their subcommands.
        let command = StageInstance.stage(of: role) != nil ? "stage" : role
        let keyArguments: [String]
        do {
            keyArguments = try admit(role)
        } catch {
            if spawnStages || StageInstance.stage(of: role) == nil {
                logger.error("cannot make a key for \(role): \(error)")
            } else {
                // A key folder this controller cannot write (a Secret on Kubernetes): the pool fills the place.
                logger.warning("\(role) is wanted: the next stage process that joins the pool takes it (no key for one started by name: \(error))")
            }
            return
        }
        let arguments = [command, "--controller", endpoints.control, "--name", role] + keyArguments
        guard spawnStages else {
            logger.warning("\(role) is wanted (a replica, or in place of a dead process): start `sluice \(arguments.joined(separator: " "))` (the controller waits \(Int(plan.config.controller.timeoutSeconds * 3)) s)")
            return
        }
        do {
            spawned.append(try startSluiceProcess(arguments + ["--managed"]))
        } catch {
            logger.error("cannot start \(role): \(error)")
        }
    }

    private func finish(_ outcome: ControllerOutcome) -> (report: RunReport, exitCode: Int32) {
        var sink: SinkSummary?
        switch outcome {
        case .completed(let summary), .stopped(let summary?): sink = summary
        default: break
        }
        let profile = profile(traces: sink?.traces ?? [], windowsOut: sink?.windows)
        lastProfile = profile
        controlDrops.flush()
        let report = RunReport(profile: profile, outcome: outcome, observed: observer,
                               processes: machine.coordinator?.instances ?? plan.stageNames,
                               initialRanges: plan.partition.ranges, initialReplicas: plan.replicaCounts,
                               lastPlanningModel: machine.lastPlanningModel, startedAt: machine.runStarted,
                               controllerDrops: controlDrops.counts, recovery: machine.recovery, controllerRefused: ownRefusals)
        switch outcome {
        case .completed, .stopped: return (report, 0)
        case .failed(let message):
            logger.error("pipeline failed: \(message)")
            return (report, 1)
        }
    }

    /// The profile of the run so far (complete once `run` has returned).
    public private(set) var lastProfile: ProfileData?

    /// Stage counters, queue depths and the sink's progress, from the messages and the clock
    /// this shell feeds it.
    private lazy var observer = RunObserver(stageCount: plan.partition.ranges.count,
                                            interval: plan.config.controller.heartbeatMilliseconds / 1000)

    private var ranges: [Range<Int>] { machine.coordinator?.ranges ?? plan.partition.ranges }

    private func profile(traces: [BatchTrace], windowsOut: UInt64?) -> ProfileData {
        let coordinator = machine.coordinator
        let sink = observer.counters["sink"]
        return ProfileData.make(
            pipeline: plan.config.name, cut: plan.cut, ranges: ranges, stageCounters: observer.stageCounters, traces: traces,
            model: coordinator?.rebalancer.model ?? CostModel(cut: plan.cut, stages: ranges.count),
            rebalances: coordinator?.history ?? [], windowsIn: observer.sourceDone?.windows,
            windowsOut: windowsOut ?? UInt64(sink?.windows ?? 0),
            durationSeconds: sink?.elapsedSeconds ?? 0, queueDepths: observer.queueDepths,
            replicas: Dictionary(uniqueKeysWithValues: (coordinator?.replicas ?? plan.replicaCounts).enumerated().map { ($0.offset, $0.element) }))
    }

    private func snapshot() -> MetricsSnapshot {
        let picked = metricsCut.cut(source: "source", stages: machine.stageInstances, sink: "sink")
        let stages = RunObserver.byStage(picked)
        var drops: [String: DropCounts] = [:]
        for (name, counters) in machine.counters where !counters.drops.isEmpty { drops[name] = counters.drops }
        if !controlDrops.counts.isEmpty { drops["controller"] = controlDrops.counts }
        var snapshot = MetricsSnapshot(stages: stages, ranges: ranges,
                                       layerSecondsPerWindow: machine.coordinator?.rebalancer.model.layerSeconds ?? [],
                                       epoch: machine.coordinator?.epoch ?? 1,
                                       rebalances: machine.coordinator?.history.filter(\.applied).count ?? 0,
                                       source: picked["source"], sink: picked["sink"], latency: picked["sink"]?.latency)
        snapshot.drops = drops
        for (name, counters) in machine.counters where !counters.refusedPeers.isEmpty { snapshot.refused[name] = counters.refusedPeers }
        if !ownRefusals.isEmpty { snapshot.refused["controller"] = ownRefusals }
        snapshot.recovery = machine.recovery
        if let model = machine.coordinator?.rebalancer.model {
            snapshot.linkBytesPerSecond = model.linkSecondsPerByte.map { $0.map { 1 / $0 } }
            snapshot.compression = model.compression
        }
        return snapshot
    }
}

/// The pool's bookkeeping: who waits, which places were given, and to whom.
private struct Pool {
    struct Joiner {
        var id: String
        var keyName: String?
        var hello: Hello
        var heard: Double
    }

    /// A waiting process that was not heard from for this long has gone.
    static let waitingSeconds = 3.0
    /// A place given is held this long for its process to register under it.
    static let registerSeconds = 10.0
    private(set) var waiting: [Joiner] = []
    /// Role name → the name of the key of the process it was given to ("" without CURVE).
    private(set) var granted: [String: String] = [:]
    /// Places given and not yet registered under: role name → (routing id, when).
    private var pending: [String: (id: String, at: Double)] = [:]
    /// Places a process started by hand would fill, wanted since the run began.
    var wanted: [String] = []

    /// Waiting processes kept at most: past it, new offers are answered but not kept.
    static let largestWaiting = 1024

    func placeGiven(to id: String, now: Double) -> String? {
        pending.first { $0.value.id == id && now - $0.value.at < Self.registerSeconds }?.key
    }

    /// A place of the plan nobody registered as, or one still wanted (a process that registered
    /// under its name by itself, or a replica given up, takes it off).
    mutating func freePlace(planned: [String], stillWanted: (String) -> Bool, now: Double) -> String? {
        pending = pending.filter { now - $0.value.at < Self.registerSeconds }
        wanted.removeAll { !stillWanted($0) }
        return (planned + wanted).first { pending[$0] == nil }
    }

    /// Keeps the order processes began to wait in: the first to wait is the first given a place.
    mutating func wait(_ id: String, keyName: String?, hello: Hello, now: Double) {
        waiting.removeAll { $0.id != id && now - $0.heard > Self.waitingSeconds }
        if let index = waiting.firstIndex(where: { $0.id == id }) {
            waiting[index].heard = now
        } else if waiting.count < Self.largestWaiting {
            waiting.append(Joiner(id: id, keyName: keyName, hello: hello, heard: now))
        }
    }

    mutating func takeWaiting(now: Double) -> Joiner? {
        waiting.removeAll { now - $0.heard > Self.waitingSeconds }
        return waiting.isEmpty ? nil : waiting.removeFirst()
    }

    mutating func give(_ place: String, to id: String, keyName: String, now: Double) {
        granted[place] = keyName
        pending[place] = (id, now)
        wanted.removeAll { $0 == place }
        waiting.removeAll { $0.id == id }
    }

    mutating func registered(_ name: String) {
        pending[name] = nil
        wanted.removeAll { $0 == name }
    }
}
