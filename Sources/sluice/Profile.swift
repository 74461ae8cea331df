import ArgumentParser
import Foundation
import SluiceProfile
import SluiceRoles

extension Sluice {
    struct Profile: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run a pipeline for a while and report which stage limits throughput, why, and what a better split would give.",
            discussion: """
            Prints a stage table (busy/idle/blocked, rates, time in stage, the bottleneck and the rule
            that found it), a layer table (ops, FLOPs, measured time per sample), end-to-end latency
            split into queueing, transfer and compute, and a recommendation. Writes a Chrome/Perfetto
            trace and an SVG chart, and says where.

            Example:
              sluice profile pipelines/rebalance-demo.yaml --duration 10s
              sluice profile pipelines/quickstart.yaml --json > profile.json
            """)

        @Argument(help: "The pipeline file (YAML).")
        var pipeline: String

        @Option(help: "How long to profile (e.g. 30s, 2m, 500ms); the run drains and stops then. Default: until the input ends.")
        var duration: String?

        @Flag(help: "Print the profile as JSON on standard output instead of the tables.")
        var json = false

        @Option(help: "Where to write the Chrome/Perfetto trace (default: NAME-trace.json in this folder).")
        var trace: String?

        @Option(help: "Where to write the SVG chart (default: NAME-profile.svg in this folder).")
        var svg: String?

        @OptionGroup var observe: ObserveOptions

        func run() throws {
            let plan = try loadPlan(pipeline)
            let seconds = try duration.map { text -> Double in
                guard let value = parseDuration(text) else { throw ValidationError("--duration takes e.g. 30s, 2m or 500ms, not '\(text)'") }
                return value
            }
            StopSignal.install(managed: false)
            let profilePath = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-profile-\(getpid()).json").path
            defer { try? FileManager.default.removeItem(atPath: profilePath) }
            let launcher = Launcher(pipelineFile: pipeline, plan: plan,
                                    controllerOptions: ["--profile", profilePath] + observe.controllerArguments,
                                    stopAfter: seconds, progress: { showProgress($0, of: seconds) })
            let status: Int32
            do {
                status = try launcher.run()
            } catch {
                throw ExitCodes.report(error)
            }
            FileHandle.standardError.write(Data("\r\u{1B}[K".utf8))
            guard let data = FileManager.default.contents(atPath: profilePath),
                  let profile = try? JSONDecoder().decode(ProfileData.self, from: data) else {
                throw ExitCodes.report(RoleError("the run ended without a profile (exit status \(status))"))
            }
            if json {
                FileHandle.standardOutput.write(profile.json())
                FileHandle.standardOutput.write(Data("\n".utf8))
            } else {
                print(TextReport.render(profile), terminator: "")
            }
            let tracePath = trace ?? "\(plan.config.name)-trace.json"
            let svgPath = svg ?? "\(plan.config.name)-profile.svg"
            guard FileManager.default.createFile(atPath: tracePath, contents: ChromeTrace.render(profile)),
                  FileManager.default.createFile(atPath: svgPath, contents: Data(SVGChart.render(profile).utf8)) else {
                throw ExitCodes.report(RoleError("cannot write \(tracePath) or \(svgPath)"))
            }
            FileHandle.standardError.write(Data("trace: \(tracePath) (open in ui.perfetto.dev or chrome://tracing)\nchart: \(svgPath)\n".utf8))
            if status != 0 { throw ExitCode(status) }
        }
    }
}

/// "30s", "2m", "500ms" or plain seconds.
func parseDuration(_ text: String) -> Double? {
    let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)]
    for (suffix, scale) in units where text.hasSuffix(suffix) {
        if let value = Double(text.dropLast(suffix.count)), value > 0 { return value * scale }
    }
    return Double(text).flatMap { $0 > 0 ? $0 : nil }
}

/// A one-line progress bar on standard error (only when it is a terminal).
private func showProgress(_ elapsed: Double, of total: Double?) {
    guard isatty(STDERR_FILENO) == 1 else { return }
    let line: String
    if let total {
        let done = min(1, elapsed / total)
        let width = 30
        let filled = Int(done * Double(width))
        line = "profiling [" + String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
            + String(format: "] %.0f/%.0f s", min(elapsed, total), total)
    } else {
        line = String(format: "profiling… %.0f s (until the input ends)", elapsed)
    }
    FileHandle.standardError.write(Data("\r\u{1B}[K\(line)".utf8))
}
