import Foundation
import Testing
import SluiceONNX
import SluiceProtocol
import SluiceTensor
import SluiceTestSupport
import SluiceTransport

/// Hostile input through the built binary: bad pipeline files exit 2 naming file, line and
/// key; bad models exit 3 with their reason; a live source takes any sensor message and lives.
@Suite(.serialized) struct HostileInputTests {
    static let cnn = "{root}/pipelines/models/basicmotions-cnn.onnx"

    static func live(port: Int, extra: String = "", window: String = "length: 100\n  hop: 50", channels: Int = 6) -> String {
        """
        model:
          path: \(cnn)
        source:
          type: zmq
          endpoint: tcp://127.0.0.1:\(port)
          channels: \(channels)
        \(extra)
        window:
          \(window)
        stages:
          count: 2
        transport:
          kind: tcp
          base_port: \(port - 5)
        sink:
          type: jsonl
          path: "-"
        """
    }

    /// These passed `validate` or exited 1 (stage count, split); the model rejected the window
    /// only once the run had started.
    @Test(arguments: [
        ("window:\n  length: 100", "window:\n  length: 1099511627776", ":9: window.length: must be <= "),
        ("window:\n  length: 100", "window:\n  length: 99", ":9: window.length: is 99, but model input"),
        ("channels: 6", "channels: 7", ":6: source.channels: gives 7 channel(s), but model input"),
        ("count: 2", "count: 100000000000", ":12: stages.count: must be <= 1024"),
        ("count: 2", "count: 1000", ":12: stages.count: 1000 stages, but the model has"),
        ("count: 2", "count: 2\n  split: [\"0-3\", \"4-9223372036854775807\"]", ":13: stages.split[1]: layer 9223372036854775807 is past any model"),
        ("count: 2", "count: 2\n  split: [\"0-3\", \"4-20\"]", ":13: stages.split: covers layers 0-20 but the model has"),
        ("  length: 100", "  length: 6\n  layout: channels_last", ":6: source.channels: gives 6 channel(s), but model input 'window' takes [6, 100] per window (channels_last): 100 channel(s)"),
        ("  length: 100", "  length: 100\n  layout: channels_last", ":9: window.length: is 100, but model input 'window' takes [6, 100] per window (channels_last: [length, channels]); with window.layout: channels_first it fits"),
    ])
    func validateNamesFileLineAndKeyWithExitTwo(from: String, to: String, expected: String) throws {
        let file = try writePipeline(Self.live(port: 6400).replacingOccurrences(of: from, with: to))
        let result = try sluice("validate", file)
        #expect(result.status == 2, "\(result.stderr)")
        #expect(result.stderr.contains(file + expected), "\(result.stderr)")
    }

