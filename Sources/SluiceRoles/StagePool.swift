import Foundation
import SluicePlan
import SluiceProtocol
import SluiceTransport

/// A stage process started without a name (`sluice stage --controller EP` alone) offers
/// itself to the run's pool and waits until the controller gives it a stage process's name: a
/// place of the plan nobody has taken, or one whose process died. It then runs as that process.
public enum StagePool {
    /// How often a waiting process offers itself again, and how long it waits for a word from
    /// the controller before it gives up.
    static let offerSeconds = 1.0
    static let silenceSeconds = 30.0

    /// The name the controller gave; nil when a stop signal came first.
    public static func join(controller endpoint: String, keys: RoleKeys?) throws -> String? {
        let logger = makeLogger("stage")
        let context = ZMQContext()
        let id = "join-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let channel = try ControlChannel(context: context, endpoint: endpoint, name: id, keys: keys)
        let hello = Hello(role: .stage, name: id, pid: getpid(), host: ProcessInfo.processInfo.hostName)
        logger.info("joining the pool of the pipeline at \(endpoint)")
        var nextOffer = 0.0
        var waitingSaid = false
        while StopSignal.received == 0 {
            if monotonicSeconds() >= nextOffer {
                channel.send(.join(hello))
                nextOffer = monotonicSeconds() + offerSeconds
            }
            _ = try? poll([(channel.socket, .readable)], timeoutMilliseconds: 100)
            while let message = channel.receive(logger: logger) {
                switch message {
                case .named(let name) where StageInstance.stage(of: name) != nil:
                    logger.info("joined the pipeline as \(name)")
                    return name
                case .named(let name):
                    logger.warning("the controller named this process '\(name.prefix(80))', which is no stage process's name; waiting on")
                case .shutdown(let reason):
                    throw RoleError("the controller turned this process away: \(reason)")
                default:
                    if !waitingSaid { logger.info("every stage has a process; waiting in the pool for a place") }
                    waitingSaid = true
                }
            }
            if channel.controllerSilent(for: silenceSeconds) {
                throw RoleError("no word from the controller at \(endpoint) for \(Int(silenceSeconds)) s")
            }
        }
        return nil
    }
}
