import SluiceTensor

/// Load-time shape and type inference over the sorted graph. Ops infer from input types; values
/// are propagated where known (small initializers, Constant nodes, Shape of a typed input, and
/// any small op whose inputs are all known), so that shape-computing subgraphs feeding Reshape
/// resolve at load. Nothing here touches the executor; values found here are only for inference.
///
/// An output whose shape depends on the value of something only known at run time (a target
/// shape fed as a graph input, the count of NonZero) is *dynamic*: it has no type at load, nor
/// has anything computed from it. The executor infers those from the actual values each run.
enum ShapeInference {
    /// Values with more elements than this are neither decoded nor folded for inference.
    static let foldLimit = 4096
    /// No tensor of one sample comes near this (1 TiB); a larger inferred shape is a hostile or
    /// broken file, refused before anything multiplies or allocates with it.
    static let maximumTensorBytes = 1 << 40

    struct Result {
        var types: [String: ValueType]
        var dynamic: Set<String>
        /// Values known at load (initializers read by inference, constants, folded shape
        /// computations), each at most `foldLimit` elements.
        var values: [String: Tensor]
    }

    static func run(graph: [Node], operators: [any Operator], inputs: [String: ValueType],
                    initializers: [String: Initializer], file: String) throws -> Result {
        var types = inputs
        for (name, initializer) in initializers { types[name] = initializer.type }
        var values: [String: Tensor] = [:]
        var dynamic: Set<String> = []
        let scratch = Scratch()
        for (node, op) in zip(graph, operators) {
            if node.inputs.contains(where: { !$0.isEmpty && dynamic.contains($0) }) {
                dynamic.formUnion(node.outputs.filter { !$0.isEmpty })
                continue
            }
            var inTypes: [ValueType?] = []
            var inValues: [Tensor?] = []
            for name in node.inputs {
                guard !name.isEmpty else {
                    inTypes.append(nil)
                    inValues.append(nil)
                    continue
                }
                guard let type = types[name] else {
                    throw ModelError.node(.invalidGraph, file: file, node: node.name, op: node.qualifiedOp,
                                          "input '\(name)' has no known type")
                }
                inTypes.append(type)
                if let value = values[name] {
                    inValues.append(value)
                } else if let initializer = initializers[name], type.elementCount <= foldLimit {
                    let value: Tensor
                    do { value = try initializer.tensor() } catch let e as OpError {
                        throw ModelError(e.kind, "\(file): initializer '\(name)' \(e.message)")
                    }
                    values[name] = value
                    inValues.append(value)
                } else {
                    inValues.append(nil)
                }
            }
            let known = InferenceInputs(types: inTypes, values: inValues)
            do {
                let outTypes: [ValueType]
                do {
                    outTypes = try op.inferTypes(known)
                } catch let e as OpError where e.dataDependent {
                    dynamic.formUnion(node.outputs.filter { !$0.isEmpty })
                    continue
                }
                for (i, name) in node.outputs.enumerated() where !name.isEmpty {
                    guard i < outTypes.count else {
                        throw OpError.unsupported("output \(i) ('\(name)') is not supported")
                    }
                    guard let bytes = TensorDecoder.byteCount(outTypes[i].dtype, outTypes[i].shape), bytes <= maximumTensorBytes else {
                        throw OpError.invalid("output '\(name)' would be \(outTypes[i].dtype)\(outTypes[i].shape): more than \(maximumTensorBytes >> 30) GiB per sample")
                    }
                    types[name] = outTypes[i]
                }
                var folded = try op.valuesFromTypes(known)
                let allKnown = zip(inTypes, inValues).allSatisfy { $0.0 == nil || $0.1 != nil }
                if folded == nil, allKnown, outTypes.reduce(0, { $0 + $1.elementCount }) <= foldLimit {
                    folded = try op.evaluate(inValues, outputs: outTypes, scratch: scratch)
                }
                if let folded {
                    for (i, name) in node.outputs.enumerated() where !name.isEmpty && i < folded.count {
                        values[name] = folded[i]
                    }
                }
            } catch {
                throw ModelError.wrap(error, file: file, node: node, kind: .shapeMismatch)
            }
        }
        return Result(types: types, dynamic: dynamic, values: values)
    }
}
