import Foundation
import Testing

/// What `--help` promises: text wrapped once to the terminal, example lines never broken, and
/// every example runs as written.
enum Help {
    static let subcommands = ["run", "profile", "validate", "plan", "infer", "inspect", "bench", "keys", "deploy kubernetes", "controller", "stage", "source", "sink"]

    /// Runs a shell command line in `folder` with the built `sluice` first on PATH.
    static func shell(_ command: String, in folder: String, environment extra: [String: String] = [:], timeout: Double = 60) throws -> Finished {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", command]
        process.currentDirectoryURL = URL(fileURLWithPath: folder)
        var environment = ProcessInfo.processInfo.environment
        environment["PATH"] = URL(fileURLWithPath: sluiceBinary).deletingLastPathComponent().path + ":" + (environment["PATH"] ?? "/usr/bin:/bin")
        environment.removeValue(forKey: "COLUMNS")
        for (key, value) in extra { environment[key] = value }
        process.environment = environment
        let outPath = folder + "/.stdout-\(UUID().uuidString)"
        let errPath = folder + "/.stderr-\(UUID().uuidString)"
        FileManager.default.createFile(atPath: outPath, contents: nil)
        FileManager.default.createFile(atPath: errPath, contents: nil)
        defer {
            unlink(outPath)
            unlink(errPath)
        }
        process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
        try process.run()
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        func text(_ path: String) -> String { String(decoding: FileManager.default.contents(atPath: path) ?? Data(), as: UTF8.self) }
        return Finished(status: process.isRunning ? -1 : process.terminationStatus, stdout: text(outPath), stderr: text(errPath))
    }

    static func help(_ subcommand: String?, columns: Int) throws -> String {
        let result = try shell("sluice \(subcommand.map { "\($0) " } ?? "")--help", in: NSTemporaryDirectory(),
                               environment: ["COLUMNS": String(columns)])
        #expect(result.status == 0, "\(result.stderr)")
        return result.stdout
    }

    static func examples(in help: String) -> [String] {
        help.split(separator: "\n").map(String.init).filter { $0.hasPrefix("  sluice ") }
            .map { $0.trimmingCharacters(in: .whitespaces) }
    }
}

@Suite struct HelpTests {
    @Test func helpIsWrappedOnceAndNeverBreaksAnExample() throws {
        for subcommand in [nil] + Help.subcommands.map(Optional.some) {
            let wide = try Help.help(subcommand, columns: 1000)
            let narrow = try Help.help(subcommand, columns: 60)
            // The same examples, whole, at any width.
            let examples = Help.examples(in: wide)
            #expect(!examples.isEmpty, "\(subcommand ?? "sluice"): no example")
            #expect(Help.examples(in: narrow) == examples, "\(subcommand ?? "sluice"): \(narrow)")
            for line in narrow.split(separator: "\n") where !line.hasPrefix("  sluice ") {
                #expect(line.count <= 60, "\(subcommand ?? "sluice"): a line past 60 columns: \(line)")
            }
            // Wide enough, every paragraph before the examples is one line: no line breaks
            // in the text itself, so the text is wrapped once, to the terminal.
            let blocks = wide.components(separatedBy: "\n\n")
            for block in blocks.prefix { !$0.hasPrefix("Example") && !$0.hasPrefix("USAGE") } {
                #expect(!block.trimmingCharacters(in: .newlines).contains("\n"), "\(subcommand ?? "sluice"): a paragraph broken by hand: \(block)")
            }
        }
    }

    @Test func versionIsPrinted() throws {
        let result = try sluice("--version")
        #expect(result.status == 0)
        #expect(result.stdout.range(of: #"^\d+\.\d+\.\d+\n$"#, options: .regularExpression) != nil, "\(result.stdout)")
        #expect(try sluice("run", "--version").stdout == result.stdout)
    }
}

extension MultiProcess {
    /// Every example in every `--help` runs as written, in a folder that holds the repository's
    /// `pipelines` and `Tests`. The pipelines are copies whose /dev/null sinks go to a device
    /// node of the test's own, so a regression cannot damage the system's /dev/null.
    @Suite struct HelpExampleTests {
        /// Examples that cannot run on one machine in a test, and why.
        static let notRun: [String: String] = [
            "sluice controller pipelines/imu-mlp-3stage.yaml --control tcp://0.0.0.0:5700 --keys keys": "waits for roles started by hand",
            "sluice stage --controller tcp://10.0.0.5:5600 --name stage-1 --key keys/stage-1.key --controller-key keys/controller.pub": "joins a controller on another host",
            "sluice stage --join tcp://10.0.0.5:5600 --key keys/pool-a.key --controller-key keys/controller.pub": "joins a controller on another host",
            "sluice source --controller tcp://10.0.0.5:5600 --name source --key keys/source.key --controller-key keys/controller.pub": "joins a controller on another host",
            "sluice sink --controller tcp://10.0.0.5:5600 --name sink --key keys/sink.key --controller-key keys/controller.pub": "joins a controller on another host",
        ]

