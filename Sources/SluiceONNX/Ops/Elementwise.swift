import Foundation
import SluiceTensor

/// Elementwise math, comparison and logic beyond the four arithmetic ops.
enum ElementwiseOps {
    static let schemas: [OpSchema] = {
        var list: [OpSchema] = []
        func unary(_ name: String, _ from: Int, integers: Bool = false, _ op: @escaping @Sendable (OpContext) throws -> UnaryOp) {
            list.append(OpSchema(name: name, opsets: from...OpRegistry.latestOpset, inputs: 1...1) {
                try UnaryOperator($0, try op($0), integers: integers)
            })
        }
        unary("Abs", 1, integers: true) { _ in .abs }
        unary("Neg", 1, integers: true) { _ in .neg }
        unary("Sign", 9, integers: true) { _ in .sign }
        unary("Exp", 1) { _ in .exp }
        unary("Log", 1) { _ in .log }
        unary("Sqrt", 1) { _ in .sqrt }
        unary("Reciprocal", 1) { _ in .reciprocal }
        unary("Floor", 1) { _ in .floor }
        unary("Ceil", 1) { _ in .ceil }
        unary("Round", 11) { _ in .round }
        unary("Erf", 9) { _ in .erf }
        unary("Sin", 7) { _ in .sin }
        unary("Cos", 7) { _ in .cos }
        unary("Tan", 7) { _ in .tan }
        unary("Asin", 7) { _ in .asin }
        unary("Acos", 7) { _ in .acos }
        unary("Atan", 7) { _ in .atan }
        unary("Sinh", 9) { _ in .sinh }
        unary("Cosh", 9) { _ in .cosh }
        unary("Asinh", 9) { _ in .asinh }
        unary("Acosh", 9) { _ in .acosh }
        unary("Atanh", 9) { _ in .atanh }
        unary("Softplus", 1) { _ in .softplus }
        unary("Softsign", 1) { _ in .softsign }
        unary("Mish", 18) { _ in .mish }
        unary("HardSwish", 14) { _ in .hardSwish }
        unary("Elu", 1) { .elu(alpha: try $0.attributes.float("alpha", default: 1)) }
        unary("Selu", 1) {
            .selu(alpha: try $0.attributes.float("alpha", default: 1.67326319217681884765625),
                  gamma: try $0.attributes.float("gamma", default: 1.05070102214813232421875))
        }
        unary("Celu", 12) { .celu(alpha: try $0.attributes.float("alpha", default: 1)) }
        unary("HardSigmoid", 1) {
            .hardSigmoid(alpha: try $0.attributes.float("alpha", default: 0.2), beta: try $0.attributes.float("beta", default: 0.5))
        }
        unary("ThresholdedRelu", 10) { .thresholdedRelu(alpha: try $0.attributes.float("alpha", default: 1)) }
        unary("Shrink", 9) {
            .shrink(bias: try $0.attributes.float("bias", default: 0), lambda: try $0.attributes.float("lambd", default: 0.5))
        }
        unary("Gelu", 20) {
            let approximate = try $0.attributes.string("approximate") ?? "none"
            guard approximate == "none" || approximate == "tanh" else {
                throw OpError.invalid("approximate '\(approximate)' is not one of none, tanh")
            }
            return .gelu(tanh: approximate == "tanh")
        }
        for op in [CompareOp.equal, .less, .lessOrEqual, .greater, .greaterOrEqual] {
            list.append(OpSchema(name: op.rawValue, opsets: 1...OpRegistry.latestOpset, inputs: 2...2) { try CompareOperator($0, op) })
        }
        for op in [LogicOp.and, .or, .xor] {
            list.append(OpSchema(name: op.rawValue, opsets: 1...OpRegistry.latestOpset, inputs: 2...2) { try LogicOperator($0, op) })
        }
        list += [
            OpSchema(name: "Not", opsets: 1...OpRegistry.latestOpset, inputs: 1...1) { _ in NotOperator() },
            OpSchema(name: "Where", opsets: 9...OpRegistry.latestOpset, inputs: 3...3) { _ in WhereOperator() },
            OpSchema(name: "Max", opsets: 1...OpRegistry.latestOpset, inputs: 1...Int.max) { try VariadicOperator($0, .max) },
            OpSchema(name: "Min", opsets: 1...OpRegistry.latestOpset, inputs: 1...Int.max) { try VariadicOperator($0, .min) },
            OpSchema(name: "Sum", opsets: 1...OpRegistry.latestOpset, inputs: 1...Int.max) { try VariadicOperator($0, .sum) },
            OpSchema(name: "Mean", opsets: 1...OpRegistry.latestOpset, inputs: 1...Int.max) { try VariadicOperator($0, .mean) },
            OpSchema(name: "Pow", opsets: 1...OpRegistry.latestOpset, inputs: 2...2) { try PowOperator($0) },
            OpSchema(name: "Mod", opsets: 10...OpRegistry.latestOpset, inputs: 2...2) { try ModOperator($0) },
            OpSchema(name: "BitShift", opsets: 11...OpRegistry.latestOpset, inputs: 2...2) { try BitShiftOperator($0) },
            OpSchema(name: "PRelu", opsets: 1...OpRegistry.latestOpset, inputs: 2...2) { _ in PReluOperator() },
            OpSchema(name: "IsNaN", opsets: 9...OpRegistry.latestOpset, inputs: 1...1) { _ in IsNaNOperator() },
            OpSchema(name: "IsInf", opsets: 10...OpRegistry.latestOpset, inputs: 1...1) { try IsInfOperator($0) },
        ]
        return list
    }()
}

