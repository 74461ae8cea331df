import Foundation
import Testing
import SluiceConfig
import SluiceProtocol
import SluiceTensor
import SluiceTransport

extension MultiProcess {
    /// A source whose first stage takes nothing waits to send, serving the controller meanwhile:
    /// a mark is answered with the batch after the one waiting, and a shutdown ends it like any
    /// shutdown, with a last heartbeat carrying its counts and status 0, without waiting out the
    /// linger of the batches that cannot leave.
    @Test func aSourceShutDownWhileItWaitsToSendReportsOnceMoreAndExits() throws {
        let context = ZMQContext()
        let controlEndpoint = "ipc://\(temporaryPath("control.ipc"))"
        let controller = try ZMQSocket(context, .router, lingerMilliseconds: 0, sendHighWaterMark: 100, receiveHighWaterMark: 1000)
        try controller.bind(controlEndpoint)
        let rows = temporaryPath("rows.npy")
        try NPY.write(Tensor(shape: [1, 4], floats: [1, 2, 3, 4]), path: rows)
        defer { try? FileManager.default.removeItem(atPath: rows) }

        let source = try Running(["source", "--controller", controlEndpoint, "--name", "source"])
        defer { if source.process.isRunning { kill(source.pid, SIGKILL) } }
        var heard: [ControlMessage] = []
        /// Takes the controller's messages until one matches, or `timeout` seconds pass.
        func listen(_ timeout: Double = 20, until matches: (ControlMessage) -> Bool) -> ControlMessage? {
            let deadline = Date().addingTimeInterval(timeout)
            while Date() < deadline {
                _ = try? poll([(controller, .readable)], timeoutMilliseconds: 50)
                while let frames = try? controller.receive(dontWait: true) {
                    guard let payload = frames.last, let message = try? payload.withBytes({ try ControlMessage.decode($0) }) else { continue }
                    heard.append(message)
                    if matches(message) { return message }
                }
            }
            return nil
        }
        func tell(_ message: ControlMessage) throws {
            _ = try controller.send([.bytes(Array("source".utf8)), .bytes(message.encoded())])
        }

        #expect(listen(until: { $0.type == "hello" }) != nil)
        // Nothing binds the first stage's endpoint: after the socket's two queued batches, sends wait.
        try tell(.assignSource(SourceAssignment(
            source: .tensors(TensorsSource(path: rows, rate: .max, rowsPerSecond: nil, repeats: 1000)), window: nil,
            batching: BatchingConfig(maxSize: 1, maxDelayMilliseconds: 1), inputName: "x", windowShape: [4], epoch: 1,
            pushEndpoints: ["ipc://\(temporaryPath("nobody.ipc"))"],
            liveness: Liveness(heartbeatSeconds: 1000, timeoutSeconds: 60))))
        #expect(listen(until: { $0 == .ready }) != nil)
        try tell(.start)
        usleep(300_000)
        try tell(.mark(epoch: 2))
        guard case .marked(let mark)? = listen(until: { $0.type == "marked" }) else {
            Issue.record("no answer to the mark: \(heard.map(\.type))")
            return
        }
        try tell(.shutdown(reason: "the test is over"))
        let shutDownAt = Date()
        let finished = source.wait(timeout: 20)
        let exitSeconds = Date().timeIntervalSince(shutDownAt)
        _ = listen(1) { _ in false }
        #expect(finished.status == 0, "\(finished.stderr)")
        #expect(exitSeconds < 3, "the source took \(exitSeconds) s to exit")
        guard case .heartbeat(let last)? = heard.last else {
            Issue.record("the source's last word was not a heartbeat: \(heard.map(\.type))")
            return
        }
        // Heartbeats are 1000 s apart: after the first, only the final one is sent.
        #expect(last.blockedSeconds > 0, "\(last)")
        #expect(UInt64(last.batches) + 1 == mark.firstBatch, "sent \(last.batches), marked from \(mark.firstBatch)")
    }
}
