import Foundation
import SluiceTensor

/// Ops that describe a shape, or show a tensor's storage under another shape; they work
/// for every dtype.
enum ShapeOps {
    static let schemas: [OpSchema] = [
        OpSchema(name: "Identity", opsets: 1...OpRegistry.latestOpset, inputs: 1...1) { _ in IdentityOperator() },
        OpSchema(name: "Flatten", opsets: 1...OpRegistry.latestOpset, inputs: 1...1) { try FlattenOperator($0) },
        OpSchema(name: "Reshape", opsets: 5...OpRegistry.latestOpset, inputs: 2...2) { try ReshapeOperator($0) },
        OpSchema(name: "Shape", opsets: 1...OpRegistry.latestOpset, inputs: 1...1) { try ShapeOperator($0) },
        OpSchema(name: "Size", opsets: 1...OpRegistry.latestOpset, inputs: 1...1) { _ in SizeOperator() },
        OpSchema(name: "Unsqueeze", opsets: 1...OpRegistry.latestOpset, inputsSince: [1: 1...1, 13: 2...2]) { try AxesOperator($0, squeeze: false) },
        OpSchema(name: "Squeeze", opsets: 1...OpRegistry.latestOpset, inputsSince: [1: 1...1, 13: 1...2]) { try AxesOperator($0, squeeze: true) },
    ]
}

struct IdentityOperator: DataMovementOperator {
    func infer(_ inputs: InferenceInputs) throws -> [ValueType] { [try inputs.type(0)] }
    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] { [inputs[0]!] }
    var isView: Bool { true }
}

/// Flatten: [d0, …, dn] → [d0·…·d(axis−1), d(axis)·…·dn], sharing storage.
struct FlattenOperator: DataMovementOperator {
    let axis: Int

    init(_ context: OpContext) throws {
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

    var isView: Bool { true }
}

/// Reshape to the shape given by the second input: 0 copies the input's dimension (unless
/// `allowzero`), −1 is inferred. The shape must be known: a constant at load, data at run time.
struct ReshapeOperator: DataMovementOperator {
    let allowZero: Bool

    init(_ context: OpContext) throws {
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

    var isView: Bool { true }
}

/// Shape: the input's shape as int64 (optionally a slice of it, opset 15).
struct ShapeOperator: DataMovementOperator {
    let start: Int
    let end: Int?

    init(_ context: OpContext) throws {
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
}

struct SizeOperator: DataMovementOperator {
    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        _ = try inputs.type(0)
        return [ValueType(.int64, [])]
    }

    func valuesFromTypes(_ inputs: InferenceInputs) throws -> [Tensor]? {
        [Tensor(shape: [], int64s: [Int64(try inputs.type(0).elementCount)])]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        [Tensor(shape: [], int64s: [Int64(inputs[0]!.elementCount)])]
    }
}

/// Squeeze and Unsqueeze: axes come from an attribute before opset 13 and from an optional
/// int64 input from 13 on. Both only reshape; storage is shared.
struct AxesOperator: DataMovementOperator {
    let squeeze: Bool
    let attributeAxes: [Int]?
    let axesFromInput: Bool

    init(_ context: OpContext, squeeze: Bool) throws {
        self.squeeze = squeeze
        if context.opset < 13 {
            attributeAxes = try context.attributes.ints("axes")
            axesFromInput = false
            if !squeeze && attributeAxes == nil { throw OpError.invalid("attribute axes is required") }
        } else {
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

    var isView: Bool { true }
}