/// A unary float function (and, for Abs, Neg and Sign, integers too).
struct UnaryOperator: Operator {
    let op: UnaryOp
    let integers: Bool

    init(_ context: OpContext, _ op: UnaryOp, integers: Bool) throws {
        self.op = op
        self.integers = integers
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let x = try inputs.type(0)
        guard x.dtype.isFloatingPoint || (integers && x.dtype.isInteger) else {
            throw OpError("input must be \(integers ? "numeric" : "float32, float64 or float16"), got \(x.dtype)")
        }
        return [x]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let x = inputs[0]!
        if x.dtype.isFloatingPoint { return [Kernels.unary(op, x)] }
        // uint64 values above Int64.max are held as negative bit patterns: never negative numbers.
        let unsigned = x.dtype == .uint64
        let values = x.int64Values.map { v -> Int64 in
            switch op {
            case .abs: return v < 0 && !unsigned ? 0 &- v : v
            case .sign where unsigned: return v != 0 ? 1 : 0
            case .neg: return 0 &- v
            default: return v > 0 ? 1 : (v < 0 ? -1 : 0)
            }
        }
        return [Tensor(dtype: x.dtype, shape: x.shape, int64Values: values)]
    }
}

/// Equal, Less, LessOrEqual, Greater, GreaterOrEqual: bool output, NumPy broadcasting.
struct CompareOperator: Operator {
    let op: CompareOp
    var legacy: LegacyBroadcast?

    init(_ context: OpContext, _ op: CompareOp) throws {
        self.op = op
        if context.opset < 7 { legacy = try LegacyBroadcast(context) }
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let a = try inputs.type(0), b = try inputs.type(1)
        guard a.dtype == b.dtype else { throw OpError("inputs have different types: \(a.dtype) and \(b.dtype)") }
        let bShape = try legacy?.align(b.shape, to: a.shape) ?? b.shape
        return [ValueType(.bool, try Shapes.broadcast(a.shape, bShape))]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        var b = inputs[1]!
        if let legacy { b = b.reshaped(try legacy.align(b.shape, to: inputs[0]!.shape)) }
        return [try Kernels.compare(op, inputs[0]!, b)]
    }
}

/// And, Or, Xor on bool tensors.
struct LogicOperator: Operator {
    let op: LogicOp
    var legacy: LegacyBroadcast?

