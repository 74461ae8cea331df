import Foundation
import Testing
import SluiceConfig
@testable import SluiceRoles

@Test func recordingCSVErrorsNameFileAndLine() throws {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("rec-\(UUID().uuidString).csv").path
    defer { try? FileManager.default.removeItem(atPath: path) }
    try "sensor,t,x,label\na,0,1.5,up\na,0.1,oops,up\n".write(toFile: path, atomically: true, encoding: .utf8)
    #expect {
        try Recording.load(RecordingSource(path: path, rate: .max, channels: nil, sampleRateHz: nil))
    } throws: { "\($0)" == "\(path):3: x is not a number: 'oops'" }
    try "time,x\n0,1\n".write(toFile: path, atomically: true, encoding: .utf8)
    #expect {
        try Recording.load(RecordingSource(path: path, rate: .max, channels: nil, sampleRateHz: nil))
    } throws: { "\($0)".contains(":1: the header must name a 'sensor' and a 't' column") }
}

@Test func recordingCSVReadsChannelsAndLabels() throws {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("rec-\(UUID().uuidString).csv").path
    defer { try? FileManager.default.removeItem(atPath: path) }
    try "sensor,t,x,y,label\na,0,1,2,up\nb,0,3,4,down\n".write(toFile: path, atomically: true, encoding: .utf8)
    let recording = try Recording.load(RecordingSource(path: path, rate: .max, channels: ["y", "x"], sampleRateHz: nil))
    #expect(recording.samples == [2, 1, 4, 3])
    #expect(recording.sensors == ["a", "b"] && recording.labels == ["up", "down"])
}
