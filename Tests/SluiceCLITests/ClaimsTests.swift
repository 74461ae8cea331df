import Foundation
import Testing
import SluiceConfig
import SluiceProtocol
import SluiceRoles
import SluiceTensor
import SluiceTestSupport
import SluiceTransport
import SluiceWire

/// What a run says about itself must be true: every window in came out or its loss is counted
/// with its reason, times are measured from stamps that were checked, `/metrics` agrees with
/// itself, and no flood or garbage on any socket stops the run or changes its outputs.
extension MultiProcess {
    @Suite struct ClaimsTests {
        static let cnn = "{root}/pipelines/models/basicmotions-cnn.onnx"
        static let sensors = (0..<8).map { "imu-\($0)" }

        /// The 1D CNN over two stage processes on tcp ports from `basePort`, fed by `source`
        /// (the lines under `source:`).
        /// `curve: false` leaves the tcp links in plaintext, so that garbage sent by a test reaches
        /// the decoders, as it would from a process of the run gone bad.
        static func pipeline(source: String, basePort: Int, sink: String, controller: String = "", curve: Bool = true) -> String {
            """
            model:
              path: \(cnn)
            source:
            \(source)
            window:
              length: 100
              hop: 50
            stages:
              count: 2
            transport:
              kind: tcp
              base_port: \(basePort)
              curve: \(curve ? "on" : "off")
            sink:
            \(sink)
            \(controller)
            """
        }

        /// Sensors push over ZeroMQ to `sensorPort`.
        static func livePipeline(sensorPort: Int, basePort: Int, sink: String, extraSource: String = "", curve: Bool = true) -> String {
            pipeline(source: "  type: zmq\n  endpoint: tcp://127.0.0.1:\(sensorPort)\n  channels: 6\(extraSource)",
                     basePort: basePort, sink: sink, curve: curve)
        }

        /// The recording played at `rate`.
        static func recordingPipeline(basePort: Int, rate: String, sink: String, controller: String = "", curve: Bool = true) -> String {
            pipeline(source: "  type: recording\n  path: {root}/pipelines/data/basicmotions-test.csv\n  rate: \(rate)",
                     basePort: basePort, sink: sink, controller: controller, curve: curve)
        }

        static let recording: Recording? = try? Recording.load(RecordingSource(
            path: packageRoot.path + "/pipelines/data/basicmotions-test.csv", rate: .max, channels: nil, sampleRateHz: nil))

        /// One sensor's samples as the documented two-frame messages, ten samples each (sent as
        /// sensor `name` when given).
        static func chunks(of sensor: String, as name: String? = nil) throws -> [[OutgoingFrame]] {
            let recording = try #require(Self.recording)
            let rows = (0..<recording.count).filter { recording.sensors[$0] == sensor }
            return try stride(from: 0, to: rows.count, by: 10).map { start in
                let part = Array(rows[start..<min(start + 10, rows.count)])
                let header = SampleChunkHeader(sensor: name ?? sensor, t0: recording.times[part[0]], dt: 0.1, channels: 6, count: part.count,
                                               labels: part.map { recording.labels[$0] ?? "" })
                var values: [Float] = []
                for row in part { values += recording.samples[(row * 6)..<((row + 1) * 6)] }
                return [.bytes(Array(try JSONEncoder().encode(header))), .bytes(values.withUnsafeBytes { Array($0) })]
            }
        }

        static func endOfStream(_ sender: String, chunks: Int) throws -> [OutgoingFrame] {
            [.bytes(Array(try JSONEncoder().encode(SampleChunkHeader.endOfStream(sender: sender, chunks: chunks))))]
        }

        static func report(_ path: String) throws -> [String: Any] {
            try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
        }

        /// `dropped[role]` of a run report as (unit, reason) → count.
        static func drops(_ report: [String: Any], _ role: String) -> [String: Int] {
            let dropped = report["dropped"] as? [String: Any]
            let entries = (dropped?[role] as? [String: Any])?["entries"] as? [[String: Any]] ?? []
            var out: [String: Int] = [:]
            for entry in entries { out["\(entry["unit"] ?? "?")/\(entry["reason"] ?? "?")"] = entry["count"] as? Int }
            return out
        }

