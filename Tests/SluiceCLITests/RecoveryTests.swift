import Foundation
import Testing
import SluiceConfig
import SluiceONNX
import SluiceProtocol
import SluiceRoles
import SluiceTensor
import SluiceTransport
import SluiceWire

/// Stage processes and the sink killed with SIGKILL under `sluice run`, mid-stream and under
/// backlog: the run goes on, and its outputs are exactly those of one process, in order, each once.
extension MultiProcess {
    @Suite struct RecoveryTests {
        /// A 3-stage run of the quickstart model, one window per batch, whose slow middle stage
        /// has batches queued before it (and in it) when a process is killed.
        static func pipeline(output: String, replicas: String = "", sinkType: String = "npy", heartbeatMilliseconds: Int = 100) throws -> String {
            try writePipeline("""
            model:
              path: \(MultiProcess.PipelineTests.cnn)
            source:
              type: recording
              path: \(MultiProcess.PipelineTests.recording)
              rate: max
            window:
              length: 100
              hop: 5
            batching:
              max_size: 1
              max_delay_ms: 5
            stages:
              count: 3
              slowdown: {1: 50.0}
            \(replicas)
            controller:
              heartbeat_ms: \(heartbeatMilliseconds)
              timeout_s: 4
            sink:
              type: \(sinkType)
              path: \(output)
              max_delay_ms: 0
            """)
        }

        /// The pid of the run's process named `role`, once it is up.
        static func pid(of role: String, runDirectory: String) -> Int32? {
            let deadline = Date().addingTimeInterval(30)
            while Date() < deadline {
                let found = processes(matching: runDirectory).filter { pid in
                    let commandLine = (FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") ?? Data()).map { $0 == 0 ? 32 : $0 }
                    return String(decoding: commandLine, as: UTF8.self).contains("--name \(role) ")
                        || String(decoding: commandLine, as: UTF8.self).hasSuffix("--name \(role)")
                }
                if let pid = found.first { return pid }
                usleep(100_000)
            }
            return nil
        }

        /// Runs the pipeline, kills `role` once the sink has written some batches, and checks the
        /// run's outputs and report.
        /// `signal`: SIGKILL, seen at once; or SIGSTOP, a process that is not dead but silent,
        /// which the controller must fence (kill) before it starts one in its place.
        static func killMidRun(_ role: String, replicas: String = "", restarted: Int, sinkType: String = "npy", signal: Int32 = SIGKILL) throws {
            let output = temporaryPath("scores.\(sinkType)")
            let report = temporaryPath("report.json")
            // A sink writes every line at once but reports it written only with its next
            // heartbeat, so the one that takes over finds windows in the output beyond those reported.
            let heartbeat = role == "sink" ? 500 : 100
            let run = try Running(["run", try pipeline(output: output, replicas: replicas, sinkType: sinkType, heartbeatMilliseconds: heartbeat), "--report", report])
            let runDirectory = "/tmp/sluice-\(run.pid)/"
            let victim = try #require(pid(of: role, runDirectory: runDirectory), "\(role) never started")
            #expect(run.waitForLog("all roles ready"), "the run never started")
            usleep(700_000)
            kill(victim, signal)
            let result = run.wait(timeout: 60)
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stderr.contains(role == "sink" || role == "source" ? "the \(role) died" : "\(role) (stage"), "the death was not logged: \(result.stderr)")
            if signal == SIGSTOP {
                #expect(result.stderr.contains("fenced \(role): killed its process \(victim)"), "\(result.stderr)")
                #expect(result.stderr.contains("silent for more than"), "\(result.stderr)")
            }
            // Recovered by the replay after the death, not by the fallback for a sink that stalls.
            #expect(!result.stderr.contains("has released nothing for"), "\(result.stderr)")
            let npy = sinkType == "npy" ? output : try Self.scoresOfLines(output)
            let json = try MultiProcess.PipelineTests.expectOutputsOfOneProcess(output: npy, report: report, hop: 5, stderr: result.stderr).report
            let recovery = try #require(json["recovery"] as? [String: Any], "no recovery in the report")
            #expect(recovery["deaths"] as? Int == 1 && recovery["restarts"] as? Int == restarted, "\(recovery)")
            // A new source makes the batches again itself; a new sink, or a stage's, is sent them again.
            if role != "source" {
                #expect((recovery["replays"] as? Int ?? 0) >= 1, "\(recovery)")
                #expect((recovery["replayedBatches"] as? Int ?? 0) > 0, "killed with nothing in flight: \(recovery)")
            }
            #expect(result.stderr.contains("(in order, none lost or duplicated)"), "\(result.stderr)")
            #expect(result.stderr.contains("recovered    1 process died: \(restarted) restarted"), "\(result.stderr)")
            #expect(processes(matching: runDirectory).isEmpty, "processes left behind")
        }

