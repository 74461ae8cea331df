import SluiceTensor

// The ops that compute straight into the buffers an execution plan gives them (see
// `Operator.evaluate(_:into:scratch:)`): those on the hot path of exported models. Each does
// what its `evaluate` does, writing to the given outputs instead of allocating.

extension BinaryOperator {
    var writesInto: Bool { true }

    func evaluate(_ inputs: [Tensor?], into outputs: [Tensor], scratch: Scratch) throws -> Bool {
        var b = inputs[1]!
        if let legacy { b = b.reshaped(try legacy.align(b.shape, to: inputs[0]!.shape)) }
        Kernels.binary(op, inputs[0]!, b, into: outputs[0])
        return true
    }
}

extension ActivationOperator {
    var writesInto: Bool { true }

    func evaluate(_ inputs: [Tensor?], into outputs: [Tensor], scratch: Scratch) throws -> Bool {
        Kernels.activation(activation, inputs[0]!, into: outputs[0])
        return true
    }
}

extension UnaryOperator {
    var writesInto: Bool { true }

    func evaluate(_ inputs: [Tensor?], into outputs: [Tensor], scratch: Scratch) throws -> Bool {
        guard inputs[0]!.dtype.isFloatingPoint else { return false }
        Kernels.unary(op, inputs[0]!, into: outputs[0])
        return true
    }
}

extension SoftmaxOperator {
    var writesInto: Bool { true }

    func evaluate(_ inputs: [Tensor?], into outputs: [Tensor], scratch: Scratch) throws -> Bool {
        let x = inputs[0]!
        let a = try Shapes.axis(axis, rank: x.rank, inclusive: coerced)
        if coerced {
            let outer = Tensor.elementCount(of: Array(x.shape[..<a]))
            Kernels.softmax(x.reshaped([outer, x.elementCount / max(outer, 1)]), axis: 1, log: log, into: outputs[0])
        } else {
            Kernels.softmax(x, axis: a, log: log, into: outputs[0])
        }
        return true
    }
}

extension GemmOperator {
    var writesInto: Bool { true }

    func evaluate(_ inputs: [Tensor?], into outputs: [Tensor], scratch: Scratch) throws -> Bool {
        let c = inputs.count > 2 ? inputs[2] : nil
        if let packed {
            Kernels.gemm(inputs[0]!, packed: inputs[1]!, k: packed.k, n: packed.n, c: c, transA: transA, alpha: alpha, beta: beta,
                         activation: activation, into: outputs[0])
            return true
        }
        Kernels.gemm(inputs[0]!, inputs[1]!, c: c, transA: transA, transB: transB, alpha: alpha, beta: beta,
                     activation: activation, into: outputs[0])
        return true
    }
}

extension MatMulBiasOperator {
    var writesInto: Bool { true }

    func evaluate(_ inputs: [Tensor?], into outputs: [Tensor], scratch: Scratch) throws -> Bool {
        if let packed {
            Kernels.linear(inputs[0]!, packed: inputs[1]!, k: packed.k, n: packed.n, bias: inputs[2]!, activation: activation,
                           into: outputs[0])
            return true
        }
        Kernels.linear(inputs[0]!, inputs[1]!, bias: inputs[2]!, activation: activation, into: outputs[0])
        return true
    }
}

extension ConvOperator {
    var writesInto: Bool { true }

    func evaluate(_ inputs: [Tensor?], into outputs: [Tensor], scratch: Scratch) throws -> Bool {
        let x = inputs[0]!, w = inputs[1]!
        Kernels.conv(x, weight: w, bias: inputs.count > 2 ? inputs[2] : nil, channelScale: channelScale,
                     channelShift: channelShift, geometry: try geometry(input: x.shape, weight: w.shape),
                     activation: activation, scratch: scratch, into: outputs[0])
        return true
    }
}

extension BatchNormOperator {
    var writesInto: Bool { true }

    func evaluate(_ inputs: [Tensor?], into outputs: [Tensor], scratch: Scratch) throws -> Bool {
        let (k, b) = Kernels.batchNormCoefficients(scale: inputs[1]!, bias: inputs[2]!, mean: inputs[3]!, variance: inputs[4]!,
                                                   epsilon: epsilon)
        Kernels.channelAffine(inputs[0]!, scale: k, shift: b, into: outputs[0])
        return true
    }
}

extension PoolOperator {
    var writesInto: Bool { true }

    func evaluate(_ inputs: [Tensor?], into outputs: [Tensor], scratch: Scratch) throws -> Bool {
        let x = inputs[0]!
        guard x.dtype == .float32 && x.rank <= 4 && !wantsIndices else { return false }
        let w = try window(x.shape)
        if average {
            Kernels.averagePool(x, window: w, countIncludePad: countIncludePad, into: outputs[0])
        } else {
            Kernels.maxPool(x, window: w, into: outputs[0])
        }
        return true
    }
}

extension GlobalPoolOperator {
    var writesInto: Bool { true }

    func evaluate(_ inputs: [Tensor?], into outputs: [Tensor], scratch: Scratch) throws -> Bool {
        Kernels.globalPool(inputs[0]!, average: average, into: outputs[0])
        return true
    }
}

extension TransposeOperator {
    var writesInto: Bool { true }

    func evaluate(_ inputs: [Tensor?], into outputs: [Tensor], scratch: Scratch) throws -> Bool {
        Kernels.transpose(inputs[0]!, perm: try permutation(rank: inputs[0]!.rank), into: outputs[0])
        return true
    }
}

extension ConcatOperator {
    var writesInto: Bool { true }

    func evaluate(_ inputs: [Tensor?], into outputs: [Tensor], scratch: Scratch) throws -> Bool {
        let parts = inputs.map { $0! }
        Kernels.concat(parts, axis: try Shapes.axis(axis, rank: parts[0].rank), into: outputs[0])
        return true
    }
}

extension LayerNormOperator {
    var writesInto: Bool { true }

    func evaluate(_ inputs: [Tensor?], into outputs: [Tensor], scratch: Scratch) throws -> Bool {
        let x = inputs[0]!
        let a = try Shapes.axis(axis, rank: x.rank)
        let columns = Tensor.elementCount(of: Array(x.shape[a...]))
        let scale = inputs[1]!, bias = inputs.count > 2 ? inputs[2] : nil
        guard scale.elementCount == columns, bias == nil || bias!.elementCount == columns else { return false }
        Kernels.layerNorm(x.floatData, rows: x.elementCount / max(columns, 1), columns: columns, scale: scale.floatData,
                          bias: bias?.floatData, epsilon: epsilon, into: outputs[0].mutableFloatData,
                          mean: outputs[1].mutableFloatData, invStdDev: outputs[2].mutableFloatData)
        return true
    }
}
