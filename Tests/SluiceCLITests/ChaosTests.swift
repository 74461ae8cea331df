import Foundation
import Testing

/// The chaos tool's short run (tools/chaos.py --short): under a steady load, a stage process,
/// the source, the sink or the controller is killed every 2 s, and every output is checked by
/// window_seq against a one-process run. The long run and its figures are in docs/chaos.md.
extension MultiProcess {
    @Suite struct ChaosTests {
        @Test func killingAnyProcessEveryTwoSecondsLosesDuplicatesAndReordersNothing() throws {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["python3", packageRoot.appendingPathComponent("tools/chaos.py").path, "--short", "--seed", "4",
                                 "--roles", "stage,source,sink,controller", "--sluice", sluiceBinary]
            let output = temporaryPath("chaos.txt")
            FileManager.default.createFile(atPath: output, contents: nil)
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: output))
            process.standardOutput = handle
            process.standardError = handle
            try process.run()
            let deadline = Date().addingTimeInterval(180)
            while process.isRunning && Date() < deadline { usleep(100_000) }
            if process.isRunning { process.terminate() }
            process.waitUntilExit()
            let text = String(decoding: FileManager.default.contents(atPath: output) ?? Data(), as: UTF8.self)
            #expect(process.terminationStatus == 0, "\(text)")
            #expect(text.contains("PASS:") && text.contains("lost 0, duplicated 0, out of order 0, differing 0"), "\(text)")
        }
    }
}
