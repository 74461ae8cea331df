import Foundation
import Testing
import SluiceProfile
import SluiceRoles

/// Roles on five hosts: Linux network namespaces joined by veth links to one bridge
/// (tools/netns.sh), each role started by hand as an operator would, CURVE on every link, the
/// stages and the sink binding their own addresses. The outputs equal one machine's, byte for
/// byte. Needs root (network namespaces), as CI has.
extension MultiProcess {
    @Suite(.enabled(if: getuid() == 0, "network namespaces need root")) struct MultiHostTests {
        static let ip = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"].first { FileManager.default.isExecutableFile(atPath: $0) } ?? "ip"
        static let netns = packageRoot.path + "/tools/netns.sh"

        static func hosts(_ arguments: String...) throws {
            let result = try Running(arguments, executable: netns).wait(timeout: 30)
            #expect(result.status == 0, "tools/netns.sh \(arguments.joined(separator: " ")): \(result.stderr)")
        }

        /// `sluice ARGUMENTS` on host `host` (sluice-hHOST, address 10.231.0.HOST). With
        /// `withoutModels`, the host has no shared filesystem for models: an empty folder is
        /// mounted over pipelines/models for this process alone.
        static func on(_ host: Int, _ arguments: [String], withoutModels: Bool = false) throws -> Running {
            let hide = withoutModels
                ? ["unshare", "--mount", "sh", "-c", "mount -t tmpfs models \"$0\" && exec \"$@\"", packageRoot.path + "/pipelines/models"] : []
            return try Running(["netns", "exec", "sluice-h\(host)"] + hide + [sluiceBinary] + arguments, executable: ip)
        }

        static func pipeline(_ folder: String, rate: String, controller: String = "") throws -> String {
            try cnnRecordingPipeline(name: "multi-host", rate: rate, stages: 3, basePort: 7100, sink: "  type: jsonl\n  path: \(folder)/out.jsonl",
                                  extra: controller)
        }

        /// The controller on host 1, the source and stage 0 on host 2, stage 1 on host 3 (bound on
        /// every address, advertised by its own), stage 2 on host 4, the sink on host 5; ports
        /// picked by the system but stage 0's. Returns the controller's process and the output.
        /// `standby`: a sixth host whose stage process waits in the pool.
        static func start(rate: String, controller settings: String = "", stage1Advertises: String = "10.231.0.3", standby: Bool = false) throws
            -> (controller: Running, roles: [Running], output: String, pipeline: String) {
            try hosts("up", standby ? "6" : "5")
            let folder = temporaryPath("multi-host")
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            let file = try pipeline(folder, rate: rate, controller: settings)
            let keys = folder + "/keys"
            #expect(try sluice("keys", keys, "--pipeline", file, "stages").status == 0)
            let controller = try on(1, ["controller", file, "--control", "tcp://10.231.0.1:7100", "--keys", keys])
            // The commands Kubernetes pods run (`sluice deploy kubernetes`), with these hosts'
            // addresses: stages join the pool under one key, without a name. Only the controller's
            // host has the model: the stages fetch it.
            func role(_ name: String, bind: String? = nil, advertise: String? = nil) -> [String] {
                RoleCommand.arguments(role: name, controller: "tcp://10.231.0.1:7100", keyFolder: keys, bind: bind, advertise: advertise,
                                      modelCache: name == "stages" ? "\(folder)/cache-\(UUID().uuidString)" : nil, joining: name == "stages")
            }
            var roles: [Running] = []
            // One at a time, so that each host's process takes the stage after the last one's.
            for (host, bind, advertise) in [(2, "tcp://10.231.0.2:7201", nil), (3, "tcp://0.0.0.0:0", stage1Advertises), (4, "tcp://10.231.0.4:0", nil)]
                + (standby ? [(6, "tcp://10.231.0.6:0", nil)] : []) {
                let stage = try on(host, role("stages", bind: bind, advertise: advertise), withoutModels: true)
                #expect(stage.waitForLog(host == 6 ? "waiting in the pool" : "joined the pipeline as stage-\(host - 2)"), "\(stage.wait(timeout: 1).stderr)")
                roles.append(stage)
            }
            roles.append(try on(5, role("sink", bind: "tcp://10.231.0.5:0"), withoutModels: true))
            roles.append(try on(2, role("source"), withoutModels: true))
            return (controller, roles, folder + "/out.jsonl", file)
        }

        /// The same pipeline in one place (ipc, one machine): what every host layout must print.
        static func reference(_ file: String) throws -> String {
            let text = try String(contentsOfFile: file, encoding: .utf8).replacingOccurrences(of: "kind: tcp", with: "kind: ipc")
            let single = try writePipeline(text)
            let output = temporaryPath("reference.jsonl")
            let result = try sluice("run", single, "--predictions", output)
            #expect(result.status == 0, "\(result.stderr)")
            return try String(contentsOfFile: output, encoding: .utf8)
        }

        @Test func rolesOnFiveHostsGiveOneMachinesOutputs() throws {
            defer { try? Self.hosts("down") }
            let run = try Self.start(rate: "max")
            let result = run.controller.wait(timeout: 90)
            let roles = run.roles.map { $0.wait(timeout: 30) }
            #expect(result.status == 0, "\(result.stderr)\n\(roles.map(\.stderr).joined(separator: "\n"))")
            #expect(result.stderr.contains("72 windows in, 72 out (in order, none lost or duplicated)"), "\(result.stderr)")
            for (name, address) in [("stage-0", "tcp://10.231.0.2:7201"), ("stage-1", "tcp://10.231.0.3:"), ("stage-2", "tcp://10.231.0.4:"),
                                    ("sink", "tcp://10.231.0.5:")] {
                #expect(result.stderr.contains("\(name) is reached at \(address)"), "\(result.stderr)")
            }
            #expect(try String(contentsOfFile: run.output, encoding: .utf8) == (try Self.reference(run.pipeline)))
            // Each stage was sent the weights of its own layers only, checked by their digest.
            let split = ["0-2", "3-6", "7"]
            for (index, stage) in roles.prefix(3).enumerated() {
                #expect(stage.stderr.contains("joined the pipeline as stage-\(index)"), "stage-\(index): \(stage.stderr)")
                #expect(stage.stderr.contains("is not on this host; fetching the weights of layers \(split[index]) from the controller"),
                        "stage-\(index): \(stage.stderr)")
                #expect(stage.stderr.contains("fetched the weights of layers \(split[index]) from the controller into"), "stage-\(index): \(stage.stderr)")
                #expect(result.stderr.contains("sending the weights of layers \(split[index]) ("), "\(result.stderr)")
            }
        }

