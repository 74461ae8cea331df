import Foundation
import SluiceTensor

/// Normalization ops beyond BatchNormalization.
enum NormalizationOps {
    static let schemas: [OpSchema] = [
        OpSchema(name: "LayerNormalization", opsets: 17...OpRegistry.latestOpset, inputs: 2...3, outputs: 1...3) { try LayerNormOperator($0) },
        OpSchema(name: "InstanceNormalization", opsets: 1...OpRegistry.latestOpset, inputs: 3...3) { try InstanceNormOperator($0) },
        OpSchema(name: "MeanVarianceNormalization", opsets: 9...OpRegistry.latestOpset, inputs: 1...1) { try MeanVarianceNormOperator($0) },
        OpSchema(name: "LRN", opsets: 1...OpRegistry.latestOpset, inputs: 1...1) { try LRNOperator($0) },
        OpSchema(name: "LpNormalization", opsets: 1...OpRegistry.latestOpset, inputs: 1...1) { try LpNormOperator($0) },
    ]
}

/// LayerNormalization over the dimensions from `axis` on, with optional Mean and InvStdDev
/// outputs. Scale and B broadcast to the normalized shape.
struct LayerNormOperator: Operator {
    let axis: Int
    let epsilon: Float

    init(_ context: OpContext) throws {
        axis = try context.attributes.int("axis", default: -1)
        epsilon = try context.attributes.float("epsilon", default: 1e-5)
        if try context.attributes.int("stash_type", default: 1) != 1 {
            throw OpError.unsupported("stash_type other than 1 (float32) is not supported")
        }
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let x = try inputs.type(0, oneOf: [.float32], role: "X")
        let a = try Shapes.axis(axis, rank: x.shape.count)
        let normalized = Array(x.shape[a...])
        for i in 1..<inputs.count {
            guard let t = inputs.optionalType(i) else { continue }
            guard t.dtype == .float32, Shapes.broadcasts(t.shape, to: normalized) else {
                throw OpError("\(i == 1 ? "Scale" : "B") \(t) does not broadcast to the normalized shape \(describe(normalized))")
            }
        }
        let stats = Array(x.shape[..<a]) + Array(repeating: 1, count: x.shape.count - a)
        return [x, ValueType(.float32, stats), ValueType(.float32, stats)]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let x = inputs[0]!
        let a = try Shapes.axis(axis, rank: x.rank)
        let normalized = Array(x.shape[a...])
        func full(_ t: Tensor?) -> Tensor? {
            guard let t else { return nil }
            if t.elementCount == Tensor.elementCount(of: normalized) { return t }
            return Kernels.pick(t, Shapes.broadcastOffsets(t.shape, to: normalized), shape: normalized)
        }
        let (y, mean, inv) = Kernels.layerNorm(x, scale: full(inputs[1]), bias: inputs.count > 2 ? full(inputs[2]) : nil,
                                               axis: a, epsilon: epsilon)
        return [y, mean, inv]
    }

    func flops(_ inputs: [ValueType?], _ outputs: [ValueType]) -> Double { 8 * Double(outputs[0].elementCount) }
}

/// InstanceNormalization: per sample and channel over the spatial dimensions.
struct InstanceNormOperator: Operator {
    let epsilon: Float

    init(_ context: OpContext) throws {
        epsilon = try context.attributes.float("epsilon", default: 1e-5)
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let x = try inputs.type(0, oneOf: [.float32], role: "input")
        guard x.shape.count >= 3 else { throw OpError("input must be N×C×spatial, got \(describe(x.shape))") }
        for i in 1...2 where try inputs.type(i).elementCount != x.shape[1] {
            throw OpError("\(i == 1 ? "scale" : "B") must have one value per channel (\(x.shape[1]))")
        }
        return [x]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let x = inputs[0]!
        let channels = x.shape[1]
        let plane = Tensor.elementCount(of: Array(x.shape[2...]))
        let rows = x.elementCount / Swift.max(plane, 1)
        let y = Tensor(uninitialized: .float32, shape: x.shape)
        let s = inputs[1]!.floatData, b = inputs[2]!.floatData
        for r in 0..<rows {
            let c = r % channels
            let scale = s[c], shift = b[c]
            Kernels.layerNorm(x.floatData + r * plane, rows: 1, columns: plane, scale: nil, bias: nil, epsilon: epsilon,
                              into: y.mutableFloatData + r * plane)
            let dst = y.mutableFloatData + r * plane
            for j in 0..<plane { dst[j] = dst[j] * scale + shift }
        }
        return [y]
    }
}

