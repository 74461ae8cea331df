import SluiceTensor

/// Convolution, normalization and pooling.
enum NNOps {
    static let schemas: [OpSchema] = [
        OpSchema(name: "Conv", opsets: 1...OpRegistry.latestOpset, inputs: 2...3) { try ConvOperator($0) },
        OpSchema(name: "BatchNormalization", opsets: 1...OpRegistry.latestOpset, inputs: 5...5, outputs: OpSchema.anyCount) { try BatchNormOperator($0) },
        OpSchema(name: "MaxPool", opsets: 1...OpRegistry.latestOpset, inputs: 1...1, outputs: 1...2) { try PoolOperator($0, average: false) },
        OpSchema(name: "AveragePool", opsets: 1...OpRegistry.latestOpset, inputs: 1...1) { try PoolOperator($0, average: true) },
        OpSchema(name: "GlobalAveragePool", opsets: 1...OpRegistry.latestOpset, inputs: 1...1) { try GlobalPoolOperator($0, average: true) },
        OpSchema(name: "GlobalMaxPool", opsets: 1...OpRegistry.latestOpset, inputs: 1...1) { try GlobalPoolOperator($0, average: false) },
        OpSchema(name: "Dropout", opsets: 1...OpRegistry.latestOpset, inputs: 1...3, outputs: 1...2) { try DropoutOperator($0) },
        OpSchema(name: "ConvTranspose", opsets: 1...OpRegistry.latestOpset, inputs: 2...3) { try ConvTransposeOperator($0) },
        OpSchema(name: "MaxUnpool", opsets: 9...OpRegistry.latestOpset, inputs: 2...3) { try MaxUnpoolOperator($0) },
    ]
}

/// Reads `auto_pad`, rejecting values ONNX does not define.
private func parseAutoPad(_ attributes: Attributes) throws -> AutoPad {
    let text = try attributes.string("auto_pad") ?? "NOTSET"
    guard let value = AutoPad(rawValue: text) else {
        throw OpError.invalid("auto_pad '\(text)' is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID")
    }
    return value
}

/// Conv over 1 or 2 spatial dimensions. The executor may fold a following BatchNormalization
/// into `channelScale`/`channelShift` (applied after the bias) and an activation into
/// `activation`; the weights stay as they are in the file.
struct ConvOperator: Operator {
    let autoPad: AutoPad
    let dilations: [Int]?
    let group: Int
    let kernelShape: [Int]?
    let pads: [Int]?
    let strides: [Int]?
    var channelScale: Tensor?
    var channelShift: Tensor?
    var activation: Activation = .none

    init(_ context: OpContext) throws {
        let a = context.attributes
        autoPad = try parseAutoPad(a)
        dilations = try a.ints("dilations")
        group = try a.int("group", default: 1)
        kernelShape = try a.ints("kernel_shape")
        pads = try a.ints("pads")
        strides = try a.ints("strides")
    }

    func geometry(input: [Int], weight: [Int]) throws -> ConvGeometry {
        if let kernelShape, kernelShape != Array(weight.dropFirst(2)) {
            throw OpError("kernel_shape \(describe(kernelShape)) does not match weight \(describe(weight))")
        }
        return try ConvGeometry(input: input, weight: weight, group: group, strides: strides, dilations: dilations,
                                pads: pads, autoPad: autoPad)
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let x = try inputs.type(0, oneOf: [.float32], role: "input X")
        let w = try inputs.type(1, oneOf: [.float32], role: "weight W")
        let g = try geometry(input: x.shape, weight: w.shape)
        if let b = inputs.optionalType(2), b.dtype != .float32 || b.shape != [g.outChannels] {
            throw OpError("bias B must be float32[\(g.outChannels)], got \(b)")
        }
        return [ValueType(.float32, g.outputShape)]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let x = inputs[0]!, w = inputs[1]!
        let bias = inputs.count > 2 ? inputs[2] : nil
        return [Kernels.conv(x, weight: w, bias: bias, channelScale: channelScale, channelShift: channelShift,
                             geometry: try geometry(input: x.shape, weight: w.shape), activation: activation,
                             scratch: scratch)]
    }

    func flops(_ inputs: [ValueType?], _ outputs: [ValueType]) -> Double {
        guard let x = inputs[0], let w = inputs[1], let g = try? geometry(input: x.shape, weight: w.shape) else { return 0 }
        return g.flops + (inputs.count > 2 && inputs[2] != nil ? Double(outputs[0].elementCount) : 0)
    }
}

/// BatchNormalization in inference mode: `y = (x − mean) / sqrt(var + ε) · scale + B` per channel.
struct BatchNormOperator: Operator {
    let epsilon: Float