        /// Reference scores by "sensor@start" for the recording's windows (hop 50), from one process.
        static func referenceRows() throws -> [String: [Float]] {
            let reference = try PipelineTests.singleProcessReference(hop: 50)
            return Dictionary(uniqueKeysWithValues: reference.keys.enumerated().map {
                ("\($1.sensor)@\($1.start)", Array(reference.scores.floats[($0 * 4)..<(($0 + 1) * 4)]))
            })
        }

        /// Every line of a JSON-lines output checked against the reference; returns the line count.
        static func checkAgainstReference(jsonl path: String) throws -> Int {
            let reference = try referenceRows()
            let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n")
            for line in lines {
                let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
                let key = "\(object["sensor"] ?? "?")@\((object["window_start"] as? Double) ?? -1)"
                let scores = (object["scores"] as? [Double] ?? []).map(Float.init)
                let expected = try #require(reference[key], "an output for a window the sensors never sent: \(line)")
                #expect(allClose(scores, expected, rtol: 1e-5, atol: 1e-6), "\(key)")
            }
            return lines.count
        }

        @Test func endOfStreamIsPerSenderAndChunksAfterTheEndAreCounted() throws {
            let output = temporaryPath("eos.npy")
            let reportPath = temporaryPath("eos-report.json")
            // A slow sink keeps the run draining for a while after the input ends.
            let file = try writePipeline(Self.livePipeline(sensorPort: 6505, basePort: 6500, sink: """
              type: npy
              path: \(output)
              delay_ms: 150
            """))
            let run = try Running(["run", file, "--report", reportPath])
            #expect(run.waitForLog("starting the source"))
            do {
                // One socket per sensor, all connected first, as devices that are up. Sensor 0 sends
                // everything and ends before the others send anything: its end is its own.
                let context = ZMQContext()
                var sockets: [ZMQSocket?] = try Self.sensors.map { _ in
                    let socket = try ZMQSocket(context, .push, lingerMilliseconds: 5000, sendHighWaterMark: 1000, receiveHighWaterMark: 10)
                    try socket.connect("tcp://127.0.0.1:6505")
                    return socket
                }
                for (index, sensor) in Self.sensors.enumerated() {
                    let chunks = try Self.chunks(of: sensor)
                    for chunk in chunks { _ = try sockets[index]?.send(chunk) }
                    _ = try sockets[index]?.send(try Self.endOfStream(sensor, chunks: chunks.count))
                    sockets[index] = nil
                    if index == 0 { usleep(400_000) }
                }
                // A sensor whose 30 samples never fill a window of 100: counted, not silently held.
                let tail = try ZMQSocket(context, .push, lingerMilliseconds: 5000, sendHighWaterMark: 1000, receiveHighWaterMark: 10)
                try tail.connect("tcp://127.0.0.1:6505")
                for chunk in try Self.chunks(of: "imu-1", as: "tail").prefix(3) { _ = try tail.send(chunk) }
                _ = try tail.send(try Self.endOfStream("tail", chunks: 3))
                // Its end again, claiming a billion chunks: one malformed message, not a billion lost.
                _ = try tail.send(try Self.endOfStream("tail", chunks: 1_000_000_000))
            }
            #expect(run.waitForLog("input ended"))
            do {
                // A sender that starts after the input ended: its chunks are counted, not silently lost.
                let context = ZMQContext()
                let late = try ZMQSocket(context, .push, lingerMilliseconds: 5000, sendHighWaterMark: 1000, receiveHighWaterMark: 10)
                try late.connect("tcp://127.0.0.1:6505")
                for chunk in try Self.chunks(of: "imu-0").prefix(3) { _ = try late.send(chunk) }
            }
            let result = run.wait(timeout: 60)
            #expect(result.status == 0, "\(result.stderr)")
            let produced = try NPY.read(path: output)
            #expect(produced.shape == [72, 4], "windows were lost: \(result.stdout)")
            let report = try Self.report(reportPath)
            #expect(report["windowsIn"] as? Int == 72 && report["windowsOut"] as? Int == 72, "\(report)")
            let source = Self.drops(report, "source")
            #expect(source["chunk/after end of input"] == 3 && source["sample/after end of input"] == 30, "\(report["dropped"] ?? "none")")
            #expect(source["sample/in no complete window"] == 30, "\(report["dropped"] ?? "none")")
            #expect(source["chunk/malformed"] == 1 && source["chunk/never arrived"] == nil, "\(report["dropped"] ?? "none")")
            let summary = result.stdout + result.stderr
            #expect(!summary.contains("none lost"), "\(summary)")
            #expect(summary.contains("dropped      source: 1 chunk malformed, 3 chunks after end of input, 30 samples after end of input, 30 samples in no complete window"),
                    "\(summary)")
        }

