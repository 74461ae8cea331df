import Foundation
import SluiceTensor

/// Runs a contiguous range of a model's nodes: what one pipeline stage computes.
///
/// At init it runs the optimisation pass over its range (`OptimizedGraph`): it decodes only the
/// initializers its nodes read (a stage holds weights for its own layers only), packs them, and
/// plans its steps: every node on its own, plus fused steps for the model's fusion groups that
/// lie wholly inside the range. It keeps no reference to the model, so the rest of the weights
/// can be released. `run` may be called from several threads at once.
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
    private let optimized: OptimizedGraph
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
        optimized = try OptimizedGraph(model: model, nodes: nodes)
        parameterBytes = Self.initializerBytes(readBy: model.graph[nodes], in: model)
        lastReader = Self.lastReaders(in: model.graph)
        graphOutputs = Set(model.outputs.map(\.name))
    }

    /// The model's bytes for these nodes' initializers, however the executor stores them.
    static func initializerBytes(readBy graph: ArraySlice<Node>, in model: ONNXModel) -> Int {
        Set(graph.flatMap(\.inputs)).reduce(0) { $0 + (model.initializers[$1]?.byteCount ?? 0) }
    }

    /// For each value the graph computes, the highest index of a node that reads it.
    static func lastReaders(in graph: [Node]) -> [String: Int] {
        var lastReader: [String: Int] = [:]
        for node in graph {
            for name in node.inputs where !name.isEmpty { lastReader[name] = max(lastReader[name] ?? -1, node.index) }
        }
        return lastReader
    }

    /// The fused runs this executor will use when a run covers them whole.
    public var fusedRanges: [Range<Int>] { optimized.fused.values.map(\.nodes).sorted { $0.lowerBound < $1.lowerBound } }

    /// The steps that run `range`, fused where a fusion lies wholly inside it.
    private func steps(for range: Range<Int>) -> RangeSteps {
        if let cached = cache.steps(range) { return cached }
        var steps: [Step] = []
        var i = range.lowerBound
        while i < range.upperBound {
            let step: Step
            if let f = optimized.fused[i], f.nodes.upperBound <= range.upperBound {
                step = f
            } else {
                step = optimized.singles[i - nodes.lowerBound]
            }
            steps.append(step)
            i = step.nodes.upperBound
        }
        var produced: Set<String> = []
        var externals: [(String, Int)] = []
        var seen: Set<String> = []
        for (k, step) in steps.enumerated() {
            for name in step.inputs where !name.isEmpty && optimized.weights[name] == nil && !produced.contains(name) && !seen.contains(name) {
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
            if let expected = optimized.expectations[name], !expected.accepts(value) {
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
            try ExecutionPlan.build(steps: plan, values: values, weights: optimized.weights, file: file)
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
            } else if let weight = optimized.weights[name] {
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
