import SluiceTensor

/// The dtype and (concrete) shape of a value. At load, shapes are per-sample (symbolic
/// dimensions set to 1); at run time they are the actual shapes.
struct ValueType: Equatable, Sendable, CustomStringConvertible {
    var dtype: DType
    var shape: [Int]

    init(_ dtype: DType, _ shape: [Int]) {
        self.dtype = dtype
        self.shape = shape
    }

    var description: String { "\(dtype)\(shape)" }
    var elementCount: Int { Tensor.elementCount(of: shape) }
}

/// What an op knows about its inputs during inference: types for every input that is present,
/// and values where they are known (initializers, constants, or folded at load; every input at
/// run time).
struct InferenceInputs {
    let types: [ValueType?]
    let values: [Tensor?]

    var count: Int { types.count }

    /// A required input's type.
    func type(_ i: Int) throws -> ValueType {
        guard i < types.count, let t = types[i] else { throw OpError.invalid("input \(i) is required but missing") }
        return t
    }

    /// An optional input's type, nil when omitted.
    func optionalType(_ i: Int) -> ValueType? { i < types.count ? types[i] : nil }

    func value(_ i: Int) -> Tensor? { i < values.count ? values[i] : nil }

    /// A required input's type, checked to be one of `dtypes`.
    func type(_ i: Int, oneOf dtypes: [DType], role: String) throws -> ValueType {
        let t = try type(i)
        guard dtypes.contains(t.dtype) else {
            throw OpError("\(role) must be \(dtypes.map(\.description).joined(separator: " or ")), got \(t.dtype)")
        }
        return t
    }

    /// The int64 (or int32) elements of input `i`, when its value is known.
    func integers(_ i: Int) -> [Int]? {
        guard let v = value(i) else { return nil }
        switch v.dtype {
        case .int64: return v.int64s.map { Int($0) }
        case .int32: return v.withUnsafeBufferPointer(as: Int32.self) { $0.map { Int($0) } }
        default: return nil
        }
    }

    /// The single float value of a scalar (or one-element) input, when known.
    func scalarFloat(_ i: Int) -> Float? {
        guard let v = value(i), v.elementCount == 1 else { return nil }
        switch v.dtype {
        case .float32: return v.floats[0]
        case .float64: return v.withUnsafeBufferPointer(as: Double.self) { Float($0[0]) }
        default: return nil
        }
    }
}

/// One ONNX op, as a node configures it. Created once per node (at load and again in the
/// executor's plan) from the node's attributes, which it parses and validates up front.
///
/// Inference and evaluation are separate: `infer` derives output types from input types (and
/// from input values where an op needs them, such as Reshape's shape); `evaluate` computes.
/// The executor runs `infer` on the actual inputs before every `evaluate`, so evaluation can
/// trust the shapes it is given and any batch size works without reloading.
protocol Operator: Sendable {
    func infer(_ inputs: InferenceInputs) throws -> [ValueType]

    /// Computes the outputs. `outputs` are the types `infer` just returned for these inputs.
    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor]

    /// Outputs known from input types alone (Shape's result), for constant folding at load.
    func valuesFromTypes(_ inputs: InferenceInputs) throws -> [Tensor]?

    /// Floating-point operations for these types (a multiply-add counts 2).
    func flops(_ inputs: [ValueType?], _ outputs: [ValueType]) -> Double

    /// Computes the outputs into `outputs`: one uninitialized tensor per type `infer` returned,
    /// which the executor allocated (from its planned buffers). Returns false when this op, or
    /// this case of it, has no such path; the executor then calls `evaluate` instead.
    func evaluate(_ inputs: [Tensor?], into outputs: [Tensor], scratch: Scratch) throws -> Bool

    /// Whether `evaluate(_:into:scratch:)` usually succeeds, so planned buffers are worth giving.
    var writesInto: Bool { get }

    /// Output 0 is input 0's storage seen under another shape (Reshape, Flatten, Squeeze, …).
    var isView: Bool { get }

    /// The same inputs always give the same outputs, so constant inputs may be folded.
    var isDeterministic: Bool { get }

    /// The output types are known only by computing the outputs (control flow, whose subgraph
    /// decides them): `infer` reports them data-dependent, and a run calls `evaluate` with no
    /// output types and takes those of what it returns.
    var outputTypesNeedEvaluation: Bool { get }

    /// The op reads string tensors correctly. Most ops compute on bytes, where a string
    /// tensor has none: they are refused one (`inferTypes`), never handed one.
    var takesStrings: Bool { get }
}