        @Test func forgedTimestampsAreCountedAndNeverMeasured() throws {
            let reportPath = temporaryPath("stamps-report.json")
            let output = temporaryPath("stamps.npy")
            let file = try writePipeline(Self.recordingPipeline(basePort: 6520, rate: "max", sink: """
              type: npy
              path: \(output)
              delay_ms: 100
            """, curve: false))
            let run = try Running(["run", file, "--report", reportPath])
            #expect(run.waitForLog("starting the source"))
            do {
                // A well-formed finished batch from 1970, numbered past the run's batches, straight into the sink.
                var forged = Batch(header: BatchHeader(batchSequence: 1000, firstWindow: 0, windowCount: 1, epoch: 1,
                                                       cursor: 8, created: 1, tensors: []),
                                   metadata: WindowKey.encode([WindowKey(sensor: "forged", start: 0)]), tensors: [:])
                forged.setTensors(["scores": Tensor(shape: [1, 4], floats: [0, 0, 0, 1])], order: ["scores"])
                let context = ZMQContext()
                let push = try ZMQSocket(context, .push, lingerMilliseconds: 5000, sendHighWaterMark: 10, receiveHighWaterMark: 10)
                try push.connect("tcp://127.0.0.1:6523")
                _ = try push.send(forged.frames())
                // One numbered far past anything a run has in flight: refused, not held forever.
                forged.header.batchSequence = 0xFFFF_FFFF_FF00_0000
                _ = try push.send(forged.frames())
                // One whose header claims 1000 windows for one row: its windows are not believed.
                forged.header.batchSequence = 2000
                forged.header.windowCount = 1000
                _ = try push.send(forged.frames())
            }
            let result = run.wait(timeout: 60)
            #expect(result.status == 0, "\(result.stderr)")
            let report = try Self.report(reportPath)
            let seconds = try #require(report["seconds"] as? Double)
            #expect(seconds > 0 && seconds < 60, "the run's span came from a forged stamp: \(seconds) s")
            #expect((report["windowsPerSecond"] as? Double ?? 0) > 1)
            #expect(report["implausibleStamps"] as? Int == 1, "\(report)")
            let sink = Self.drops(report, "sink")
            #expect(sink["batch/never released"] == 1 && sink["window/never released"] == 1, "\(report["dropped"] ?? "none")")
            #expect(sink["batch/too far ahead"] == 1 && sink["batch/misrouted"] == nil, "\(report["dropped"] ?? "none")")
            #expect(sink["batch/malformed"] == 1 && sink["window/malformed"] == nil,
                    "\(report["dropped"] ?? "none")")
            #expect(!(result.stdout + result.stderr).contains("none lost"))
            #expect(try NPY.read(path: output).shape == [72, 4])
        }

        /// The local addresses (hex, as the kernel writes them) of sockets listening on `port`.
        static func listeningAddresses(port: Int) -> Set<String> {
            var found: Set<String> = []
            for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
                let text = String(decoding: FileManager.default.contents(atPath: table) ?? Data(), as: UTF8.self)
                for line in text.split(separator: "\n").dropFirst() {
                    let fields = line.split(separator: " ")
                    // "0A" is TCP_LISTEN; the local address is ADDRESS:PORT in hex.
                    guard fields.count > 3, fields[3] == "0A" else { continue }
                    let local = fields[1].split(separator: ":")
                    if local.count == 2, Int(local[1], radix: 16) == port { found.insert(String(local[0])) }
                }
            }
            return found
        }

        @Test func metricsScrapesAgreeWithThemselvesAndTheLiveTableShowsPercentiles() throws {
            let file = try writePipeline(Self.recordingPipeline(basePort: 6540, rate: "20x", sink: """
              type: npy
              path: \(temporaryPath("metrics.npy"))
            """))
            let run = try Running(["run", file, "--metrics-port", "6549", "--live"])
            var scrapes: [String] = []
            var listening: Set<String> = []
            while run.process.isRunning {
                if let body = httpGet(port: 6549, path: "/metrics") { scrapes.append(body) }
                listening.formUnion(Self.listeningAddresses(port: 6549))
                usleep(50_000)
            }
            let result = run.wait()
            #expect(result.status == 0, "\(result.stderr)")
            // What the run does is nobody else's business unless told: this machine only.
            #expect(listening == ["0100007F"], "metrics listened on \(listening.sorted()) (hex, as /proc/net/tcp writes them)")
            #expect(result.stderr.contains("metrics at http://127.0.0.1:6549/metrics"), "\(result.stderr)")
            var histograms = 0
            for body in scrapes {
                var values: [String: Double] = [:]
                for line in body.split(separator: "\n") where !line.hasPrefix("#") && !line.hasPrefix("HTTP") {
                    let parts = line.split(separator: " ")
                    if parts.count == 2, let value = Double(parts[1]) { values[String(parts[0])] = value }
                }
                guard let source = values["sluice_source_batches_total"] else { continue }
                let sink = values["sluice_sink_batches_total"] ?? 0
                #expect(sink <= source, "one scrape: the sink released \(sink) batches, the source had sent \(source)")
                for stage in 0..<2 {
                    let batches = values["sluice_stage_batches_total{stage=\"\(stage)\"}"] ?? 0
                    #expect(batches <= source, "stage \(stage) ran \(batches) batches, the source had sent \(source)")
                }
                guard let count = values["sluice_end_to_end_latency_seconds_count"] else { continue }
                histograms += 1
                #expect(count <= sink, "latency of \(count) batches, \(sink) released")
                var previous = 0.0
                for bound in LatencyHistogram.defaultBounds.map(PrometheusNumber.text) + ["+Inf"] {
                    let bucket = try #require(values["sluice_end_to_end_latency_seconds_bucket{le=\"\(bound)\"}"], "bucket \(bound)")
                    #expect(bucket >= previous)
                    previous = bucket
                }
                #expect(previous == count)
            }
            #expect(histograms > 0, "no scrape had the latency histogram (\(scrapes.count) scrapes)")
            // The live table's per-stage p50/p99 columns carry numbers, not "-".
            let rows = result.stderr.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true) }
                .filter { $0.count >= 12 && Int($0[0]) != nil && $0[1].contains("-") }
            #expect(rows.contains { Double($0[10]) != nil && Double($0[11]) != nil }, "\(result.stderr.suffix(1500))")
        }

        @Test func aFloodOnTheControllersSocketNeitherStarvesNorStopsTheRun() throws {
            let output = temporaryPath("flood.jsonl")
            let reportPath = temporaryPath("flood-report.json")
            let file = try writePipeline(Self.recordingPipeline(basePort: 6560, rate: "15x", sink: """
              type: jsonl
              path: \(output)
            """, controller: """
            controller:
              heartbeat_ms: 100
              timeout_s: 2.5
            """, curve: false))
            let run = try Running(["run", file, "--report", reportPath])
            #expect(run.waitForLog("starting the source"))
            let stop = Flag()
            let flooders = (0..<2).map { index in
                let thread = Thread {
                    let context = ZMQContext()
                    guard let dealer = try? ZMQSocket(context, .dealer, lingerMilliseconds: 0, sendHighWaterMark: 100_000,
                                                      receiveHighWaterMark: 10, identity: "flood-\(index)") else { return }
                    try? dealer.connect("tcp://127.0.0.1:6560")
                    let heartbeat = ControlMessage.heartbeat(RoleCounters()).encoded()
                    var sent = 0
                    while !stop.isSet {
                        let frames: [OutgoingFrame] = sent % 3 == 0 ? [.bytes(heartbeat)] : [.bytes(Array("junk \(sent)".utf8))]
                        if (try? dealer.send(frames, dontWait: true)) != true { usleep(100) }
                        sent += 1
                        while (try? dealer.receive(dontWait: true)) != nil {}
                    }
                }
                thread.start()
                return thread
            }
            let result = run.wait(timeout: 60)
            stop.set()
            while flooders.contains(where: \.isExecuting) { usleep(10_000) }
            #expect(result.status == 0, "\(result.stderr.suffix(3000))")
            #expect(try Self.checkAgainstReference(jsonl: output) == 72)
            let report = try Self.report(reportPath)
            let controller = Self.drops(report, "controller")
            #expect((controller["control_frame/malformed"] ?? 0) > 1000 && (controller["control_frame/unknown peer"] ?? 0) > 100,
                    "\(report["dropped"] ?? "none")")
        }

        @Test func fuzzedFramesOnEverySocketAreCountedAndChangeNoOutput() throws {
            let output = temporaryPath("fuzz.jsonl")
            let reportPath = temporaryPath("fuzz-report.json")
            // (An idle timeout only as a net: a mutant that happens to be a valid chunk starts a sender that never ends.)
            let file = try writePipeline(Self.livePipeline(sensorPort: 6585, basePort: 6580, sink: """
              type: jsonl
              path: \(output)
            """, extraSource: "\n  idle_timeout_s: 5", curve: false))
            let run = try Running(["run", file, "--report", reportPath])
            #expect(run.waitForLog("starting the source"))
            var fuzzer = FrameFuzzer(seed: 0x5EED_F00D)
            let counts = try fuzzer.run(controller: "tcp://127.0.0.1:6580", data: ["tcp://127.0.0.1:6581", "tcp://127.0.0.1:6582", "tcp://127.0.0.1:6583"],
                                        sensors: "tcp://127.0.0.1:6585", perSocket: 400) {
                // The real sensors send while the garbage flows.
                let context = ZMQContext()
                let socket = try ZMQSocket(context, .push, lingerMilliseconds: 5000, sendHighWaterMark: 1000, receiveHighWaterMark: 10)
                try socket.connect("tcp://127.0.0.1:6585")
                for sensor in Self.sensors {
                    let chunks = try Self.chunks(of: sensor)
                    for chunk in chunks { _ = try socket.send(chunk) }
                    _ = try socket.send(try Self.endOfStream(sensor, chunks: chunks.count))
                }
            }
            let result = run.wait(timeout: 60)
            #expect(result.status == 0, "\(result.stderr.suffix(3000))")
            #expect(counts.values.allSatisfy { $0 >= 400 }, "\(counts)")
            #expect(try Self.checkAgainstReference(jsonl: output) == 72)
            let report = try Self.report(reportPath)
            let dropped = report["dropped"] as? [String: Any] ?? [:]
            #expect(Set(dropped.keys).isSuperset(of: ["controller", "source", "stage-0", "stage-1", "sink"]), "\(dropped)")
            // Rate-limited: a few lines per reason, not one per frame.
            let warnings = result.stderr.split(separator: "\n").filter { $0.contains("dropped") }.count
            #expect(warnings < 300, "\(warnings) warning lines for \(counts.values.reduce(0, +)) frames")
        }
    }
}