    init(_ context: OpContext, _ op: LogicOp) throws {
        self.op = op
        if context.opset < 7 { legacy = try LegacyBroadcast(context) }
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let a = try inputs.type(0, oneOf: [.bool], role: "A"), b = try inputs.type(1, oneOf: [.bool], role: "B")
        let bShape = try legacy?.align(b.shape, to: a.shape) ?? b.shape
        return [ValueType(.bool, try Shapes.broadcast(a.shape, bShape))]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        var b = inputs[1]!
        if let legacy { b = b.reshaped(try legacy.align(b.shape, to: inputs[0]!.shape)) }
        return [try Kernels.logic(op, inputs[0]!, b)]
    }
}

struct NotOperator: Operator {
    func infer(_ inputs: InferenceInputs) throws -> [ValueType] { [try inputs.type(0, oneOf: [.bool], role: "input")] }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let x = inputs[0]!
        return [Tensor(shape: x.shape, bools: x.truthValues.map { !$0 })]
    }
}

struct WhereOperator: Operator {
    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let c = try inputs.type(0, oneOf: [.bool], role: "condition")
        let x = try inputs.type(1), y = try inputs.type(2)
        guard x.dtype == y.dtype else { throw OpError("X and Y have different types: \(x.dtype) and \(y.dtype)") }
        return [ValueType(x.dtype, try Shapes.broadcast([c.shape, x.shape, y.shape]))]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        [try Kernels.select(inputs[0]!, inputs[1]!, inputs[2]!)]
    }
}

/// Max, Min, Sum, Mean over one or more inputs, broadcast together (opset 8 and later; before,
/// the shapes had to agree, which broadcasting also accepts).
struct VariadicOperator: Operator {
    enum Kind { case max, min, sum, mean }
    let kind: Kind

    init(_ context: OpContext, _ kind: Kind) throws {
        guard !context.node.inputs.contains("") else { throw OpError.invalid("has an omitted input") }
        self.kind = kind
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let types = try (0..<inputs.count).map { try inputs.type($0, oneOf: Kernels.binaryDTypes, role: "input \($0)") }
        if let other = types.first(where: { $0.dtype != types[0].dtype }) {
            throw OpError("inputs have different types: \(types[0].dtype) and \(other.dtype)")
        }
        if kind == .mean && !types[0].dtype.isFloatingPoint { throw OpError("Mean needs float inputs, got \(types[0].dtype)") }
        return [ValueType(types[0].dtype, try Shapes.broadcast(types.map(\.shape)))]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let op: BinaryOp
        switch kind {
        case .max: op = .max
        case .min: op = .min
        case .sum, .mean: op = .add
        }
        var result = inputs[0]!
        for next in inputs.dropFirst() { result = Kernels.binary(op, result, next!) }
        if kind == .mean && inputs.count > 1 {
            result = Kernels.binary(.div, result, Tensor(scalar: Double(inputs.count), dtype: result.dtype))
        }
        return [result]
    }
}

/// Pow: the result has X's type; the exponent may have another numeric type.
struct PowOperator: Operator {
    var legacy: LegacyBroadcast?

    init(_ context: OpContext) throws {
        if context.opset < 7 { legacy = try LegacyBroadcast(context) }
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let x = try inputs.type(0), y = try inputs.type(1)
        guard x.dtype != .bool, y.dtype != .bool else { throw OpError("Pow of bool") }
        let yShape = try legacy?.align(y.shape, to: x.shape) ?? y.shape
        return [ValueType(x.dtype, try Shapes.broadcast(x.shape, yShape))]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let x = inputs[0]!
        var y = inputs[1]!
        if let legacy { y = y.reshaped(try legacy.align(y.shape, to: x.shape)) }
        let shape = outputs[0].shape
        if x.dtype == .float32 && y.dtype == .float32 {
            if y.elementCount == 1 && x.shape == shape {
                let e = y.floats[0]
                if e == 2 { return [Kernels.binary(.mul, x, x)] }
                if e == 1 { return [x] }
                if e == 0.5 { return [Kernels.unary(.sqrt, x)] }
            }
            let out = Tensor(uninitialized: .float32, shape: shape)
            Kernels.broadcastLoop(x.floatData, x.shape, y.floatData, y.shape, out.mutableFloatData, shape) {
                Foundation.powf($0, $1)
            }
            return [out]
        }
        let xo = Shapes.broadcastOffsets(x.shape, to: shape), yo = Shapes.broadcastOffsets(y.shape, to: shape)
        if x.dtype.isInteger {
            let xv = x.int64Values, yv = y.dtype.isInteger ? y.int64Values : nil, yd = y.doubles
            let values = (0..<xo.count).map { i -> Int64 in
                if let yv { return integerPower(xv[xo[i]], yv[yo[i]]) }
                return Int64(exactly: Foundation.pow(Double(xv[xo[i]]), yd[yo[i]]).rounded(.towardZero)) ?? 0
            }
            return [Tensor(dtype: x.dtype, shape: shape, int64Values: values)]
        }
        let xv = x.doubles, yv = y.doubles
        return [Tensor(dtype: x.dtype, shape: shape, doubles: (0..<xo.count).map { Foundation.pow(xv[xo[$0]], yv[yo[$0]]) })]
    }

