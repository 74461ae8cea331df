import Dispatch
import Foundation
import SluiceONNX
import SluiceTensor
import Testing

@Suite struct ExecutorTests {
    static let cnnPath = Paths.pipelineModel("basicmotions-cnn.onnx")

    static func window(_ batch: Int, seed: Int = 1) -> Tensor {
        var rng = SeededGenerator(seed: seed)
        return rng.tensor([batch, 6, 100])
    }

    @Test func missingInputNamesTheNode() throws {
        let model = try ONNXModel.load(path: Self.cnnPath)
        let executor = try Executor(model: model, nodes: 0..<model.nodes.count)
        var values: [String: Tensor] = [:]
        let error = try #require(throws: ModelError.self) { try executor.run(0..<model.nodes.count, values: &values) }
        #expect(error.kind == .invalidInput)
        #expect(error.description.contains("node 'in_bn' (BatchNormalization): input 'window' is missing"))

        // A later stage whose boundary tensor did not arrive.
        let stage = try Executor(model: model, nodes: 5..<model.nodes.count)
        let late = try #require(throws: ModelError.self) { try stage.run(5..<model.nodes.count, values: &values) }
        #expect(late.description.contains("node 'conv2' (Conv): input 'pool1_out' is missing"))
    }

    /// A bad batch is an error naming the node; the same executor then runs good batches.
    @Test func badBatchesAreErrorsNotCrashes() throws {
        let model = try ONNXModel.load(path: Self.cnnPath)
        let executor = try Executor(model: model, nodes: 0..<model.nodes.count)
        let bad: [(Tensor, String)] = [
            (Tensor(zeros: .int64, shape: [2, 6, 100]), "input 'window' is int64[2, 6, 100], expected float32[N, 6, 100]"),
            (Tensor(zeros: .float32, shape: [2, 6, 99]), "input 'window' is float32[2, 6, 99], expected float32[N, 6, 100]"),
            (Tensor(zeros: .float32, shape: [600]), "input 'window' is float32[600], expected float32[N, 6, 100]"),
            (Tensor(zeros: .float32, shape: [2, 5, 100]), "input 'window' is float32[2, 5, 100], expected float32[N, 6, 100]"),
        ]
        for (tensor, message) in bad {
            var values = ["window": tensor]
            let error = try #require(throws: ModelError.self) { try executor.run(0..<model.nodes.count, values: &values) }
            #expect(error.kind == .invalidInput)
            #expect(error.description.contains("node 'in_bn' (BatchNormalization): \(message)"), "\(error)")
        }
        // A stage in the middle checks what it receives too.
        let stage = try Executor(model: model, nodes: 5..<model.nodes.count)
        var values = ["pool1_out": Tensor(zeros: .float32, shape: [2, 16, 49])]
        let error = try #require(throws: ModelError.self) { try stage.run(5..<model.nodes.count, values: &values) }
        #expect(error.description.contains("node 'conv2' (Conv): input 'pool1_out' is float32[2, 16, 49], expected float32[N, 16, 50]"))

        var good = ["window": Self.window(2)]
        try executor.run(0..<model.nodes.count, values: &good)
        #expect(good["scores"]?.shape == [2, 4])
        let zeroRows = try model.run(inputs: ["window": Tensor(zeros: .float32, shape: [0, 6, 100])])
        #expect(zeroRows["scores"]?.shape == [0, 4])
    }

    @Test func rangesOutsideTheExecutorAreRejected() throws {
        let model = try ONNXModel.load(path: Self.cnnPath)
        #expect(throws: ModelError.self) { try Executor(model: model, nodes: 3..<20) }
        let executor = try Executor(model: model, nodes: 2..<5)
        #expect(executor.nodes == 2..<5)
        var values: [String: Tensor] = [:]
        let error = try #require(throws: ModelError.self) { try executor.run(0..<3, values: &values) }
        #expect(error.kind == .invalidRange)
        try executor.run(3..<3, values: &values)  // an empty range is fine
    }

    @Test func wholeGraphRunChecksInputNames() throws {
        let model = try ONNXModel.load(path: Self.cnnPath)
        let unknown = try #require(throws: ModelError.self) {
            try model.run(inputs: ["window": Self.window(1), "extra": Self.window(1)])
        }
        #expect(unknown.description.contains("'extra' is not an input of the model (inputs: window)"))
        let missing = try #require(throws: ModelError.self) { try model.run(inputs: [:]) }
        #expect(missing.description.contains("missing input 'window' (float32[N, 6, 100])"))
    }

    /// A stage's executor must not keep the model (and with it every other stage's weights).
    @Test func executorsDoNotRetainTheModel() throws {
        weak var weakModel: ONNXModel?
        let executor: Executor
        let expected: Tensor
        do {
            let model = try ONNXModel.load(path: Self.cnnPath)
            weakModel = model
            executor = try Executor(model: model, nodes: 0..<model.nodes.count)
            expected = try #require(try model.run(inputs: ["window": Self.window(3)])["scores"])
        }
        #expect(weakModel == nil)
        var values = ["window": Self.window(3)]
        try executor.run(0..<12, values: &values)
        #expect(values["scores"]?.floats == expected.floats)
    }

    @Test func concurrentRunsAgree() throws {
        let model = try ONNXModel.load(path: Self.cnnPath)
        let executor = try Executor(model: model, nodes: 0..<model.nodes.count)
        let inputs = (0..<8).map { Self.window(1 + $0 % 3, seed: $0) }
        let serial = try inputs.map { input -> [Float] in
            var values = ["window": input]
            try executor.run(0..<12, values: &values)
            return values["scores"]!.floats
        }
        let lock = NSLock()
        nonisolated(unsafe) var parallel = [[Float]](repeating: [], count: inputs.count)
        DispatchQueue.concurrentPerform(iterations: inputs.count) { i in
            var values = ["window": inputs[i]]
            try? executor.run(0..<12, values: &values)
            lock.lock()
            parallel[i] = values["scores"]?.floats ?? []
            lock.unlock()
        }
        #expect(parallel == serial)
    }

    /// Every tensor the nodes produce lands in `values`, except intermediates inside a fused run.
    @Test func producesEveryTensorButFusedIntermediates() throws {
        let model = try ONNXModel.load(path: Self.cnnPath)
        let executor = try Executor(model: model, nodes: 0..<model.nodes.count)
        #expect(executor.fusedRanges == [1..<4, 5..<8])
        var values = ["window": Self.window(2)]
        try executor.run(0..<12, values: &values)
        #expect(Set(values.keys) == ["window", "x_norm", "relu1_out", "pool1_out", "relu2_out", "gap_out", "flat", "logits", "scores"])
        var stepwise = ["window": Self.window(2)]
        for i in 0..<12 { try executor.run(i..<(i + 1), values: &stepwise) }
        #expect(Set(stepwise.keys) == Set(["window"] + model.nodes.flatMap(\.outputs)))
        #expect(stepwise["scores"]?.floats == values["scores"]?.floats)
        // A stage holding part of a fusion group runs it unfused.
        #expect(try Executor(model: model, nodes: 2..<8).fusedRanges == [5..<8])
    }
}
