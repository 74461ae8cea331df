import Foundation
import Testing
import SluiceConfig
import SluiceTensor
@testable import SluiceRoles

private func scratch(_ name: String) -> String {
    NSTemporaryDirectory() + "sluice-resume-\(getpid())-\(name)"
}

/// A sink that takes over from a dead one reads where the output stops, from the file itself.
@Test func aResumedJSONLinesOutputCutsAPartLineAndCountsItsWindows() throws {
    let path = scratch("lines.jsonl")
    defer { unlink(path) }
    let whole = (0..<3).map { "{\"window_seq\":\($0),\"sensor\":\"s\",\"window_start\":0.0,\"scores\":[1.0]}\n" }.joined()
    try Data((whole + "{\"window_seq\":3,\"sens").utf8).write(to: URL(fileURLWithPath: path))
    let writer = try PredictionWriter(config: SinkConfig(kind: .jsonl, path: path), classes: [], resuming: true)
    #expect(writer.windowsHeld == 3)
    #expect(try String(contentsOfFile: path, encoding: .utf8) == whole, "the part line was not cut off")
    try writer.finish()
}

@Test func aResumedJSONLinesOutputThatEndsInSomethingElseIsRefused() throws {
    let path = scratch("other.jsonl")
    defer { unlink(path) }
    try Data("not a prediction\n".utf8).write(to: URL(fileURLWithPath: path))
    #expect(throws: OutputFileError.self) { try PredictionWriter(config: SinkConfig(kind: .jsonl, path: path), classes: [], resuming: true) }
    #expect(try String(contentsOfFile: path, encoding: .utf8) == "not a prediction\n", "a file it refused was changed")
}

@Test func aResumedNPYOutputCutsAPartRowAndAppendsAfterItsRows() throws {
    let path = scratch("rows.npy")
    defer { unlink(path) }
    let first = try NPYRowWriter(path: path)
    try first.append(Tensor(shape: [2, 3], floats: [0, 1, 2, 3, 4, 5]))
    // A row cut short by the death: four of its twelve bytes.
    let handle = try #require(FileHandle(forWritingAtPath: path))
    handle.seekToEndOfFile()
    handle.write(Data([1, 2, 3, 4]))
    handle.closeFile()
    let resumed = try NPYRowWriter(path: path, resuming: true)
    #expect(resumed.rows == 2)
    try resumed.append(Tensor(shape: [2, 3], floats: [6, 7, 8, 9, 10, 11]), fromRow: 1)
    try resumed.finish()
    let read = try NPY.read(path: path)
    #expect(read.shape == [3, 3] && read.floats == [0, 1, 2, 3, 4, 5, 9, 10, 11])
}

/// Longer than the first read from the end: the last whole line is found further back.
@Test func aResumedJSONLinesOutputLongerThanOneReadIsTakenUpFromItsEnd() throws {
    let path = scratch("long.jsonl")
    defer { unlink(path) }
    let padding = String(repeating: "0.5,", count: 20_000) + "0.5"  // 80 kB a line: over one read
    let whole = (0..<3).map { "{\"window_seq\":\($0),\"sensor\":\"s\",\"window_start\":0.0,\"scores\":[\(padding)]}\n" }.joined()
    try Data((whole + "{\"window_seq\":3,\"scores\":[0.").utf8).write(to: URL(fileURLWithPath: path))
    let writer = try PredictionWriter(config: SinkConfig(kind: .jsonl, path: path), classes: [], resuming: true)
    #expect(writer.windowsHeld == 3)
    #expect(try String(contentsOfFile: path, encoding: .utf8) == whole)
    try writer.finish()
}