    init(_ context: OpContext) throws {
        let a = context.attributes
        if try a.int("training_mode", default: 0) != 0 {
            throw OpError.unsupported("training_mode=1 is not supported (inference only)")
        }
        if context.opset < 9, try a.int("spatial", default: 1) != 1 {
            throw OpError.unsupported("spatial=0 (per-element statistics) is not supported")
        }
        if context.requestedOutputs > 1 {
            throw OpError.unsupported("asks for the training outputs (running mean and variance); inference has only Y")
        }
        epsilon = try a.float("epsilon", default: 1e-5)
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let x = try inputs.type(0, oneOf: [.float32], role: "input X")
        guard x.shape.count >= 2 else { throw OpError("input X must be N×C×…, got \(describe(x.shape))") }
        for (i, role) in [(1, "scale"), (2, "B"), (3, "input_mean"), (4, "input_var")] {
            let t = try inputs.type(i, oneOf: [.float32], role: role)
            guard t.elementCount == x.shape[1] && t.shape.count == 1 else {
                throw OpError("\(role) must have one value per channel (\(x.shape[1])), got \(describe(t.shape))")
            }
        }
        return [x]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        [Kernels.batchNorm(inputs[0]!, scale: inputs[1]!, bias: inputs[2]!, mean: inputs[3]!, variance: inputs[4]!,
                           epsilon: epsilon)]
    }

    func flops(_ inputs: [ValueType?], _ outputs: [ValueType]) -> Double { 2 * Double(outputs[0].elementCount) }
}

/// MaxPool (with its optional Indices output) and AveragePool. 1-D and 2-D float32 windows
/// run the planar kernels; other ranks, integer inputs and Indices the general one.
struct PoolOperator: Operator {
    let average: Bool
    let autoPad: AutoPad
    let ceilMode: Bool
    let countIncludePad: Bool
    let dilations: [Int]?
    let kernelShape: [Int]
    let pads: [Int]?
    let strides: [Int]?
    let wantsIndices: Bool
    let columnMajorIndices: Bool

    init(_ context: OpContext, average: Bool) throws {
        let a = context.attributes
        self.average = average
        wantsIndices = context.requestedOutputs > 1
        autoPad = try parseAutoPad(a)
        ceilMode = try a.int("ceil_mode", default: 0) != 0
        countIncludePad = try a.int("count_include_pad", default: 0) != 0
        dilations = try a.ints("dilations")
        guard let kernel = try a.ints("kernel_shape") else { throw OpError.invalid("attribute kernel_shape is required") }
        kernelShape = kernel
        pads = try a.ints("pads")
        strides = try a.ints("strides")
        columnMajorIndices = try a.int("storage_order", default: 0) != 0
    }

    func window(_ input: [Int]) throws -> KernelGeometry {
        guard input.count >= 3 else { throw OpError("input must be N×C×spatial, got \(describe(input))") }
        return try KernelGeometry(input: Array(input.dropFirst(2)), kernel: kernelShape, strides: strides,
                                  dilations: dilations, pads: pads, autoPad: autoPad, ceilMode: ceilMode)
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let x = try inputs.type(0, oneOf: average ? [.float32, .float64, .float16] : Kernels.reduceDTypes, role: "input X")
        let w = try window(x.shape)
        let shape = Array(x.shape.prefix(2)) + w.output
        return [ValueType(x.dtype, shape), ValueType(.int64, shape)]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let x = inputs[0]!
        let w = try window(x.shape)
        if x.dtype == .float32 && x.rank <= 4 && !wantsIndices {
            return [average ? Kernels.averagePool(x, window: w, countIncludePad: countIncludePad) : Kernels.maxPool(x, window: w)]
        }
        let (y, indices) = Kernels.poolGeneral(x, window: w, average: average, countIncludePad: countIncludePad,
                                               columnMajorIndices: columnMajorIndices)
        return wantsIndices ? [y, indices] : [y]
    }

    func flops(_ inputs: [ValueType?], _ outputs: [ValueType]) -> Double {
        Double(outputs[0].elementCount) * Double(kernelShape.reduce(1, *))
    }
}

/// GlobalAveragePool and GlobalMaxPool: N×C×spatial → N×C×1×…×1.
struct GlobalPoolOperator: Operator {
    let average: Bool

    init(_ context: OpContext, average: Bool) throws {
        self.average = average
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let x = try inputs.type(0, oneOf: [.float32], role: "input X")
        guard x.shape.count >= 3 else { throw OpError("input must be N×C×spatial, got \(describe(x.shape))") }
        return [ValueType(.float32, Array(x.shape.prefix(2)) + Array(repeating: 1, count: x.shape.count - 2))]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        [average ? Kernels.globalAveragePool(inputs[0]!) : Kernels.globalMaxPool(inputs[0]!)]
    }

