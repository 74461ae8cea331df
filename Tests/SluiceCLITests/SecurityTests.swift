import Foundation
import Testing
import SluiceProtocol
import SluiceRoles
import SluiceTensor
import SluiceTransport
import SluiceWire

/// Over tcp, `sluice run` gives every process a CURVE key of its own: a peer without a key, or
/// with one that is not the run's, gets nothing in or out, and is counted and logged.
extension MultiProcess {
    @Suite struct SecurityTests {
        static let basePort = 6960

        static func pipeline(output: String) throws -> String {
            try cnnRecordingPipeline(rate: "20x", stages: 2, basePort: basePort, sink: "  type: jsonl\n  path: \(output)")
        }

        /// A finished batch the sink would write out as predictions, numbered where real ones go.
        static func forgedBatch(sequence: UInt64) -> Batch {
            var forged = Batch(header: BatchHeader(batchSequence: sequence, firstWindow: 0, windowCount: 1, epoch: 1, cursor: 8,
                                                   created: 1, tensors: []),
                               metadata: WindowKey.encode([WindowKey(sensor: "forged", start: 0)]), tensors: [:])
            forged.setTensors(["scores": Tensor(shape: [1, 4], floats: [999, 999, 999, 999])], order: ["scores"])
            return forged
        }

        @Test func peersWithoutTheRunsKeysGetNothingInAndAreCounted() throws {
            let output = temporaryPath("secured.jsonl")
            let reportPath = temporaryPath("secured-report.json")
            let file = try Self.pipeline(output: output)
            let run = try Running(["run", file, "--report", reportPath])
            #expect(run.waitForLog("starting the source"))
            // The run's public keys are in its private folder; an attacker may know them (they are
            // public), but not the secret halves.
            let keys = KeyFolder(FileManager.default.temporaryDirectory.appendingPathComponent("sluice-\(run.pid)/keys").path)
            let sinkKey = try KeyFolder.readPublic(keys.path + "/sink.pub")
            let stageKey = try KeyFolder.readPublic(keys.path + "/stage-0.pub")
            let controllerKey = try KeyFolder.readPublic(keys.path + "/controller.pub")
            let stranger = try CurveKeyPair.generate()
            let context = ZMQContext()
            var sockets: [ZMQSocket] = []
            func socket(_ kind: SocketKind, _ port: Int, serverKey: String?, identity: String? = nil) throws -> ZMQSocket {
                let socket = try ZMQSocket(context, kind, lingerMilliseconds: 0, sendHighWaterMark: 100, receiveHighWaterMark: 100,
                                           identity: identity)
                if let serverKey { try socket.connectCurve(stranger, serverKey: serverKey) }
                try socket.connect("tcp://127.0.0.1:\(port)")
                sockets.append(socket)
                return socket
            }
            // Forged batches into stage 0 (base+1) and the sink (base+3), in plaintext and under a stranger's key.
            let intruders = [try socket(.push, Self.basePort + 3, serverKey: nil), try socket(.push, Self.basePort + 3, serverKey: sinkKey),
                             try socket(.push, Self.basePort + 1, serverKey: nil), try socket(.push, Self.basePort + 1, serverKey: stageKey)]
            // Registering as the sink and as stage 1 with the controller, the same two ways.
            let impostors = [try socket(.dealer, Self.basePort, serverKey: nil, identity: "sink"),
                             try socket(.dealer, Self.basePort, serverKey: controllerKey, identity: "stage-1")]
            let hello = ControlMessage.hello(Hello(role: .sink, name: "sink", pid: 1, host: "attacker")).encoded()
            for sequence in 0..<20 {
                for intruder in intruders { _ = try intruder.send(Self.forgedBatch(sequence: UInt64(sequence)).frames(), dontWait: true) }
                for impostor in impostors { _ = try impostor.send([.bytes(hello)], dontWait: true) }
                usleep(20_000)
            }
            for impostor in impostors {
                #expect(try impostor.receive(dontWait: true) == nil, "the controller answered a peer without the run's key")
            }
            // A process of the run is the name its key is filed under, and no other.
            let member = try ZMQSocket(context, .dealer, lingerMilliseconds: 0, sendHighWaterMark: 100, receiveHighWaterMark: 100,
                                       identity: "stage-7")
            try member.connectCurve(try keys.pair(of: "stage-0"), serverKey: controllerKey)
            try member.connect("tcp://127.0.0.1:\(Self.basePort)")
            sockets.append(member)
            try member.send([.bytes(ControlMessage.hello(Hello(role: .stage, name: "stage-7", pid: 1, host: "attacker")).encoded())])
            usleep(300_000)
            #expect(try member.receive(dontWait: true) == nil, "the controller answered stage-0's key speaking as stage-7")
            let result = run.wait(timeout: 90)
            sockets.removeAll()
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stderr.contains("72 windows in, 72 out (in order, none lost or duplicated)"), "\(result.stderr)")
            let lines = try String(contentsOfFile: output, encoding: .utf8).split(separator: "\n")
            #expect(lines.count == 72)
            #expect(!lines.contains { $0.contains("forged") }, "a forged prediction came out")
            let report = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: reportPath))) as? [String: Any])
            let refused = try #require(report["refused"] as? [String: [String: Int]], "\(report)")
            for process in ["sink", "stage-0", "controller"] {
                // A plaintext peer that hangs up before the server saw what it spoke fails as a bad handshake.
                let plaintext = (refused[process]?["without a key"] ?? 0) + (refused[process]?["with a bad handshake"] ?? 0)
                #expect(plaintext >= 1, "\(process): \(refused)")
                #expect((refused[process]?["with an unknown key"] ?? 0) >= 1, "\(process): \(refused)")
            }
            #expect(result.stderr.contains("refused a peer with an unknown key: 127.0.0.1 (key \(stranger.publicKey))"), "\(result.stderr)")
            #expect(result.stderr.contains("  refused      sink: "), "\(result.stderr)")
            let controllerDrops = try #require((report["dropped"] as? [String: Any])?["controller"] as? [String: Any], "\(report)")
            #expect("\(controllerDrops)".contains("unknown peer"), "\(controllerDrops)")
            #expect(result.stderr.contains("from 'stage-7', sent under the key of 'stage-0'"), "\(result.stderr)")
        }

        @Test func keysAreMadeOnceAndNeverReplaced() throws {
            let folder = temporaryPath("keys")
            let made = try sluice("keys", folder, "--pipeline", pipelineFile("imu-mlp-3stage.yaml"))
            #expect(made.status == 0, "\(made.stderr)")
            for name in ["controller", "source", "sink", "stage-0", "stage-1", "stage-2"] {
                let pair = try KeyFolder.readPair("\(folder)/\(name).key")
                #expect(made.stdout.contains("\(name): \(pair.publicKey)\n"))
                #expect(try KeyFolder.readPublic("\(folder)/\(name).pub") == pair.publicKey)
                var info = stat()
                #expect(stat("\(folder)/\(name).key", &info) == 0 && info.st_mode & 0o077 == 0, "\(name).key is readable by others")
            }
            let before = try String(contentsOfFile: "\(folder)/sink.key", encoding: .utf8)
            let again = try sluice("keys", folder, "sink")
            #expect(again.status != 0)
            #expect(again.stderr.contains("\(folder)/sink.key: it exists (a key is never replaced"), "\(again.stderr)")
            #expect(try String(contentsOfFile: "\(folder)/sink.key", encoding: .utf8) == before)
            let hostile = try sluice("keys", folder, "../escape")
            #expect(hostile.status != 0 && hostile.stderr.contains("'../escape' cannot name a key"), "\(hostile.stderr)")
        }

        /// A live source with `source.key`: sensors holding a listed key get their samples in;
        /// a sensor under another key, or in plaintext, gets nothing in and is counted.
        @Test func sensorsUnderCurveOnlyWithAListedKey() throws {
            let keys = temporaryPath("sensor-keys")
            #expect(try sluice("keys", keys, "sensors", "imu-fleet", "stranger").status == 0)
            let output = temporaryPath("sensors.jsonl")
            let reportPath = temporaryPath("sensors-report.json")
            let file = try writePipeline(ClaimsTests.livePipeline(sensorPort: 6985, basePort: 6980, sink: "  type: jsonl\n  path: \(output)",
                                                                  extraSource: "\n  key: \(keys)/sensors.key\n  senders: [\(keys)/imu-fleet.pub]"))
            let run = try Running(["run", file, "--report", reportPath, "--metrics-port", "6989"])
            #expect(run.waitForLog("CURVE: 1 sender keys let in"))
            #expect(run.waitForLog("starting the source"))
            let serverKey = try KeyFolder.readPublic("\(keys)/sensors.pub")
            // The input ends once every sender ended and closed its connection: the sockets close
            // at the end of this block.
            do {
                let context = ZMQContext()
                func sender(_ keys: CurveKeyPair?) throws -> ZMQSocket {
                    let socket = try ZMQSocket(context, .push, lingerMilliseconds: 5000, sendHighWaterMark: 1000, receiveHighWaterMark: 10)
                    if let keys { try socket.connectCurve(keys, serverKey: serverKey) }
                    try socket.connect("tcp://127.0.0.1:6985")
                    return socket
                }
                let strangers = [try sender(try KeyFolder.readPair("\(keys)/stranger.key")), try sender(nil)]
                for stranger in strangers {
                    for chunk in try ClaimsTests.chunks(of: "imu-0", as: "forged") { _ = try stranger.send(chunk, dontWait: true) }
                }
                // The stranger is turned away, and the controller has heard so, before the fleet's
                // input ends the run (a run this short may end before the source's next heartbeat).
                #expect(run.waitForLog("refused a peer with an unknown key"), "the source never refused the stranger")
                let deadline = Date().addingTimeInterval(30)
                while Date() < deadline, !(httpGet(port: 6989, path: "/metrics") ?? "").contains("sluice_refused_peers_total{role=\"source\"") {
                    usleep(50_000)
                }
                let fleet = try sender(try KeyFolder.readPair("\(keys)/imu-fleet.key"))
                for sensor in ClaimsTests.sensors {
                    let chunks = try ClaimsTests.chunks(of: sensor)
                    for chunk in chunks { _ = try fleet.send(chunk) }
                    _ = try fleet.send(try ClaimsTests.endOfStream(sensor, chunks: chunks.count))
                }
            }
            let result = run.wait(timeout: 90)
            #expect(result.status == 0, "\(result.stderr)")
            let lines = try String(contentsOfFile: output, encoding: .utf8).split(separator: "\n")
            #expect(lines.count == 72, "\(result.stderr)")
            #expect(!lines.contains { $0.contains("forged") }, "a sensor without a listed key got samples in")
            let report = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: reportPath))) as? [String: Any])
            let refused = try #require(report["refused"] as? [String: [String: Int]], "\(report)")
            #expect((refused["source"]?["with an unknown key"] ?? 0) >= 1, "\(refused)")
        }
    }
}