/// A flag one thread sets and others read.
final class Flag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.lock(); defer { lock.unlock() }; return value }
    func set() { lock.lock(); value = true; lock.unlock() }
}

/// Prometheus's spelling of a bucket bound.
enum PrometheusNumber {
    static func text(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : "\(value)"
    }
}

/// Random and mutated multipart messages for each kind of socket a pipeline binds. Templates are
/// valid messages (a heartbeat, a batch numbered far past any real one, a sensor chunk whose
/// payload is the wrong size), so mutants get past the first checks and reach the deeper ones.
struct FrameFuzzer {
    var rng: SplitMix

    init(seed: UInt64) { rng = SplitMix(seed: seed) }

    mutating func bytes(_ count: Int) -> [UInt8] { (0..<count).map { _ in UInt8.random(in: 0...255, using: &rng) } }

    mutating func mutate(_ template: [[UInt8]]) -> [[UInt8]] {
        if Int.random(in: 0..<10, using: &rng) == 0 {
            return (0..<Int.random(in: 1...3, using: &rng)).map { _ in bytes(Int.random(in: 0...200, using: &rng)) }
        }
        var frames = template
        for _ in 0..<Int.random(in: 1...4, using: &rng) {
            guard !frames.isEmpty else { frames = [bytes(8)]; continue }
            let index = Int.random(in: 0..<frames.count, using: &rng)
            if frames[index].isEmpty { frames[index] = bytes(4) }
            switch Int.random(in: 0..<8, using: &rng) {
            case 0, 1, 2:
                let at = Int.random(in: 0..<frames[index].count, using: &rng)
                frames[index][at] ^= UInt8(1) << UInt8.random(in: 0...7, using: &rng)
            case 3:
                frames[index][Int.random(in: 0..<frames[index].count, using: &rng)] = [0, 0xFF, 0x7F, 0x80, 0x22, 0x7B][Int.random(in: 0..<6, using: &rng)]
            case 4:
                frames[index] = Array(frames[index].prefix(Int.random(in: 0...frames[index].count, using: &rng)))
            case 5:
                frames[index] += bytes(Int.random(in: 1...16, using: &rng))
            case 6:
                frames.remove(at: index)
            default:
                frames.insert(frames[index], at: index)
            }
        }
        return frames
    }

