import SluiceTensor

/// A run of consecutive nodes that the executor runs as one kernel:
/// Conv [+ BatchNormalization] [+ activation], Gemm + activation, MatMul + Add [+ activation].
/// Found at load from the graph alone; the node list is never changed.
struct Fusion: Sendable {
    let nodes: Range<Int>
    let batchNorm: Int?
    let add: Int?
    let activation: Int?

    var head: Int { nodes.lowerBound }

    static func find(graph: [Node], operators: [any Operator], initializers: [String: Initializer],
                     types: [String: ValueType], graphOutputs: Set<String>) -> [Fusion] {
        var consumers: [String: Set<Int>] = [:]
        for node in graph {
            for name in node.inputs where !name.isEmpty { consumers[name, default: []].insert(node.index) }
        }
        /// Whether `tensor` is read by node `j` and nothing else, so fusing may skip producing it.
        func onlyFeeds(_ tensor: String, _ j: Int) -> Bool {
            consumers[tensor] == [j] && !graphOutputs.contains(tensor)
        }
        func isConstant(_ name: String) -> Bool { name.isEmpty || initializers[name] != nil }
        /// Whether node `j` is an activation reading only node `j − 1`'s sole output.
        func activationFollows(_ j: Int) -> Bool {
            guard j < graph.count, let source = graph[j - 1].outputs.first, graph[j].inputs.first == source,
                  onlyFeeds(source, j) else { return false }
            switch operators[j] {
            case is ActivationOperator: return true
            case is ClipOperator: return graph[j].inputs.dropFirst().allSatisfy(isConstant)
            default: return false
            }
        }

        var fusions: [Fusion] = []
        var i = 0
        while i < graph.count {
            var end = i + 1
            var batchNorm: Int?, add: Int?, activation: Int?
            let head = graph[i]
            switch operators[i] {
            case is ConvOperator:
                if end < graph.count, operators[end] is BatchNormOperator, graph[end].inputs.first == head.outputs[0],
                   onlyFeeds(head.outputs[0], end), graph[end].inputs.dropFirst().allSatisfy(isConstant) {
                    batchNorm = end
                    end += 1
                }
                if activationFollows(end) {
                    activation = end
                    end += 1
                }
            case is GemmOperator:
                if activationFollows(end) {
                    activation = end
                    end += 1
                }
            case is MatMulOperator:
                // x[…, K] · W[K, N] + b[N]: a Gemm over the rows of x with a broadcast bias.
                guard end < graph.count, let add = operators[end] as? BinaryOperator, add.op == .add,
                      let weight = initializers[head.inputs[1]], weight.shape.count == 2,
                      let x = types[head.inputs[0]], x.shape.count >= 2 else { break }
                let output = head.outputs[0]
                let next = graph[end]
                guard next.inputs.count == 2, next.inputs.contains(output), onlyFeeds(output, end) else { break }
                let biasName = next.inputs[0] == output ? next.inputs[1] : next.inputs[0]
                guard let bias = initializers[biasName], bias.dtype == .float32,
                      bias.shape == [weight.shape[1]] || bias.shape == [1, weight.shape[1]] else { break }
                let fusedAdd = end
                end += 1
                if activationFollows(end) {
                    activation = end
                    end += 1
                }
                fusions.append(Fusion(nodes: i..<end, batchNorm: nil, add: fusedAdd, activation: activation))
                i = end
                continue
            default:
                break
            }
            if end > i + 1 {
                fusions.append(Fusion(nodes: i..<end, batchNorm: batchNorm, add: add, activation: activation))
                i = end
            } else {
                i += 1
            }
        }
        return fusions
    }
}

/// MatMul by a 2-D weight followed by a bias Add (and maybe an activation), as one Gemm over
/// the rows of the input: `activation(x[…, K] · W[K, N] + b[N])`.
struct MatMulBiasOperator: Operator {
    var activation: Activation

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let x = try inputs.type(0, oneOf: [.float32], role: "A")
        let w = try inputs.type(1, oneOf: [.float32], role: "B")
        let shape = try Shapes.matmul(x.shape, w.shape)
        guard x.shape.count >= 2, w.shape.count == 2 else { throw OpError("fused MatMul needs A of rank ≥ 2 and a 2-D B") }
        return [ValueType(.float32, shape)]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let x = inputs[0]!, w = inputs[1]!, bias = inputs[2]!
        let k = w.shape[0], n = w.shape[1]
        let rows = x.elementCount / max(k, 1)
        let y = Kernels.linear(x.reshaped([rows, k]), w, bias: bias.reshaped([n]), activation: activation)
        return [y.reshaped(outputs[0].shape)]
    }

    func flops(_ inputs: [ValueType?], _ outputs: [ValueType]) -> Double {
        guard let w = inputs[1] else { return 0 }
        return Double(outputs[0].elementCount) * (2 * Double(w.shape[0]) + 1)
    }
}
