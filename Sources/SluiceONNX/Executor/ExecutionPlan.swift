import Foundation
import SluiceTensor

/// A range of steps planned for one set of input shapes: every value's type known, everything
/// computable from weights and shapes alone folded to a constant, and the intermediates laid
/// out in one arena by liveness (a value's bytes are reused once its last reader has run).
/// Runs reuse the arena and prebuilt tensor views, so the steady state allocates no tensor
/// storage but for the values handed back to the caller.
final class ExecutionPlan: @unchecked Sendable {
    /// Where a value's tensor comes from in a run.
    enum Source {
        /// A weight, or a value folded at planning.
        case constant(Tensor)
        /// Passed in by the caller.
        case external(String)
        /// A view into the arena at this byte offset.
        case arena(offset: Int)
        /// Freshly allocated each run (it is handed back to the caller).
        case fresh
        /// Whatever the op returns (ops without an `into` path, and views).
        case computed
    }

    struct PlannedStep {
        let op: any Operator
        let node: Node
        /// Value ids, −1 for an omitted input.
        let inputs: [Int]
        /// Value ids for every output `infer` returns (unnamed ones get ids too).
        let outputs: [Int]
        let into: Bool
    }

    let file: String
    let steps: [PlannedStep]
    let types: [ValueType?]
    let sources: [Source]
    /// Values handed back to the caller: name and id.
    let results: [(name: String, id: Int)]
    let arenaBytes: Int
    let maxInputs: Int
    let maxOutputs: Int
    private let states = StatePool()

    private init(file: String, steps: [PlannedStep], types: [ValueType?], sources: [Source], results: [(String, Int)],
                 arenaBytes: Int) {
        self.file = file
        self.steps = steps
        self.types = types
        self.sources = sources
        self.results = results
        self.arenaBytes = arenaBytes
        maxInputs = steps.map(\.inputs.count).max() ?? 0
        maxOutputs = steps.map(\.outputs.count).max() ?? 0
    }

    /// Values folded at planning are at most this many elements (a Transpose of a large weight
    /// is still folded; a broadcast to something huge is not).
    static let foldLimit = 1 << 22

    /// Plans `range` for the shapes of `values`; nil when some shape depends on data. Value
    /// planning (types inferred, constants folded), then buffer planning (lifetimes, then arena
    /// offsets).
    static func build(steps range: Executor.RangeSteps, values: [String: Tensor], weights: [String: Tensor],
                      file: String) throws -> ExecutionPlan? {
        guard var planned = try PlannedValues(range.steps, values: values, weights: weights, file: file) else { return nil }
        let results = range.escaping.sorted().compactMap { name in planned.ids[name].map { (name, $0) } }
        let lifetimes = Lifetimes(planned.steps, valueCount: planned.types.count, escaping: Set(results.map(\.1)))
        let buffers = BufferLayout(planned.steps, types: planned.types, lifetimes: lifetimes)
        for (i, source) in buffers.sources { planned.sources[i] = source }
        return ExecutionPlan(file: file, steps: planned.steps, types: planned.types, sources: planned.sources,
                             results: results, arenaBytes: buffers.arenaBytes)
    }

    /// One run's mutable state: the arena, the value table, and argument arrays reused per step.
    final class State {
        let arena: TensorStorage
        var slots: [Tensor?]
        /// Prebuilt views (arena) and constants, restored into `slots` where a run replaced them.
        let fixed: [Tensor?]
        var inputs: [Tensor?] = []
        var outputs: [Tensor] = []

        init(_ plan: ExecutionPlan) {
            arena = TensorStorage(uninitializedByteCount: plan.arenaBytes)
            var fixed = [Tensor?](repeating: nil, count: plan.types.count)
            for (i, source) in plan.sources.enumerated() {
                switch source {
                case .constant(let t): fixed[i] = t
                case .arena(let offset):
                    let type = plan.types[i]!
                    let bytes = type.elementCount * type.dtype.byteSize
                    fixed[i] = Tensor(dtype: type.dtype, shape: type.shape,
                                      storage: TensorStorage(borrowing: arena.bytes + offset, byteCount: bytes, owner: arena))
                default: break
                }
            }
            self.fixed = fixed
            slots = fixed
            inputs.reserveCapacity(plan.maxInputs)
            outputs.reserveCapacity(plan.maxOutputs)
        }
    }

