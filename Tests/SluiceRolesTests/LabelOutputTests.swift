import Foundation
import Testing
import SluiceConfig
import SluiceTensor
import SluiceWire
@testable import SluiceRoles

/// A model's label output names each window's class, even where the best score would name
/// another (an SVC's vote against its Platt probabilities), renamed through `model.classes`.
@Test func theClassIsTheModelsLabelRenamedNotTheBestScore() throws {
    let path = NSTemporaryDirectory() + "sluice-label-\(getpid()).jsonl"
    defer { unlink(path) }
    let writer = try PredictionWriter(config: SinkConfig(kind: .jsonl, path: path), classes: ["sitting", "walking", "running"],
                                      modelLabels: ["0", "1", "2"])
    let scores = Tensor(shape: [3, 3], floats: [0.8, 0.1, 0.1, 0.2, 0.7, 0.1, 0.3, 0.3, 0.4])
    let labels = Tensor(shape: [3], int64s: [2, 1, 7])
    let keys = (0..<3).map { WindowKey(sensor: "s", start: Double($0)) }
    let classes = writer.write(output: scores, label: labels, keys: keys, batch: 0, firstWindow: 0)
    // Label 2 is the third class, whatever the scores; 7 is none of the model's labels and stays itself.
    #expect(classes == ["running", "walking", "7"])
    try writer.finish()
    let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n")
    #expect(lines.count == 3 && lines[0].contains("\"class\":\"running\"") && lines[0].contains("\"scores\":[0.8,0.1,0.1]"), "\(lines)")

    let strings = try PredictionWriter(config: SinkConfig(kind: .jsonl, path: path), classes: ["idle", "walk"], modelLabels: ["idle", "walk"])
    #expect(strings.write(output: Tensor(shape: [1, 2], floats: [0.9, 0.1]), label: Tensor(shape: [1], strings: ["walk"]),
                          keys: [WindowKey(sensor: "s", start: 0)], batch: 0, firstWindow: 0) == ["walk"])
    try strings.finish()
}
