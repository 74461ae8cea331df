import SluiceTensor

/// If, Loop and Scan: nodes that run subgraphs. Each is one node of the graph, however much
/// its subgraphs hold, so planning cuts around it; the values its subgraphs read from the
/// enclosing graph are its trailing inputs (see `Node`). Their output shapes come from running
/// them, so whatever follows them is inferred at run time.
enum ControlFlowOps {
    static let schemas: [OpSchema] = [
        OpSchema(name: "If", opsets: 1...OpRegistry.latestOpset, inputs: 1...1, outputs: OpSchema.anyCount) { try IfOperator($0) },
        OpSchema(name: "Loop", opsets: 1...OpRegistry.latestOpset, inputs: OpSchema.anyCount, outputs: OpSchema.anyCount) { try LoopOperator($0) },
        OpSchema(name: "Scan", opsets: 8...OpRegistry.latestOpset, inputs: OpSchema.anyCount, outputs: OpSchema.anyCount) { try ScanOperator($0) },
    ]
}

/// What control-flow ops share: the subgraph attributes and the outer values they read.
struct SubgraphScope: Sendable {
    /// Names of the node's trailing inputs: values of the enclosing graph its subgraphs read.
    let outerNames: [String]

    init(_ context: OpContext) {
        outerNames = Array(context.node.inputs.suffix(context.node.implicitInputCount))
    }

    /// The enclosing graph's values by name, from the node's trailing inputs.
    func values(_ inputs: [Tensor?]) -> [String: Tensor] {
        var scope: [String: Tensor] = [:]
        for (name, value) in zip(outerNames, inputs.suffix(outerNames.count)) { scope[name] = value }
        return scope
    }

    static func graph(_ context: OpContext, _ name: String) throws -> Subgraph {
        guard let graph = try context.attributes.graph(name) else { throw OpError.invalid("attribute \(name) (a graph) is required") }
        return try Subgraph(graph, opset: context.opset)
    }

    /// Stacks per-iteration values along a new axis `axis`; with no iterations, an empty tensor
    /// of the type the subgraph declares for that output.
    static func stack(_ parts: [Tensor], axis: Int, declared: (dtype: DType?, shape: [Int]?), role: String) throws -> Tensor {
        guard let first = parts.first else {
            var shape = declared.shape ?? []
            shape.insert(0, at: Swift.min(Swift.max(axis, 0), shape.count))
            return Tensor(zeros: declared.dtype ?? .float32, shape: shape)
        }
        if let other = parts.first(where: { $0.dtype != first.dtype || $0.shape != first.shape }) {
            throw OpError("\(role) changes from \(first.dtype)\(describe(first.shape)) to \(other.dtype)\(describe(other.shape)) between iterations")
        }
        let at = try Shapes.axis(axis, rank: first.rank + 1)
        var shape = first.shape
        shape.insert(1, at: at)
        return Kernels.concat(parts.map { $0.reshaped(shape) }, axis: at)
    }
}

extension Tensor {
    /// Element `index` along `axis`, that axis dropped.
    func slice(at index: Int, axis: Int) throws -> Tensor {
        try Kernels.gather(self, indices: Tensor(shape: [], int64s: [Int64(index)]), axis: axis)
    }
}

struct IfOperator: Operator {
    let thenBranch: Subgraph
    let elseBranch: Subgraph
    let scope: SubgraphScope
    let outputCount: Int

    init(_ context: OpContext) throws {
        thenBranch = try SubgraphScope.graph(context, "then_branch")
        elseBranch = try SubgraphScope.graph(context, "else_branch")
        scope = SubgraphScope(context)
        outputCount = context.node.outputs.count
        for (role, branch) in [("then_branch", thenBranch), ("else_branch", elseBranch)] where branch.outputs.count != outputCount {
            throw OpError.invalid("\(role) has \(branch.outputs.count) outputs, the node \(outputCount)")
        }
    }

    var outputTypesNeedEvaluation: Bool { true }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        _ = try inputs.type(0, oneOf: [.bool], role: "cond")
        throw OpError.needsValue("the branch taken")
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let condition = inputs[0]!
        guard condition.dtype == .bool, condition.elementCount == 1 else {
            throw OpError("cond must be one bool, it is \(condition.dtype)\(describe(condition.shape))")
        }
        let branch = condition.truthValues[0] ? thenBranch : elseBranch
        return try branch.run([], scope: scope.values(inputs), scratch: scratch)
    }
}

