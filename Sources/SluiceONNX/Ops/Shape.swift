import SluiceTensor

/// Ops that move or describe data without arithmetic; they work for every dtype.
enum ShapeOps {
    static let schemas: [OpSchema] = [
        OpSchema(name: "Identity", opsets: 1...OpRegistry.latestOpset) { try IdentityOperator($0) },
        OpSchema(name: "Constant", opsets: 1...OpRegistry.latestOpset) { try ConstantOperator($0) },
        OpSchema(name: "Flatten", opsets: 1...OpRegistry.latestOpset) { try FlattenOperator($0) },
        OpSchema(name: "Reshape", opsets: 5...OpRegistry.latestOpset) { try ReshapeOperator($0) },
        OpSchema(name: "Transpose", opsets: 1...OpRegistry.latestOpset) { try TransposeOperator($0) },
        OpSchema(name: "Concat", opsets: 4...OpRegistry.latestOpset) { try ConcatOperator($0) },
        OpSchema(name: "Shape", opsets: 1...OpRegistry.latestOpset) { try ShapeOperator($0) },
        OpSchema(name: "Gather", opsets: 1...OpRegistry.latestOpset) { try GatherOperator($0) },
        OpSchema(name: "Unsqueeze", opsets: 1...OpRegistry.latestOpset) { try AxesOperator($0, squeeze: false) },
        OpSchema(name: "Squeeze", opsets: 1...OpRegistry.latestOpset) { try AxesOperator($0, squeeze: true) },
        OpSchema(name: "Cast", opsets: 6...OpRegistry.latestOpset) { try CastOperator($0) },
    ]
}

struct IdentityOperator: Operator {
    init(_ context: OpContext) throws {
        try context.expectInputs(1...1)
        try context.expectOutputs(1...1)
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] { [try inputs.type(0)] }
    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] { [inputs[0]!] }
    func flops(_ inputs: [ValueType?], _ outputs: [ValueType]) -> Double { 0 }
    var isView: Bool { true }
}

/// Constant: its value comes from one of the `value*` attributes. The loader turns Constant
/// nodes into initializers; this op is what decodes them.
struct ConstantOperator: Operator {
    let value: Tensor

    init(_ context: OpContext) throws {
        try context.expectInputs(0...0)
        try context.expectOutputs(1...1)
        let a = context.attributes
        if let proto = try a.tensor("value") {
            value = try TensorDecoder.decode(proto, name: context.node.outputs[0], baseDirectory: nil)
        } else if let f = try a.float("value_float") {
            value = Tensor(shape: [], floats: [f])
        } else if let fs = try a.floats("value_floats") {
            value = Tensor(shape: [fs.count], floats: fs)
        } else if let i = try a.int("value_int") {
            value = Tensor(shape: [], int64s: [Int64(i)])
        } else if let ints = try a.ints("value_ints") {
            value = Tensor(shape: [ints.count], int64s: ints.map { Int64($0) })
        } else if a.has("sparse_value") || a.has("value_string") || a.has("value_strings") {
            throw OpError.unsupported("sparse and string constants are not supported")
        } else {
            throw OpError.invalid("has no value attribute")
        }
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] { [ValueType(value.dtype, value.shape)] }
    func valuesFromTypes(_ inputs: InferenceInputs) throws -> [Tensor]? { [value] }
    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] { [value] }
    func flops(_ inputs: [ValueType?], _ outputs: [ValueType]) -> Double { 0 }
}

/// Flatten: [d0, …, dn] → [d0·…·d(axis−1), d(axis)·…·dn], sharing storage.
struct FlattenOperator: Operator {
    let axis: Int

    init(_ context: OpContext) throws {
        try context.expectInputs(1...1)
        try context.expectOutputs(1...1)
        axis = try context.attributes.int("axis", default: 1)
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let x = try inputs.type(0)
        let a = try Shapes.axis(axis, rank: x.shape.count, inclusive: true)
        return [ValueType(x.dtype, [Tensor.elementCount(of: Array(x.shape[..<a])), Tensor.elementCount(of: Array(x.shape[a...]))])]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        [inputs[0]!.reshaped(outputs[0].shape)]
    }

    func flops(_ inputs: [ValueType?], _ outputs: [ValueType]) -> Double { 0 }
    var isView: Bool { true }
}

/// Reshape to the shape given by the second input: 0 copies the input's dimension (unless
/// `allowzero`), −1 is inferred. The shape must be known: a constant at load, data at run time.
struct ReshapeOperator: Operator {
    let allowZero: Bool

