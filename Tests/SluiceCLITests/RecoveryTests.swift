import Foundation
import Testing

/// Stage processes killed with SIGKILL under `sluice run`, mid-stream and under backlog: the run
/// goes on, and its outputs are exactly those of one process, in order, each once.
extension MultiProcess {
    @Suite struct RecoveryTests {
        /// A 3-stage run of the quickstart model, one window per batch, whose slow middle stage
        /// has batches queued before it (and in it) when a process is killed.
        static func pipeline(output: String, replicas: String = "") throws -> String {
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
              heartbeat_ms: 100
              timeout_s: 2
            sink:
              type: npy
              path: \(output)
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
        static func killMidRun(_ role: String, replicas: String = "", restarted: Int) throws {
            let output = temporaryPath("scores.npy")
            let report = temporaryPath("report.json")
            let run = try Running(["run", try pipeline(output: output, replicas: replicas), "--report", report])
            let runDirectory = "/tmp/sluice-\(run.pid)/"
            let victim = try #require(pid(of: role, runDirectory: runDirectory), "\(role) never started")
            #expect(run.waitForLog("all roles ready"), "the run never started")
            usleep(700_000)
            kill(victim, SIGKILL)
            let result = run.wait(timeout: 60)
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stderr.contains("\(role) (stage"), "the death was not logged: \(result.stderr)")
            // Recovered by the replay after the death, not by the fallback for a sink that stalls.
            #expect(!result.stderr.contains("has released nothing for"), "\(result.stderr)")
            let json = try MultiProcess.PipelineTests.expectOutputsOfOneProcess(output: output, report: report, hop: 5, stderr: result.stderr).report
            let recovery = try #require(json["recovery"] as? [String: Any], "no recovery in the report")
            #expect(recovery["deaths"] as? Int == 1 && recovery["restarts"] as? Int == restarted, "\(recovery)")
            #expect((recovery["replays"] as? Int ?? 0) >= 1, "\(recovery)")
            #expect((recovery["replayedBatches"] as? Int ?? 0) > 0, "killed with nothing in flight: \(recovery)")
            #expect(result.stderr.contains("(in order, none lost or duplicated)"), "\(result.stderr)")
            #expect(result.stderr.contains("recovered    1 stage process died: \(restarted) restarted"), "\(result.stderr)")
            #expect(processes(matching: runDirectory).isEmpty, "processes left behind")
        }

        @Test func aKilledStageIsStartedAgainAndTheOutputsEqualOneProcess() throws {
            try Self.killMidRun("stage-1", restarted: 1)
        }

        @Test func aKilledReplicaLeavesItsSiblingAndTheOutputsEqualOneProcess() throws {
            try Self.killMidRun("stage-1.1", replicas: "  replicas: {1: 2}", restarted: 0)
        }
    }
}
