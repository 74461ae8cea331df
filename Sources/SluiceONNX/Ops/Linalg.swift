import Foundation
import SluiceTensor

/// Einsum, Det and Trilu.
enum LinalgOps {
    static let schemas: [OpSchema] = [
        OpSchema(name: "Einsum", opsets: 12...OpRegistry.latestOpset, inputs: OpSchema.anyCount) { try EinsumOperator($0) },
        OpSchema(name: "Det", opsets: 11...OpRegistry.latestOpset, inputs: 1...1) { _ in DetOperator() },
        OpSchema(name: "Trilu", opsets: 14...OpRegistry.latestOpset, inputs: 1...2) { try TriluOperator($0) },
    ]
}

/// Einsum over any equation (with `...`): the labels of each operand, and of the output
/// (explicit after `->`, or the labels used once, sorted, after any ellipsis dimensions).
/// Products of two operands that reduce to a batched matrix product (the patterns attention
/// exports use) run through MatMul; anything else is summed term by term.
struct EinsumOperator: Operator {
    let operands: [String]
    let output: String?

    init(_ context: OpContext) throws {
        guard let equation = try context.attributes.string("equation") else { throw OpError.invalid("attribute equation is required") }
        let text = equation.replacingOccurrences(of: " ", with: "")
        let sides = text.components(separatedBy: "->")
        guard sides.count <= 2 else { throw OpError.invalid("equation '\(equation)' has more than one ->") }
        operands = sides[0].components(separatedBy: ",")
        output = sides.count == 2 ? sides[1] : nil
        try context.expectInputs(operands.count...operands.count)
        for term in operands + [output ?? ""] {
            let letters = term.replacingOccurrences(of: "...", with: "")
            guard letters.allSatisfy({ $0.isLetter }) else { throw OpError.invalid("equation '\(equation)' has an invalid term '\(term)'") }
        }
    }

    /// Each operand's labels with the ellipsis expanded to as many fresh labels (digits) as it
    /// covers, the output's labels, and every label's size.
    func resolve(_ shapes: [[Int]]) throws -> (inputs: [[Character]], output: [Character], sizes: [Character: Int]) {
        var ellipsisRank = 0
        for (term, shape) in zip(operands, shapes) where term.contains("...") {
            ellipsisRank = Swift.max(ellipsisRank, shape.count - term.replacingOccurrences(of: "...", with: "").count)
        }
        let fresh = (0..<ellipsisRank).map { Character(UnicodeScalar(UInt8(48 + $0))) }
        var sizes: [Character: Int] = [:]
        var labels: [[Character]] = []
        for (term, shape) in zip(operands, shapes) {
            var list: [Character] = []
            if let range = term.range(of: "...") {
                let before = Array(term[..<range.lowerBound]), after = Array(term[range.upperBound...])
                let covered = shape.count - before.count - after.count
                guard covered >= 0 else { throw OpError("term '\(term)' does not fit shape \(describe(shape))") }
                list = before + Array(fresh.suffix(covered)) + after
            } else {
                list = Array(term)
            }
            guard list.count == shape.count else { throw OpError("term '\(term)' has \(list.count) labels for shape \(describe(shape))") }
            for (label, size) in zip(list, shape) {
                if let known = sizes[label], known != size {
                    if known == 1 { sizes[label] = size } else if size != 1 {
                        throw OpError("label \(label) is \(known) in one place and \(size) in another")
                    }
                } else if sizes[label] == nil {
                    sizes[label] = size
                }
            }
            labels.append(list)
        }
        var out: [Character]
        if let output {
            if let range = output.range(of: "...") {
                out = Array(output[..<range.lowerBound]) + fresh + Array(output[range.upperBound...])
            } else {
                out = Array(output)
            }
        } else {
            let counts = labels.joined().reduce(into: [Character: Int]()) { $0[$1, default: 0] += 1 }
            out = fresh + counts.filter { $0.value == 1 && !$0.key.isNumber }.map(\.key).sorted()
        }
        for label in out where sizes[label] == nil { throw OpError("output label \(label) appears in no input") }
        return (labels, out, sizes)
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let types = try (0..<inputs.count).map { try inputs.type($0, oneOf: [.float32, .float64, .int64, .int32], role: "input \($0)") }
        let r = try resolve(types.map(\.shape))
        return [ValueType(types[0].dtype, r.output.map { r.sizes[$0]! })]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let tensors = inputs.map { $0! }
        let r = try resolve(tensors.map(\.shape))
        if tensors.count == 2, tensors.allSatisfy({ $0.dtype == .float32 }), let y = try batchedProduct(tensors, r) { return [y] }
        let summed = Array(Set(r.inputs.joined()).subtracting(r.output)).sorted()
        let all = r.output + summed
        let extents = all.map { r.sizes[$0]! }
        let values = tensors.map(\.doubles)
        // Strides of each operand per label of `all` (0 where it lacks the label or broadcasts).
        let strides: [[Int]] = zip(r.inputs, tensors).map { labels, t in
            let s = Shapes.strides(t.shape)
            return all.map { label in
                var stride = 0
                for (d, l) in labels.enumerated() where l == label && t.shape[d] != 1 { stride += s[d] }
                return stride
            }
        }
        let outCount = Tensor.elementCount(of: Array(extents.prefix(r.output.count)))
        var y = [Double](repeating: 0, count: outCount)
        let inner = Tensor.elementCount(of: Array(extents.dropFirst(r.output.count)))
        forEachIndex(extents) { index, flat in
            var product = 1.0
            for k in 0..<tensors.count { product *= values[k][offset(index, strides[k])] }
            y[flat / Swift.max(inner, 1)] += product
        }
        return [Tensor(dtype: tensors[0].dtype, shape: outputs[0].shape, doubles: y)]
    }