    func flops(_ inputs: [ValueType?], _ outputs: [ValueType]) -> Double { Double(inputs[0]?.elementCount ?? 0) }
}

/// Dropout at inference: the input passes through; the optional mask is all true.
struct DropoutOperator: DataMovementOperator {
    let wantsMask: Bool

    init(_ context: OpContext) throws {
        wantsMask = context.requestedOutputs == 2
    }

    /// Training mode drops values at random, which inference does not do; with a ratio of 0 it
    /// is the identity, so only that case passes.
    func checkInferenceMode(_ inputs: InferenceInputs) throws {
        guard let training = inputs.value(2), training.dtype == .bool, training.truthValues.contains(true) else { return }
        if let ratio = inputs.scalarFloat(1), ratio == 0 { return }
        if inputs.optionalType(1) != nil && inputs.value(1) == nil { return }  // known at run time
        throw OpError.unsupported("training_mode=true is not supported (inference only)")
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let x = try inputs.type(0)
        try checkInferenceMode(inputs)
        return wantsMask ? [x, ValueType(.bool, x.shape)] : [x]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        try checkInferenceMode(InferenceInputs(tensors: inputs))
        guard wantsMask else { return [inputs[0]!] }
        let mask = Tensor(uninitialized: .bool, shape: outputs[1].shape)
        mask.storage.bytes.initializeMemory(as: UInt8.self, repeating: 1, count: mask.elementCount)
        return [inputs[0]!, mask]
    }

    var isView: Bool { !wantsMask }
}

/// ConvTranspose over any number of spatial dimensions. The output size comes from
/// `output_shape` when given (pads then derived as ONNX specifies), else from the pads.
struct ConvTransposeOperator: Operator {
    let autoPad: AutoPad
    let dilations: [Int]?
    let group: Int
    let outputPadding: [Int]?
    let outputShape: [Int]?
    let pads: [Int]?
    let strides: [Int]?

    init(_ context: OpContext) throws {
        let a = context.attributes
        autoPad = try parseAutoPad(a)
        dilations = try a.ints("dilations")
        group = try a.int("group", default: 1)
        outputPadding = try a.ints("output_padding")
        outputShape = try a.ints("output_shape")
        pads = try a.ints("pads")
        strides = try a.ints("strides")
        if let kernel = try a.ints("kernel_shape"), kernel.isEmpty { throw OpError.invalid("kernel_shape is empty") }
    }

    /// Output spatial size and the pads at the start of each spatial dimension.
    func geometry(input: [Int], weight: [Int]) throws -> (output: [Int], padsBegin: [Int], strides: [Int], dilations: [Int]) {
        guard input.count >= 3, weight.count == input.count else {
            throw OpError("input \(describe(input)) and weight \(describe(weight)) must be N×C×spatial and C×M×kernel")
        }
        guard group >= 1, input[1] == weight[0], input[1] % group == 0 else {
            throw OpError("input has \(input[1]) channels; weight \(describe(weight)) with group \(group) expects \(weight[0])")
        }
        let spatial = Array(input.dropFirst(2)), kernel = Array(weight.dropFirst(2))
        let rank = spatial.count
        let strides = self.strides ?? Array(repeating: 1, count: rank)
        let dilations = self.dilations ?? Array(repeating: 1, count: rank)
        let outputPadding = self.outputPadding ?? Array(repeating: 0, count: rank)
        guard strides.count == rank, dilations.count == rank, outputPadding.count == rank else {
            throw OpError("strides, dilations and output_padding need \(rank) values")
        }
        var natural: [Int] = []
        for d in 0..<rank {
            let span: Int = (kernel[d] - 1) * dilations[d] + 1
            natural.append(strides[d] * (spatial[d] - 1) + outputPadding[d] + span)
        }
        if let pads, autoPad == .notSet || autoPad == .valid {
            guard pads.count == 2 * rank else { throw OpError("pads \(describe(pads)) need \(2 * rank) values") }
            var output: [Int] = []
            for d in 0..<rank { output.append(natural[d] - pads[d] - pads[d + rank]) }
            if let outputShape { output = Array(outputShape.suffix(rank)) }
            return (output, Array(pads.prefix(rank)), strides, dilations)
        }
        if autoPad == .notSet || autoPad == .valid, outputShape == nil {
            return (natural, Array(repeating: 0, count: rank), strides, dilations)
        }
        if autoPad == .notSet || autoPad == .valid, let outputShape {
            return (Array(outputShape.suffix(rank)), Array(repeating: 0, count: rank), strides, dilations)
        }
        let output = outputShape.map { Array($0.suffix(rank)) } ?? (0..<rank).map { spatial[$0] * strides[$0] }
        let begin = (0..<rank).map { d -> Int in
            let total = natural[d] - output[d]
            return autoPad == .sameUpper ? total / 2 : total - total / 2
        }
        return (output, begin, strides, dilations)
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let x = try inputs.type(0, oneOf: [.float32], role: "input X")
        let w = try inputs.type(1, oneOf: [.float32], role: "weight W")
        let g = try geometry(input: x.shape, weight: w.shape)
        let channels = w.shape[1] * group
        if let b = inputs.optionalType(2), b.shape != [channels] { throw OpError("bias B must be float32[\(channels)], got \(b)") }
        guard g.output.allSatisfy({ $0 > 0 }) else { throw OpError("the output would be empty: \(describe(g.output))") }
        return [ValueType(.float32, [x.shape[0], channels] + g.output)]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let x = inputs[0]!, w = inputs[1]!
        let g = try geometry(input: x.shape, weight: w.shape)
        return [Kernels.convTranspose(x, weight: w, bias: inputs.count > 2 ? inputs[2] : nil, group: group, strides: g.strides,
                                      dilations: g.dilations, padsBegin: g.padsBegin, outputSpatial: g.output, scratch: scratch)]
    }

