import Foundation
import Logging
import SluiceConfig
import SluiceProtocol
import SluiceTransport

/// The controller process: the socket shell around `ControllerMachine`. It hands out
/// assignments, watches heartbeats, drains on stop, and reports the run.
public final class ControllerRole {
    private let plan: PipelinePlan
    private let endpoints: Endpoints
    private let context = ZMQContext()
    private let router: ZMQSocket
    private var machine: ControllerMachine
    private var logger = makeLogger("controller")
    private var sourceDone: SourceDone?
    private var started = monotonicSeconds()

    public init(plan: PipelinePlan, endpoints: Endpoints) throws {
        self.plan = plan
        self.endpoints = endpoints
        router = try ZMQSocket(context, .router, lingerMilliseconds: 2000, sendHighWaterMark: 10_000, receiveHighWaterMark: 10_000)
        try router.bind(endpoints.control)
        let coordinator = RebalanceCoordinator(
            ranges: plan.partition.ranges, epoch: 1,
            rebalancer: Rebalancer(config: plan.config.rebalance, cut: plan.cut, stages: plan.partition.ranges.count))
        machine = ControllerMachine(assignments: plan.assignments(endpoints),
                                    liveness: Liveness(heartbeatSeconds: plan.config.controller.heartbeatMilliseconds / 1000,
                                                       timeoutSeconds: plan.config.controller.timeoutSeconds),
                                    coordinator: coordinator)
    }

    /// Runs the pipeline to its end; returns the report and the process exit code.
    public func run() -> (report: RunReport, exitCode: Int32) {
        logger.info("listening on \(endpoints.control) for \(plan.stageNames.count) stages, a source and a sink")
        var handledSignals: Int32 = 0
        while true {
            if StopSignal.received > handledSignals {
                handledSignals = StopSignal.received
                if let outcome = perform(machine.handle(.stopRequested)) { return finish(outcome) }
            }
            if let outcome = perform(machine.handle(.tick(now: monotonicSeconds() - started))) { return finish(outcome) }
            _ = try? poll([(router, .readable)], timeoutMilliseconds: 20)
            while let frames = try? router.receive(dontWait: true) {
                guard frames.count == 2 else {
                    logger.warning("dropped a control message of \(frames.count) frames")
                    continue
                }
                let sender = frames[0].text
                let message: ControlMessage
                do {
                    message = try frames[1].withBytes { try ControlMessage.decode($0) }
                } catch {
                    logger.warning("dropped a control message from \(sender): \(error)")
                    continue
                }
                if case .sourceDone(let done) = message { sourceDone = done }
                if let outcome = perform(machine.handle(.received(from: sender, message))) { return finish(outcome) }
            }
        }
    }

    private func perform(_ actions: [ControllerAction]) -> ControllerOutcome? {
        var outcome: ControllerOutcome?
        for action in actions {
            switch action {
            case .send(let name, let message):
                do {
                    try router.send([.bytes(Array(name.utf8)), .bytes(message.encoded())], dontWait: true)
                } catch {
                    logger.warning("cannot reach \(name): \(error)")
                }
            case .log(let text):
                logger.info("\(text)")
            case .finish(let result):
                outcome = result
            }
        }
        return outcome
    }

    private func finish(_ outcome: ControllerOutcome) -> (report: RunReport, exitCode: Int32) {
        let report = RunReport(plan: plan, outcome: outcome, sourceDone: sourceDone, counters: machine.counters,
                               coordinator: machine.coordinator)
        switch outcome {
        case .completed, .stopped: return (report, 0)
        case .failed(let message):
            logger.error("pipeline failed: \(message)")
            return (report, 1)
        }
    }
}