    /// A two-operand contraction as transposes and one batched MatMul: labels in both inputs
    /// and the output are batch, in one input and the output are rows or columns, in both inputs
    /// only are summed. Nil when the equation has another shape (repeated labels, broadcasting).
    private func batchedProduct(_ t: [Tensor], _ r: (inputs: [[Character]], output: [Character], sizes: [Character: Int])) throws -> Tensor? {
        let a = r.inputs[0], b = r.inputs[1], out = r.output
        guard Set(a).count == a.count, Set(b).count == b.count, Set(out).count == out.count else { return nil }
        guard zip(a, t[0].shape).allSatisfy({ r.sizes[$0.0] == $0.1 }), zip(b, t[1].shape).allSatisfy({ r.sizes[$0.0] == $0.1 }) else { return nil }
        let batch = out.filter { a.contains($0) && b.contains($0) }
        let rows = out.filter { a.contains($0) && !b.contains($0) }
        let columns = out.filter { b.contains($0) && !a.contains($0) }
        let summed = a.filter { b.contains($0) && !out.contains($0) }
        guard batch.count + rows.count + columns.count == out.count,
              a.allSatisfy({ batch.contains($0) || rows.contains($0) || summed.contains($0) }),
              b.allSatisfy({ batch.contains($0) || columns.contains($0) || summed.contains($0) }) else { return nil }
        func size(_ labels: [Character]) -> Int { labels.reduce(1) { $0 * r.sizes[$1]! } }
        let left = Kernels.transpose(t[0], perm: (batch + rows + summed).map { a.firstIndex(of: $0)! })
            .reshaped([size(batch), size(rows), size(summed)])
        let right = Kernels.transpose(t[1], perm: (batch + summed + columns).map { b.firstIndex(of: $0)! })
            .reshaped([size(batch), size(summed), size(columns)])
        let product = Kernels.matmul(left, right).reshaped((batch + rows + columns).map { r.sizes[$0]! })
        let order = batch + rows + columns
        return Kernels.transpose(product, perm: out.map { order.firstIndex(of: $0)! })
    }

    func flops(_ inputs: [ValueType?], _ outputs: [ValueType]) -> Double {
        guard let r = try? resolve(inputs.compactMap { $0?.shape }) else { return 0 }
        return 2 * Double(Set(r.inputs.joined()).reduce(1) { $0 * r.sizes[$1]! })
    }
}

/// Det: the determinant of each [M, M] matrix in the last two dimensions (LU with pivoting).
struct DetOperator: Operator {
    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let x = try inputs.type(0, oneOf: [.float32, .float64, .float16], role: "X")
        guard x.shape.count >= 2, x.shape[x.shape.count - 1] == x.shape[x.shape.count - 2] else {
            throw OpError("X must end in a square matrix, got \(describe(x.shape))")
        }
        return [ValueType(x.dtype, Array(x.shape.dropLast(2)))]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let x = inputs[0]!
        let m = x.shape.last!
        let v = x.doubles
        let count = x.elementCount / Swift.max(m * m, 1)
        let dets = (0..<count).map { k -> Double in
            var a = Array(v[(k * m * m)..<((k + 1) * m * m)])
            var det = 1.0
            for c in 0..<m {
                var pivot = c
                for row in (c + 1)..<Swift.max(m, c + 1) where abs(a[row * m + c]) > abs(a[pivot * m + c]) { pivot = row }
                if a[pivot * m + c] == 0 { return 0 }
                if pivot != c {
                    for j in 0..<m { a.swapAt(pivot * m + j, c * m + j) }
                    det = -det
                }
                det *= a[c * m + c]
                for row in (c + 1)..<Swift.max(m, c + 1) {
                    let f = a[row * m + c] / a[c * m + c]
                    for j in c..<m { a[row * m + j] -= f * a[c * m + j] }
                }
            }
            return det
        }
        return [Tensor(dtype: x.dtype, shape: outputs[0].shape, doubles: dets)]
    }
}

/// Trilu: keeps the upper (or lower) triangle of the last two dimensions, from diagonal k.
struct TriluOperator: DataMovementOperator {
    let upper: Bool

    init(_ context: OpContext) throws {
        upper = try context.attributes.int("upper", default: 1) != 0
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let x = try inputs.type(0)
        guard x.shape.count >= 2 else { throw OpError("input must have rank ≥ 2, got \(describe(x.shape))") }
        if inputs.optionalType(1) != nil { _ = try inputs.type(1, oneOf: [.int64], role: "k") }
        return [x]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let x = inputs[0]!
        let k = inputs.count > 1 ? (InferenceInputs(tensors: inputs).integers(1)?.first ?? 0) : 0
        let rows = x.shape[x.rank - 2], columns = x.shape[x.rank - 1]
        let sources = (0..<x.elementCount).map { flat -> Int in
            let j = flat % columns, i = (flat / columns) % Swift.max(rows, 1)
            return (upper ? j - i >= k : j - i <= k) ? flat : -1
        }
        return [Kernels.pick(x, sources, shape: x.shape, fill: Tensor(dtype: x.dtype, shape: [1], doubles: [0]))]
    }
}