    private func integerPower(_ base: Int64, _ exponent: Int64) -> Int64 {
        if exponent < 0 { return base == 1 ? 1 : (base == -1 ? (exponent % 2 == 0 ? 1 : -1) : 0) }
        var result: Int64 = 1, b = base, e = exponent
        while e > 0 {
            if e & 1 == 1 { result = result &* b }
            b = b &* b
            e >>= 1
        }
        return result
    }
}

/// Mod: `fmod` = 1 takes the sign of the dividend (C fmod), 0 that of the divisor (Python's %).
struct ModOperator: Operator {
    let fmod: Bool

    init(_ context: OpContext) throws {
        fmod = try context.attributes.int("fmod", default: 0) != 0
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let a = try inputs.type(0), b = try inputs.type(1)
        guard a.dtype == b.dtype, a.dtype != .bool else { throw OpError("Mod of \(a.dtype) and \(b.dtype)") }
        if a.dtype.isFloatingPoint && !fmod { throw OpError.invalid("fmod must be 1 for floating-point inputs") }
        return [ValueType(a.dtype, try Shapes.broadcast(a.shape, b.shape))]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let a = inputs[0]!, b = inputs[1]!
        let shape = outputs[0].shape
        let ao = Shapes.broadcastOffsets(a.shape, to: shape), bo = Shapes.broadcastOffsets(b.shape, to: shape)
        if a.dtype.isFloatingPoint {
            let av = a.doubles, bv = b.doubles
            return [Tensor(dtype: a.dtype, shape: shape, doubles: (0..<ao.count).map { Foundation.fmod(av[ao[$0]], bv[bo[$0]]) })]
        }
        if a.dtype == .uint64 {
            // Past Int64.max its bit pattern reads negative: divide unsigned (no signs to fix up).
            let av = a.withUnsafeBufferPointer(as: UInt64.self) { Array($0) }, bv = b.withUnsafeBufferPointer(as: UInt64.self) { Array($0) }
            let values = (0..<ao.count).map { i in Int64(bitPattern: bv[bo[i]] == 0 ? 0 : av[ao[i]] % bv[bo[i]]) }
            return [Tensor(dtype: a.dtype, shape: shape, int64Values: values)]
        }
        let av = a.int64Values, bv = b.int64Values
        let values = (0..<ao.count).map { i -> Int64 in
            let x = av[ao[i]], y = bv[bo[i]]
            guard y != 0 else { return 0 }
            let r = x.remainderReportingOverflow(dividingBy: y).partialValue
            if fmod || r == 0 || (r < 0) == (y < 0) { return r }
            return r + y
        }
        return [Tensor(dtype: a.dtype, shape: shape, int64Values: values)]
    }
}

/// BitShift on unsigned integers; a shift by the width or more gives 0.
struct BitShiftOperator: Operator {
    static let dtypes: [DType] = [.uint8, .uint16, .uint32, .uint64]
    let left: Bool

