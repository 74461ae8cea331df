import Foundation
import Testing
import SluiceConfig
import SluicePlan
import SluiceWire
@testable import SluiceProtocol

@Test func controlMessagesRoundTripAsTypedJSON() throws {
    let cut = LayerCut(layers: [Layer(index: 0, nodeStart: 0, nodeEnd: 2, opTypes: ["Conv", "Relu"], flopsPerWindow: 10,
                                      parameterBytes: 64, outputs: ["r"], outputBytesPerWindow: 40)],
                       inputs: ["x"], inputBytesPerWindow: 100)
    let liveness = Liveness(heartbeatSeconds: 0.25, timeoutSeconds: 10)
    var counters = RoleCounters()
    counters.batches = 3
    counters.layers = [LayerTiming(layer: 0, seconds: 0.5, windows: 24)]
    let messages: [ControlMessage] = [
        .hello(Hello(role: .stage, name: "stage-0", pid: 42, host: "h")),
        .assignStage(StageAssignment(stageIndex: 0, epoch: 1, modelPath: "/m.onnx", cut: cut, layers: LayerSpan(start: 0, end: 1),
                                     pullEndpoint: "ipc:///tmp/a", pushEndpoints: ["ipc:///tmp/b"], slowdown: 0, liveness: liveness)),
        .assignSource(SourceAssignment(source: .tensors(TensorsSource(path: "/x.npy", rate: .max, rowsPerSecond: nil)), window: nil,
                                       batching: BatchingConfig(maxSize: 4, maxDelayMilliseconds: 5), inputName: "x", windowShape: [32],
                                       epoch: 1, pushEndpoints: ["tcp://127.0.0.1:1"], liveness: liveness)),
        .assignSink(SinkAssignment(sink: SinkConfig(kind: .jsonl, path: "-"), pullEndpoint: "ipc:///s", outputName: "y",
                                   classes: ["a"], layerCount: 1, liveness: liveness)),
        .ready, .start, .heartbeat(counters), .sourceDone(SourceDone(batches: 2, windows: 9)), .expect(SourceDone(batches: 2, windows: 9)),
        .sinkDone(SinkSummary()), .stop, .shutdown(reason: "done"), .failed(message: "boom"), .ping,
        .sourceLost(generation: 2), .sourceLost(generation: 3, made: SourceDone(batches: 40, windows: 160)),
        .resumeSource(SourceResume(batch: 40, window: 160, generation: 3), written: SinkOutputState(batches: 39, windows: 158)),
    ]
    for message in messages {
        let bytes = message.encoded()
        #expect(try bytes.withUnsafeBytes { try ControlMessage.decode($0) } == message)
        let object = try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any]
        #expect(object?["type"] as? String == message.type)
    }
    #expect(throws: WireError.self) { try Array(#"{"type":"dance"}"#.utf8).withUnsafeBytes { try ControlMessage.decode($0) } }
}

@Test func reorderBufferReleasesEachItemOnceInOrder() {
    var generator = SystemRandomNumberGenerator()
    for _ in 0..<200 {
        let count = Int.random(in: 1...60, using: &generator)
        var arrivals = Array(0..<count).map(UInt64.init)
        // Some arrive twice, as replays do.
        arrivals += arrivals.filter { _ in Bool.random(using: &generator) }
        arrivals.shuffle(using: &generator)
        var buffer = ReorderBuffer<UInt64>()
        var released: [UInt64] = []
        for sequence in arrivals { released += buffer.insert(sequence, sequence: sequence) }
        #expect(released == Array(0..<UInt64(count)))
        #expect(buffer.duplicates == arrivals.count - count)
        #expect(buffer.pendingCount == 0)
    }
}
