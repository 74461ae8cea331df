import Foundation
import Logging
import SluiceONNX
import SluicePlan
import SluiceProtocol
import SluiceTensor
import SluiceTransport

/// A stage process: runs a contiguous range of layers on every batch that reaches it.
/// It learns its range, model and endpoints from the controller, never from its command line.
public final class StageRole: PipelineRole {
    private let name: String
    private let context = ZMQContext()
    private let control: ControlChannel
    private var logger: Logger

    private var assignment: StageAssignment?
    private var executor: Executor?
    private var pull: ZMQSocket?
    private var push: ZMQSocket?
    private var counters = RoleCounters()
    private var layerTimings: [Int: LayerTiming] = [:]
    private var started = monotonicSeconds()

    public init(name: String, controller endpoint: String) throws {
        self.name = name
        logger = makeLogger(name)
        control = try ControlChannel(context: context, endpoint: endpoint, name: name)
    }

    /// Runs until the controller says shutdown (0), or a fatal error (1).
    public func run() -> Int32 {
        control.send(.hello(Hello(role: .stage, name: name, pid: getpid(), host: ProcessInfo.processInfo.hostName)))
        while true {
            if StopSignal.received > 0 || pendingShutdown {
                return 0
            }
            var items: [(ZMQSocket, PollEvents)] = [(control.socket, .readable)]
            if let pull { items.append((pull, .readable)) }
            let ready: [PollEvents]
            do {
                ready = try poll(items, timeoutMilliseconds: 50)
            } catch {
                logger.error("poll failed: \(error)")
                return 1
            }
            while let message = control.receive(logger: logger) {
                switch message {
                case .assignStage(let stageAssignment):
                    do {
                        try apply(stageAssignment)
                        control.send(.ready)
                    } catch {
                        logger.error("cannot take assignment: \(error)")
                        control.send(.failed(message: "\(error)"))
                        return 1
                    }
                case .shutdown(let reason):
                    heartbeatIfDue(force: true)
                    logger.debug("shutdown: \(reason)")
                    return 0
                default:
                    break
                }
            }
            let timeout = assignment?.liveness.timeoutSeconds ?? 30
            if control.controllerSilent(for: timeout) {
                logger.error("the controller has been silent for \(Int(timeout)) s; exiting")
                return 1
            }
            if ready.count > 1, ready[1].contains(.readable) {
                // Drain what is queued, but come back to the control socket regularly.
                for _ in 0..<64 {
                    guard let frames = try? pull?.receive(dontWait: true) else { break }
                    process(frames)
                }
            }
            heartbeatIfDue()
        }
    }

    private var nextHeartbeat = 0.0
    private var pendingShutdown = false

    /// While blocked sending, the controller may still tell this stage to stop.
    private func shutdownRequested() -> Bool {
        while let message = control.receive(logger: logger) {
            if case .shutdown = message { pendingShutdown = true }
        }
        return pendingShutdown
    }

    private func heartbeatIfDue(force: Bool = false) {
        guard let assignment, force || monotonicSeconds() >= nextHeartbeat else { return }
        nextHeartbeat = monotonicSeconds() + assignment.liveness.heartbeatSeconds
        counters.elapsedSeconds = monotonicSeconds() - started
        // Whatever is neither compute nor waiting to send is waiting for input.
        counters.idleSeconds = max(0, counters.elapsedSeconds - counters.busySeconds - counters.blockedSeconds)
        counters.layers = layerTimings.keys.sorted().map { layerTimings[$0]! }
        control.send(.heartbeat(counters))
    }