        static func workspace() throws -> String {
            let folder = testFolder.appendingPathComponent("sluice-examples-\(UUID().uuidString)").path
            let pipelines = folder + "/pipelines"
            try FileManager.default.createDirectory(atPath: pipelines, withIntermediateDirectories: true)
            try FileManager.default.createSymbolicLink(atPath: folder + "/Tests", withDestinationPath: packageRoot.path + "/Tests")
            let shipped = packageRoot.path + "/pipelines"
            var null = "/dev/null"
            if getuid() == 0 {
                null = folder + "/null"
                try #require(mknod(null, S_IFCHR | 0o666, (1 << 8) | 3) == 0)
            }
            for entry in try FileManager.default.contentsOfDirectory(atPath: shipped) {
                if entry.hasSuffix(".yaml") {
                    let text = try String(contentsOfFile: shipped + "/" + entry, encoding: .utf8)
                    try text.replacingOccurrences(of: "/dev/null", with: null).write(toFile: pipelines + "/" + entry, atomically: false, encoding: .utf8)
                } else {
                    try FileManager.default.createSymbolicLink(atPath: pipelines + "/" + entry, withDestinationPath: shipped + "/" + entry)
                }
            }
            return folder
        }

        static func json(_ path: String) -> Any? {
            FileManager.default.contents(atPath: path).flatMap { try? JSONSerialization.jsonObject(with: $0) }
        }

        @Test func everyHelpExampleRunsAsWritten() throws {
            let folder = try Self.workspace()
            var examples: [String] = []
            for subcommand in Help.subcommands + [""] {
                // Each command's own examples in order (plan's need the run before them), then the overview's.
                for example in Help.examples(in: try Help.help(subcommand.isEmpty ? nil : subcommand, columns: 80))
                where !examples.contains(example) {
                    examples.append(example)
                }
            }
            for skipped in Self.notRun.keys {
                #expect(examples.contains(skipped), "no help shows '\(skipped)' any more")
            }
            for example in examples where Self.notRun[example] == nil {
                let result = try Help.shell(example, in: folder, timeout: 60)
                #expect(result.status == 0, "\(example)\n\(result.stderr)")
                let file = { (name: String) in folder + "/" + name }
                if example.contains("> predictions.jsonl") || example.contains("--predictions predictions.jsonl") {
                    let lines = Outputs.lines(file("predictions.jsonl"))
                    #expect(!lines.isEmpty && lines.allSatisfy { $0.hasPrefix("{\"window_seq\":") }, "\(example): \(lines.prefix(3))")
                }
                if example.contains("run.json") {
                    #expect((Self.json(file("run.json")) as? [String: Any])?["windowsOut"] != nil, "\(example): run.json is not a run report")
                }
                if example.contains("> profile.json") {
                    #expect((Self.json(file("profile.json")) as? [String: Any])?["stages"] != nil, "\(example): profile.json is not a profile")
                }
                if example.hasPrefix("sluice profile") {
                    #expect(result.stderr.contains("trace:") && result.stderr.contains("chart:"), "\(example)\n\(result.stderr)")
                }
                if example.hasPrefix("sluice infer") {
                    #expect(FileManager.default.fileExists(atPath: file("out/scores.npy")), "\(example)\n\(result.stdout)")
                }
                if example.hasPrefix("sluice plan") || example.hasPrefix("sluice inspect") || example.hasPrefix("sluice bench") {
                    #expect(!result.stdout.isEmpty, "\(example)")
                }
            }
            if getuid() == 0 {
                var info = stat()
                #expect(lstat(folder + "/null", &info) == 0 && (info.st_mode & S_IFMT) == S_IFCHR, "an example replaced the device node")
            }
            var system = stat()
            #expect(lstat("/dev/null", &system) == 0 && (system.st_mode & S_IFMT) == S_IFCHR, "/dev/null is no longer a character device")
        }
    }
}
