import Foundation
import SluiceTensor

/// Ops that permute a tensor's axes: Transpose, and DepthToSpace and SpaceToDepth, which
/// move channels into space and back.
enum RearrangeOps {
    static let schemas: [OpSchema] = [
        OpSchema(name: "Transpose", opsets: 1...OpRegistry.latestOpset, inputs: 1...1) { try TransposeOperator($0) },
        OpSchema(name: "DepthToSpace", opsets: 1...OpRegistry.latestOpset, inputs: 1...1) { try DepthToSpaceOperator($0) },
        OpSchema(name: "SpaceToDepth", opsets: 1...OpRegistry.latestOpset, inputs: 1...1) { try SpaceToDepthOperator($0) },
    ]
}

struct TransposeOperator: DataMovementOperator {
    let perm: [Int]?

    init(_ context: OpContext) throws {
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
}

/// DepthToSpace (DCR or CRD) and SpaceToDepth are a reshape, a transpose and a reshape.
struct DepthToSpaceOperator: DataMovementOperator {
    let block: Int
    let crd: Bool

    init(_ context: OpContext) throws {
        guard let b = try context.attributes.int("blocksize"), b >= 1 else { throw OpError.invalid("blocksize must be positive") }
        block = b
        let mode = try context.attributes.string("mode") ?? "DCR"
        guard mode == "DCR" || mode == "CRD" else { throw OpError.invalid("mode '\(mode)' is not DCR or CRD") }
        crd = mode == "CRD"
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let x = try inputs.type(0)
        guard x.shape.count == 4, x.shape[1] % (block * block) == 0 else {
            throw OpError("input must be N×C×H×W with C divisible by \(block * block), got \(describe(x.shape))")
        }
        let s = x.shape
        return [ValueType(x.dtype, [s[0], s[1] / (block * block), s[2] * block, s[3] * block])]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let x = inputs[0]!, s = x.shape, b = block
        let c = s[1] / (b * b)
        let moved = crd
            ? Kernels.transpose(x.reshaped([s[0], c, b, b, s[2], s[3]]), perm: [0, 1, 4, 2, 5, 3])
            : Kernels.transpose(x.reshaped([s[0], b, b, c, s[2], s[3]]), perm: [0, 3, 4, 1, 5, 2])
        return [moved.reshaped(outputs[0].shape)]
    }
}

struct SpaceToDepthOperator: DataMovementOperator {
    let block: Int

    init(_ context: OpContext) throws {
        guard let b = try context.attributes.int("blocksize"), b >= 1 else { throw OpError.invalid("blocksize must be positive") }
        block = b
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let x = try inputs.type(0)
        guard x.shape.count == 4, x.shape[2] % block == 0, x.shape[3] % block == 0 else {
            throw OpError("input must be N×C×H×W with H and W divisible by \(block), got \(describe(x.shape))")
        }
        let s = x.shape
        return [ValueType(x.dtype, [s[0], s[1] * block * block, s[2] / block, s[3] / block])]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let x = inputs[0]!, s = x.shape, b = block
        let moved = Kernels.transpose(x.reshaped([s[0], s[1], s[2] / b, b, s[3] / b, b]), perm: [0, 3, 5, 1, 2, 4])
        return [moved.reshaped(outputs[0].shape)]
    }
}