    init(_ context: OpContext) throws {
        try context.expectInputs(2...2)
        try context.expectOutputs(1...1)
        let flag = try context.attributes.int("allowzero", default: 0)
        allowZero = context.opset >= 14 && flag != 0
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let x = try inputs.type(0)
        _ = try inputs.type(1, oneOf: [.int64], role: "shape")
        guard let requested = inputs.integers(1) else {
            throw OpError.needsValue("the target shape")
        }
        return [ValueType(x.dtype, try Self.resolve(requested, input: x.shape, allowZero: allowZero))]
    }

    static func resolve(_ requested: [Int], input: [Int], allowZero: Bool) throws -> [Int] {
        var shape = requested
        var inferred: Int?
        for (i, d) in requested.enumerated() {
            if d == 0 && !allowZero {
                guard i < input.count else { throw OpError("shape \(describe(requested)) copies dimension \(i), which input \(describe(input)) lacks") }
                shape[i] = input[i]
            } else if d == -1 {
                guard inferred == nil else { throw OpError("shape \(describe(requested)) has more than one -1") }
                inferred = i
            } else if d < 0 {
                throw OpError("shape \(describe(requested)) has a negative dimension")
            }
        }
        let total = Tensor.elementCount(of: input)
        if let i = inferred {
            let known = shape.enumerated().filter { $0.offset != i }.reduce(1) { $0 * $1.element }
            guard known != 0, total % known == 0 else {
                throw OpError("cannot reshape \(describe(input)) (\(total) elements) to \(describe(requested))")
            }
            shape[i] = total / known
        }
        guard Tensor.elementCount(of: shape) == total else {
            throw OpError("cannot reshape \(describe(input)) (\(total) elements) to \(describe(requested))")
        }
        return shape
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        [inputs[0]!.reshaped(outputs[0].shape)]
    }

    func flops(_ inputs: [ValueType?], _ outputs: [ValueType]) -> Double { 0 }
    var isView: Bool { true }
}

struct TransposeOperator: Operator {
    let perm: [Int]?

    init(_ context: OpContext) throws {
        try context.expectInputs(1...1)
        try context.expectOutputs(1...1)
        perm = try context.attributes.ints("perm")
    }

    func permutation(rank: Int) throws -> [Int] {
        guard let perm else { return Array((0..<rank).reversed()) }
        guard perm.count == rank, Set(perm) == Set(0..<rank) else {
            throw OpError("perm \(describe(perm)) is not a permutation of the input's \(rank) dimensions")
        }
        return perm
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let x = try inputs.type(0)
        return [ValueType(x.dtype, try permutation(rank: x.shape.count).map { x.shape[$0] })]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        [Kernels.transpose(inputs[0]!, perm: try permutation(rank: inputs[0]!.rank))]
    }

    func flops(_ inputs: [ValueType?], _ outputs: [ValueType]) -> Double { 0 }
}

struct ConcatOperator: Operator {
    let axis: Int

    init(_ context: OpContext) throws {
        try context.expectOutputs(1...1)
        guard let axis = try context.attributes.int("axis") else { throw OpError.invalid("attribute axis is required") }
        guard !context.node.inputs.isEmpty, !context.node.inputs.contains("") else {
            throw OpError.invalid("needs at least one input and no omitted ones")
        }
        self.axis = axis
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let types = try (0..<inputs.count).map { try inputs.type($0) }
        let dtype = types[0].dtype
        if let other = types.first(where: { $0.dtype != dtype }) {
            throw OpError("inputs have different types: \(dtype) and \(other.dtype)")
        }
        let a = try Shapes.axis(axis, rank: types[0].shape.count)
        return [ValueType(dtype, try Kernels.concatShape(types.map(\.shape), axis: a))]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let parts = inputs.map { $0! }
        return [Kernels.concat(parts, axis: try Shapes.axis(axis, rank: parts[0].rank))]
    }

    func flops(_ inputs: [ValueType?], _ outputs: [ValueType]) -> Double { 0 }
}

/// Shape: the input's shape as int64 (optionally a slice of it, opset 15).
struct ShapeOperator: Operator {
    let start: Int
    let end: Int?

    init(_ context: OpContext) throws {
        try context.expectInputs(1...1)
        try context.expectOutputs(1...1)
        start = try context.attributes.int("start", default: 0)
        end = try context.attributes.int("end")
    }

    func dims(_ shape: [Int]) -> [Int] {
        let rank = shape.count
        func clamp(_ v: Int) -> Int { min(max(v < 0 ? v + rank : v, 0), rank) }
        let lo = clamp(start), hi = clamp(end ?? rank)
        return lo < hi ? Array(shape[lo..<hi]) : []
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        [ValueType(.int64, [dims(try inputs.type(0).shape).count])]
    }