        /// The scores of a JSON-lines output as an .npy file, once its lines are checked to be
        /// windows 0, 1, 2, … each once, in order.
        static func scoresOfLines(_ path: String) throws -> String {
            let text = try String(contentsOfFile: path, encoding: .utf8)
            var scores: [Float] = []
            var width = 0
            for (index, line) in text.split(separator: "\n").enumerated() {
                let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "line \(index + 1): \(line)")
                #expect(object["window_seq"] as? Int == index, "line \(index + 1) is window \(object["window_seq"] ?? "?")")
                let row = try #require(object["scores"] as? [Double], "line \(index + 1) has no scores")
                width = row.count
                scores += row.map(Float.init)
            }
            let path = temporaryPath("scores-of-lines.npy")
            try NPY.write(Tensor(shape: [scores.count / max(width, 1), width], floats: scores), path: path)
            return path
        }

        @Test func aKilledStageIsStartedAgainAndTheOutputsEqualOneProcess() throws {
            try Self.killMidRun("stage-1", restarted: 1)
        }

        @Test func aKilledReplicaLeavesItsSiblingAndTheOutputsEqualOneProcess() throws {
            try Self.killMidRun("stage-1.1", replicas: "  replicas: {1: 2}", restarted: 0)
        }

        /// The new sink finds the rows the dead one wrote, cuts a partly written one, and
        /// appends after them; the source sends again what was not written out.
        @Test func aKilledSinkIsStartedAgainAndAnNPYOutputEqualsOneProcess() throws {
            try Self.killMidRun("sink", restarted: 1)
        }

        /// A new source passes over the windows of the recording the sink has, makes the rest
        /// again, and numbers its batches from the first one the sink has not released; what the
        /// dead one made is dropped.
        @Test func aKilledSourceIsStartedAgainAndTheOutputsEqualOneProcess() throws {
            try Self.killMidRun("source", restarted: 1)
        }

