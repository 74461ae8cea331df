import Foundation
import SluiceTestSupport
import Testing

/// `sluice profile` and live metrics on real processes: the report must name what limits a
/// pipeline and account for every second honestly.
extension MultiProcess {
    @Suite struct ProfileTests {
        /// ipc transport: tcp's kernel buffers on loopback hold hundreds of small outputs, which
        /// would hide a slow sink from upstream stages for most of a short run.
        static func mlpPipeline(slowdown: String = "", sinkDelay: Double = 0) -> String {
            """
            model:
              path: {root}/pipelines/models/basicmotions-mlp.onnx
            source:
              type: recording
              path: {root}/pipelines/data/basicmotions-test.csv
              repeat: 3
            window:
              length: 100
              hop: 5
            batching:
              max_size: 8
              max_delay_ms: 5
            stages:
              count: 3
              split: ["0-1", "2", "3-5"]
            \(slowdown)
            rebalance:
              policy: off
            sink:
              type: jsonl
              path: /dev/null
              delay_ms: \(sinkDelay)
            """
        }

        static func profile(_ yaml: String) throws -> (json: [String: Any], trace: String, svg: String, result: Finished) {
            let file = try writePipeline(yaml)
            let trace = temporaryPath("trace.json")
            let svg = temporaryPath("chart.svg")
            let result = try sluice("profile", file, "--json", "--trace", trace, "--svg", svg, timeout: 300)
            let json = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any] ?? [:]
            return (json, trace, svg, result)
        }

        @Test func aSlowStageIsNamedTheBottleneckAndEverySecondIsAccountedFor() throws {
            let run = try Self.profile(Self.mlpPipeline(slowdown: "  slowdown: {1: 4.0}"))
            #expect(run.result.status == 0, "\(run.result.stderr)")
            let bottleneck = try #require(run.json["bottleneck"] as? [String: Any], "\(run.result.stdout.prefix(500))")
            #expect(bottleneck["stage"] as? Int == 1, "\(bottleneck)")
            let stages = try #require(run.json["stages"] as? [[String: Any]])
            #expect(stages.count == 3)
            for stage in stages {
                let elapsed = stage["elapsedSeconds"] as? Double ?? 0
                let parts = ["busySeconds", "idleSeconds", "blockedSeconds"].map { stage[$0] as? Double ?? -1 }
                #expect(elapsed > 0 && abs(parts.reduce(0, +) - elapsed) <= 0.02 * elapsed, "busy+idle+blocked != wall: \(stage)")
                // Without a slowdown, busy time is the layers' compute time.
                if stage["index"] as? Int != 1 {
                    let busy = stage["busySeconds"] as? Double ?? 0
                    let layers = stage["layerComputeSeconds"] as? Double ?? 0
                    #expect(abs(busy - layers) <= 0.05 * busy, "layers \(layers) s vs busy \(busy) s: \(stage)")
                }
            }
            // Stage 0 feeds the slow stage: it waits to send, it is not the busy one.
            #expect((stages[0]["blockedSeconds"] as? Double ?? 0) > (stages[0]["busySeconds"] as? Double ?? 0), "\(stages[0])")

            let trace = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: run.trace))) as? [String: Any])
            let events = try #require(trace["traceEvents"] as? [[String: Any]])
            let slices = events.filter { $0["ph"] as? String == "X" }
            #expect(!slices.isEmpty)
            #expect(slices.allSatisfy { e in ["ts", "dur", "pid", "tid", "name"].allSatisfy { e[$0] != nil } })
            #expect(Set(slices.compactMap { $0["pid"] as? Int }).count >= 3, "one track per stage process")
            #expect(events.contains { $0["ph"] as? String == "s" } && events.contains { $0["ph"] as? String == "f" }, "flow arrows")
            let svg = try String(contentsOfFile: run.svg, encoding: .utf8)
            #expect(svg.contains("<svg") && svg.contains("</svg>"))
        }

        @Test func aSlowSinkShowsUpstreamStagesBlockedNotBusy() throws {
            let run = try Self.profile(Self.mlpPipeline(sinkDelay: 10))
            #expect(run.result.status == 0, "\(run.result.stderr)")
            let stages = try #require(run.json["stages"] as? [[String: Any]])
            for stage in stages {
                let blocked = stage["blockedSeconds"] as? Double ?? 0
                let busy = stage["busySeconds"] as? Double ?? 0
                #expect(blocked > busy, "stage \(stage["index"] ?? "?") should wait on the sink: \(stage)")
            }
            let bottleneck = try #require(run.json["bottleneck"] as? [String: Any])
            #expect(bottleneck["limiter"] as? String == "sink", "\(bottleneck)")
        }

        @Test func liveMetricsAreServedInPrometheusFormat() throws {
            let file = try writePipeline(Self.mlpPipeline().replacingOccurrences(of: "repeat: 3", with: "repeat: 30"))
            let run = try Running(["run", file, "--metrics-port", "6890"])
            var body = ""
            let deadline = Date().addingTimeInterval(60)
            // Stages report on their own heartbeats: wait until every one of them has.
            let everyStage = (0..<3).map { "sluice_stage_busy_seconds_total{stage=\"\($0)\"}" }
            while Date() < deadline, !everyStage.allSatisfy(body.contains) {
                usleep(200_000)
                body = httpGet(port: 6890, path: "/metrics") ?? ""
            }
            kill(run.pid, SIGINT)
            let result = run.wait()
            #expect(result.status == 0, "\(result.stderr)")
            #expect(body.contains("# TYPE sluice_stage_busy_seconds_total counter"), "\(body.prefix(400))")
            #expect(body.contains("sluice_stage_windows_total{stage=\"0\"}"))
            #expect(httpGet(port: 6890, path: "/metrics") == nil, "the endpoint outlived the run")
        }
    }
}

/// A minimal HTTP GET over a POSIX socket; nil when nothing listens.
func httpGet(port: UInt16, path: String) -> String? {
    guard let fd = connectToLoopback(port: port) else { return nil }
    defer { close(fd) }
    let request = Array("GET \(path) HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".utf8)
    guard write(fd, request, request.count) == request.count else { return nil }
    var response: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let count = read(fd, &buffer, buffer.count)
        if count <= 0 { break }
        response += buffer[0..<count]
    }
    let text = String(decoding: response, as: UTF8.self)
    return text.hasPrefix("HTTP/1.1 200") ? text : nil
}
