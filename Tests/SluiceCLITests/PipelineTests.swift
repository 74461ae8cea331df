import Foundation
import Testing
import SluiceConfig
import SluiceONNX
import SluiceProtocol
import SluiceRoles
import SluiceTensor
import SluiceTransport
import SluiceWire

/// Multi-process runs on loopback: a controller, stage processes, a source and a sink, each a
/// real `sluice` process, joined by real ZeroMQ sockets. Serialized: they share two cores.
extension MultiProcess {
    @Suite struct PipelineTests {
        static let recording = "{root}/pipelines/data/basicmotions-test.csv"
        static let cnn = "{root}/pipelines/models/basicmotions-cnn.onnx"

        /// Windows cut from the recording exactly as the pipeline's source cuts them, and the
        /// model's output for all of them in this one process: the single-process reference.
        static func singleProcessReference(hop: Int) throws -> (keys: [WindowKey], scores: Tensor) {
            let (keys, values) = try recordingWindows(hop: hop)
            let model = try ONNXModel.load(path: packageRoot.path + "/pipelines/models/basicmotions-cnn.onnx")
            let outputs = try model.run(inputs: ["window": Tensor(shape: [keys.count, 6, 100], floats: values)])
            return (keys, try #require(outputs["scores"]))
        }

        /// The test recording's windows of 100 samples, channels first, cut as the source cuts them.
        static func recordingWindows(hop: Int) throws -> (keys: [WindowKey], values: [Float]) {
            let recording = try Recording.load(RecordingSource(path: packageRoot.path + "/pipelines/data/basicmotions-test.csv",
                                                               rate: .max, channels: nil, sampleRateHz: nil))
            var windows = SlidingWindows(channels: 6, config: WindowConfig(length: 100, hop: hop, layout: .channelsFirst))
            var keys: [WindowKey] = []
            var values: [Float] = []
            for index in 0..<recording.count {
                let sample = Array(recording.samples[(index * 6)..<((index + 1) * 6)])
                if let window = sample.withUnsafeBufferPointer({
                    windows.append(sensor: recording.sensors[index], time: recording.times[index], values: $0, label: recording.labels[index])
                }) {
                    keys.append(window.key)
                    values += window.values
                }
            }
            return (keys, values)
        }

        /// Checks a run's npy output row by row, in order, against the single-process reference (a
        /// lost, repeated or reordered window changes the rows), and its report's counts; returns
        /// the reference and the report.
        static func expectOutputsOfOneProcess(output: String, report: String, hop: Int,
                                              stderr: String) throws -> (reference: (keys: [WindowKey], scores: Tensor), report: [String: Any]) {
            let reference = try singleProcessReference(hop: hop)
            let produced = try NPY.read(path: output)
            #expect(produced.shape == reference.scores.shape, "\(stderr)")
            #expect(allClose(produced.floats, reference.scores.floats, rtol: 1e-5, atol: 1e-7))
            let json = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: report))) as? [String: Any])
            #expect(json["outcome"] as? String == "completed")
            #expect(json["windowsIn"] as? Int == reference.keys.count)
            #expect(json["windowsOut"] as? Int == reference.keys.count)
            #expect(json["duplicatesDropped"] as? Int == 0)
            return (reference, json)
        }

        @Test func quickstartSplitOverThreeStageProcessesEqualsOneProcess() throws {
            let output = temporaryPath("scores.npy")
            let report = temporaryPath("report.json")
            let file = try writePipeline("""
            model:
              path: \(Self.cnn)
            source:
              type: recording
              path: \(Self.recording)
            window:
              length: 100
              hop: 25
            batching:
              max_size: 4
              max_delay_ms: 5
            stages:
              count: 3
            transport:
              kind: tcp
              base_port: 6100
            sink:
              type: npy
              path: \(output)
            """)
            let result = try sluice("run", file, "--report", report)
            #expect(result.status == 0, "\(result.stderr)")
            let (reference, json) = try Self.expectOutputsOfOneProcess(output: output, report: report, hop: 25, stderr: result.stderr)
            let stages = try #require(json["stages"] as? [[String: Any]])
            #expect(stages.count == 3)
            // Every stage computed every batch: each ran its own layers on all windows.
            #expect(stages.allSatisfy { $0["windows"] as? Int == reference.keys.count }, "\(stages)")
        }

        @Test func quickstartPrintsEveryWindowInOrderWithTheSummary() throws {
            let result = try sluice("run", pipelineFile("quickstart.yaml"))
            #expect(result.status == 0, "\(result.stderr)")
            let reference = try Self.singleProcessReference(hop: 50)
            let lines = result.stdout.split(separator: "\n")
            #expect(lines.count == reference.keys.count)
            let classes = ["Badminton", "Running", "Standing", "Walking"]
            let scores = reference.scores.floats
            for (index, line) in lines.enumerated() {
                let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
                #expect(object["window_seq"] as? Int == index)
                #expect(object["sensor"] as? String == reference.keys[index].sensor)
                #expect(object["window_start"] as? Double == reference.keys[index].start)
                #expect(object["label"] as? String == reference.keys[index].label)
                let row = Array(scores[(index * 4)..<((index + 1) * 4)])
                let best = row.indices.max { row[$0] < row[$1] }!
                #expect(object["class"] as? String == classes[best])
                let printed = (object["scores"] as? [Double])?.map(Float.init) ?? []
                #expect(allClose(printed, row, rtol: 1e-5, atol: 1e-6))
            }
            #expect(result.stderr.contains("quickstart completed: 72 windows in, 72 out (in order, none lost or duplicated)"), "\(result.stderr)")
            #expect(result.stderr.contains("accuracy     60/72 = 83.3%"), "\(result.stderr)")
        }

        @Test func tensorsSourceMatchesOnnxruntimeReferences() throws {
            let output = temporaryPath("out.npy")
            let file = try writePipeline("""
            model:
              path: \(Self.cnn)
            source:
              type: tensors
              path: {root}/Tests/Fixtures/quickstart_input.npy
            batching:
              max_size: 3
            stages:
              count: 2
            sink:
              type: npy
              path: \(output)
            """)
            let result = try sluice("run", file)
            #expect(result.status == 0, "\(result.stderr)")
            let expected = try NPY.read(path: fixture("quickstart_expected.npy"))
            let produced = try NPY.read(path: output)
            #expect(produced.shape == expected.shape)
            #expect(allClose(produced.floats, expected.floats))
        }

        @Test func malformedMessagesAreCountedAndDroppedWhileTheRunGoesOn() throws {
            let report = temporaryPath("report.json")
            let file = try writePipeline("""
            model:
              path: \(Self.cnn)
            source:
              type: recording
              path: \(Self.recording)
              rate: 25x
            window:
              length: 100
              hop: 50
            stages:
              count: 2
            transport:
              kind: tcp
              base_port: 6200
              curve: off                     # so the garbage below reaches the stage's decoder
            sink:
              type: jsonl
              path: \(temporaryPath("out.jsonl"))
            """)
            let run = try Running(["run", file, "--report", report])
            // Stage 1 listens on base_port + 2. Send it garbage while real batches flow.
            let context = ZMQContext()
            let intruder = try ZMQSocket(context, .push, lingerMilliseconds: 1000, sendHighWaterMark: 10, receiveHighWaterMark: 10)
            try intruder.connect("tcp://127.0.0.1:6202")
            usleep(1_500_000)
            try intruder.send([.bytes(Array("not a batch".utf8))])
            try intruder.send([.bytes(BatchHeader(batchSequence: 0, firstWindow: 0, windowCount: 1, epoch: 1, cursor: 0, created: 0,
                                                  tensors: []).encoded()), .bytes([])])
            let result = run.wait()
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stderr.contains("dropped 1 batch (malformed)"), "\(result.stderr)")
            let json = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: report))) as? [String: Any])
            #expect(json["windowsOut"] as? Int == 72)
            #expect((json["rejected"] as? Int ?? 0) >= 2, "\(json)")
        }

        /// A three-stage pipeline over the recording played in real time, so a test can act
        /// while it streams.
        static func realTimePipeline(output: String) throws -> String {
            try writePipeline("""
            model:
              path: \(cnn)
            source:
              type: recording
              path: \(recording)
              rate: real
            window:
              length: 100
              hop: 10
            batching:
              max_size: 2
              max_delay_ms: 10
            stages:
              count: 3
            sink:
              type: jsonl
              path: \(output)
            """)
        }

        /// Waits (up to a minute) for the first prediction in `output`.
        static func waitForFirstPrediction(_ output: String) {
            let deadline = Date().addingTimeInterval(60)
            while (FileManager.default.contents(atPath: output)?.count ?? 0) == 0 && Date() < deadline { usleep(50_000) }
        }

        /// Each line's `window_seq`, in the order written (nil for a line that is not one).
        static func windowSequences(_ output: String) throws -> [Int?] {
            try String(contentsOfFile: output, encoding: .utf8).split(separator: "\n").map {
                (try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])?["window_seq"] as? Int
            }
        }

        /// The counts a stopped run's summary gives ("N windows in, M out"), from its log.
        static func stoppedCounts(_ stderr: String) throws -> (in: Int, out: Int) {
            let summary = try #require(stderr.split(separator: "\n").first { $0.hasPrefix("sluice: ") && $0.contains(" stopped: ") },
                                       "\(stderr)")
            let counts = summary.split(separator: " ").compactMap { Int($0) }
            try #require(counts.count == 2, "\(summary)")
            return (counts[0], counts[1])
        }

        @Test func ctrlCDrainsTheRunAndLeavesNoProcessBehind() throws {
            let output = temporaryPath("out.jsonl")
            let run = try Running(["run", try Self.realTimePipeline(output: output)])
            let runDirectory = "/tmp/sluice-\(run.pid)"
            // Wait for the first predictions, then interrupt as a terminal's Ctrl-C would.
            Self.waitForFirstPrediction(output)
            #expect(processes(matching: runDirectory + "/").count == 6, "controller, 3 stages, sink and source should be running")
            kill(run.pid, SIGINT)
            let result = run.wait(timeout: 60)
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stderr.contains("stopped"), "\(result.stderr)")
            #expect(processes(matching: runDirectory + "/").isEmpty, "processes left behind")
            #expect(!FileManager.default.fileExists(atPath: runDirectory), "run directory left behind")
            // What came out before the stop is a gap-free prefix, in order.
            let sequences = try Self.windowSequences(output)
            #expect(!sequences.isEmpty && sequences.count < 328)
            #expect(sequences == Array(0..<sequences.count).map { Optional($0) })
        }

        /// A service manager (systemd, Kubernetes) sends SIGTERM to every process of the run at
        /// once: the pipeline drains as on Ctrl-C, and every window that went in comes out.
        @Test func aSIGTERMToEveryProcessDrainsTheRunLosingNothing() throws {
            let output = temporaryPath("out.jsonl")
            let run = try Running(["run", try Self.realTimePipeline(output: output)])
            let runDirectory = "/tmp/sluice-\(run.pid)/"
            Self.waitForFirstPrediction(output)
            let roles = processes(matching: runDirectory)
            #expect(roles.count == 6, "controller, 3 stages, sink and source should be running")
            for pid in [run.pid] + roles { kill(pid, SIGTERM) }
            let result = run.wait(timeout: 60)
            #expect(result.status == 0, "\(result.stderr)")
            let counts = try Self.stoppedCounts(result.stderr)
            #expect(counts.in == counts.out && counts.in > 0, "\(counts)")
            #expect(try Self.windowSequences(output) == Array(0..<counts.in).map { Optional($0) })
            #expect(processes(matching: runDirectory).isEmpty, "processes left behind")
            #expect(!FileManager.default.fileExists(atPath: runDirectory), "run directory left behind")
        }

        /// `sluice run` itself is killed (-9) mid-run: its controller drains the run, shuts every
        /// role down, says what came out, and removes the run folder the launcher no longer can.
        @Test func aKilledLauncherLeavesItsControllerToDrainTheRun() throws {
            let output = temporaryPath("out.jsonl")
            let run = try Running(["run", try Self.realTimePipeline(output: output)])
            let runDirectory = "/tmp/sluice-\(run.pid)/"
            Self.waitForFirstPrediction(output)
            #expect(processes(matching: runDirectory).count == 6, "controller, 3 stages, sink and source should be running")
            kill(run.pid, SIGKILL)
            _ = run.wait(timeout: 10)
            let gone = Date().addingTimeInterval(30)
            while !processes(matching: runDirectory).isEmpty && Date() < gone { usleep(50_000) }
            #expect(processes(matching: runDirectory).isEmpty, "processes left behind")
            // The controller writes its summary to the standard error it shares with the launcher.
            #expect(run.waitForLog(" stopped: ", timeout: 5))
            let counts = try Self.stoppedCounts(String(decoding: FileManager.default.contents(atPath: run.errPath) ?? Data(), as: UTF8.self))
            #expect(counts.in == counts.out && counts.in > 0, "\(counts)")
            #expect(try Self.windowSequences(output) == Array(0..<counts.in).map { Optional($0) })
            #expect(!FileManager.default.fileExists(atPath: runDirectory), "run directory left behind")
        }

        @Test func liveSensorsPushedOverZeroMQAreWindowedLikeTheRecording() throws {
            let output = temporaryPath("live.npy")
            let file = try writePipeline("""
            model:
              path: \(Self.cnn)
            source:
              type: zmq
              endpoint: tcp://127.0.0.1:6305
              channels: 6
            window:
              length: 100
              hop: 50
            stages:
              count: 2
            transport:
              kind: tcp
              base_port: 6300
            sink:
              type: npy
              path: \(output)
            """)
            let run = try Running(["run", file])
            let recording = try Recording.load(RecordingSource(path: packageRoot.path + "/pipelines/data/basicmotions-test.csv",
                                                               rate: .max, channels: nil, sampleRateHz: nil))
            // The sender's socket closes before the wait: the input ends once every sender ended and left.
            do {
            let context = ZMQContext()
            let sensor = try ZMQSocket(context, .push, lingerMilliseconds: 5000, sendHighWaterMark: 1000, receiveHighWaterMark: 10)
            try sensor.connect("tcp://127.0.0.1:6305")
            // A malformed message first: it must be dropped without harm.
            try sensor.send([.bytes(Array(#"{"v":1,"sensor":"bad","t0":0,"dt":0.1,"channels":3,"count":1}"#.utf8)), .bytes([0, 0, 0, 0])])
            // Each sensor sends its samples in chunks of 10, in the documented two-frame format.
            for sensorName in (0..<8).map({ "imu-\($0)" }) {
                let rows = (0..<recording.count).filter { recording.sensors[$0] == sensorName }
                for chunk in stride(from: 0, to: rows.count, by: 10) {
                    let part = Array(rows[chunk..<min(chunk + 10, rows.count)])
                    let header = SampleChunkHeader(sensor: sensorName, t0: recording.times[part[0]], dt: 0.1, channels: 6, count: part.count,
                                                   labels: part.map { recording.labels[$0] ?? "" })
                    var values: [Float] = []
                    for row in part { values += recording.samples[(row * 6)..<((row + 1) * 6)] }
                    try sensor.send([.bytes(Array(try JSONEncoder().encode(header))), .bytes(values.withUnsafeBytes { Array($0) })])
                }
            }
            // Chunks that name no sender are their sensor's: each sensor's stream ends on its own.
            for sensorName in (0..<8).map({ "imu-\($0)" }) {
                try sensor.send([.bytes(Array(try JSONEncoder().encode(SampleChunkHeader.endOfStream(sender: sensorName))))])
            }
            }
            let result = run.wait()
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stderr.contains("dropped 1 chunk (malformed): a sensor message"), "\(result.stderr)")
            // Same windows as the recording, grouped by sensor instead of interleaved in time.
            let reference = try Self.singleProcessReference(hop: 50)
            let produced = try NPY.read(path: output)
            #expect(produced.shape == [72, 4])
            let referenceRows = Dictionary(uniqueKeysWithValues: reference.keys.enumerated().map {
                ("\($1.sensor)@\($1.start)", Array(reference.scores.floats[($0 * 4)..<(($0 + 1) * 4)]))
            })
            var expected: [Float] = []
            for sensorName in (0..<8).map({ "imu-\($0)" }) {
                for start in stride(from: 0.0, through: 40.0, by: 5.0) {
                    expected += referenceRows["\(sensorName)@\(start)"] ?? []
                }
            }
            #expect(allClose(produced.floats, expected, rtol: 1e-5, atol: 1e-7))
        }
    }
}
