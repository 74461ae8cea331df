import Foundation
import SluiceTestSupport
import Testing
import SluiceConfig
import SluiceProtocol
import SluiceRoles
import SluiceTensor
import SluiceTransport
import SluiceWire

/// Where Sluice writes: paths a user gave are opened in place (a device, a named pipe and a
/// symlink stay what they were), predictions stream out while the run goes, and a report never
/// shares a stream with the predictions.
enum Outputs {
    /// The 16 windows of Tests/Fixtures/quickstart_input.npy through two stage processes.
    static func tensorsPipeline(sink: String) throws -> String {
        try writePipeline("""
        model:
          path: {root}/pipelines/models/basicmotions-cnn.onnx
        source:
          type: tensors
          path: {root}/Tests/Fixtures/quickstart_input.npy
        batching:
          max_size: 4
        stages:
          count: 2
        sink:
        \(sink)
        """)
    }

    static func lines(_ path: String) -> [String] {
        String(decoding: FileManager.default.contents(atPath: path) ?? Data(), as: UTF8.self)
            .split(separator: "\n").map(String.init)
    }

    /// Reads a named pipe to its end on a thread of its own.
    final class PipeReader: @unchecked Sendable {
        private let lock = NSLock()
        private var bytes = Data()
        private var finished = false

        init(_ path: String) {
            Thread.detachNewThread { [self] in
                let descriptor = open(path, O_RDONLY)
                if descriptor >= 0 {
                    var chunk = [UInt8](repeating: 0, count: 65536)
                    while true {
                        let count = read(descriptor, &chunk, chunk.count)
                        if count <= 0 { break }
                        lock.withLock { bytes.append(contentsOf: chunk[0..<count]) }
                    }
                    close(descriptor)
                }
                lock.withLock { finished = true }
            }
        }

        func wait(timeout: Double) -> Data? {
            let deadline = Date().addingTimeInterval(timeout)
            while Date() < deadline {
                if let done = lock.withLock({ finished ? bytes : nil }) { return done }
                usleep(10_000)
            }
            return nil
        }
    }
}

extension MultiProcess {
    @Suite struct OutputTests {
        @Test(.enabled(if: getuid() == 0, "mknod needs root"))
        func aSinkOnADeviceAndAReportOnASymlinkAreWrittenInPlace() throws {
            let folder = try FileNodes.temporaryFolder()
            defer { try? FileManager.default.removeItem(atPath: folder) }
            let node = try FileNodes.nullNode(in: folder)
            let target = folder + "/report-target.json"
            let link = folder + "/report.json"
            FileManager.default.createFile(atPath: target, contents: Data("stale".utf8))
            try #require(symlink(target, link) == 0)
            let file = try Outputs.tensorsPipeline(sink: "  type: jsonl\n  path: \(node)")
            let result = try sluice("run", file, "--report", link)
            #expect(result.status == 0, "\(result.stderr)")
            #expect(FileNodes.isNullNode(node), "the sink replaced the device node")
            #expect(FileNodes.kind(link) == S_IFLNK, "--report replaced the symlink")
            let report = try JSONSerialization.jsonObject(with: FileManager.default.contents(atPath: target) ?? Data()) as? [String: Any]
            #expect(report?["windowsOut"] as? Int == 16, "\(String(describing: report))")
            #expect(FileNodes.kind("/dev/null") == S_IFCHR, "/dev/null is no longer a character device")
        }

        @Test func aSinkOnANamedPipeWritesIntoThePipe() throws {
            let folder = try FileNodes.temporaryFolder()
            defer { try? FileManager.default.removeItem(atPath: folder) }
            let fifo = folder + "/predictions.jsonl"
            try #require(mkfifo(fifo, 0o600) == 0)
            let reader = Outputs.PipeReader(fifo)
            let file = try Outputs.tensorsPipeline(sink: "  type: jsonl\n  path: \(fifo)")
            let result = try sluice("run", file, timeout: 60)
            #expect(result.status == 0, "\(result.stderr)")
            let received = try #require(reader.wait(timeout: 10), "the pipe's reader never saw the end")
            let lines = String(decoding: received, as: UTF8.self).split(separator: "\n")
            #expect(lines.count == 16 && lines.allSatisfy { $0.hasPrefix("{\"window_seq\":") }, "\(lines)")
            #expect(FileNodes.kind(fifo) == S_IFIFO, "the sink replaced the named pipe")
        }

