import Foundation
import SluiceTensor

/// A graph input or output: name, element type, and shape, where nil is a symbolic dimension
/// (the micro-batch, usually).
public struct TensorInfo: Sendable, Equatable, CustomStringConvertible {
    public let name: String
    public let dtype: DType
    public let shape: [Int?]

    public init(name: String, dtype: DType, shape: [Int?]) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
    }

    public var description: String { "\(name): \(dtype)\(describeSymbolic(shape))" }
}

/// One node of the graph, in topological order, with what planning needs to know about it.
public struct NodeInfo: Sendable, Equatable {
    /// Position in topological order.
    public let index: Int
    /// The node's name, or `<opType>_<index>` when the file has none.
    public let name: String
    public let opType: String
    /// All input names, initializers included ("" for omitted optional inputs).
    public let inputs: [String]
    public let outputs: [String]
    /// Estimated from inferred shapes at batch 1; a multiply-add counts 2.
    public let flopsPerWindow: Double
    /// Bytes of the initializers this node reads.
    public let parameterBytes: Int

    public init(index: Int, name: String, opType: String, inputs: [String], outputs: [String],
                flopsPerWindow: Double, parameterBytes: Int) {
        self.index = index
        self.name = name
        self.opType = opType
        self.inputs = inputs
        self.outputs = outputs
        self.flopsPerWindow = flopsPerWindow
        self.parameterBytes = parameterBytes
    }
}

/// An ONNX model, parsed and checked: nodes sorted, every op supported at the model's opset,
/// shapes inferred per sample. Weights stay encoded until an `Executor` asks for its share.
public final class ONNXModel: @unchecked Sendable {
    public let path: String
    /// The default-domain opset.
    public let opset: Int
    /// Graph inputs that are not initializers.
    public let inputs: [TensorInfo]
    public let outputs: [TensorInfo]
    /// Topologically sorted; Constant nodes have become initializers.
    public let nodes: [NodeInfo]
    /// The model's metadata_props.
    public let metadata: [String: String]
    /// Runs of consecutive nodes the executor fuses into one kernel (Conv+BatchNormalization+Relu,
    /// Gemm+Relu, MatMul+Add+Relu, …) when a range holds the whole run. A stage boundary inside
    /// one still works, but both sides then run the nodes unfused.
    public let fusionGroups: [Range<Int>]

    let graph: [Node]
    let operators: [any Operator]
    let initializers: [String: Initializer]
    /// Inferred types at batch 1, for every value the graph computes or reads.
    let types: [String: ValueType]
    /// For each value, which dimensions follow the symbolic (batch) dimensions of the inputs.
    let symbolic: [String: [Bool]]
    let fusions: [Fusion]

    private let lock = NSLock()
    private var wholeGraph: Executor?

    init(path: String, opset: Int, inputs: [TensorInfo], outputs: [TensorInfo], nodes: [NodeInfo],
         metadata: [String: String], graph: [Node], operators: [any Operator], initializers: [String: Initializer],
         types: [String: ValueType], symbolic: [String: [Bool]], fusions: [Fusion]) {
        self.path = path
        self.opset = opset
        self.inputs = inputs
        self.outputs = outputs
        self.nodes = nodes
        self.metadata = metadata
        self.graph = graph
        self.operators = operators
        self.initializers = initializers
        self.types = types
        self.symbolic = symbolic
        self.fusions = fusions
        fusionGroups = fusions.map(\.nodes)
    }

    /// Reads, checks and shape-infers the model at `path`.
    public static func load(path: String) throws -> ONNXModel {
        try ModelLoader(path: path).load()
    }

    public func isInitializer(_ name: String) -> Bool { initializers[name] != nil }

    /// Bytes of one sample of `tensor` (inferred at batch 1); an initializer's full size;
    /// 0 for a name the model does not have.
    public func bytesPerWindow(of tensor: String) -> Int {
        if let initializer = initializers[tensor] { return initializer.byteCount }
        guard let type = types[tensor] else { return 0 }
        return type.elementCount * type.dtype.byteSize
    }

    /// The inferred type of any value in the graph: per-sample shape, nil for symbolic dimensions.
    public func tensorInfo(_ name: String) -> TensorInfo? {
        if let initializer = initializers[name] {
            return TensorInfo(name: name, dtype: initializer.dtype, shape: initializer.shape.map { $0 })
        }
        guard let type = types[name] else { return nil }
        let mask = symbolic[name] ?? []
        return TensorInfo(name: name, dtype: type.dtype,
                          shape: type.shape.enumerated().map { i, d in i < mask.count && mask[i] ? nil : d })
    }

    /// The class labels (as text) the columns of `output` stand for, where the graph says so:
    /// the output is ZipMap's, or a classifier's scores (LinearClassifier, SVMClassifier,
    /// TreeEnsembleClassifier), reached through views such as Identity. nil otherwise.
    public func classLabels(of output: String) -> [String]? {
        var name = output
        for _ in 0..<graph.count {
            guard let index = graph.firstIndex(where: { $0.outputs.contains(name) }) else { return nil }
            let op = operators[index]
            let position = graph[index].outputs.firstIndex(of: name) ?? 0
            if let zipMap = op as? ZipMapOperator { return zipMap.labels.names }
            if position == 1 {
                if let linear = op as? LinearClassifierOperator { return linear.labels.names }
                if let svm = op as? SVMClassifierOperator { return svm.labels.names }
                if let trees = op as? TreeEnsembleOperator { return trees.labels?.names }
            }
            guard op.isView, position == 0, let input = graph[index].inputs.first else { return nil }
            name = input
        }
        return nil
    }

    /// Bytes of all initializers.
    public var parameterBytes: Int { initializers.values.reduce(0) { $0 + $1.byteCount } }

    /// The op types this build can run.
    public static var supportedOps: [String] { OpRegistry.supportedOps }
}

extension ONNXModel {
    /// Whole-graph convenience for one process: inputs by name → graph outputs by name.
    public func run(inputs given: [String: Tensor]) throws -> [String: Tensor] {
        for name in given.keys where !inputs.contains(where: { $0.name == name }) {
            throw ModelError(.invalidInput, "\(path): '\(name)' is not an input of the model (inputs: \(inputs.map(\.name).joined(separator: ", ")))")
        }
        for input in inputs where given[input.name] == nil {
            throw ModelError(.invalidInput, "\(path): missing input '\(input.name)' (\(input.dtype)\(describeSymbolic(input.shape)))")
        }
        let executor: Executor
        lock.lock()
        if let cached = wholeGraph {
            executor = cached
            lock.unlock()
        } else {
            lock.unlock()
            let made = try Executor(model: self, nodes: 0..<nodes.count)
            lock.lock()
            wholeGraph = wholeGraph ?? made
            executor = wholeGraph!
            lock.unlock()
        }
        var values = given
        try executor.run(0..<nodes.count, values: &values)
        var result: [String: Tensor] = [:]
        for output in outputs {
            if let value = values[output.name] {
                result[output.name] = value
            } else if let initializer = initializers[output.name] {
                result[output.name] = try initializer.tensor()
            } else {
                throw ModelError(.invalidGraph, "\(path): graph output '\(output.name)' was not computed")
            }
        }
        return result
    }
}

/// `[N, 6, 100]`-style text for shapes with symbolic dimensions.
func describeSymbolic(_ shape: [Int?]) -> String {
    "[" + shape.map { $0.map(String.init) ?? "N" }.joined(separator: ", ") + "]"
}
