import Foundation
import Testing

/// A `zmq` sink hands predictions to consumers over the network: the pyzmq and the C consumer
/// in tools/consumers print what a jsonl sink writes (each line with its batch_seq too), and a
/// consumer whose key is not among `sink.consumers` gets nothing.
extension MultiProcess {
    @Suite struct NetworkSinkTests {
        static func pipeline(basePort: Int, sink: String) throws -> String {
            try cnnRecordingPipeline(rate: "20x", stages: 2, basePort: basePort, sink: sink)
        }

        /// A consumer process, its output collected to a file.
        static func start(_ executable: String, _ arguments: [String]) throws -> (Process, String) {
            let output = temporaryPath("consumer.jsonl")
            FileManager.default.createFile(atPath: output, contents: nil)
            let process = Process()
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = arguments
            process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: output))
            process.standardError = FileHandle.standardError
            try process.run()
            return (process, output)
        }

        static func lines(_ path: String) -> [String] {
            ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
        }

        /// The jsonl sink's lines for the same run: what every consumer must print, less batch_seq.
        static func reference(_ file: String) throws -> [String] {
            let output = temporaryPath("reference.jsonl")
            let result = try sluice("run", file, "--predictions", output)
            #expect(result.status == 0, "\(result.stderr)")
            return lines(output)
        }

        static func withoutBatch(_ line: String) -> String {
            line.replacingOccurrences(of: #"^\{"batch_seq":\d+,"#, with: "{", options: .regularExpression)
        }

        @Test func aPushSinkFeedsThePythonConsumerAndRefusesAnUnknownKey() throws {
            let keys = temporaryPath("sink-keys")
            let made = try sluice("keys", keys, "predictions", "consumer", "stranger")
            #expect(made.status == 0, "\(made.stderr)")
            // The stranger's key stays out of sink.consumers.
            let file = try Self.pipeline(basePort: 6980, sink: """
              type: zmq
              endpoint: tcp://127.0.0.1:6990
              key: \(keys)/predictions.key
              consumers: [\(keys)/consumer.pub]
            """)
            let expected = try Self.reference(file)
            #expect(expected.count == 72)
            let script = packageRoot.path + "/tools/consumers/consume.py"
            let (consumer, received) = try Self.start("/usr/bin/env", ["python3", script, "tcp://127.0.0.1:6990", "--key", "\(keys)/consumer.key",
                                                                      "--server-key", "\(keys)/predictions.pub", "--windows", "72"])
            let (stranger, stolen) = try Self.start("/usr/bin/env", ["python3", script, "tcp://127.0.0.1:6990", "--key", "\(keys)/stranger.key",
                                                                    "--server-key", "\(keys)/predictions.pub", "--idle-s", "2"])
            let result = try sluice("run", file, timeout: 90)
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stderr.contains("72 windows in, 72 out (in order, none lost or duplicated)"), "\(result.stderr)")
            consumer.waitUntilExit()
            stranger.waitUntilExit()
            let lines = Self.lines(received)
            #expect(lines.map(Self.withoutBatch) == expected)
            #expect(lines.allSatisfy { $0.hasPrefix("{\"batch_seq\":") }, "\(lines.prefix(2))")
            #expect(Self.lines(stolen).isEmpty, "a consumer without an allowed key got predictions")
            #expect(result.stderr.contains("refused a peer with an unknown key"), "\(result.stderr)")
        }

        @Test func aPubSinkFeedsTheCConsumer() throws {
            let binary = temporaryPath("consume")
            let compiler = try Running(["-c", "cc -O2 -o \(binary) \(packageRoot.path)/tools/consumers/consume.c -lzmq"], executable: "/bin/sh")
                .wait(timeout: 60)
            #expect(compiler.status == 0, "\(compiler.stderr)")
            let keys = temporaryPath("pub-keys")
            #expect(try sluice("keys", keys, "predictions", "consumer").status == 0)
            let file = try Self.pipeline(basePort: 6980, sink: """
              type: zmq
              endpoint: tcp://127.0.0.1:6991
              pattern: pub
              key: \(keys)/predictions.key
              consumers: [\(keys)/consumer.pub]
            """)
            let expected = try Self.reference(file)
            let (consumer, received) = try Self.start(binary, ["tcp://127.0.0.1:6991", "pub", "72", "\(keys)/consumer.key", "\(keys)/predictions.pub"])
            let result = try sluice("run", file, timeout: 90)
            #expect(result.status == 0, "\(result.stderr)")
            consumer.waitUntilExit()
            let lines = Self.lines(received).map(Self.withoutBatch)
            // A subscriber gets what is sent while it is connected: here, joined before the
            // source starts, everything.
            #expect(lines == expected)
        }
    }
}