        /// Stage 2's host is cut off for 5 s mid-run, less than `controller.timeout_s`: TCP
        /// carries on once the link is back, and nothing is lost or changed.
        @Test func aLinkDownForFiveSecondsLosesNothing() throws {
            defer { try? Self.hosts("down") }
            let run = try Self.start(rate: "5x")
            #expect(run.controller.waitForLog("starting the source"))
            usleep(1_500_000)
            try Self.hosts("cut", "4")
            usleep(5_000_000)
            try Self.hosts("mend", "4")
            let result = run.controller.wait(timeout: 120)
            _ = run.roles.map { $0.wait(timeout: 30) }
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stderr.contains("72 windows in, 72 out (in order, none lost or duplicated)"), "\(result.stderr)")
            #expect(try String(contentsOfFile: run.output, encoding: .utf8) == (try Self.reference(run.pipeline)))
        }

        /// Stage 1 says it is reached at an address no host has: stage 0 cannot hand it a
        /// batch. The run fails naming the link, within five timeouts, and never hangs.
        @Test func anUnreachableNextHopFailsTheRunNamingIt() throws {
            defer { try? Self.hosts("down") }
            let started = Date()
            // The recording lasts 25 s: stage 0 is still asked for batches when its wait runs out.
            let run = try Self.start(rate: "2x", controller: "controller:\n  timeout_s: 2", stage1Advertises: "10.231.0.99")
            let result = run.controller.wait(timeout: 60)
            _ = run.roles.map { $0.wait(timeout: 30) }
            #expect(result.status == 1, "\(result.stderr)")
            #expect(result.stderr.contains("stage-0: nothing at tcp://10.231.0.99:"), "\(result.stderr)")
            #expect(Date().timeIntervalSince(started) < 40)
        }

        /// A stage's host dies mid-run while a sixth host's process waits in the pool: it takes
        /// the place, at its own address, the hop before connects to it, and nothing is lost.
        @Test func aStandbyOnAnotherHostTakesADeadStagesPlace() throws {
            defer { try? Self.hosts("down") }
            let run = try Self.start(rate: "5x", controller: "controller:\n  timeout_s: 2", standby: true)
            #expect(run.controller.waitForLog("starting the source"))
            usleep(1_500_000)
            kill(run.roles[1].pid, SIGKILL)
            let result = run.controller.wait(timeout: 120)
            let roles = run.roles.map { $0.wait(timeout: 30) }
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stderr.contains("72 windows in, 72 out (in order, none lost or duplicated)"), "\(result.stderr)")
            #expect(result.stderr.contains("stage-1 is reached at tcp://10.231.0.6:"), "\(result.stderr)")
            #expect(roles[3].stderr.contains("joined the pipeline as stage-1"), "\(roles[3].stderr)")
            #expect(try String(contentsOfFile: run.output, encoding: .utf8) == (try Self.reference(run.pipeline)))
        }

        /// What leaves stage 0's host is slowed to 2 Mbit/s with `tc tbf`, and the recording comes
        /// at four times its pace, more than that link carries. The controller measures the
        /// link by what stage 1 takes off it while stage 0 waits for room, finds it the
        /// bottleneck, and relieves it: it moves the cut to a smaller boundary and, under
        /// `stages.compress: auto`, narrows the link to fp16. The run reports which, the link's
        /// measured rate and the error narrowing put in; the classes equal a one-machine run's
        /// and the scores stay within half precision of them.
        @Test func aSlowLinkIsMeasuredAndRelieved() throws {
            defer { try? Self.hosts("down") }
            try Self.hosts("up", "5")
            let folder = temporaryPath("slow-link")
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            let file = try writePipeline("""
            name: slow-link
            model:
              path: {root}/pipelines/models/basicmotions-mlp.onnx
            source:
              type: recording
              path: {root}/pipelines/data/basicmotions-test.csv
              rate: 4x
            window:
              length: 100
              hop: 1
            batching:
              max_size: 16
              max_delay_ms: 10
            stages:
              count: 3
              split: ["0-1", "2", "3-5"]
              compress: auto
            transport:
              kind: tcp
              base_port: 7300
            sink:
              type: jsonl
              path: \(folder)/out.jsonl
            rebalance:
              policy: auto
              interval_s: 1
              warmup_s: 1
            """)
            let keys = folder + "/keys"
            #expect(try sluice("keys", keys, "--pipeline", file, "stages").status == 0)
            // Only what leaves stage 0's host: the weights the controller sends it come at full speed.
            try Self.hosts("rate", "2", "2mbit", "out")
            let report = folder + "/report.json"
            let controller = try Self.on(1, ["controller", file, "--control", "tcp://10.231.0.1:7300", "--keys", keys, "--report", report])
            func role(_ name: String, bind: String? = nil) -> [String] {
                RoleCommand.arguments(role: name, controller: "tcp://10.231.0.1:7300", keyFolder: keys, bind: bind, joining: name == "stages")
            }
            var roles: [Running] = []
            for host in 2...4 {
                let stage = try Self.on(host, role("stages", bind: "tcp://10.231.0.\(host):0"), withoutModels: true)
                #expect(stage.waitForLog("joined the pipeline as stage-\(host - 2)"), "\(stage.wait(timeout: 1).stderr)")
                roles.append(stage)
            }
            roles.append(try Self.on(5, role("sink", bind: "tcp://10.231.0.5:0")))
            roles.append(try Self.on(1, role("source")))
            let result = controller.wait(timeout: 120)
            let finished = roles.map { $0.wait(timeout: 30) }
            #expect(result.status == 0, "\(result.stderr)\n\(finished.map(\.stderr).joined(separator: "\n"))")
            #expect(result.stderr.contains("3208 windows in, 3208 out (in order, none lost or duplicated)"), "\(result.stderr)")

            let summary = try RunReport.read(Data(contentsOf: URL(fileURLWithPath: report)))
            let link = summary.links?.first
            let rate = link?.measuredBytesPerSecond ?? 0
            #expect(rate > 150_000 && rate < 330_000, "2 Mbit/s is 250 kB/s; measured \(rate) B/s")
            #expect(summary.links?.dropFirst().allSatisfy { $0.measuredBytesPerSecond == nil } == true, "only stage 0's link was slow")
            // The decision that narrowed the link, else the last cut move (an earlier one may have
            // been made on compute alone, before the link was measured).
            let relief = summary.rebalances.first { $0.applied && $0.change.contains("narrows stage 0's link") }
                ?? summary.rebalances.last { $0.applied && $0.change.contains("moves the cut") }
            #expect(relief != nil, "\(summary.rebalances)\n\(result.stderr)")
            if let relief {
                #expect(result.stderr.contains(relief.change), "the run says what it did: \(result.stderr)")
                let measured = (relief.measuredBeforeWindowsPerSecond ?? 0, relief.measuredAfterWindowsPerSecond ?? 0)
                #expect(measured.1 > measured.0, "measured before and after: \(measured)\n\(result.stderr)")
            }
            // No host but the controller's has the model: each stage was sent its layers' weights,
            // and the stage a move gave more layers was sent theirs before it prepared.
            let stage0 = finished.first?.stderr ?? ""
            #expect(stage0.contains("fetched the weights of layers 0-1 from the controller"), "\(stage0)")
            if let relief, relief.newSplit[0].end > 2 {
                #expect(stage0.contains("fetched the weights of layers 0-\(relief.newSplit[0].end - 1) from the controller"), "\(stage0)")
            }
            if link?.compression == .fp16 {
                #expect((link?.narrowingRelativeError ?? 1) < 1e-3)
                #expect(result.stderr.contains("narrowed to fp16, relative error"), "\(result.stderr)")
            }

            let reference = try Self.reference(file).split(separator: "\n")
            let output = try String(contentsOfFile: folder + "/out.jsonl", encoding: .utf8).split(separator: "\n")
            #expect(output.count == reference.count)
            struct Line: Decodable, Equatable { var window_seq: Int; var sensor: String; var `class`: String; var scores: [Float] }
            for (got, expected) in zip(output, reference) {
                let a = try JSONDecoder().decode(Line.self, from: Data(got.utf8))
                let b = try JSONDecoder().decode(Line.self, from: Data(expected.utf8))
                #expect(a.window_seq == b.window_seq && a.sensor == b.sensor && a.class == b.class, "\(got)\n\(expected)")
                #expect(zip(a.scores, b.scores).allSatisfy { abs($0 - $1) < 5e-3 }, "\(got)\n\(expected)")
            }
        }
    }
}