    @Test func aTensorsSourceWhoseRowsDoNotFitTheModelIsRefusedByValidate() throws {
        let rows = temporaryPath("rows.npy")
        try NPY.write(Tensor(zeros: .float32, shape: [2, 7, 100]), path: rows)
        let file = try writePipeline("""
        model:
          path: \(Self.cnn)
        source:
          type: tensors
          path: \(rows)
        stages:
          count: 1
        """)
        let result = try sluice("validate", file)
        #expect(result.status == 2, "\(result.stderr)")
        #expect(result.stderr.contains(file + ":5: source.path: holds rows of [7, 100], but model input 'window' takes [6, 100] per window"),
                "\(result.stderr)")
    }

    @Test func theSameWindowCheckStopsARunBeforeAnyProcessStarts() throws {
        let file = try writePipeline(Self.live(port: 6400, channels: 7))
        let result = try sluice("run", file, timeout: 30)
        #expect(result.status == 2, "\(result.stderr)")
        #expect(result.stderr.contains("source.channels: gives 7 channel(s)"), "\(result.stderr)")
    }

    /// Windows of 2^20 × 6 values in batches of 1,024 are a tensor of 2^32.6 elements, which no
    /// stage would take: refused with the key to change, before anything runs.
    @Test func batchesTooLargeForTheWireAreRefusedByValidate() throws {
        let folder = testFolder.appendingPathComponent("sluice-hostile-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        var model = Onnx_ModelProto()
        model.irVersion = 8
        var opset = Onnx_OperatorSetIdProto()
        opset.version = 17
        model.opsetImport = [opset]
        func value(_ name: String, _ dims: [Int64?]) -> Onnx_ValueInfoProto {
            var info = Onnx_ValueInfoProto()
            info.name = name
            var tensor = Onnx_TypeProto.Tensor()
            tensor.elemType = 1
            var shape = Onnx_TensorShapeProto()
            shape.dim = dims.map { d in
                var dim = Onnx_TensorShapeProto.Dimension()
                if let d { dim.dimValue = d } else { dim.dimParam = "N" }
                return dim
            }
            tensor.shape = shape
            var type = Onnx_TypeProto()
            type.tensorType = tensor
            info.type = type
            return info
        }
        var relu = Onnx_NodeProto()
        relu.opType = "Relu"; relu.input = ["x"]; relu.output = ["y"]; relu.name = "relu"
        var graph = Onnx_GraphProto()
        graph.node = [relu]; graph.input = [value("x", [nil, 6, 1 << 20])]; graph.output = [{ var y = Onnx_ValueInfoProto(); y.name = "y"; return y }()]
        model.graph = graph
        let path = folder.appendingPathComponent("wide.onnx").path
        try model.serializedData().write(to: URL(fileURLWithPath: path))
        let file = try writePipeline(Self.live(port: 6400, window: "length: 1048576")
            .replacingOccurrences(of: Self.cnn, with: path)
            .replacingOccurrences(of: "  count: 2", with: "  count: 1")
            .replacingOccurrences(of: "stages:", with: "batching:\n  max_size: 1024\nstages:"))
        let result = try sluice("validate", file)
        #expect(result.status == 2, "\(result.stderr)")
        #expect(result.stderr.contains(file + ":11: batching.max_size: 1024 windows of [6, 1048576] make a batch of more than"), "\(result.stderr)")
    }

    /// A model's metadata is the file's to say: control characters are shown escaped, long keys
    /// and values cut short, and a flood of keys shown in part, so no model can write to the
    /// terminal, or fill it, through `inspect`.
    @Test func inspectShowsHostileMetadataEscapedAndCutShort() throws {
        let folder = testFolder.appendingPathComponent("sluice-hostile-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let original = packageRoot.appendingPathComponent("pipelines/models/basicmotions-cnn.onnx")
        var model = try Onnx_ModelProto(serializedBytes: try Data(contentsOf: original))
        func entry(_ key: String, _ value: String) -> Onnx_StringStringEntryProto {
            var entry = Onnx_StringStringEntryProto()
            entry.key = key
            entry.value = value
            return entry
        }
        model.metadataProps = [entry("classes", "a\u{1b}[2J,b\rc,\(String(repeating: "x", count: 10_000))"),
                               entry("title\u{7}", String(repeating: "long ", count: 2_000))]
            + (0..<200).map { entry("key-\($0)", "\($0)") }
        let path = folder.appendingPathComponent("hostile-metadata.onnx").path
        try model.serializedData().write(to: URL(fileURLWithPath: path))
        let result = try sluice("inspect", path)
        #expect(result.status == 0, "\(result.stderr)")
        #expect(!result.stdout.unicodeScalars.contains { $0.properties.generalCategory == .control && $0 != "\n" },
                "a control character reached the terminal")
        #expect(result.stdout.contains("metadata: 202 keys") && result.stdout.contains("… 170 more"), "\(result.stdout)")
        #expect(result.stdout.contains("  classes a\\u{1B}[2J, b\\rc, xxx"), "\(result.stdout)")
        #expect(result.stdout.split(separator: "\n").allSatisfy { $0.count < 400 }, "a line was not cut short")
    }

    @Test func inspectRefusesExternalDataOutsideTheModelsFolderSayingNothingOfIt() throws {
        let folder = testFolder.appendingPathComponent("sluice-hostile-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        var w = Onnx_TensorProto()
        w.name = "w"; w.dataType = 1; w.dims = [4]; w.dataLocation = .external
        var entry = Onnx_StringStringEntryProto()
        entry.key = "location"; entry.value = "../../../../../../../../etc/passwd"
        w.externalData = [entry]
        var huge = Onnx_TensorProto()
        huge.name = "v"; huge.dataType = 1; huge.dims = [1 << 40, 1 << 40]
        for (name, initializer) in [("passwd.onnx", w), ("huge.onnx", huge)] {
            var model = Onnx_ModelProto()
            model.irVersion = 8
            var opset = Onnx_OperatorSetIdProto()
            opset.version = 17
            model.opsetImport = [opset]
            var graph = Onnx_GraphProto()
            var x = Onnx_ValueInfoProto()
            x.name = "x"
            var type = Onnx_TypeProto()
            var tensor = Onnx_TypeProto.Tensor()
            tensor.elemType = 1
            var shape = Onnx_TensorShapeProto()
            var dim = Onnx_TensorShapeProto.Dimension()
            dim.dimValue = 4
            shape.dim = [dim]
            tensor.shape = shape
            type.tensorType = tensor
            x.type = type
            var y = Onnx_ValueInfoProto()
            y.name = "y"
            var add = Onnx_NodeProto()
            add.opType = "Add"; add.input = ["x", initializer.name]; add.output = ["y"]; add.name = "add"
            graph.node = [add]; graph.input = [x]; graph.output = [y]; graph.initializer = [initializer]
            model.graph = graph
            let path = folder.appendingPathComponent(name).path
            try model.serializedData().write(to: URL(fileURLWithPath: path))
            for command in ["inspect", "infer"] {
                let result = command == "inspect" ? try sluice("inspect", path) : try sluice("infer", path, "--input", "x=/nonexistent.npy", "--output", folder.appendingPathComponent("out").path)
                #expect(result.status == 3, "\(command) \(name): \(result.stderr)")
                #expect(result.stderr.contains("initializer '\(initializer.name)'"), "\(command) \(name): \(result.stderr)")
                if name == "passwd.onnx" {
                    #expect(result.stderr.contains("outside the model's folder") && !result.stderr.contains("bytes"), "\(result.stderr)")
                }
            }
        }
    }

    /// A real source process fed over real ZeroMQ: window starts past the largest number (it
    /// trapped), a fixed-seed run of mutated messages, and more new sensors than
    /// source.max_sensors. The source lives, refuses and counts what it must, and still cuts
    /// the windows of the sensor that sends proper chunks.
    @Test func aLiveSourceTakesHostileSensorMessagesAndLives() throws {
        let port = 6415
        let file = try writePipeline(Self.live(port: port, extra: "  max_sensors: 4\n  sensor_idle_s: 600\n  idle_timeout_s: 3"))
        let run = try Running(["run", file])
        do {
            let context = ZMQContext()
            let push = try ZMQSocket(context, .push, lingerMilliseconds: 5000, sendHighWaterMark: 5000, receiveHighWaterMark: 10)
            try push.connect("tcp://127.0.0.1:\(port)")
            func chunk(_ sensor: String, t0: Double, dt: Double = 0.1, count: Int = 10) throws {
                let header = #"{"v":1,"sender":"fuzz","sensor":"\#(sensor)","t0":\#(t0),"dt":\#(dt),"channels":6,"count":\#(count)}"#
                try push.send([.bytes(Array(header.utf8)), .bytes([UInt8](repeating: 0, count: count * 24))])
            }
            try chunk("far", t0: 1e308, dt: 1e307)
            var random = SplitMix(seed: 0x11FE)
            let base = Array(#"{"v":1,"sender":"fuzz","sensor":"m","t0":0,"dt":0.1,"channels":6,"count":2}"#.utf8)
            for _ in 0..<300 {
                var bytes = base
                for _ in 0...(random.next() % 3) {
                    bytes[Int(random.next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: random.next())
                }
                let payload = [UInt8](repeating: 0x7F, count: random.next() % 2 == 0 ? 48 : Int(random.next() % 100))
                try push.send(random.next() % 5 == 0 ? [.bytes(bytes)] : [.bytes(bytes), .bytes(payload)])
            }
            // The sensor that stays: its first chunk comes before the table fills.
            try chunk("steady", t0: 0)
            for id in 0..<20 { try chunk("new-\(id)", t0: 0) }
            // Without a sender, each sensor is its own: the senders tracked are bounded too.
            for id in 0..<20 {
                let header = #"{"v":1,"sensor":"solo-\#(id)","t0":0,"dt":0.1,"channels":6,"count":1}"#
                try push.send([.bytes(Array(header.utf8)), .bytes([UInt8](repeating: 0, count: 24))])
            }
            for index in 1..<20 { try chunk("steady", t0: Double(index)) }
            try push.send([.bytes(Array(#"{"v":1,"eos":true,"sender":"fuzz"}"#.utf8))])
        }
        let result = run.wait(timeout: 60)
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stderr.contains("over the sensor limit"), "\(result.stderr)")
        #expect(result.stderr.contains("past the largest time"), "\(result.stderr)")
        let steady = result.stdout.split(separator: "\n").filter { $0.contains("\"sensor\":\"steady\"") }
        #expect(steady.count == 3, "\(result.stdout)")
    }

    /// A sensor message over the 4 MiB limit never reaches the source: libzmq drops the
    /// connection that carried it. That connection closed with no end of stream through it, so
    /// the loss is counted and the summary does not say "none lost".
    @Test func anOversizedSensorMessageIsCountedNotSilentlyLost() throws {
        let port = 6435
        let file = try writePipeline(Self.live(port: port, extra: "  idle_timeout_s: 5"))
        let run = try Running(["run", file])
        do {
            // Each step waits for what it needs: a sender that connects before the source binds
            // retries on libzmq's reconnect timer, and could arrive after the steady sender's end.
            #expect(run.waitForLog("listening for sensors"), "the source never bound its sensor endpoint")
            let context = ZMQContext()
            let big = try ZMQSocket(context, .push, lingerMilliseconds: 5000, sendHighWaterMark: 10, receiveHighWaterMark: 10)
            let bigConnection = try big.monitorConnections(context)
            try big.connect("tcp://127.0.0.1:\(port)")
            let count = (5 << 20) / 24 + 1
            let header = #"{"v":1,"sender":"big","sensor":"big","t0":0,"dt":0.1,"channels":6,"count":\#(count)}"#
            _ = try big.send([.bytes(Array(header.utf8)), .bytes([UInt8](repeating: 0, count: count * 24))])
            // The source must have taken the big message's connection and dropped it before the
            // steady sender ends the input: only then is its loss one the run must report.
            let deadline = Date().addingTimeInterval(30)
            var dropped = false
            while !dropped && Date() < deadline {
                bigConnection.update()
                dropped = !bigConnection.takeClosed().isEmpty
                if !dropped { usleep(20_000) }
            }
            #expect(dropped, "the source never dropped the oversized message's connection")
            let steady = try ZMQSocket(context, .push, lingerMilliseconds: 5000, sendHighWaterMark: 100, receiveHighWaterMark: 10)
            try steady.connect("tcp://127.0.0.1:\(port)")
            for index in 0..<4 {
                let header = #"{"v":1,"sender":"steady","sensor":"steady","t0":\#(index * 5),"dt":0.1,"channels":6,"count":50}"#
                _ = try steady.send([.bytes(Array(header.utf8)), .bytes([UInt8](repeating: 0, count: 50 * 24))])
            }
            _ = try steady.send([.bytes(Array(#"{"v":1,"eos":true,"sender":"steady","chunks":4}"#.utf8))])
        }
        let result = run.wait(timeout: 60)
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stderr.contains("closed without an end of stream"), "\(result.stderr)")
        #expect(!result.stderr.contains("none lost"), "\(result.stderr)")
        let steady = result.stdout.split(separator: "\n").filter { $0.contains("\"sensor\":\"steady\"") }
        #expect(steady.count == 3, "\(result.stdout)")
    }
}
