import Foundation
import SluiceTensor

/// Conversions between dtypes.
enum CastOps {
    static let schemas: [OpSchema] = [
        OpSchema(name: "Cast", opsets: 6...OpRegistry.latestOpset, inputs: 1...1) { try CastOperator($0) },
        OpSchema(name: "CastLike", opsets: 15...OpRegistry.latestOpset, inputs: 2...2) { _ in CastLikeOperator() },
    ]
}

struct CastOperator: Operator {
    let to: DType

    init(_ context: OpContext) throws {
        guard let code = try context.attributes.int("to") else { throw OpError.invalid("attribute to is required") }
        guard let dtype = TensorDecoder.numericDType(onnx: Int32(truncatingIfNeeded: code)) else {
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
    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        [ValueType(try inputs.type(1).dtype, try inputs.type(0).shape)]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        [Kernels.cast(inputs[0]!, to: outputs[0].dtype)]
    }
}