    func run(values: inout [String: Tensor], scratch: Scratch) throws {
        let state = states.take() ?? State(self)
        defer { states.give(state) }
        // Bind the caller's tensors.
        for (i, source) in sources.enumerated() {
            switch source {
            case .external(let name): state.slots[i] = values[name]
            case .constant, .arena: break
            case .fresh, .computed: state.slots[i] = state.fixed[i]
            }
        }
        for step in steps {
            state.inputs.removeAll(keepingCapacity: true)
            for i in step.inputs { state.inputs.append(i >= 0 ? state.slots[i] : nil) }
            do {
                if try !step.into || !evaluateIntoBuffers(step, state, scratch) { try evaluate(step, state, scratch) }
            } catch {
                throw ModelError.wrap(error, file: file, node: step.node, kind: .invalidInput)
            }
        }
        for (name, i) in results {
            if let tensor = state.slots[i] { values[name] = tensor }
        }
        // Drop references to the caller's tensors and the results so they can be released.
        for (i, source) in sources.enumerated() {
            switch source {
            case .external, .fresh, .computed: state.slots[i] = nil
            case .arena, .constant: state.slots[i] = state.fixed[i]
            }
        }
    }

    /// Runs a step into its planned buffers (a fresh tensor for a value handed back); false
    /// when the op has no such path for these inputs. `state.outputs` keeps the buffers.
    private func evaluateIntoBuffers(_ step: PlannedStep, _ state: State, _ scratch: Scratch) throws -> Bool {
        state.outputs.removeAll(keepingCapacity: true)
        for i in step.outputs {
            if let view = state.slots[i], case .arena = sources[i] {
                state.outputs.append(view)
            } else {
                let type = types[i]!
                state.outputs.append(Tensor(uninitialized: type.dtype, shape: type.shape))
            }
        }
        guard try step.op.evaluate(state.inputs, into: state.outputs, scratch: scratch) else { return false }
        for (k, i) in step.outputs.enumerated() { state.slots[i] = state.outputs[k] }
        return true
    }

    /// Runs a step on tensors the op allocates itself.
    private func evaluate(_ step: PlannedStep, _ state: State, _ scratch: Scratch) throws {
        let outTypes = step.outputs.map { types[$0]! }
        let results = try step.op.evaluate(state.inputs, outputs: outTypes, scratch: scratch)
        for (k, i) in step.outputs.enumerated() where k < results.count {
            // A step planned to write into its own buffer keeps its value there even when it
            // fell back: what the fallback returned may share an input's bytes, which the plan
            // lets later steps overwrite.
            if step.into, k < state.outputs.count, results[k].dtype == state.outputs[k].dtype,
               results[k].byteCount == state.outputs[k].byteCount,
               state.inputs.contains(where: { $0.map { Self.overlap($0, results[k]) } ?? false }) {
                state.outputs[k].storage.bytes.copyMemory(from: results[k].storage.bytes, byteCount: results[k].byteCount)
                state.slots[i] = state.outputs[k]
            } else {
                state.slots[i] = results[k]
            }
        }
    }

    /// Whether two tensors' bytes overlap.
    static func overlap(_ a: Tensor, _ b: Tensor) -> Bool {
        let a0 = UInt(bitPattern: a.storage.bytes), b0 = UInt(bitPattern: b.storage.bytes)
        return a0 < b0 + UInt(b.byteCount) && b0 < a0 + UInt(a.byteCount)
    }

    /// States for concurrent runs of one plan.
    final class StatePool: @unchecked Sendable {
        private let lock = NSLock()
        private var free: [State] = []

        func take() -> State? {
            lock.lock()
            defer { lock.unlock() }
            return free.popLast()
        }

        func give(_ state: State) {
            lock.lock()
            free.append(state)
            lock.unlock()
        }
    }
}

/// The first step of planning a range for given input shapes: an id for every value, with its
/// type and where its tensor comes from, and the steps left once everything computable from
/// weights and shapes alone is folded to a constant.
struct PlannedValues {
    typealias Source = ExecutionPlan.Source
    private(set) var ids: [String: Int] = [:]
    private(set) var types: [ValueType?] = []
    var sources: [Source] = []
    private(set) var steps: [ExecutionPlan.PlannedStep] = []
    private var constants: [Int: Tensor] = [:]