    /// Sends `perSocket` messages into each socket while `during` runs; returns how many each took.
    mutating func run(controller: String, data: [String], sensors: String, perSocket: Int,
                      during: () throws -> Void) throws -> [String: Int] {
        let context = ZMQContext()
        let heartbeat = ControlMessage.heartbeat(RoleCounters()).encoded()
        let hello = ControlMessage.hello(Hello(role: .stage, name: "stage-0", pid: 1, host: "fuzz")).encoded()
        var batch = Batch(header: BatchHeader(batchSequence: 0xFFFF_FFFF_FF00_0000, firstWindow: 0, windowCount: 1, epoch: 1, cursor: 0,
                                              created: 1, tensors: []),
                          metadata: WindowKey.encode([WindowKey(sensor: "fuzz", start: 0)]), tensors: [:])
        batch.setTensors(["window": Tensor(shape: [1, 6, 100], floats: [Float](repeating: 0.5, count: 600))], order: ["window"])
        var batchFrames = batch.frames().map { frame -> [UInt8] in
            switch frame {
            case .bytes(let bytes): return bytes
            case .tensor(let tensor): return tensor.withUnsafeBufferPointer(as: Float.self) { Array(UnsafeRawBufferPointer($0)) }
            }
        }
        let chunkHeader = Array(#"{"v":1,"sensor":"fuzz","sender":"fuzz","t0":0,"dt":0.1,"channels":6,"count":3}"#.utf8)
        var targets: [(name: String, socket: ZMQSocket, templates: [[[UInt8]]])] = []
        for (index, endpoint) in data.enumerated() {
            let socket = try ZMQSocket(context, .push, lingerMilliseconds: 0, sendHighWaterMark: 100, receiveHighWaterMark: 10)
            try socket.connect(endpoint)
            // Cursor 0 for the first stage, past every layer for the sink: each hop sees mutants of what it accepts.
            var finished = batchFrames
            finished[0][32] = UInt8(index == data.count - 1 ? 8 : index * 3)
            targets.append(("data \(endpoint)", socket, [finished]))
        }
        batchFrames = []
        let dealer = try ZMQSocket(context, .dealer, lingerMilliseconds: 0, sendHighWaterMark: 1000, receiveHighWaterMark: 1000,
                                   identity: "fuzz-\(rng.next() % 1000)")
        try dealer.connect(controller)
        targets.append(("controller", dealer, [[heartbeat], [hello]]))
        let sensor = try ZMQSocket(context, .push, lingerMilliseconds: 0, sendHighWaterMark: 100, receiveHighWaterMark: 10)
        try sensor.connect(sensors)
        targets.append(("sensors", sensor, [[chunkHeader, bytes(1000)]]))

        var counts: [String: Int] = [:]
        var duringDone = false
        let deadline = Date().addingTimeInterval(30)
        while targets.contains(where: { counts[$0.name, default: 0] < perSocket }), Date() < deadline {
            for target in targets where counts[target.name, default: 0] < perSocket {
                let template = target.templates[Int.random(in: 0..<target.templates.count, using: &rng)]
                let message = mutate(template)
                guard !message.isEmpty, try target.socket.send(message.map { .bytes($0) }, dontWait: true) else { continue }
                counts[target.name, default: 0] += 1
            }
            while (try? dealer.receive(dontWait: true)) != nil {}
            if !duringDone, counts.values.reduce(0, +) > perSocket * targets.count / 2 {
                duringDone = true
                try during()
            }
            usleep(200)
        }
        if !duringDone { try during() }
        return counts
    }
}
