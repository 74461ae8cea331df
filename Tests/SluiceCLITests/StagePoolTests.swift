import Foundation
import Testing
import SluiceRoles

/// Stages started without a name join the run's pool: they fill the plan's stages in the order
/// they come, and one left waiting takes the place of a stage process that dies.
extension MultiProcess {
    @Suite struct StagePoolTests {
        @Test func poolProcessesFillTheStagesAndOneWaitingReplacesADeadOne() throws {
            let folder = temporaryPath("pool")
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            let file = try cnnRecordingPipeline(name: "pool", rate: "5x", stages: 2, basePort: 7400, sink: "  type: jsonl\n  path: \(folder)/out.jsonl",
                                             extra: "controller:\n  timeout_s: 2")
            let keys = folder + "/keys"
            #expect(try sluice("keys", keys, "controller", "source", "sink", "pool-a", "pool-b", "pool-c").status == 0)
            let control = "tcp://127.0.0.1:7400"
            let controller = try Running(["controller", file, "--control", control, "--keys", keys])
            var pool: [String: Running] = [:]
            var others: [Running?] = []
            // A failed expectation must not leave processes behind for the tests after this one.
            defer { for running in [controller] + Array(pool.values) + others.compactMap({ $0 }) where running.process.isRunning { kill(running.pid, SIGKILL) } }
            for member in ["pool-a", "pool-b", "pool-c"] {
                pool[member] = try Running(["stage", "--controller", control, "--key", "\(keys)/\(member).key",
                                            "--controller-key", "\(keys)/controller.pub"])
                // One at a time, so that the first two take the two stages and the third waits.
                #expect(pool[member]?.waitForLog(member == "pool-c" ? "waiting in the pool" : "joined the pipeline as") == true)
            }
            others = ["sink", "source"].map { name in
                try? Running(RoleCommand.arguments(role: name, controller: control, keyFolder: keys))
            }
            #expect(controller.waitForLog("starting the source"))
            usleep(1_500_000)
            let victim = try #require(pool.first { $0.value.waitForLog("joined the pipeline as stage-1", timeout: 0.1) })
            kill(victim.value.pid, SIGKILL)
            let result = controller.wait(timeout: 90)
            let members = pool.mapValues { $0.wait(timeout: 30) }
            _ = others.map { $0?.wait(timeout: 30) }
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stderr.contains("72 windows in, 72 out (in order, none lost or duplicated)"), "\(result.stderr)")
            #expect(result.stderr.contains("stage-1 is the process that joined the pool as key 'pool-c'"), "\(result.stderr)")
            #expect(members["pool-c"]?.stderr.contains("joined the pipeline as stage-1") == true, "\(members["pool-c"]?.stderr ?? "")")
            let single = try writePipeline(try String(contentsOfFile: file, encoding: .utf8)
                .replacingOccurrences(of: "kind: tcp", with: "kind: ipc").replacingOccurrences(of: "rate: 5x", with: "rate: max"))
            let reference = temporaryPath("reference.jsonl")
            #expect(try sluice("run", single, "--predictions", reference).status == 0)
            #expect(try String(contentsOfFile: "\(folder)/out.jsonl", encoding: .utf8) == (try String(contentsOfFile: reference, encoding: .utf8)))
        }
    }
}