        /// The launcher starts a new controller; the roles, which went on streaming, rejoin it,
        /// and it takes the run over from what they say.
        @Test func aKilledControllerIsStartedAgainAndTheOutputsEqualOneProcess() throws {
            let output = temporaryPath("scores.npy")
            let report = temporaryPath("report.json")
            let run = try Running(["run", try Self.pipeline(output: output), "--report", report])
            let runDirectory = "/tmp/sluice-\(run.pid)/"
            #expect(run.waitForLog("all roles ready"), "the run never started")
            usleep(700_000)
            let controller = try #require(processes(matching: runDirectory).first { pid in
                let words = (FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") ?? Data()).split(separator: 0)
                return words.count > 1 && String(decoding: words[1], as: UTF8.self) == "controller"
            }, "no controller found")
            kill(controller, SIGKILL)
            let result = run.wait(timeout: 60)
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stderr.contains("the controller was killed"), "\(result.stderr)")
            #expect(result.stderr.contains("took the run over from a dead controller"), "\(result.stderr)")
            let json = try MultiProcess.PipelineTests.expectOutputsOfOneProcess(output: output, report: report, hop: 5, stderr: result.stderr).report
            let recovery = try #require(json["recovery"] as? [String: Any], "no recovery in the report")
            #expect(recovery["controllerRestarts"] as? Int == 1, "\(recovery)")
            #expect(result.stderr.contains("(in order, none lost or duplicated)"), "\(result.stderr)")
            #expect(result.stderr.contains("the controller died and was started again"), "\(result.stderr)")
            #expect(processes(matching: runDirectory).isEmpty, "processes left behind")
        }

        /// A live source killed mid-stream is started again on the same endpoint, and its sensors'
        /// sockets deliver to the new one what they send from then on. Killed once each sensor
        /// sent 150 samples (windows of 100, hop 50), it held each sensor's samples 100 to 149,
        /// the first half of its third window: exactly those 8 windows are lost, and every other
        /// window comes out, in order, equal to the model's output for it in this process.
        @Test func aKilledLiveSourceIsStartedAgainAndOnlyTheWindowsItHeldAreLost() throws {
            let output = temporaryPath("scores.jsonl")
            let report = temporaryPath("report.json")
            let file = try writePipeline(MultiProcess.ClaimsTests.pipeline(
                source: "  type: zmq\n  endpoint: tcp://127.0.0.1:6715\n  channels: 6", basePort: 6710,
                sink: "  type: jsonl\n  path: \(output)", controller: "controller:\n  heartbeat_ms: 100\n  timeout_s: 4"))
            let run = try Running(["run", file, "--report", report])
            #expect(run.waitForLog("starting the source"), "the run never started")
            let sensors = MultiProcess.ClaimsTests.sensors
            let chunks = try sensors.map { try MultiProcess.ClaimsTests.chunks(of: $0) }
            let context = ZMQContext()
            var sockets: [ZMQSocket?] = try sensors.map { _ in
                let socket = try ZMQSocket(context, .push, lingerMilliseconds: 5000, sendHighWaterMark: 1000, receiveHighWaterMark: 10)
                try socket.connect("tcp://127.0.0.1:6715")
                return socket
            }
            func send(rounds: Range<Int>) throws {
                for round in rounds {
                    for (index, socket) in sockets.enumerated() where round < chunks[index].count { _ = try socket?.send(chunks[index][round]) }
                }
            }
            try send(rounds: 0..<15)
            // Everything sent so far is taken and its windows are out, but for the partial ones.
            usleep(1_500_000)
            let victim = try #require(Self.pid(of: "source", runDirectory: "--controller tcp://127.0.0.1:6710"), "no source found")
            kill(victim, SIGKILL)
            #expect(run.waitForLog("source restarted"), "the source was not started again")
            // Every sensor's socket reconnects first (within its reconnect interval): the input
            // ends once the senders the source knows ended and no connection is open, so one that
            // ended before another reconnected would leave the latecomer's samples after the end.
            usleep(1_000_000)
            try send(rounds: 15..<(chunks.map(\.count).max() ?? 0))
            for index in sockets.indices {
                _ = try sockets[index]?.send(try MultiProcess.ClaimsTests.endOfStream(sensors[index], chunks: chunks[index].count))
                sockets[index] = nil  // the input ends once every sender ended and closed
            }
            let result = run.wait(timeout: 60)
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stderr.contains("a live source is started again"), "\(result.stderr)")
            #expect(!result.stderr.contains("none lost"), "\(result.stderr)")
            #expect(result.stderr.contains("sink: 1 process died holding input"), "\(result.stderr)")

            // The windows of one process over every sensor's samples, by sensor and start.
            let model = try ONNXModel.load(path: MultiProcess.ClaimsTests.cnn.replacingOccurrences(of: "{root}", with: packageRoot.path))
            var expected: [String: [Float]] = [:]
            var lostStarts: Set<String> = []
            for (index, sensor) in sensors.enumerated() {
                var windows = SlidingWindows(channels: 6, config: WindowConfig(length: 100, hop: 50, layout: .channelsFirst))
                var cut: [Window] = []
                var sample = 0
                for chunk in chunks[index] {
                    guard case .bytes(let headerBytes) = chunk[0], case .bytes(let valueBytes) = chunk[1] else { continue }
                    let header = try JSONDecoder().decode(SampleChunkHeader.self, from: Data(headerBytes))
                    let values = valueBytes.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
                    for row in 0..<(header.count ?? 0) {
                        let time = (header.t0 ?? 0) + Double(row) * (header.dt ?? 0)
                        if sample == 100 { lostStarts.insert("\(sensor)@\(time)") }
                        if let window = values[(row * 6)..<((row + 1) * 6)].withUnsafeBufferPointer({ windows.append(sensor: sensor, time: time, values: $0, label: nil) }) {
                            cut.append(window)
                        }
                        sample += 1
                    }
                }
                let scores = try #require(try model.run(inputs: ["window": Tensor(shape: [cut.count, 6, 100], floats: cut.flatMap(\.values))]).values.first)
                let width = scores.elementCount / cut.count
                for (row, window) in cut.enumerated() {
                    expected["\(sensor)@\(window.key.start)"] = Array(scores.floats[(row * width)..<((row + 1) * width)])
                }
            }
            let lines = try String(contentsOfFile: output, encoding: .utf8).split(separator: "\n")
            var seen: Set<String> = []
            var lastSequence = -1
            for line in lines {
                let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
                let sequence = try #require(object["window_seq"] as? Int)
                #expect(sequence > lastSequence, "window \(sequence) after \(lastSequence)")
                lastSequence = sequence
                let key = "\(object["sensor"] as? String ?? "?")@\(object["window_start"] as? Double ?? -1)"
                #expect(seen.insert(key).inserted, "\(key) twice")
                let want = try #require(expected[key], "\(key) is no window of the input")
                let got = try #require(object["scores"] as? [Double])
                #expect(zip(want, got).allSatisfy { abs(Double($0) - $1) <= 1e-4 * max(1, abs($1)) }, "\(key): \(got) for \(want)")
            }
            #expect(lostStarts.count == sensors.count)
            #expect(seen == Set(expected.keys).subtracting(lostStarts), "lost: \(Set(expected.keys).subtracting(seen).sorted())")
            let json = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: report))) as? [String: Any])
            let recovery = try #require(json["recovery"] as? [String: Any], "no recovery in the report")
            #expect(recovery["deaths"] as? Int == 1 && recovery["restarts"] as? Int == 1, "\(recovery)")
            #expect(processes(matching: "--controller tcp://127.0.0.1:6710").isEmpty, "processes left behind")
        }

        /// A stage process stopped (SIGSTOP), as one hung or cut off from the network is: silent
        /// past the timeout, it is declared dead and killed before one is started in its place,
        /// which could not otherwise take its name on the control socket.
        @Test func aSilentStageIsFencedAndStartedAgainAndTheOutputsEqualOneProcess() throws {
            try Self.killMidRun("stage-1", restarted: 1, signal: SIGSTOP)
        }

        /// The same for the sink: silent, it is killed, and a new one takes up its output.
        @Test func aSilentSinkIsFencedAndStartedAgainAndTheOutputsEqualOneProcess() throws {
            try Self.killMidRun("sink", restarted: 1, signal: SIGSTOP)
        }

        /// The same from the last whole line of a JSON-lines file: each window once, in order.
        @Test func aKilledSinkIsStartedAgainAndAJSONLinesOutputEqualsOneProcess() throws {
            try Self.killMidRun("sink", restarted: 1, sinkType: "jsonl")
        }
    }
}