    init(_ context: OpContext) throws {
        let direction = try context.attributes.string("direction") ?? ""
        guard direction == "LEFT" || direction == "RIGHT" else { throw OpError.invalid("direction must be LEFT or RIGHT, not '\(direction)'") }
        left = direction == "LEFT"
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let x = try inputs.type(0, oneOf: Self.dtypes, role: "X"), y = try inputs.type(1, oneOf: Self.dtypes, role: "Y")
        guard x.dtype == y.dtype else { throw OpError("X and Y have different types: \(x.dtype) and \(y.dtype)") }
        return [ValueType(x.dtype, try Shapes.broadcast(x.shape, y.shape))]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let x = inputs[0]!, y = inputs[1]!
        let shape = outputs[0].shape
        let xo = Shapes.broadcastOffsets(x.shape, to: shape), yo = Shapes.broadcastOffsets(y.shape, to: shape)
        let width = UInt64(x.dtype.byteSize * 8)
        // Unsigned values as bit patterns: zero-extended, so a right shift brings in zeros, and
        // the tensor built back wraps a left shift to the width.
        let xv = x.int64Values, yv = y.int64Values
        let values = (0..<xo.count).map { i -> Int64 in
            let v = UInt64(bitPattern: xv[xo[i]]), s = UInt64(bitPattern: yv[yo[i]])
            if s >= width { return 0 }
            return Int64(bitPattern: left ? v << s : v >> s)
        }
        return [Tensor(dtype: x.dtype, shape: shape, int64Values: values)]
    }
}

/// PRelu: `x < 0 ? slope · x : x`, the slope broadcast to X. Old exports give a per-channel
/// slope of shape [C] for N×C×…, which is aligned with dimension 1.
struct PReluOperator: Operator {
    func slopeShape(_ x: [Int], _ slope: [Int]) throws -> [Int] {
        if Shapes.broadcasts(slope, to: x) { return slope }
        if slope.count == 1, x.count >= 2, slope[0] == x[1] {
            return [slope[0]] + Array(repeating: 1, count: x.count - 2)
        }
        throw OpError("slope \(describe(slope)) does not broadcast to X \(describe(x))")
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let x = try inputs.type(0, oneOf: [.float32], role: "X")
        let slope = try inputs.type(1, oneOf: [.float32], role: "slope")
        _ = try slopeShape(x.shape, slope.shape)
        return [x]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let x = inputs[0]!
        let slope = inputs[1]!.reshaped(try slopeShape(x.shape, inputs[1]!.shape))
        let out = Tensor(uninitialized: .float32, shape: x.shape)
        Kernels.broadcastLoop(x.floatData, x.shape, slope.floatData, slope.shape, out.mutableFloatData, x.shape) {
            $0 < 0 ? $0 * $1 : $0
        }
        return [out]
    }
}

struct IsNaNOperator: Operator {
    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let x = try inputs.type(0)
        guard x.dtype.isFloatingPoint else { throw OpError("input must be a float type, got \(x.dtype)") }
        return [ValueType(.bool, x.shape)]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let x = inputs[0]!
        // Float32 read in place: the attention masks transformers exports pass through here.
        if x.dtype == .float32 {
            let out = Tensor(uninitialized: .bool, shape: x.shape)
            x.withUnsafeBufferPointer(as: Float.self) { source in
                out.withUnsafeMutableBufferPointer(as: UInt8.self) { target in
                    for i in source.indices { target[i] = source[i].isNaN ? 1 : 0 }
                }
            }
            return [out]
        }
        return [Tensor(shape: x.shape, bools: x.doubles.map(\.isNaN))]
    }
}

struct IsInfOperator: Operator {
    let negative: Bool
    let positive: Bool

    init(_ context: OpContext) throws {
        negative = try context.attributes.int("detect_negative", default: 1) != 0
        positive = try context.attributes.int("detect_positive", default: 1) != 0
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let x = try inputs.type(0)
        guard x.dtype.isFloatingPoint else { throw OpError("input must be a float type, got \(x.dtype)") }
        return [ValueType(.bool, x.shape)]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        [Tensor(shape: inputs[0]!.shape, bools: inputs[0]!.doubles.map { $0.isInfinite && ($0 > 0 ? positive : negative) })]
    }
}
