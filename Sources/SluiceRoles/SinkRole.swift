import Foundation
import Logging
import SluiceConfig
import SluiceProtocol
import SluiceTensor
import SluiceTransport
import SluiceWire

/// The sink process: takes finished batches in any order and releases their predictions in
/// sequence order, each exactly once (see `SinkMachine`); this class writes them.
public final class SinkRole: PipelineRole, RoleAdapter {
    private let shell: RoleShell
    private var logger: Logger { shell.logger }
    private var machine = SinkMachine<Batch>()
    private var assignment: SinkAssignment?
    private var pull: ZMQSocket?
    /// A zmq sink's socket to its consumers.
    private var output: ZMQSocket?
    private var writer: PredictionWriter?
    private lazy var dropLog = DropLog(logger: logger)
    private let started = monotonicSeconds()
    /// Handling batches (decoding, ordering, writing): the rest of the time the sink waits for
    /// input, which tells the controller whether the link into it is what holds the stream.
    private var busySeconds = 0.0
    private var receivedBytes = 0

    public init(name: String, controller endpoint: String, keys: RoleKeys?, binding: DataBinding?) throws {
        shell = try RoleShell(name: name, controller: endpoint, keys: keys)
        pull = try binding.map { try shell.bindAdvertised($0) }
    }

    public func run() -> Int32 { shell.run(self) }

    var kind: RoleKind { .sink }
    var liveness: Liveness? { assignment?.liveness }
    var dataSocket: ZMQSocket? { pull }
    /// Wake in time to flush predictions that are due (sink.max_delay_ms), even with no batch coming.
    var pollMilliseconds: Int { Int(min(50, max(0, ((writer?.secondsUntilDue ?? 1) * 1000).rounded(.up)))) }

    func handle(_ message: ControlMessage) -> RoleExit? { perform(machine.handle(.control(message))) }

    func stopSignalled() -> RoleExit? { perform(machine.handle(.stopSignal)) }

    func receive(_ frames: [ZMQFrame]) -> RoleExit? {
        guard let assignment else { return nil }
        let handlingStart = monotonicSeconds()
        defer { busySeconds += monotonicSeconds() - handlingStart }
        receivedBytes += frames.reduce(0) { $0 + $1.count }
        let batch: Batch
        do {
            batch = try Batch.decode(frames)
        } catch {
            return perform(machine.handle(.undecodable("\(error)")))
        }
        // With a label output, a batch counts as whole only when it has one label per row too.
        let rows = { (name: String) in batch.tensors[name].flatMap { $0.rank >= 1 ? $0.shape[0] : nil } }
        let outputRows = rows(assignment.outputName)
        let wholeRows = assignment.labelName.map { label -> Int? in
            let oneLabelPerRow = batch.tensors[label].map { $0.elementCount == $0.shape.first } ?? false
            return oneLabelPerRow && rows(label) == outputRows ? outputRows : nil
        } ?? outputRows
        let arrival = SinkArrival(header: batch.header, verifiedWindows: batch.verifiedWindowCount,
                                  outputRows: wholeRows, metadata: batch.metadata,
                                  arrived: wallNanos(), payload: batch)
        let exit = perform(machine.handle(.batch(arrival)))
        if assignment.sink.delayMilliseconds > 0 { usleep(UInt32(min(assignment.sink.delayMilliseconds * 1000, 60e6))) }
        return exit
    }

    func step() -> RoleExit? {
        do {
            try writer?.flushIfDue()
        } catch {
            return perform(machine.handle(.outputFailed("\(error)")))
        }
        return noteFlush()
    }

    /// Tells the machine when everything written has left the process: only that is reported
    /// as written out, which is what the source may forget and a restarted sink resumes after.
    private func noteFlush() -> RoleExit? {
        guard writer?.isFlushed == true else { return nil }
        return perform(machine.handle(.outputFlushed))
    }

    func counters(final: Bool) -> RoleCounters? {
        guard assignment != nil else { return nil }
        if final { dropLog.flush() }  // the final heartbeat: say what the rate limit held back
        var counters = machine.counters
        counters.elapsedSeconds = monotonicSeconds() - started
        counters.busySeconds = busySeconds
        counters.receivedBytes = receivedBytes
        counters.idleSeconds = max(0, counters.elapsedSeconds - busySeconds)
        return counters
    }

    /// Performs the machine's directives in order; returns the exit one of them asks for.
    private func perform(_ actions: [SinkAction<Batch>]) -> RoleExit? {
        for action in actions {
            switch action {
            case .send(let message):
                shell.control.send(message)
            case .takeAssignment(let new):
                do {
                    try take(new)
                } catch {
                    return perform(machine.handle(.assignmentFailed("\(error)")))
                }
                if let held = writer?.windowsHeld { logger.info("taking up the stream after the \(held) windows the output holds") }
                if let exit = perform(machine.handle(.assignmentTaken(at: wallNanos(), outputHolds: writer?.windowsHeld))) { return exit }
            case .release(let release):
                if let exit = write(release) { return exit }
            case .drop(let batches, let windows, let reason, let detail):
                dropLog.drop([(batches, .batch), (windows, .window)], reason, detail)
            case .log(let level, let message):
                logger.log(level, message)
            case .finishOutput:
                do {
                    try writer?.finish()
                } catch {
                    return perform(machine.handle(.outputFailed("\(error)")))
                }
                if let exit = noteFlush() { return exit }
                if let exit = perform(machine.handle(.outputFinished)) { return exit }
            case .flushOutput:
                do {
                    try writer?.flushNow()
                } catch {
                    return perform(machine.handle(.outputFailed("\(error)")))
                }
                if let exit = noteFlush() { return exit }
            case .closeOutput:
                try? writer?.finish()
            case .finish(let status, let finalHeartbeat):
                return RoleExit(status: status, finalHeartbeat: finalHeartbeat)
            }
        }
        return nil
    }

    private func take(_ new: SinkAssignment) throws {
        // Bound once: an assignment taken again (a move, a takeover) keeps the consumers' socket.
        if output == nil, let network = new.sink.network { output = try shell.bindOutput(network) }
        writer = try PredictionWriter(config: new.sink, classes: new.classes, modelLabels: new.modelLabels, resuming: new.resume != nil,
                                      deliver: output.map { socket in { [shell] in shell.send([.bytes($0)], on: socket).delivered } })
        if let network = new.sink.network {
            logger.info("sending predictions to \(network.pattern == .push ? "a consumer" : "subscribers") at \(network.endpoint)")
        }
        if pull == nil {
            let socket = try ZMQSocket(shell.context, .pull, lingerMilliseconds: 0, sendHighWaterMark: 2, receiveHighWaterMark: 2)
            try shell.bindData(socket, new.pullEndpoint)
            pull = socket
        }
        assignment = new
    }

    /// Writes a released batch's predictions and tells the machine what was predicted.
    private func write(_ release: SinkRelease<Batch>) -> RoleExit? {
        guard let assignment, let writer, let output = release.payload.tensors[assignment.outputName] else { return nil }
        let label = assignment.labelName.flatMap { release.payload.tensors[$0] }
        let predictions = writer.write(output: output, label: label, keys: release.keys, batch: release.batch, firstWindow: release.firstWindow,
                                       alreadyOut: release.alreadyOut)
        if let exit = perform(machine.handle(.written(keys: release.keys, predictions: predictions))) { return exit }
        return noteFlush()
    }
}