    /// Nil when some shape depends on data.
    init?(_ steps: [Executor.Step], values: [String: Tensor], weights: [String: Tensor], file: String) throws {
        let scratch = Scratch()
        for step in steps {
            let (inputIDs, known) = try inputs(of: step, values: values, weights: weights, file: file)
            let outcome: Outcome
            do {
                guard let inferred = try Self.inferOrFold(step.op, known, scratch: scratch) else { return nil }
                outcome = inferred
            } catch {
                throw ModelError.wrap(error, file: file, node: step.node, kind: .invalidInput)
            }
            switch outcome {
            case .folded(let folded):
                for (k, name) in step.outputs.enumerated() where !name.isEmpty && k < folded.count { addConstant(folded[k], named: name) }
            case .computed(let outTypes):
                let outputIDs = outTypes.enumerated().map { k, type in
                    add(type, .computed, named: k < step.outputs.count ? step.outputs[k] : "")
                }
                self.steps.append(ExecutionPlan.PlannedStep(op: step.op, node: step.node, inputs: inputIDs, outputs: outputIDs,
                                                            into: step.op.writesInto))
            }
        }
    }

    enum Outcome {
        /// Every output known at planning.
        case folded([Tensor])
        /// Computed each run, with these types.
        case computed([ValueType])
    }

    /// Infers the op's output types and folds it when its outputs are known already; nil when
    /// they depend on data.
    static func inferOrFold(_ op: any Operator, _ known: InferenceInputs, scratch: Scratch) throws -> Outcome? {
        let outTypes: [ValueType]
        do {
            outTypes = try op.inferTypes(known)
        } catch let e as OpError where e.dataDependent {
            return nil
        }
        guard op.isDeterministic else { return .computed(outTypes) }
        if let folded = try op.valuesFromTypes(known) { return .folded(folded) }
        let allConstant = zip(known.types, known.values).allSatisfy { $0.0 == nil || $0.1 != nil }
        if allConstant, outTypes.reduce(0, { $0 + $1.elementCount }) <= ExecutionPlan.foldLimit {
            return .folded(try op.evaluate(known.values, outputs: outTypes, scratch: scratch))
        }
        return .computed(outTypes)
    }

    /// The step's input ids (−1 for an omitted one) and what is known of them.
    mutating func inputs(of step: Executor.Step, values: [String: Tensor], weights: [String: Tensor],
                         file: String) throws -> ([Int], InferenceInputs) {
        var inputIDs: [Int] = [], inTypes: [ValueType?] = [], inValues: [Tensor?] = []
        for name in step.inputs {
            guard !name.isEmpty else {
                inputIDs.append(-1)
                inTypes.append(nil)
                inValues.append(nil)
                continue
            }
            guard let i = id(name, values: values, weights: weights) else {
                throw ModelError.node(.invalidInput, file: file, node: step.node.name, op: step.node.qualifiedOp,
                                      "input '\(name)' is missing: no earlier node of this run produced it and it is not among the values passed in")
            }
            inputIDs.append(i)
            inTypes.append(types[i])
            inValues.append(constants[i])
        }
        return (inputIDs, InferenceInputs(types: inTypes, values: inValues))
    }

    /// The id of a value a step reads: one planned already, a weight, or one the caller passes.
    mutating func id(_ name: String, values: [String: Tensor], weights: [String: Tensor]) -> Int? {
        if let known = ids[name] { return known }
        if let weight = weights[name] { return addConstant(weight, named: name) }
        guard let value = values[name] else { return nil }
        return add(ValueType(value.dtype, value.shape), .external(name), named: name)
    }

    @discardableResult
    mutating func addConstant(_ tensor: Tensor, named name: String) -> Int {
        let i = add(ValueType(tensor.dtype, tensor.shape), .constant(tensor), named: name)
        constants[i] = tensor
        return i
    }

    /// A new value; an empty name (an output no one named) gets an id but no entry in `ids`.
    mutating func add(_ type: ValueType?, _ source: Source, named name: String) -> Int {
        types.append(type)
        sources.append(source)
        if !name.isEmpty { ids[name] = types.count - 1 }
        return types.count - 1
    }
}

/// How long each value's bytes must live: the last step that reads them, directly or through
/// a view or an op that may hand an input back, and whether the caller gets them.
struct Lifetimes {
    /// The value whose bytes each value shares (itself unless it is a view).
    private(set) var root: [Int]
    /// For each root, the last step that reads its bytes (−1: none).
    private(set) var lastUse: [Int]
    /// For each root, whether its bytes are handed back to the caller.
    private(set) var escapes: [Bool]

