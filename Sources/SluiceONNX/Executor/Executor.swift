import Foundation
import SluiceTensor

/// Runs a contiguous range of a model's nodes: what one pipeline stage computes.
///
/// At init it decodes only the initializers its nodes read (a stage holds weights for its own
/// layers only) and plans its steps: every node on its own, plus fused steps for the model's
/// fusion groups that lie wholly inside the range. It keeps no reference to the model, so the
/// rest of the weights can be released. `run` may be called from several threads at once.
///
/// The first run of a range with given input shapes builds an `ExecutionPlan` for them: shapes
/// inferred once, everything that depends only on weights and shapes folded to constants (the
/// Shape → Gather → Concat → Reshape chains exporters write), and one buffer arena laid out by
/// liveness, so later runs with the same shapes allocate no tensors except those they hand
/// back. A new batch size gets its own plan. Ranges whose shapes depend on data (NonZero, a
/// target shape fed at run time) run node by node with shapes inferred each time.
public final class Executor: @unchecked Sendable {
    /// One kernel invocation: a node, or a fused run of nodes.
    struct Step {
        let nodes: Range<Int>
        /// The node named in errors (the first of a fused run).
        let node: Node
        let op: any Operator
        let inputs: [String]
        let outputs: [String]
    }

    /// What a value read from the caller must look like.
    struct Expectation {
        let type: ValueType
        /// Dimensions that follow the batch and may take any size.
        let free: [Bool]

        func accepts(_ tensor: Tensor) -> Bool {
            guard tensor.dtype == type.dtype, tensor.rank == type.shape.count else { return false }
            for d in 0..<tensor.rank where !free[d] && tensor.shape[d] != type.shape[d] { return false }
            return true
        }

        var description: String {
            "\(type.dtype)\(describeSymbolic(zip(type.shape, free).map { $1 ? nil : $0 }))"
        }
    }

    /// The steps of one run range and the values it reads from the caller.
    struct RangeSteps {
        let steps: [Step]
        /// Values read from `values`, each with the first step that reads it.
        let externals: [(name: String, step: Int)]
        /// Values the range produces that a later node or the graph's outputs read.
        let escaping: Set<String>
    }

    public let nodes: Range<Int>
    /// Bytes of the weights this executor holds.
    public let parameterBytes: Int

    let file: String
    private let singles: [Step]
    private let fused: [Int: Step]
    let weights: [String: Tensor]
    private let expectations: [String: Expectation]
    /// For each value the graph computes, the highest index of a node that reads it.
    private let lastReader: [String: Int]
    private let graphOutputs: Set<String>
    private let scratchPool = ScratchPool()
    private let cache = PlanCache()

