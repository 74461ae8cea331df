import ArgumentParser
import Foundation
import SluiceProfile
import SluiceRoles
import SluiceTensor

extension Sluice {
    struct Profile: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run a pipeline for a while and report which stage limits throughput, why, and what a better split would give.",
            discussion: """
            Prints a stage table (busy/idle/blocked, rates, time in stage, the bottleneck and the \
            rule that found it), a layer table (ops, FLOPs, measured time per window), end-to-end \
            latency split into queueing, transfer and compute, and a recommendation. Writes a \
            Chrome/Perfetto trace and an SVG chart, and says where.

            The report goes to standard output, so the predictions must go elsewhere: a pipeline \
            whose sink writes to standard output needs --predictions FILE (/dev/null drops them).

            Examples:
              sluice profile pipelines/rebalance-demo.yaml --duration 1s
              sluice profile pipelines/quickstart.yaml --json --predictions predictions.jsonl > profile.json
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

        @OptionGroup var predictions: PredictionsOption

        @OptionGroup var observe: ObserveOptions

        func run() throws {
            let plan = try loadPlan(pipeline, predictions: predictions.path)
            let seconds = try duration.map { text -> Double in
                guard let value = parseDuration(text) else { throw ValidationError("--duration takes e.g. 30s, 2m or 500ms, not '\(text)'") }
                return value
            }
            let tracePath = trace ?? "\(plan.config.name)-trace.json"
            let svgPath = svg ?? "\(plan.config.name)-profile.svg"
            // The report goes to standard output: the predictions, the trace and the chart may not.
            try OutputStreams.checkReportOnStandardOutput(command: "profile", sink: plan.config.sink, pipeline: pipeline)
            try OutputStreams.check("--trace", tracePath, sink: plan.config.sink, pipeline: pipeline, reportOnStandardOutput: true)
            try OutputStreams.check("--svg", svgPath, sink: plan.config.sink, pipeline: pipeline, reportOnStandardOutput: true)
            StopSignal.install(managed: false)
            // The controller hands the profile over through a file in a folder of this run's own.
            var template = Array(FileManager.default.temporaryDirectory.appendingPathComponent("sluice-profile-XXXXXX").path.utf8CString)
            guard let folder = mkdtemp(&template).map({ String(cString: $0) }) else {
                throw ExitCodes.report(RoleError("cannot make a temporary folder: \(String(cString: strerror(errno)))"))
            }
            let profilePath = folder + "/profile.json"
            defer {
                unlink(profilePath)
                rmdir(folder)
            }
            let launcher = Launcher(pipelineFile: pipeline, plan: plan,
                                    controllerOptions: ["--profile", profilePath] + predictions.controllerArguments + observe.controllerArguments,
                                    stopAfter: seconds, progress: { showProgress($0, of: seconds) })
            let status: Int32
            do {
                status = try launcher.run()
            } catch {
                throw ExitCodes.report(error)
            }
            writeStandardError("\r\u{1B}[K")
            guard let data = FileManager.default.contents(atPath: profilePath),
                  let profile = try? JSONDecoder().decode(ProfileData.self, from: data) else {
                throw ExitCodes.report(RoleError("the run ended without a profile (exit status \(status))"))
            }
            if json {
                do {
                    try OutputFile.write(profile.json() + Data("\n".utf8), to: "-")
                } catch {
                    throw ExitCodes.report(error)
                }
            } else {
                print(TextReport.render(profile), terminator: "")
            }
            do {
                try OutputFile.write(ChromeTrace.render(profile), to: tracePath)
                try OutputFile.write(Data(SVGChart.render(profile).utf8), to: svgPath)
            } catch {
                throw ExitCodes.report(error)
            }
            writeStandardError("trace: \(tracePath) (open in ui.perfetto.dev or chrome://tracing)\nchart: \(svgPath)\n")
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
    writeStandardError("\r\u{1B}[K\(line)")
}
