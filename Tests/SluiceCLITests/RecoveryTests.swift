import Foundation
import Testing
import SluiceTensor

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
        static func killMidRun(_ role: String, replicas: String = "", restarted: Int, sinkType: String = "npy") throws {
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
            kill(victim, SIGKILL)
            let result = run.wait(timeout: 60)
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stderr.contains(role == "sink" || role == "source" ? "the \(role) died" : "\(role) (stage"), "the death was not logged: \(result.stderr)")
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

        /// A new source cuts the windows of the recording again and numbers its batches from the
        /// first one the sink has not released; what the dead one made is dropped.
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

        /// The same from the last whole line of a JSON-lines file: each window once, in order.
        @Test func aKilledSinkIsStartedAgainAndAJSONLinesOutputEqualsOneProcess() throws {
            try Self.killMidRun("sink", restarted: 1, sinkType: "jsonl")
        }
    }
}