    /// Prepares `nodes` (a contiguous range of `model.nodes`).
    public init(model: ONNXModel, nodes: Range<Int>) throws {
        guard nodes.lowerBound >= 0, nodes.upperBound <= model.nodes.count else {
            throw ModelError(.invalidRange, "\(model.path): nodes \(nodes.lowerBound)..<\(nodes.upperBound) are outside the model's 0..<\(model.nodes.count)")
        }
        file = model.path
        self.nodes = nodes
        let graph = model.graph[nodes]

        var weights: [String: Tensor] = [:]
        var expectations: [String: Expectation] = [:]
        for node in graph {
            for name in node.inputs where !name.isEmpty {
                if let initializer = model.initializers[name] {
                    if weights[name] == nil {
                        do { weights[name] = try initializer.tensor() } catch let e as OpError {
                            throw ModelError(e.kind, "\(model.path): initializer '\(name)' \(e.message)")
                        }
                    }
                } else if let type = model.types[name] {
                    expectations[name] = Expectation(type: type, free: model.symbolic[name] ?? Array(repeating: false, count: type.shape.count))
                }
            }
        }
        // Each node's op and inputs as planned. Gemm weights deep enough are packed into
        // column panels for the packed kernel (see Kernels.packColumns); others used transposed
        // are stored transposed once, because BLAS runs A·Bᵀ markedly slower than A·B (about
        // 50 against 75+ GFLOP/s at K = 1024, M = 32).
        var planned: [(op: any Operator, inputs: [String])] = graph.map { (model.operators[$0.index], $0.inputs) }
        for (i, node) in graph.enumerated() {
            // MatMul by a constant matrix: packed too, so that it computes exactly as the
            // MatMul + Add fusion built on it (a stage boundary may split that fusion).
            if var matmul = planned[i].op as? MatMulOperator, node.inputs.count == 2,
               let weight = weights[node.inputs[1]], weight.rank == 2, weight.dtype == .float32,
               weight.shape[0] >= Kernels.packedMinimumDepth {
                let key = Self.internalKey("packed", node.inputs[1])
                if weights[key] == nil { weights[key] = Kernels.packColumns(weight) }
                matmul.packed = PackedShape(k: weight.shape[0], n: weight.shape[1])
                planned[i] = (matmul, [node.inputs[0], key])
                continue
            }
            // Recurrent weights R: Rᵀ packed once per direction, as input 8.
            if var recurrent = planned[i].op as? RecurrentOperator, node.inputs.count > 2,
               let r = weights[node.inputs[2]], r.rank == 3, r.dtype == .float32, r.shape[1] == recurrent.gates * r.shape[2] {
                let key = Self.internalKey("packedR", node.inputs[2])
                if weights[key] == nil { weights[key] = RecurrentCell.packRecurrentWeights(r, gates: recurrent.gates) }
                recurrent.packedR = true
                var inputs = node.inputs + Array(repeating: "", count: max(0, 8 - node.inputs.count))
                inputs = Array(inputs.prefix(8)) + [key]
                planned[i] = (recurrent, inputs)
                continue
            }
            guard var gemm = planned[i].op as? GemmOperator, node.inputs.count > 1,
                  let weight = weights[node.inputs[1]], weight.rank == 2, weight.dtype == .float32 else { continue }
            let (k, n) = gemm.transB ? (weight.shape[1], weight.shape[0]) : (weight.shape[0], weight.shape[1])
            var inputs = node.inputs
            if k >= Kernels.packedMinimumDepth {
                let key = Self.internalKey(gemm.transB ? "packedT" : "packed", node.inputs[1])
                if weights[key] == nil {
                    weights[key] = Kernels.packColumns(gemm.transB ? Kernels.transpose(weight, perm: [1, 0]) : weight)
                }
                gemm.packed = PackedShape(k: k, n: n)
                inputs[1] = key
            } else if gemm.transB {
                let key = Self.internalKey("transposed", node.inputs[1])
                if weights[key] == nil { weights[key] = Kernels.transpose(weight, perm: [1, 0]) }
                inputs[1] = key
            } else {
                continue
            }
            gemm.transB = false
            planned[i] = (gemm, inputs)
        }

        singles = zip(graph, planned).map { node, plan in
            Step(nodes: node.index..<(node.index + 1), node: node, op: plan.op, inputs: plan.inputs, outputs: node.outputs)
        }
        var fused: [Int: Step] = [:]
        for fusion in model.fusions where nodes.contains(fusion.head) && fusion.nodes.upperBound <= nodes.upperBound {
            let head = planned[fusion.head - nodes.lowerBound]
            fused[fusion.head] = try Self.plan(fusion, model: model, weights: &weights, op: head.op, inputs: head.inputs)
        }
        self.fused = fused
        // Keep only the weights some step reads (a packed or transposed copy replaces its source).
        let read = Set((singles + Array(fused.values)).flatMap(\.inputs))
        weights = weights.filter { read.contains($0.key) }
        self.weights = weights
        self.expectations = expectations
        // The model's bytes for these nodes' initializers, however they are stored here.
        let initializerNames = Set(graph.flatMap(\.inputs).filter { model.initializers[$0] != nil })
        parameterBytes = initializerNames.reduce(0) { $0 + model.initializers[$1]!.byteCount }

        var lastReader: [String: Int] = [:]
        for node in model.graph {
            for name in node.inputs where !name.isEmpty { lastReader[name] = max(lastReader[name] ?? -1, node.index) }
        }
        self.lastReader = lastReader
        graphOutputs = Set(model.outputs.map(\.name))
    }

    /// Where the executor keeps a weight stored another way (a name no ONNX tensor has).
    private static func internalKey(_ kind: String, _ name: String) -> String { "\u{1}\(kind)/\(name)" }

