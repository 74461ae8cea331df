import SluiceTensor

/// RNN, GRU and LSTM: forward, reverse or bidirectional, with optional sequence lengths,
/// initial states, LSTM peepholes, clipping, custom activations and batch-first layout.
enum RecurrentOps {
    static let schemas: [OpSchema] = [
        OpSchema(name: "RNN", opsets: 1...OpRegistry.latestOpset, inputs: 3...6, outputs: 0...2) { try RecurrentOperator($0, kind: .rnn) },
        OpSchema(name: "GRU", opsets: 1...OpRegistry.latestOpset, inputs: 3...6, outputs: 0...2) {
            try RecurrentOperator($0, kind: .gru(linearBeforeReset: try $0.attributes.int("linear_before_reset", default: 0) != 0))
        },
        OpSchema(name: "LSTM", opsets: 1...OpRegistry.latestOpset, inputs: 3...8, outputs: 0...3) { try RecurrentOperator($0, kind: .lstm) },
    ]
}

struct RecurrentOperator: Operator {
    let kind: RecurrentCell.Kind
    let hidden: Int?
    let directions: [Bool]  // reverse?, per direction
    let activations: [[RecurrentActivation]]
    let clip: Float?
    let batchFirst: Bool
    /// Input 8 holds R packed per direction (set by the executor when R is a weight).
    var packedR = false

    var gates: Int {
        switch kind {
        case .rnn: return 1
        case .gru: return 3
        case .lstm: return 4
        }
    }

    init(_ context: OpContext, kind: RecurrentCell.Kind) throws {
        self.kind = kind
        let a = context.attributes
        hidden = try a.int("hidden_size")
        let direction = try a.string("direction") ?? "forward"
        switch direction {
        case "forward": directions = [false]
        case "reverse": directions = [true]
        case "bidirectional": directions = [false, true]
        default: throw OpError.invalid("direction '\(direction)' is not forward, reverse or bidirectional")
        }
        clip = try a.float("clip")
        batchFirst = try a.int("layout", default: 0) != 0
        if kind == .lstm, try a.int("input_forget", default: 0) != 0 {
            throw OpError.unsupported("input_forget=1 (coupled input and forget gates) is not supported")
        }
        let defaults: [String]
        switch kind {
        case .rnn: defaults = ["Tanh"]
        case .gru: defaults = ["Sigmoid", "Tanh"]
        case .lstm: defaults = ["Sigmoid", "Tanh", "Tanh"]
        }
        let names = try a.strings("activations") ?? (directions.count == 2 ? defaults + defaults : defaults)
        var alphas = try a.floats("activation_alpha") ?? []
        var betas = try a.floats("activation_beta") ?? []
        var parsed: [RecurrentActivation] = []
        for name in names {
            func take(_ list: inout [Float], _ fallback: Float) -> Float { list.isEmpty ? fallback : list.removeFirst() }
            switch name.lowercased() {
            case "sigmoid": parsed.append(.sigmoid)
            case "tanh": parsed.append(.tanh)
            case "relu": parsed.append(.relu)
            case "softsign": parsed.append(.softsign)
            case "softplus": parsed.append(.softplus)
            case "hardsigmoid": parsed.append(.hardSigmoid(alpha: take(&alphas, 0.2), beta: take(&betas, 0.5)))
            case "leakyrelu": parsed.append(.leakyRelu(alpha: take(&alphas, 0.01)))
            case "thresholdedrelu": parsed.append(.thresholdedRelu(alpha: take(&alphas, 1)))
            case "scaledtanh": parsed.append(.scaledTanh(alpha: take(&alphas, 1), beta: take(&betas, 1)))
            case "affine": parsed.append(.affine(alpha: take(&alphas, 1), beta: take(&betas, 0)))
            case "elu": parsed.append(.elu(alpha: take(&alphas, 1)))
            default: throw OpError.unsupported("activation '\(name)' is not supported")
            }
        }
        let per = defaults.count
        guard parsed.count == per * directions.count else {
            throw OpError.invalid("activations lists \(parsed.count) functions; \(per * directions.count) expected")
        }
        activations = (0..<directions.count).map { Array(parsed[($0 * per)..<(($0 + 1) * per)]) }
    }

    struct Sizes { let steps, batch, input, hidden: Int }