extension Operator {
    func valuesFromTypes(_ inputs: InferenceInputs) throws -> [Tensor]? { nil }
    func evaluate(_ inputs: [Tensor?], into outputs: [Tensor], scratch: Scratch) throws -> Bool { false }
    var writesInto: Bool { false }
    var isView: Bool { false }
    var isDeterministic: Bool { true }
    var outputTypesNeedEvaluation: Bool { false }
    /// A view shares its input's storage, where a string tensor's elements live.
    var takesStrings: Bool { isView }

    /// `infer`, after refusing a string input to an op that does not take strings.
    func inferTypes(_ inputs: InferenceInputs) throws -> [ValueType] {
        try refuseStrings(inputs.types.map { $0?.dtype })
        return try infer(inputs)
    }

    func refuseStrings(_ dtypes: [DType?]) throws {
        guard !takesStrings, let index = dtypes.firstIndex(where: { $0 == .string }) else { return }
        throw OpError.unsupported("input \(index) is a string tensor, which this op does not take in Sluice")
    }

    /// The outputs for these actual inputs: types inferred first where that is possible.
    func compute(_ inputs: [Tensor?], scratch: Scratch) throws -> [Tensor] {
        if outputTypesNeedEvaluation {
            try refuseStrings(inputs.map { $0?.dtype })
            return try evaluate(inputs, outputs: [], scratch: scratch)
        }
        return try evaluate(inputs, outputs: try inferTypes(InferenceInputs(tensors: inputs)), scratch: scratch)
    }

    /// By default one operation per output element.
    func flops(_ inputs: [ValueType?], _ outputs: [ValueType]) -> Double {
        Double(outputs.reduce(0) { $0 + $1.elementCount })
    }
}

/// An op that moves, selects or describes values without arithmetic worth counting: it
/// counts no floating-point operations.
protocol DataMovementOperator: Operator {}

extension DataMovementOperator {
    func flops(_ inputs: [ValueType?], _ outputs: [ValueType]) -> Double { 0 }
}

/// The node and opset an op is configured from.
struct OpContext {
    let node: Node
    let opset: Int
    var attributes: Attributes { node.attributes }

    /// Fails unless the node has between `min` and `max` inputs (ignoring trailing omitted ones).
    func expectInputs(_ range: ClosedRange<Int>) throws {
        let inputs = node.declaredInputs
        var count = inputs.count
        while count > 0 && inputs[inputs.startIndex + count - 1].isEmpty { count -= 1 }
        guard range.contains(count) else {
            throw OpError.invalid(range.lowerBound == range.upperBound
                ? "expects \(range.lowerBound) input(s), has \(count)"
                : "expects \(range.lowerBound) to \(range.upperBound) inputs, has \(count)")
        }
    }

    /// The number of outputs the node asks for (ignoring trailing omitted ones).
    var requestedOutputs: Int {
        var count = node.outputs.count
        while count > 0 && node.outputs[count - 1].isEmpty { count -= 1 }
        return count
    }

    func expectOutputs(_ range: ClosedRange<Int>) throws {
        guard range.contains(requestedOutputs) else {
            throw OpError.unsupported("asks for \(requestedOutputs) outputs; Sluice implements \(range.upperBound == range.lowerBound ? "\(range.lowerBound)" : "\(range.lowerBound) to \(range.upperBound)")")
        }
    }
}

/// A registered op: its name, the default-domain opsets whose semantics it implements, how
/// many inputs and outputs a node of it may have, and how to configure it for a node.
struct OpSchema: Sendable {
    /// Any number: the op checks the count itself, against its attributes or subgraphs.
    static let anyCount = 0...Int.max

    let name: String
    let opsets: ClosedRange<Int>
    /// The inputs a node may have (trailing omitted ones not counted), each count from the
    /// first opset it holds at; ascending.
    let inputsByOpset: [(since: Int, count: ClosedRange<Int>)]
    /// The outputs a node may ask for (trailing omitted ones not counted).
    let outputs: ClosedRange<Int>
    private let configure: @Sendable (OpContext) throws -> any Operator