/// Loop: runs its body while the trip count and the condition allow, carrying N values from
/// one iteration to the next and stacking K more, one slice per iteration.
struct LoopOperator: Operator {
    let body: Subgraph
    let scope: SubgraphScope
    let carried: Int
    let tripCountGiven: Bool
    let conditionGiven: Bool

    init(_ context: OpContext) throws {
        let declared = context.node.declaredInputs
        guard declared.count >= 2 else { throw OpError.invalid("expects at least 2 inputs (M, cond), has \(declared.count)") }
        body = try SubgraphScope.graph(context, "body")
        scope = SubgraphScope(context)
        carried = declared.count - 2
        tripCountGiven = !declared[declared.startIndex].isEmpty
        conditionGiven = !declared[declared.startIndex + 1].isEmpty
        guard tripCountGiven || conditionGiven else {
            throw OpError.unsupported("has neither a trip count nor a condition, so it would never end")
        }
        guard body.inputs.count == 2 + carried else {
            throw OpError.invalid("its body takes \(body.inputs.count) inputs; with \(carried) carried values it must take \(2 + carried)")
        }
        guard body.outputs.count >= 1 + carried, context.node.outputs.count <= body.outputs.count - 1 else {
            throw OpError.invalid("its body gives \(body.outputs.count) outputs, fewer than the condition, \(carried) carried values and the node's \(context.node.outputs.count) outputs need")
        }
    }

    var outputTypesNeedEvaluation: Bool { true }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        if tripCountGiven { _ = try inputs.type(0, oneOf: [.int64], role: "M") }
        if conditionGiven { _ = try inputs.type(1, oneOf: [.bool], role: "cond") }
        throw OpError.needsValue("the number of iterations")
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let trips = inputs[0].map { $0.int64Values.first ?? 0 }
        var going = inputs[1].map { $0.truthValues.first ?? false } ?? true
        var values = try (0..<carried).map { i -> Tensor in
            guard let value = inputs[2 + i] else { throw OpError.unsupported("carried value \(i) is omitted") }
            return value
        }
        let scanned = body.outputs.count - 1 - carried
        var slices = [[Tensor]](repeating: [], count: scanned)
        let outer = scope.values(inputs)
        var iteration: Int64 = 0
        while going && (trips == nil || iteration < trips!) {
            let results = try body.run([Tensor(shape: [], int64s: [iteration]), Tensor(shape: [], bools: [going])] + values,
                                       scope: outer, scratch: scratch)
            going = results[0].truthValues.first ?? false
            values = Array(results[1..<(1 + carried)])
            for k in 0..<scanned { slices[k].append(results[1 + carried + k]) }
            iteration += 1
        }
        let stacked = try (0..<scanned).map { k in
            try SubgraphScope.stack(slices[k], axis: 0, declared: body.declaredOutputs[1 + carried + k], role: "scan output \(k)")
        }
        return values + stacked
    }
}

/// Scan: runs its body once per slice of its scan inputs (along each one's axis, forward or
/// backward), carrying N state values through and stacking what the body gives per slice.
/// Opset 8 has a batch dimension first and scans along the second; later opsets neither.
struct ScanOperator: Operator {
    let body: Subgraph
    let scope: SubgraphScope
    let batched: Bool
    let states: Int
    let scanInputs: Int
    let inputAxes: [Int]
    let inputBackward: [Bool]
    let outputAxes: [Int]
    let outputBackward: [Bool]