    func sizes(_ inputs: InferenceInputs) throws -> Sizes {
        let x = try inputs.type(0, oneOf: [.float32], role: "X")
        let w = try inputs.type(1, oneOf: [.float32], role: "W")
        let r = try inputs.type(2, oneOf: [.float32], role: "R")
        guard x.shape.count == 3 else { throw OpError("X must be 3-D, got \(describe(x.shape))") }
        let (steps, batch) = batchFirst ? (x.shape[1], x.shape[0]) : (x.shape[0], x.shape[1])
        let h = hidden ?? (r.shape.last ?? 0)
        let d = directions.count
        guard w.shape == [d, gates * h, x.shape[2]] else { throw OpError("W must be \(describe([d, gates * h, x.shape[2]])), got \(describe(w.shape))") }
        guard r.shape == [d, gates * h, h] else { throw OpError("R must be \(describe([d, gates * h, h])), got \(describe(r.shape))") }
        if let b = inputs.optionalType(3), b.shape != [d, 2 * gates * h] { throw OpError("B must be \(describe([d, 2 * gates * h]))") }
        if let s = inputs.optionalType(4), s.shape != [batch] { throw OpError("sequence_lens must be [\(batch)]") }
        let stateShape = batchFirst ? [batch, d, h] : [d, batch, h]
        if let s = inputs.optionalType(5), s.shape != stateShape { throw OpError("initial_h must be \(describe(stateShape))") }
        if kind == .lstm {
            if let s = inputs.optionalType(6), s.shape != stateShape { throw OpError("initial_c must be \(describe(stateShape))") }
            if let p = inputs.optionalType(7), p.shape != [d, 3 * h] { throw OpError("P must be \(describe([d, 3 * h]))") }
        }
        return Sizes(steps: steps, batch: batch, input: x.shape[2], hidden: h)
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let s = try sizes(inputs)
        let d = directions.count
        let y = batchFirst ? [s.batch, s.steps, d, s.hidden] : [s.steps, d, s.batch, s.hidden]
        let state = batchFirst ? [s.batch, d, s.hidden] : [d, s.batch, s.hidden]
        var types = [ValueType(.float32, y), ValueType(.float32, state)]
        if kind == .lstm { types.append(ValueType(.float32, state)) }
        return types
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let s = try sizes(InferenceInputs(tensors: inputs))
        func input(_ i: Int) -> Tensor? { i < inputs.count ? inputs[i] : nil }
        let d = directions.count, h = s.hidden
        // Work in the [steps, batch, …] layout; batch-first tensors are transposed in and out.
        var x = inputs[0]!
        var h0 = input(5), c0 = input(6)
        if batchFirst {
            x = Kernels.transpose(x, perm: [1, 0, 2])
            h0 = h0.map { Kernels.transpose($0, perm: [1, 0, 2]) }
            c0 = c0.map { Kernels.transpose($0, perm: [1, 0, 2]) }
        }
        let lengths = input(4).map { $0.int64Values.map { Swift.min(Swift.max(Int($0), 0), s.steps) } }
        let y = Tensor(zeros: .float32, shape: [s.steps, d, s.batch, h])
        let yh = Tensor(uninitialized: .float32, shape: [d, s.batch, h])
        let yc = Tensor(uninitialized: .float32, shape: [d, s.batch, h])
        let w = inputs[1]!, r = inputs[2]!, bias = input(3), peep = input(7)
        let gh = gates * h
        for (k, reverse) in directions.enumerated() {
            let cell = RecurrentCell(kind: kind, hidden: h, activations: activations[k], clip: clip)
            var buffers = RecurrentCell.Buffers(
                x: x.floatData, w: w.floatData + k * gh * s.input, r: r.floatData + k * gh * h,
                bias: bias.map { $0.floatData + k * 2 * gh }, peepholes: peep.map { $0.floatData + k * 3 * h },
                initialH: h0.map { $0.floatData + k * s.batch * h }, initialC: c0.map { $0.floatData + k * s.batch * h },
                y: y.mutableFloatData + k * s.batch * h, yStepStride: d * s.batch * h,
                yh: yh.mutableFloatData + k * s.batch * h, yc: yc.mutableFloatData + k * s.batch * h)
            if packedR, let packed = input(8), packed.shape == [d, RecurrentCell.packedRecurrentCount(gates: gates, hidden: h)] {
                buffers.packedR = packed.floatData + k * packed.shape[1]
            }
            // The buffers hold raw pointers: keep every tensor they point into alive meanwhile.
            withExtendedLifetime((x, h0, c0, w, r, bias, peep, y, yh, yc, input(8))) {
                cell.run(buffers, steps: s.steps, batch: s.batch, inputSize: s.input, reverse: reverse, lengths: lengths,
                         scratch: scratch)
            }
        }
        var results = [y, yh, yc]
        if batchFirst {
            results = [Kernels.transpose(y, perm: [2, 0, 1, 3]), Kernels.transpose(yh, perm: [1, 0, 2]),
                       Kernels.transpose(yc, perm: [1, 0, 2])]
        }
        return Array(results.prefix(kind == .lstm ? 3 : 2))
    }

    func flops(_ inputs: [ValueType?], _ outputs: [ValueType]) -> Double {
        guard let x = inputs[0], let w = inputs[1], let r = inputs[2] else { return 0 }
        let steps = Double(x.shape[batchFirst ? 1 : 0]), batch = Double(x.shape[batchFirst ? 0 : 1])
        return 2 * steps * batch * Double(w.elementCount + r.elementCount)
    }
}