    /// Builds the single kernel of a fusion, folding constants of the later nodes in.
    private static func plan(_ fusion: Fusion, model: ONNXModel, weights: inout [String: Tensor], op headOp: any Operator,
                             inputs headInputs: [String]) throws -> Step {
        let head = model.graph[fusion.head]
        let last = model.graph[fusion.nodes.upperBound - 1]
        var activation = Activation.none
        if fusion.gelu {
            activation = .gelu
        } else if let a = fusion.activation {
            switch model.operators[a] {
            case let op as ActivationOperator:
                activation = op.activation
            case let op as ClipOperator:
                let inputs = model.graph[a].inputs
                let values = inputs.map { $0.isEmpty ? nil : weights[$0] }
                let known = InferenceInputs(types: values.map { $0.map { ValueType($0.dtype, $0.shape) } }, values: values)
                let (lo, hi) = op.bounds(known)
                activation = .clip(min: lo, max: hi)
            default:
                break
            }
        }
        var op = headOp
        var inputs = headInputs
        switch op {
        case var conv as ConvOperator:
            if let b = fusion.batchNorm, let norm = model.operators[b] as? BatchNormOperator {
                // Fusion.find checked that these four are initializers, so the executor holds them.
                let p = model.graph[b].inputs.dropFirst().map { weights[$0]! }
                let (scale, shift) = Kernels.batchNormCoefficients(scale: p[0], bias: p[1], mean: p[2], variance: p[3],
                                                                    epsilon: norm.epsilon)
                conv.channelScale = Tensor(shape: [scale.count], floats: scale)
                conv.channelShift = Tensor(shape: [shift.count], floats: shift)
            }
            conv.activation = activation
            op = conv
        case var gemm as GemmOperator:
            gemm.activation = activation
            op = gemm
        case is MatMulOperator:
            let add = model.graph[fusion.add!]
            let output = head.outputs[0]
            inputs = headInputs + [add.inputs[0] == output ? add.inputs[1] : add.inputs[0]]
            var linear = MatMulBiasOperator(activation: activation)
            linear.packed = (headOp as? MatMulOperator)?.packed
            op = linear
        case is BinaryOperator where fusion.residualNorm:
            let normNode = model.graph[fusion.nodes.upperBound - 1]
            let sum = head.outputs[0]
            guard let norm = model.operators[normNode.index] as? LayerNormOperator, normNode.inputs.first == sum else { break }
            inputs = headInputs + Array(normNode.inputs.dropFirst())
            op = AddLayerNormOperator(norm: norm)
                case is TransposeOperator where fusion.transposedMatMul:
            let matmul = model.graph[fusion.head + 1]
            inputs = [matmul.inputs[0], head.inputs[0]]
            op = MatMulTransposedOperator(scale: fusion.scale)
        case is BinaryOperator where fusion.gelu:
            // The Gelu pattern alone: its input is the Div's first input.
            inputs = [head.inputs[0]]
            op = FusedActivationOperator(activation: .gelu)
        default:
            break
        }
        return Step(nodes: fusion.nodes, node: head, op: op, inputs: inputs, outputs: last.outputs)
    }

    /// The fused runs this executor will use when a run covers them whole.
    public var fusedRanges: [Range<Int>] { fused.values.map(\.nodes).sorted { $0.lowerBound < $1.lowerBound } }

    /// The steps that run `range`, fused where a fusion lies wholly inside it.
    private func steps(for range: Range<Int>) -> RangeSteps {
        if let cached = cache.steps(range) { return cached }
        var steps: [Step] = []
        var i = range.lowerBound
        while i < range.upperBound {
            let step: Step
            if let f = fused[i], f.nodes.upperBound <= range.upperBound {
                step = f
            } else {
                step = singles[i - nodes.lowerBound]
            }
            steps.append(step)
            i = step.nodes.upperBound
        }
        var produced: Set<String> = []
        var externals: [(String, Int)] = []
        var seen: Set<String> = []
        for (k, step) in steps.enumerated() {
            for name in step.inputs where !name.isEmpty && weights[name] == nil && !produced.contains(name) && !seen.contains(name) {
                externals.append((name, k))
                seen.insert(name)
            }
            produced.formUnion(step.outputs.filter { !$0.isEmpty })
        }
        let escaping = produced.filter { graphOutputs.contains($0) || (lastReader[$0] ?? -1) >= range.upperBound }
        let result = RangeSteps(steps: steps, externals: externals, escaping: escaping)
        cache.setSteps(range, result)
        return result
    }