    init(_ context: OpContext) throws {
        let a = context.attributes
        body = try SubgraphScope.graph(context, "body")
        scope = SubgraphScope(context)
        batched = context.opset < 9
        guard let count = try a.int("num_scan_inputs"), count >= 1 else { throw OpError.invalid("num_scan_inputs must be at least 1") }
        scanInputs = count
        let declared = context.node.declaredInputs.count - (batched ? 1 : 0)
        states = declared - count
        guard states >= 0, body.inputs.count == declared else {
            throw OpError.invalid("its body takes \(body.inputs.count) inputs, the node gives \(declared) (with \(count) scanned)")
        }
        let scanOutputs = body.outputs.count - states
        guard scanOutputs >= 0, context.node.outputs.count <= body.outputs.count else {
            throw OpError.invalid("its body gives \(body.outputs.count) outputs for \(states) states and the node's \(context.node.outputs.count) outputs")
        }
        func flags(_ name: String, _ n: Int) throws -> [Bool] {
            let values = try a.ints(name) ?? Array(repeating: 0, count: n)
            guard values.count == n, values.allSatisfy({ $0 == 0 || $0 == 1 }) else { throw OpError.invalid("\(name) must be \(n) values of 0 or 1") }
            return values.map { $0 == 1 }
        }
        func axes(_ name: String, _ n: Int) throws -> [Int] {
            let values = try a.ints(name) ?? Array(repeating: 0, count: n)
            guard values.count == n else { throw OpError.invalid("\(name) must have \(n) values") }
            return values
        }
        if batched {
            inputBackward = try flags("directions", count)
            inputAxes = Array(repeating: 0, count: count)
            outputAxes = Array(repeating: 0, count: scanOutputs)
            outputBackward = Array(repeating: false, count: scanOutputs)
        } else {
            inputBackward = try flags("scan_input_directions", count)
            inputAxes = try axes("scan_input_axes", count)
            outputAxes = try axes("scan_output_axes", scanOutputs)
            outputBackward = try flags("scan_output_directions", scanOutputs)
        }
    }

    var outputTypesNeedEvaluation: Bool { true }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        throw OpError.needsValue("the body's results")
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let first = batched ? 1 : 0
        let given = try (first..<(first + states + scanInputs)).map { i -> Tensor in
            guard let value = inputs[i] else { throw OpError.invalid("input \(i) is required but missing") }
            return value
        }
        let outer = scope.values(inputs)
        guard batched else { return try scan(Array(given[..<states]), Array(given[states...]), outer, scratch) }
        // Opset 8: the first dimension is a batch, each item scanned on its own.
        if let lengths = inputs[0], let full = given.last?.shape.dropFirst().first,
           lengths.int64Values.contains(where: { $0 != full }) {
            throw OpError.unsupported("sequence_lens other than the full length \(full) are not supported")
        }
        let batch = given[0].shape.first ?? 0
        var rows: [[Tensor]] = []
        for b in 0..<batch {
            rows.append(try scan(try given[..<states].map { try $0.slice(at: b, axis: 0) },
                                 try given[states...].map { try $0.slice(at: b, axis: 0) }, outer, scratch))
        }
        return try (0..<body.outputs.count).map { k in
            try SubgraphScope.stack(rows.map { $0[k] }, axis: 0, declared: (nil, nil), role: "output \(k)")
        }
    }

    private func scan(_ initial: [Tensor], _ sequences: [Tensor], _ outer: [String: Tensor], _ scratch: Scratch) throws -> [Tensor] {
        let axes = try zip(sequences, inputAxes).map { try Shapes.axis($1, rank: $0.rank) }
        let length = sequences[0].shape[axes[0]]
        for (j, sequence) in sequences.enumerated() where sequence.shape[axes[j]] != length {
            throw OpError("scan input \(j) has \(sequence.shape[axes[j]]) steps along axis \(axes[j]), scan input 0 has \(length)")
        }
        var state = initial
        var slices = [[Tensor]](repeating: [], count: body.outputs.count - states)
        for t in 0..<length {
            let steps = try sequences.enumerated().map { j, sequence in
                try sequence.slice(at: inputBackward[j] ? length - 1 - t : t, axis: axes[j])
            }
            let results = try body.run(state + steps, scope: outer, scratch: scratch)
            state = Array(results[..<states])
            for k in slices.indices { slices[k].append(results[states + k]) }
        }
        let stacked = try slices.indices.map { k in
            try SubgraphScope.stack(outputBackward[k] ? slices[k].reversed() : slices[k], axis: outputAxes[k],
                                    declared: body.declaredOutputs[states + k], role: "scan output \(k)")
        }
        return state + stacked
    }
}
