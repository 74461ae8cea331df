import SluiceTensor

/// Convolution, normalization and pooling.
enum NNOps {
    static let schemas: [OpSchema] = [
        OpSchema(name: "Conv", opsets: 1...OpRegistry.latestOpset) { try ConvOperator($0) },
        OpSchema(name: "BatchNormalization", opsets: 7...OpRegistry.latestOpset) { try BatchNormOperator($0) },
        OpSchema(name: "MaxPool", opsets: 1...OpRegistry.latestOpset) { try PoolOperator($0, average: false) },
        OpSchema(name: "AveragePool", opsets: 1...OpRegistry.latestOpset) { try PoolOperator($0, average: true) },
        OpSchema(name: "GlobalAveragePool", opsets: 1...OpRegistry.latestOpset) { try GlobalPoolOperator($0, average: true) },
        OpSchema(name: "GlobalMaxPool", opsets: 1...OpRegistry.latestOpset) { try GlobalPoolOperator($0, average: false) },
        OpSchema(name: "Dropout", opsets: 1...OpRegistry.latestOpset) { try DropoutOperator($0) },
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
        try context.expectInputs(2...3)
        try context.expectOutputs(1...1)
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
        try context.expectInputs(5...5)
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

/// MaxPool and AveragePool over 1 or 2 spatial dimensions.
struct PoolOperator: Operator {
    let average: Bool
    let autoPad: AutoPad
    let ceilMode: Bool
    let countIncludePad: Bool
    let dilations: [Int]?
    let kernelShape: [Int]
    let pads: [Int]?
    let strides: [Int]?

    init(_ context: OpContext, average: Bool) throws {
        try context.expectInputs(1...1)
        if !average && context.requestedOutputs > 1 {
            throw OpError.unsupported("the Indices output of MaxPool is not supported")
        }
        try context.expectOutputs(1...1)
        let a = context.attributes
        self.average = average
        autoPad = try parseAutoPad(a)
        ceilMode = try a.int("ceil_mode", default: 0) != 0
        countIncludePad = try a.int("count_include_pad", default: 0) != 0
        dilations = try a.ints("dilations")
        guard let kernel = try a.ints("kernel_shape") else { throw OpError.invalid("attribute kernel_shape is required") }
        kernelShape = kernel
        pads = try a.ints("pads")
        strides = try a.ints("strides")
        if !average, try a.int("storage_order", default: 0) != 0, context.requestedOutputs > 1 {
            throw OpError.unsupported("storage_order=1 is not supported")
        }
    }

    func window(_ input: [Int]) throws -> WindowGeometry {
        guard input.count == 3 || input.count == 4 else {
            throw OpError.unsupported("only 1-D and 2-D pooling is supported, input is \(describe(input))")
        }
        return try WindowGeometry(input: Array(input.dropFirst(2)), kernel: kernelShape, strides: strides,
                                  dilations: dilations, pads: pads, autoPad: autoPad, ceilMode: ceilMode)
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let x = try inputs.type(0, oneOf: [.float32], role: "input X")
        let w = try window(x.shape)
        return [ValueType(.float32, Array(x.shape.prefix(2)) + w.output)]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let x = inputs[0]!
        let w = try window(x.shape)
        return [average ? Kernels.averagePool(x, window: w, countIncludePad: countIncludePad) : Kernels.maxPool(x, window: w)]
    }

    func flops(_ inputs: [ValueType?], _ outputs: [ValueType]) -> Double {
        Double(outputs[0].elementCount) * Double(kernelShape.reduce(1, *))
    }
}

/// GlobalAveragePool and GlobalMaxPool: N×C×spatial → N×C×1×…×1.
struct GlobalPoolOperator: Operator {
    let average: Bool

    init(_ context: OpContext, average: Bool) throws {
        try context.expectInputs(1...1)
        try context.expectOutputs(1...1)
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
struct DropoutOperator: Operator {
    let wantsMask: Bool

    init(_ context: OpContext) throws {
        try context.expectInputs(1...3)
        try context.expectOutputs(1...2)
        wantsMask = context.requestedOutputs == 2
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let x = try inputs.type(0)
        if let training = inputs.value(2), training.dtype == .bool,
           training.withUnsafeBufferPointer(as: UInt8.self, { $0.contains { $0 != 0 } }) {
            throw OpError.unsupported("training_mode=true is not supported (inference only)")
        }
        return wantsMask ? [x, ValueType(.bool, x.shape)] : [x]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        guard wantsMask else { return [inputs[0]!] }
        let mask = Tensor(uninitialized: .bool, shape: outputs[1].shape)
        mask.storage.bytes.initializeMemory(as: UInt8.self, repeating: 1, count: mask.elementCount)
        return [inputs[0]!, mask]
    }

    func flops(_ inputs: [ValueType?], _ outputs: [ValueType]) -> Double { 0 }
}
