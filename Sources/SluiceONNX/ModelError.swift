import SluiceTensor

/// Why a model could not be loaded or run. The message names the file and, where there is
/// one, the node, its op and the reason, so that a user can act on it.
public struct ModelError: Error, CustomStringConvertible, Equatable, Sendable {
    public enum Kind: String, Sendable {
        /// The model file (or an external data file) cannot be read.
        case fileNotReadable
        /// The bytes are not an ONNX ModelProto.
        case notAModel
        /// The graph breaks ONNX's rules (dangling names, cycles, bad attributes or initializers).
        case invalidGraph
        /// An op (or an op at this opset) the executor does not implement.
        case unsupportedOp
        /// A feature of a supported op, or a data type, the executor does not implement.
        case unsupportedFeature
        /// Shapes or types that do not fit together, found by inference at load.
        case shapeMismatch
        /// Run-time input that does not fit the model: missing, wrong dtype or shape.
        case invalidInput
        /// An executor asked for nodes that are not in the model.
        case invalidRange
    }

    public let kind: Kind
    public let message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }

    /// A problem with one node: `file: node 'name' (Op): reason`.
    static func node(_ kind: Kind, file: String, node: String, op: String, _ reason: String) -> ModelError {
        ModelError(kind, "\(file): node '\(node)' (\(op)): \(reason)")
    }
}

/// A problem found by an op while parsing its attributes or inferring shapes; the caller adds
/// the file and node.
struct OpError: Error, CustomStringConvertible {
    let kind: ModelError.Kind
    let message: String
    /// The output shapes depend on the value of an input that is only known at run time (a
    /// shape or axes fed as a graph input, or computed from data). Inference at load then leaves
    /// those outputs untyped; the executor infers them from the actual values on every run.
    var dataDependent = false

    init(_ message: String, kind: ModelError.Kind = .shapeMismatch) {
        self.kind = kind
        self.message = message
    }
    var description: String { message }

    static func unsupported(_ message: String) -> OpError { OpError(message, kind: .unsupportedFeature) }
    static func invalid(_ message: String) -> OpError { OpError(message, kind: .invalidGraph) }

    /// Input `role` must be known to infer the outputs, and it is not (yet).
    static func needsValue(_ role: String) -> OpError {
        var error = OpError("\(role) must be known to infer the output shape", kind: .unsupportedFeature)
        error.dataDependent = true
        return error
    }
}

extension ModelError {
    /// Puts any error from an op (or a kernel's shape check) in the context of its node.
    static func wrap(_ error: Error, file: String, node: Node, kind defaultKind: Kind) -> ModelError {
        switch error {
        case let e as ModelError:
            return e
        case let e as OpError:
            // Shape problems found at run time are the input's fault, not the model's.
            let kind = defaultKind == .invalidInput && e.kind == .shapeMismatch ? .invalidInput : e.kind
            return .node(kind, file: file, node: node.name, op: node.qualifiedOp, e.message)
        case let e as ShapeError:
            return .node(defaultKind, file: file, node: node.name, op: node.qualifiedOp, e.message)
        default:
            return .node(defaultKind, file: file, node: node.name, op: node.qualifiedOp, "\(error)")
        }
    }
}