    func valuesFromTypes(_ inputs: InferenceInputs) throws -> [Tensor]? {
        let d = dims(try inputs.type(0).shape)
        return [Tensor(shape: [d.count], int64s: d.map { Int64($0) })]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let d = dims(inputs[0]!.shape)
        return [Tensor(shape: [d.count], int64s: d.map { Int64($0) })]
    }

    func flops(_ inputs: [ValueType?], _ outputs: [ValueType]) -> Double { 0 }
}

struct GatherOperator: Operator {
    let axis: Int

    init(_ context: OpContext) throws {
        try context.expectInputs(2...2)
        try context.expectOutputs(1...1)
        axis = try context.attributes.int("axis", default: 0)
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let data = try inputs.type(0)
        let indices = try inputs.type(1, oneOf: [.int64, .int32], role: "indices")
        let a = try Shapes.axis(axis, rank: data.shape.count)
        return [ValueType(data.dtype, Array(data.shape[..<a]) + indices.shape + Array(data.shape[(a + 1)...]))]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let data = inputs[0]!
        do {
            return [try Kernels.gather(data, indices: inputs[1]!, axis: try Shapes.axis(axis, rank: data.rank))]
        } catch let error as ShapeError {
            throw OpError(error.message, kind: .invalidInput)
        }
    }

    func flops(_ inputs: [ValueType?], _ outputs: [ValueType]) -> Double { 0 }
}

/// Squeeze and Unsqueeze: axes come from an attribute before opset 13 and from an optional
/// int64 input from 13 on. Both only reshape; storage is shared.
struct AxesOperator: Operator {
    let squeeze: Bool
    let attributeAxes: [Int]?
    let axesFromInput: Bool

    init(_ context: OpContext, squeeze: Bool) throws {
        try context.expectOutputs(1...1)
        self.squeeze = squeeze
        if context.opset < 13 {
            try context.expectInputs(1...1)
            attributeAxes = try context.attributes.ints("axes")
            axesFromInput = false
            if !squeeze && attributeAxes == nil { throw OpError.invalid("attribute axes is required") }
        } else {
            try context.expectInputs(squeeze ? 1...2 : 2...2)
            attributeAxes = nil
            axesFromInput = context.node.inputs.count > 1 && !context.node.inputs[1].isEmpty
        }
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let x = try inputs.type(0)
        var axes = attributeAxes
        if axesFromInput {
            _ = try inputs.type(1, oneOf: [.int64], role: "axes")
            guard let values = inputs.integers(1) else {
                throw OpError.needsValue("the axes input")
            }
            axes = values
        }
        return [ValueType(x.dtype, try outputShape(x.shape, axes: axes))]
    }

    func outputShape(_ shape: [Int], axes: [Int]?) throws -> [Int] {
        if squeeze {
            guard let axes else { return shape.filter { $0 != 1 } }
            let normalized = Set(try axes.map { try Shapes.axis($0, rank: shape.count) })
            for a in normalized where shape[a] != 1 {
                throw OpError("cannot squeeze dimension \(a) of \(describe(shape)): its size is \(shape[a]), not 1")
            }
            return shape.enumerated().filter { !normalized.contains($0.offset) }.map(\.element)
        }
        let rank = shape.count + (axes?.count ?? 0)
        let normalized = try (axes ?? []).map { try Shapes.axis($0, rank: rank) }
        guard Set(normalized).count == normalized.count else { throw OpError("axes \(describe(axes ?? [])) repeat") }
        var out: [Int] = []
        var rest = shape.makeIterator()
        for d in 0..<rank { out.append(normalized.contains(d) ? 1 : rest.next()!) }
        return out
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        [inputs[0]!.reshaped(outputs[0].shape)]
    }

    func flops(_ inputs: [ValueType?], _ outputs: [ValueType]) -> Double { 0 }
    var isView: Bool { true }
}

struct CastOperator: Operator {
    let to: DType

    init(_ context: OpContext) throws {
        try context.expectInputs(1...1)
        try context.expectOutputs(1...1)
        guard let code = try context.attributes.int("to") else { throw OpError.invalid("attribute to is required") }
        guard let dtype = TensorDecoder.dtype(onnx: Int32(truncatingIfNeeded: code)) else {
            throw OpError.unsupported("cast to \(TensorDecoder.onnxTypeName(Int32(truncatingIfNeeded: code))) is not supported")
        }
        to = dtype
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] { [ValueType(to, try inputs.type(0).shape)] }
    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        [Kernels.cast(inputs[0]!, to: to)]
    }
}
