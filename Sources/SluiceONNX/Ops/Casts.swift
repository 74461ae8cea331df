import Foundation
import SluiceTensor

/// Conversions between dtypes.
enum CastOps {
    static let schemas: [OpSchema] = [
        OpSchema(name: "Cast", opsets: 6...OpRegistry.latestOpset) { try CastOperator($0) },
        OpSchema(name: "CastLike", opsets: 15...OpRegistry.latestOpset) { try CastLikeOperator($0) },
    ]
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

struct CastLikeOperator: Operator {
    init(_ context: OpContext) throws {
        try context.expectInputs(2...2)
        try context.expectOutputs(1...1)
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        [ValueType(try inputs.type(1).dtype, try inputs.type(0).shape)]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        [Kernels.cast(inputs[0]!, to: outputs[0].dtype)]
    }
}
