import Foundation
import SluiceTensor

/// NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss: evaluation losses (a model may
/// report its loss against labels fed as an input); nothing here trains.
enum LossOps {
    static let schemas: [OpSchema] = [
        OpSchema(name: "NegativeLogLikelihoodLoss", opsets: 12...OpRegistry.latestOpset, inputs: 2...3) { try LossOperator($0, softmax: false) },
        OpSchema(name: "SoftmaxCrossEntropyLoss", opsets: 12...OpRegistry.latestOpset, inputs: 2...3, outputs: 1...2) { try LossOperator($0, softmax: true) },
    ]
}

struct LossOperator: Operator {
    enum Reduction: String { case none, sum, mean }
    let softmax: Bool
    let reduction: Reduction
    let ignoreIndex: Int?

    init(_ context: OpContext, softmax: Bool) throws {
        self.softmax = softmax
        let text = try context.attributes.string("reduction") ?? "mean"
        guard let r = Reduction(rawValue: text) else { throw OpError.invalid("reduction '\(text)' is not none, sum or mean") }
        reduction = r
        ignoreIndex = try context.attributes.int("ignore_index")
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let x = try inputs.type(0, oneOf: [.float32, .float64, .float16], role: "input")
        let target = try inputs.type(1, oneOf: [.int64, .int32], role: "target")
        guard x.shape.count >= 2, target.shape == [x.shape[0]] + Array(x.shape.dropFirst(2)) else {
            throw OpError("target \(describe(target.shape)) must be input \(describe(x.shape)) without its class dimension")
        }
        if let w = inputs.optionalType(2), w.shape != [x.shape[1]] { throw OpError("weight must have one value per class (\(x.shape[1]))") }
        let loss = ValueType(x.dtype, reduction == .none ? target.shape : [])
        return softmax ? [loss, x] : [loss]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let x = inputs[0]!
        let (n, c) = (x.shape[0], x.shape[1])
        let d = x.elementCount / Swift.max(n * c, 1)
        var values = x.doubles
        if softmax {
            // log-softmax over the class dimension.
            for i in 0..<n {
                for k in 0..<d {
                    var m = -Double.infinity
                    for j in 0..<c { m = Swift.max(m, values[(i * c + j) * d + k]) }
                    var sum = 0.0
                    for j in 0..<c { sum += Foundation.exp(values[(i * c + j) * d + k] - m) }
                    let logSum = Foundation.log(sum)
                    for j in 0..<c { values[(i * c + j) * d + k] = values[(i * c + j) * d + k] - m - logSum }
                }
            }
        }
        let targets = inputs[1]!.int64Values.map { Int($0) }
        let weights = inputs.count > 2 ? inputs[2]?.doubles : nil
        var losses = [Double](repeating: 0, count: n * d)
        var weightSum = 0.0
        for i in 0..<n {
            for k in 0..<d {
                let t = targets[i * d + k]
                if let ignoreIndex, t == ignoreIndex { continue }
                guard t >= 0 && t < c else { throw OpError("target \(t) is not a class index (0..<\(c))", kind: .invalidInput) }
                let w = weights?[t] ?? 1
                losses[i * d + k] = -values[(i * c + t) * d + k] * w
                weightSum += w
            }
        }
        let loss: Tensor
        switch reduction {
        case .none: loss = Tensor(dtype: x.dtype, shape: outputs[0].shape, doubles: losses)
        case .sum: loss = Tensor(dtype: x.dtype, shape: [], doubles: [losses.reduce(0, +)])
        case .mean:
            let denominator = weights != nil || ignoreIndex != nil ? weightSum : Double(losses.count)
            loss = Tensor(dtype: x.dtype, shape: [], doubles: [losses.reduce(0, +) / denominator])
        }
        return softmax ? [loss, Tensor(dtype: x.dtype, shape: x.shape, doubles: values)] : [loss]
    }
}