        @Test(.enabled(if: getuid() == 0, "mknod needs root"))
        func profileWritesItsTraceAndChartInPlace() throws {
            let folder = try FileNodes.temporaryFolder()
            defer { try? FileManager.default.removeItem(atPath: folder) }
            let node = try FileNodes.nullNode(in: folder)
            let target = folder + "/trace-target.json"
            let link = folder + "/trace.json"
            FileManager.default.createFile(atPath: target, contents: nil)
            try #require(symlink(target, link) == 0)
            let file = try Outputs.tensorsPipeline(sink: "  type: jsonl\n  path: \"-\"")
            let result = try sluice("profile", file, "--json", "--predictions", node, "--trace", link, "--svg", node)
            #expect(result.status == 0, "\(result.stderr)")
            #expect(FileNodes.isNullNode(node))
            #expect(FileNodes.kind(link) == S_IFLNK)
            #expect((try? JSONSerialization.jsonObject(with: FileManager.default.contents(atPath: target) ?? Data())) != nil)
            // Standard output holds the profile alone.
            #expect((try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8))) != nil, "\(result.stdout.prefix(500))")
        }

        @Test func anNpySinkOnANamedPipeIsRefusedWithTheReason() throws {
            let folder = try FileNodes.temporaryFolder()
            defer { try? FileManager.default.removeItem(atPath: folder) }
            let fifo = folder + "/scores.npy"
            try #require(mkfifo(fifo, 0o600) == 0)
            let file = try Outputs.tensorsPipeline(sink: "  type: npy\n  path: \(fifo)")
            let result = try sluice("validate", file)
            #expect(result.status == 2, "\(result.stderr)")
            #expect(result.stderr.contains("sink.path") && result.stderr.contains("regular file"), "\(result.stderr)")
            #expect(FileNodes.kind(fifo) == S_IFIFO)
        }