    /// Runs `model.nodes[range]` (within `nodes`), reading activations from `values` and adding
    /// to it every tensor those nodes produce that a node after the range or the graph's
    /// outputs read (intermediates used only inside the range live in the plan's buffers).
    /// Errors name the node and leave the process intact.
    public func run(_ range: Range<Int>, values: inout [String: Tensor]) throws {
        guard range.lowerBound >= nodes.lowerBound, range.upperBound <= nodes.upperBound else {
            throw ModelError(.invalidRange, "\(file): cannot run nodes \(range.lowerBound)..<\(range.upperBound); this executor holds \(nodes.lowerBound)..<\(nodes.upperBound)")
        }
        guard !range.isEmpty else { return }
        let plan = steps(for: range)
        // Check what the caller passed before anything runs, naming the first node that reads it.
        var key: [Int] = [range.lowerBound, range.upperBound]
        for (name, k) in plan.externals {
            let step = plan.steps[k]
            guard let value = values[name] else {
                throw ModelError.node(.invalidInput, file: file, node: step.node.name, op: step.node.qualifiedOp,
                                      "input '\(name)' is missing: no earlier node of this run produced it and it is not among the values passed in")
            }
            if let expected = expectations[name], !expected.accepts(value) {
                throw ModelError.node(.invalidInput, file: file, node: step.node.name, op: step.node.qualifiedOp,
                                      "input '\(name)' is \(value.dtype)\(describe(value.shape)), expected \(expected.description)")
            }
            key.append(Int(value.dtype.rawValue))
            key.append(value.rank)
            key.append(contentsOf: value.shape)
        }
        let scratch = scratchPool.take()
        defer { scratchPool.give(scratch) }
        let executionPlan = try cache.plan(key) {
            try ExecutionPlan.build(steps: plan, values: values, weights: weights, file: file)
        }
        if let executionPlan {
            try executionPlan.run(values: &values, scratch: scratch)
        } else {
            for step in plan.steps { try execute(step, values: &values, scratch: scratch) }
        }
    }

    /// Runs one step on whatever shapes it gets, inferring them first (ranges without a plan).
    private func execute(_ step: Step, values: inout [String: Tensor], scratch: Scratch) throws {
        var tensors: [Tensor?] = []
        tensors.reserveCapacity(step.inputs.count)
        for name in step.inputs {
            if name.isEmpty {
                tensors.append(nil)
            } else if let weight = weights[name] {
                tensors.append(weight)
            } else if let value = values[name] {
                tensors.append(value)
            } else {
                throw ModelError.node(.invalidInput, file: file, node: step.node.name, op: step.node.qualifiedOp,
                                      "input '\(name)' is missing: no earlier node of this run produced it and it is not among the values passed in")
            }
        }
        let results: [Tensor]
        do {
            results = try step.op.compute(tensors, scratch: scratch)
        } catch {
            throw ModelError.wrap(error, file: file, node: step.node, kind: .invalidInput)
        }
        for (k, name) in step.outputs.enumerated() where !name.isEmpty && k < results.count {
            values[name] = results[k]
        }
    }
}

/// Plans by range and input shapes (nil: the range must run unplanned), and each range's steps.
final class PlanCache: @unchecked Sendable {
    private let lock = NSLock()
    private var plans: [[Int]: ExecutionPlan?] = [:]
    private var ranges: [Range<Int>: Executor.RangeSteps] = [:]
    /// Plans kept at most; past this the cache starts over (batch sizes that keep changing).
    static let capacity = 64

    func steps(_ range: Range<Int>) -> Executor.RangeSteps? {
        lock.lock()
        defer { lock.unlock() }
        return ranges[range]
    }

    func setSteps(_ range: Range<Int>, _ steps: Executor.RangeSteps) {
        lock.lock()
        ranges[range] = steps
        lock.unlock()
    }

    func plan(_ key: [Int], build: () throws -> ExecutionPlan?) throws -> ExecutionPlan? {
        lock.lock()
        if let found = plans[key] {
            lock.unlock()
            return found
        }
        lock.unlock()
        let made = try build()
        lock.lock()
        defer { lock.unlock() }
        if plans.count >= Self.capacity { plans.removeAll() }
        if let existing = plans[key] { return existing }
        plans[key] = made
        return made
    }
}

/// Scratch buffers reused across runs; a concurrent run gets its own.
final class ScratchPool: @unchecked Sendable {
    private let lock = NSLock()
    private var free: [Scratch] = []

    func take() -> Scratch {
        lock.lock()
        defer { lock.unlock() }
        return free.popLast() ?? Scratch()
    }

    func give(_ scratch: Scratch) {
        lock.lock()
        free.append(scratch)
        lock.unlock()
    }
}
