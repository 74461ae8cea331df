import Foundation
import Testing

/// The package root, found from this file's path.
let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

func fixture(_ name: String) -> String { packageRoot.appendingPathComponent("Tests/Fixtures/\(name)").path }
func pipelineFile(_ name: String) -> String { packageRoot.appendingPathComponent("pipelines/\(name)").path }

/// Where every file these tests make goes: one folder per test process. Folders of earlier
/// runs whose process is gone are removed first, so runs leave no trail in the temporary folder.
let testFolder: URL = {
    let base = FileManager.default.temporaryDirectory
    let prefix = "sluice-cli-tests-"
    for name in (try? FileManager.default.contentsOfDirectory(atPath: base.path)) ?? [] where name.hasPrefix(prefix) {
        if let pid = Int32(name.dropFirst(prefix.count)), kill(pid, 0) != 0, errno == ESRCH {
            try? FileManager.default.removeItem(at: base.appendingPathComponent(name))
        }
    }
    let folder = base.appendingPathComponent(prefix + "\(getpid())")
    try? FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    return folder
}()

/// The built `sluice` binary (`swift build` puts it beside the test bundle).
let sluiceBinary: String = {
    if let path = ProcessInfo.processInfo.environment["SLUICE_BINARY"] { return path }
    let candidates = [".build/debug/sluice", ".build/release/sluice"].map { packageRoot.appendingPathComponent($0).path }
    return candidates.first { FileManager.default.isExecutableFile(atPath: $0) } ?? candidates[0]
}()

struct Finished {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// A running `sluice` process with its output collected to files (pipes could fill and stall it).
final class Running {
    let process = Process()
    let outPath: String
    let errPath: String

    init(_ arguments: [String], executable: String = sluiceBinary) throws {
        let folder = testFolder.appendingPathComponent("sluice-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        outPath = folder.appendingPathComponent("stdout").path
        errPath = folder.appendingPathComponent("stderr").path
        FileManager.default.createFile(atPath: outPath, contents: nil)
        FileManager.default.createFile(atPath: errPath, contents: nil)
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
        try process.run()
    }

    var pid: Int32 { process.processIdentifier }

    /// Waits up to `timeout` seconds; kills the process (and fails the wait) past that.
    func wait(timeout: Double = 120) -> Finished {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning {
            kill(pid, SIGKILL)
            process.waitUntilExit()
            return Finished(status: -1, stdout: read(outPath), stderr: read(errPath) + "\n[killed after \(timeout) s]")
        }
        return Finished(status: process.terminationStatus, stdout: read(outPath), stderr: read(errPath))
    }

    /// Waits up to `timeout` seconds until the run's standard error contains `needle`: for a
    /// test to act once the run reached a point, never after a guessed delay.
    func waitForLog(_ needle: String, timeout: Double = 30) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if read(errPath).contains(needle) { return true }
            usleep(20_000)
        }
        return false
    }

    private func read(_ path: String) -> String {
        String(decoding: FileManager.default.contents(atPath: path) ?? Data(), as: UTF8.self)
    }
}

func sluice(_ arguments: String..., timeout: Double = 120) throws -> Finished {
    try Running(arguments).wait(timeout: timeout)
}

/// Writes a pipeline file into a fresh folder; `{root}` in the text becomes the package root.
func writePipeline(_ yaml: String) throws -> String {
    let folder = testFolder.appendingPathComponent("sluice-pipeline-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    let path = folder.appendingPathComponent("pipeline.yaml").path
    try yaml.replacingOccurrences(of: "{root}", with: packageRoot.path).write(toFile: path, atomically: true, encoding: .utf8)
    return path
}

/// The BasicMotions 1D CNN over `stages` stage processes on tcp from `basePort`, fed the test
/// recording at `rate`; `sink` and `extra` are YAML lines (`sink` indented under `sink:`).
func cnnRecordingPipeline(name: String = "imu", rate: String, stages: Int, basePort: Int, sink: String, extra: String = "") throws -> String {
    try writePipeline("""
    name: \(name)
    model:
      path: {root}/pipelines/models/basicmotions-cnn.onnx
    source:
      type: recording
      path: {root}/pipelines/data/basicmotions-test.csv
      rate: \(rate)
    window:
      length: 100
      hop: 50
    stages:
      count: \(stages)
    transport:
      kind: tcp
      base_port: \(basePort)
    sink:
    \(sink)
    \(extra)
    """)
}

func temporaryPath(_ name: String) -> String {
    testFolder.appendingPathComponent("sluice-\(UUID().uuidString)-\(name)").path
}

/// PIDs of live processes whose command line contains `needle`.
func processes(matching needle: String) -> [Int32] {
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
    return entries.compactMap { Int32($0) }.filter { pid in
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
        let commandLine = String(decoding: data.map { $0 == 0 ? 32 : $0 }, as: UTF8.self)
        return commandLine.contains(needle) && !commandLine.contains("swift-test") && !commandLine.hasPrefix("/proc")
    }
}

/// Every test that starts a pipeline of processes lives in here: they run one at a time, since
/// a handful of processes already fill two cores and the tests assert outcomes under load.
@Suite(.serialized) struct MultiProcess {}