    private func apply(_ new: StageAssignment) throws {
        let model = try ONNXModel.load(path: new.modelPath)
        guard new.layers.start < new.layers.end, new.layers.end <= new.cut.layers.count else {
            throw RoleError("layer range \(new.layers) is outside the model's \(new.cut.layers.count) layers")
        }
        let nodes = new.cut.layers[new.layers.start].nodeStart..<new.cut.layers[new.layers.end - 1].nodeEnd
        executor = try Executor(model: model, nodes: nodes)
        if pull == nil {
            let pullSocket = try ZMQSocket(context, .pull, lingerMilliseconds: 0, sendHighWaterMark: 2, receiveHighWaterMark: 2)
            try pullSocket.bind(new.pullEndpoint)
            pull = pullSocket
        }
        if push == nil {
            let pushSocket = try ZMQSocket(context, .push, lingerMilliseconds: 5000, sendHighWaterMark: 2, receiveHighWaterMark: 2)
            try pushSocket.connect(new.pushEndpoint)
            push = pushSocket
        }
        assignment = new
        started = monotonicSeconds()
        counters = RoleCounters()
        logger.info("holding layers \(new.layers) (nodes \(nodes.lowerBound)..<\(nodes.upperBound), \(executor!.parameterBytes) bytes of weights)")
    }

    private func reject(_ reason: String) {
        counters.rejected += 1
        logger.warning("dropped a batch: \(reason)")
    }

    private func process(_ frames: [ZMQFrame]) {
        guard let assignment, let executor, let push else { return reject("no assignment yet") }
        let received = wallNanos()
        var batch: Batch
        do {
            batch = try Batch.decode(frames)
        } catch {
            return reject("\(error)")
        }
        let cursor = Int(batch.header.cursor)
        let range = assignment.layers
        if cursor < range.end {
            guard cursor >= range.start else {
                return reject("batch \(batch.header.batchSequence) needs layer \(cursor) but this stage holds \(range)")
            }
            let computeStart = wallNanos()
            let clockStart = monotonicSeconds()
            var values = batch.tensors
            let samples = Int(batch.header.windowCount)
            do {
                for layerIndex in cursor..<range.end {
                    let layer = assignment.cut.layers[layerIndex]
                    let layerStart = monotonicSeconds()
                    try executor.run(layer.nodes, values: &values)
                    var timing = layerTimings[layerIndex] ?? LayerTiming(layer: layerIndex, seconds: 0, samples: 0)
                    timing.seconds += monotonicSeconds() - layerStart
                    timing.samples += samples
                    layerTimings[layerIndex] = timing
                }
            } catch {
                counters.busySeconds += monotonicSeconds() - clockStart
                return reject("batch \(batch.header.batchSequence): \(error)")
            }
            let computeSeconds = monotonicSeconds() - clockStart
            if assignment.slowdown > 0 { usleep(UInt32(computeSeconds * assignment.slowdown * 1e6)) }
            counters.busySeconds += monotonicSeconds() - clockStart
            let boundary = assignment.cut.boundary(before: range.end)
            guard boundary.allSatisfy({ values[$0] != nil }) else {
                return reject("batch \(batch.header.batchSequence) lacks boundary tensors \(boundary.filter { values[$0] == nil })")
            }
            batch.setTensors(values.filter { boundary.contains($0.key) }, order: boundary)
            batch.header.cursor = UInt16(range.end)
            batch.header.hops.append(Hop(stage: UInt16(assignment.stageIndex), received: received, computeStart: computeStart,
                                         computeEnd: wallNanos(), sendStart: wallNanos()))
            counters.batches += 1
            counters.samples += samples
        }
        // A batch already past this stage's range passes through untouched.
        send(batch, on: push)
    }

    /// Sends downstream, counting the time spent waiting for room as blocked.
    private func send(_ batch: Batch, on socket: ZMQSocket) {
        let frames = batch.frames()
        var waitStart = monotonicSeconds()
        do {
            while try !socket.send(frames, dontWait: true) {
                _ = try poll([(socket, .writable), (control.socket, .readable)], timeoutMilliseconds: 100)
                if StopSignal.received > 0 || shutdownRequested() { return }
                counters.blockedSeconds += monotonicSeconds() - waitStart
                waitStart = monotonicSeconds()
                heartbeatIfDue()
            }
        } catch {
            logger.error("send failed: \(error)")
        }
        counters.blockedSeconds += monotonicSeconds() - waitStart
    }
}