/// MeanVarianceNormalization: (X − E[X]) / (sqrt(E[X²] − E[X]²) + 1e-9) over `axes`.
struct MeanVarianceNormOperator: Operator {
    let axes: [Int]

    init(_ context: OpContext) throws {
        axes = try context.attributes.ints("axes") ?? [0, 2, 3]
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let x = try inputs.type(0, oneOf: [.float32], role: "X")
        _ = try axes.map { try Shapes.axis($0, rank: x.shape.count) }
        return [x]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let x = inputs[0]!
        let a = try axes.map { try Shapes.axis($0, rank: x.rank) }.sorted()
        let mean = Kernels.reduce(.mean, x, axes: a, keepDims: true)
        let meanOfSquares = Kernels.reduce(.mean, Kernels.binary(.mul, x, x), axes: a, keepDims: true)
        let variance = Kernels.binary(.sub, meanOfSquares, Kernels.binary(.mul, mean, mean))
        let deviation = Kernels.binary(.add, Kernels.unary(.sqrt, variance), Tensor(shape: [], floats: [1e-9]))
        return [Kernels.binary(.div, Kernels.binary(.sub, x, mean), deviation)]
    }
}

/// LRN across channels: `x / (bias + α/size · Σ x²)^β` over a window of `size` channels.
struct LRNOperator: Operator {
    let alpha, beta, bias: Float
    let size: Int

    init(_ context: OpContext) throws {
        alpha = try context.attributes.float("alpha", default: 1e-4)
        beta = try context.attributes.float("beta", default: 0.75)
        bias = try context.attributes.float("bias", default: 1)
        guard let size = try context.attributes.int("size"), size >= 1 else { throw OpError.invalid("attribute size is required") }
        self.size = size
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let x = try inputs.type(0, oneOf: [.float32], role: "X")
        guard x.shape.count >= 3 else { throw OpError("input must be N×C×spatial, got \(describe(x.shape))") }
        return [x]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let x = inputs[0]!
        let (n, c) = (x.shape[0], x.shape[1])
        let plane = Tensor.elementCount(of: Array(x.shape[2...]))
        let v = x.floats
        var y = [Float](repeating: 0, count: v.count)
        let before = (size - 1) / 2, after = (size - 1) - before
        for s in 0..<n {
            for ch in 0..<c {
                let lo = Swift.max(0, ch - before), hi = Swift.min(c - 1, ch + after)
                for p in 0..<plane {
                    var sum: Float = 0
                    for k in lo...hi { let e = v[(s * c + k) * plane + p]; sum += e * e }
                    let i = (s * c + ch) * plane + p
                    y[i] = v[i] / Foundation.powf(bias + alpha / Float(size) * sum, beta)
                }
            }
        }
        return [Tensor(shape: x.shape, floats: y)]
    }
}

/// LpNormalization: x / ‖x‖ₚ along an axis (p = 1 or 2).
struct LpNormOperator: Operator {
    let axis: Int
    let p: Int

    init(_ context: OpContext) throws {
        axis = try context.attributes.int("axis", default: -1)
        p = try context.attributes.int("p", default: 2)
        guard p == 1 || p == 2 else { throw OpError.invalid("p must be 1 or 2, not \(p)") }
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let x = try inputs.type(0, oneOf: [.float32], role: "input")
        _ = try Shapes.axis(axis, rank: x.shape.count)
        return [x]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let x = inputs[0]!
        let a = try Shapes.axis(axis, rank: x.rank)
        let norm = Kernels.reduce(p == 1 ? .l1 : .l2, x, axes: [a], keepDims: true)
        return [Kernels.binary(.div, x, norm)]
    }
}
