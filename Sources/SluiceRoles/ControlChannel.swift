import Foundation
import Logging
import SluiceProtocol
import SluiceTransport

/// A role's DEALER socket to the controller, named after the role so the controller's ROUTER
/// can address it.
final class ControlChannel {
    let socket: ZMQSocket
    let name: String
    let endpoint: String
    private(set) var lastHeard = monotonicSeconds()

    init(context: ZMQContext, endpoint: String, name: String, keys: RoleKeys?) throws {
        self.name = name
        self.endpoint = endpoint
        // Linger long enough that a last "failed" or "sink_done" still leaves when the role exits.
        socket = try ZMQSocket(context, .dealer, lingerMilliseconds: 2000, sendHighWaterMark: 1000,
                               receiveHighWaterMark: 1000, identity: name)
        if let keys, endpoint.hasPrefix("tcp://") { try socket.connectCurve(keys.keys, serverKey: keys.controllerKey) }
        try socket.connect(endpoint)
    }

    func send(_ message: ControlMessage) {
        do {
            // Never block on the controller: a role whose controller is gone must still notice and exit.
            if try !socket.send([.bytes(message.encoded())], dontWait: true) {
                writeStandardError("\(name): the controller is not taking messages; dropped a \(message.type)\n")
            }
        } catch {
            writeStandardError("\(name): cannot reach the controller: \(error)\n")
        }
    }

    /// Next control message if one is waiting; malformed frames are logged and skipped.
    func receive(logger: Logger) -> ControlMessage? {
        while let frames = try? socket.receive(dontWait: true) {
            lastHeard = monotonicSeconds()
            guard let frame = frames.last else { continue }
            do {
                return try frame.withBytes { try ControlMessage.decode($0) }
            } catch {
                logger.warning("dropped a control frame: \(error)")
            }
        }
        return nil
    }

    func controllerSilent(for timeout: Double) -> Bool { monotonicSeconds() - lastHeard > timeout }
}