    init(name: String, opsets: ClosedRange<Int>, inputs: ClosedRange<Int>, outputs: ClosedRange<Int> = 1...1,
         make: @escaping @Sendable (OpContext) throws -> any Operator) {
        self.init(name: name, opsets: opsets, inputsSince: [opsets.lowerBound: inputs], outputs: outputs, make: make)
    }

    /// An op whose input count changed with the opset: `inputsSince` maps the first opset of
    /// each count to it.
    init(name: String, opsets: ClosedRange<Int>, inputsSince: KeyValuePairs<Int, ClosedRange<Int>>,
         outputs: ClosedRange<Int> = 1...1, make: @escaping @Sendable (OpContext) throws -> any Operator) {
        self.name = name
        self.opsets = opsets
        inputsByOpset = inputsSince.map { (since: $0.key, count: $0.value) }.sorted { $0.since < $1.since }
        self.outputs = outputs
        configure = make
    }

    /// The inputs a node may have at `opset`.
    func inputs(at opset: Int) -> ClosedRange<Int> {
        (inputsByOpset.last { $0.since <= opset } ?? inputsByOpset.first)?.count ?? Self.anyCount
    }

    /// Fails unless the node has as many inputs and outputs as this op takes at its opset.
    func checkArity(_ context: OpContext) throws {
        try context.expectInputs(inputs(at: context.opset))
        try context.expectOutputs(outputs)
    }

    /// The op configured for `context`'s node, its input and output counts checked first.
    func make(_ context: OpContext) throws -> any Operator {
        try checkArity(context)
        return try configure(context)
    }
}

/// Every supported op, gathered from the per-family tables.
enum OpRegistry {
    /// The highest opset whose op definitions have been checked against these implementations.
    static let latestOpset = 28

    static let schemas: [String: OpSchema] = {
        var all: [String: OpSchema] = [:]
        let families = [
            MathOps.schemas, ElementwiseOps.schemas, ReduceOps.schemas, NNOps.schemas, NormalizationOps.schemas,
            RecurrentOps.schemas, LossOps.schemas, ShapeOps.schemas, IndexingOps.schemas, SlicingOps.schemas,
            GeneratorOps.schemas, RearrangeOps.schemas, CastOps.schemas, ResizeOps.schemas, SignalOps.schemas,
            LinalgOps.schemas, DetectionOps.schemas, TextOps.schemas, ControlFlowOps.schemas,
        ]
        for schema in families.joined() {
            precondition(all[schema.name] == nil, "op \(schema.name) registered twice")
            all[schema.name] = schema
        }
        return all
    }()

    /// The classical machine-learning domain that skl2onnx and onnxmltools write.
    static let mlDomain = "ai.onnx.ml"
    /// The highest ai.onnx.ml opset checked against these implementations.
    static let latestMLOpset = 5

    static let mlSchemas: [String: OpSchema] = {
        var all: [String: OpSchema] = [:]
        for schema in MLOps.schemas {
            precondition(all[schema.name] == nil, "op \(schema.name) registered twice")
            all[schema.name] = schema
        }
        return all
    }()

    /// The schema for a node's op at `opset` (its domain's), or why there is none.
    static func schema(for node: Node, opset: Int) -> Result<OpSchema, OpError> {
        let defaultDomain = node.domain.isEmpty || node.domain == "ai.onnx"
        let table = defaultDomain ? schemas : node.domain == mlDomain ? mlSchemas : [:]
        guard let schema = table[node.opType] else {
            return .failure(OpError("unsupported op \(node.qualifiedOp) (opset \(opset))", kind: .unsupportedOp))
        }
        guard schema.opsets.contains(opset) else {
            return .failure(OpError("unsupported op \(node.qualifiedOp) (opset \(opset)): Sluice implements it for opsets \(schema.opsets.lowerBound) to \(schema.opsets.upperBound)", kind: .unsupportedOp))
        }
        return .success(schema)
    }

    static var supportedOps: [String] { schemas.keys.sorted() + mlSchemas.keys.sorted().map { "\(mlDomain).\($0)" } }
}

/// `Array.count` elements of a shape, for messages.
func describe(_ shape: [Int]) -> String { "[" + shape.map(String.init).joined(separator: ", ") + "]" }