    init(_ steps: [ExecutionPlan.PlannedStep], valueCount: Int, escaping: Set<Int>) {
        root = Array(0..<valueCount)
        lastUse = [Int](repeating: -1, count: valueCount)
        escapes = [Bool](repeating: false, count: valueCount)
        // Views share their source's bytes: group values by root, and give each root the
        // lifetime of its whole group.
        for step in steps where step.op.isView && !step.outputs.isEmpty && step.inputs.first.map({ $0 >= 0 }) == true {
            root[step.outputs[0]] = root[step.inputs[0]]
        }
        for (k, step) in steps.enumerated() {
            for i in step.inputs where i >= 0 { lastUse[root[i]] = max(lastUse[root[i]], k) }
            for i in step.outputs { lastUse[root[i]] = max(lastUse[root[i]], k) }
        }
        for i in escaping { escapes[root[i]] = true }
        extendThroughHandedBackInputs(steps)
    }

    /// An op without an `into` path may hand back one of its inputs unchanged (Cast to the
    /// same type, Identity, an Expand that changes nothing, …). Its output then shares the
    /// input's bytes, so the input's storage must live, and escape, as long as the output
    /// does. Walking backwards carries this along chains of such ops in one pass.
    private mutating func extendThroughHandedBackInputs(_ steps: [ExecutionPlan.PlannedStep]) {
        for step in steps.reversed() where !step.into {
            for o in step.outputs {
                for i in step.inputs where i >= 0 {
                    lastUse[root[i]] = max(lastUse[root[i]], lastUse[root[o]])
                    if escapes[root[o]] { escapes[root[i]] = true }
                }
            }
        }
    }
}

/// The last step of planning: the outputs of ops that write into given buffers get arena
/// space, reused once their last reader has run, or, when they escape, a fresh tensor each run.
struct BufferLayout {
    /// The new source of each such output: `.arena(offset:)` or `.fresh`.
    private(set) var sources: [Int: ExecutionPlan.Source] = [:]
    private(set) var arenaBytes = 0

    init(_ steps: [ExecutionPlan.PlannedStep], types: [ValueType?], lifetimes: Lifetimes) {
        var arena = ArenaLayout()
        for (k, step) in steps.enumerated() {
            for i in step.outputs where lifetimes.root[i] == i && step.into {
                if lifetimes.escapes[i] {
                    sources[i] = .fresh
                } else if let type = types[i] {
                    sources[i] = .arena(offset: arena.allocate(Self.bytes(type)))
                }
            }
            // Free every arena root whose last reader is this step.
            let touched = Set(step.inputs.filter { $0 >= 0 }.map { lifetimes.root[$0] } + step.outputs.map { lifetimes.root[$0] })
            for i in touched where lifetimes.lastUse[i] == k {
                if case .arena(let offset) = sources[i], let type = types[i] { arena.free(offset, Self.bytes(type)) }
            }
        }
        arenaBytes = arena.size
    }

    static func bytes(_ type: ValueType) -> Int { type.elementCount * type.dtype.byteSize }
}

/// First-fit allocation of byte ranges in one arena, 64-byte aligned, merging freed neighbours.
struct ArenaLayout {
    private(set) var size = 0
    /// Free blocks (offset, bytes), sorted by offset.
    private var freeBlocks: [(offset: Int, bytes: Int)] = []

    static func aligned(_ bytes: Int) -> Int { (max(bytes, 1) + 63) / 64 * 64 }

    mutating func allocate(_ bytes: Int) -> Int {
        let need = Self.aligned(bytes)
        if let k = freeBlocks.firstIndex(where: { $0.bytes >= need }) {
            let block = freeBlocks[k]
            if block.bytes == need {
                freeBlocks.remove(at: k)
            } else {
                freeBlocks[k] = (block.offset + need, block.bytes - need)
            }
            return block.offset
        }
        // Grow, reusing a free block that ends the arena.
        if let last = freeBlocks.last, last.offset + last.bytes == size {
            freeBlocks.removeLast()
            size = last.offset + need
            return last.offset
        }
        let offset = size
        size += need
        return offset
    }

    mutating func free(_ offset: Int, _ bytes: Int) {
        let length = Self.aligned(bytes)
        var k = freeBlocks.firstIndex { $0.offset > offset } ?? freeBlocks.count
        freeBlocks.insert((offset, length), at: k)
        if k + 1 < freeBlocks.count, freeBlocks[k].offset + freeBlocks[k].bytes == freeBlocks[k + 1].offset {
            freeBlocks[k].bytes += freeBlocks[k + 1].bytes
            freeBlocks.remove(at: k + 1)
        }
        if k > 0, freeBlocks[k - 1].offset + freeBlocks[k - 1].bytes == freeBlocks[k].offset {
            freeBlocks[k - 1].bytes += freeBlocks[k].bytes
            freeBlocks.remove(at: k)
            k -= 1
        }
    }
}