    func flops(_ inputs: [ValueType?], _ outputs: [ValueType]) -> Double {
        guard let x = inputs[0], let w = inputs[1] else { return 0 }
        return 2 * Double(x.elementCount) * Double(w.elementCount / max(w.shape[0], 1))
    }
}

/// MaxUnpool: scatters values to the positions MaxPool's Indices name, zeros elsewhere.
struct MaxUnpoolOperator: Operator {
    let kernelShape: [Int]
    let pads: [Int]?
    let strides: [Int]?

    init(_ context: OpContext) throws {
        guard let kernel = try context.attributes.ints("kernel_shape") else { throw OpError.invalid("attribute kernel_shape is required") }
        kernelShape = kernel
        pads = try context.attributes.ints("pads")
        strides = try context.attributes.ints("strides")
    }

    /// The shape MaxPool's input had: where the indices point.
    func pooledFrom(_ x: [Int]) throws -> [Int] {
        let rank = kernelShape.count
        guard x.count == rank + 2 else { throw OpError("X must have \(rank) spatial dimensions") }
        let strides = self.strides ?? Array(repeating: 1, count: rank)
        let pads = self.pads ?? Array(repeating: 0, count: 2 * rank)
        var spatial: [Int] = []
        for d in 0..<rank { spatial.append((x[d + 2] - 1) * strides[d] + kernelShape[d] - pads[d] - pads[d + rank]) }
        return Array(x.prefix(2)) + spatial
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let x = try inputs.type(0, oneOf: [.float32], role: "X")
        _ = try inputs.type(1, oneOf: [.int64], role: "I")
        let inferred = try pooledFrom(x.shape)
        if inputs.optionalType(2) != nil {
            guard let shape = inputs.integers(2) else { throw OpError.needsValue("output_shape") }
            guard shape.count == inferred.count, zip(shape, inferred).allSatisfy({ $0 >= $1 }) else {
                throw OpError("output_shape \(describe(shape)) is smaller than the pooled input \(describe(inferred))")
            }
            return [ValueType(.float32, shape)]
        }
        return [ValueType(.float32, inferred)]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let inferred = try pooledFrom(inputs[0]!.shape)
        var y = [Float](repeating: 0, count: Tensor.elementCount(of: inferred))
        let x = inputs[0]!.floats, targets = inputs[1]!.int64Values
        for (i, t) in targets.enumerated() {
            guard t >= 0 && Int(t) < y.count else { throw OpError("index \(t) is outside the output", kind: .invalidInput) }
            y[Int(t)] = x[i]
        }
        let unpooled = Tensor(shape: inferred, floats: y)
        let shape = outputs[0].shape
        if shape == inferred { return [unpooled] }
        // Embed at the start of each dimension of the larger output.
        let strides = Shapes.strides(inferred)
        var sources = [Int](repeating: -1, count: Tensor.elementCount(of: shape))
        forEachIndex(shape) { index, flat in
            if zip(index, inferred).allSatisfy({ $0 < $1 }) { sources[flat] = offset(index, strides) }
        }
        return [Kernels.pick(unpooled, sources, shape: shape, fill: Tensor(shape: [1], floats: [0]))]
    }
}