        /// Live sensors through a run that is still going: the first window's prediction must
        /// reach the file long before the input ends (it used to wait for 16 KiB or the end).
        @Test(arguments: [SinkKind.jsonl, SinkKind.npy])
        func predictionsReachTheFileWhileTheRunGoes(kind: SinkKind) throws {
            let folder = try FileNodes.temporaryFolder()
            defer { try? FileManager.default.removeItem(atPath: folder) }
            let output = folder + (kind == .jsonl ? "/live.jsonl" : "/live.npy")
            let port = kind == .jsonl ? 6700 : 6710
            let file = try writePipeline("""
            model:
              path: {root}/pipelines/models/basicmotions-cnn.onnx
            source:
              type: zmq
              endpoint: tcp://127.0.0.1:\(port + 5)
              channels: 6
              idle_timeout_s: 1
            window:
              length: 100
              hop: 50
            batching:
              max_size: 8
              max_delay_ms: 20
            stages:
              count: 2
            transport:
              kind: tcp
              base_port: \(port)
            sink:
              type: \(kind.rawValue)
              path: \(output)
              max_delay_ms: 50
            """)
            let run = try Running(["run", file])
            defer { if run.process.isRunning { kill(run.pid, SIGKILL) } }
            let recording = try Recording.load(RecordingSource(path: packageRoot.path + "/pipelines/data/basicmotions-test.csv",
                                                               rate: .max, channels: nil, sampleRateHz: nil))
            let rows = (0..<recording.count).filter { recording.sensors[$0] == "imu-0" }
            let context = ZMQContext()
            let sensor = try ZMQSocket(context, .push, lingerMilliseconds: 5000, sendHighWaterMark: 1000, receiveHighWaterMark: 10)
            try sensor.connect("tcp://127.0.0.1:\(port + 5)")
            func send(_ part: ArraySlice<Int>, as name: String = "imu-0") throws {
                let header = SampleChunkHeader(sensor: name, t0: recording.times[part.first ?? 0], dt: 0.1, channels: 6, count: part.count,
                                               labels: part.map { recording.labels[$0] ?? "" })
                var values: [Float] = []
                for row in part { values += recording.samples[(row * 6)..<((row + 1) * 6)] }
                try sensor.send([.bytes(Array(try JSONEncoder().encode(header))), .bytes(values.withUnsafeBytes { Array($0) })])
            }
            // One window's worth of samples, then nothing until its prediction shows.
            try send(rows[0..<100])
            let rowBytes = 4 * 4
            func written() -> Int {
                kind == .jsonl ? Outputs.lines(output).count
                    : max(0, ((try? FileManager.default.attributesOfItem(atPath: output)[.size] as? Int) ?? 0) - 128) / rowBytes
            }
            // Meanwhile another sensor keeps the input alive, one sample at a time: too few
            // samples for a window of its own, but the input does not go idle and end.
            let deadline = Date().addingTimeInterval(20)
            var keepAlive = 0
            while written() < 1 && Date() < deadline && run.process.isRunning {
                try send(rows[keepAlive..<(keepAlive + 1)], as: "imu-keepalive")
                keepAlive += 1
                usleep(250_000)
            }
            let log = (try? String(contentsOfFile: run.errPath, encoding: .utf8)) ?? ""
            #expect(written() >= 1, "no prediction in \(output) while the run was going")
            #expect(run.process.isRunning && !log.contains("input finished"), "the input ended before the prediction showed: \(log)")
            // The rest; the input ends once the sensor has been silent for idle_timeout_s.
            for chunk in stride(from: 100, to: rows.count, by: 50) { try send(rows[chunk..<min(chunk + 50, rows.count)]) }
            let result = run.wait(timeout: 30)
            #expect(result.status == 0, "\(result.stderr)")
            // The whole output equals the model run on the same windows in this process.
            let reference = try MultiProcess.PipelineTests.singleProcessReference(hop: 50)
            let mine = reference.keys.indices.filter { reference.keys[$0].sensor == "imu-0" }
            let expected = mine.flatMap { Array(reference.scores.floats[($0 * 4)..<(($0 + 1) * 4)]) }
            if kind == .npy {
                let produced = try NPY.read(path: output)
                #expect(produced.shape == [mine.count, 4])
                #expect(allClose(produced.floats, expected, rtol: 1e-5, atol: 1e-7))
            } else {
                #expect(Outputs.lines(output).count == mine.count)
            }
        }

        /// `sluice run … 2>&1 | head -1`: once the reader is gone, writes fail. The run may fail
        /// (its predictions have nowhere to go) but no process may trap.
        @Test func aReaderThatGoesAwayEndsTheRunWithoutACrash() throws {
            let pipe = Pipe()
            let process = Process()
            process.executableURL = URL(fileURLWithPath: sluiceBinary)
            process.arguments = ["run", pipelineFile("quickstart.yaml")]
            process.standardOutput = pipe.fileHandleForWriting
            process.standardError = pipe.fileHandleForWriting
            try process.run()
            try pipe.fileHandleForWriting.close()
            try pipe.fileHandleForReading.close()
            let deadline = Date().addingTimeInterval(60)
            while process.isRunning && Date() < deadline { usleep(20_000) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
            #expect(process.terminationReason == .exit, "ended by signal \(process.terminationStatus)")
        }

        @Test func aReportIsRefusedWhereThePredictionsGo() throws {
            let quickstart = pipelineFile("quickstart.yaml")
            // The help's own example without --predictions: both would go to standard output.
            let profile = try sluice("profile", quickstart, "--json")
            #expect(profile.status == 64 && profile.stdout.isEmpty, "\(profile.stdout.prefix(300))")
            #expect(profile.stderr.contains("--predictions FILE"), "\(profile.stderr)")
            let run = try sluice("run", quickstart, "--report", "-")
            #expect(run.status == 64 && run.stdout.isEmpty && run.stderr.contains("--predictions FILE"), "\(run.stderr)")
            let same = temporaryPath("both.jsonl")
            let both = try sluice("run", quickstart, "--predictions", same, "--report", same)
            #expect(both.status == 64 && both.stderr.contains("--report"), "\(both.stderr)")
        }
    }
}
