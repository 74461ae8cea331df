import Foundation
import SluiceTensor

/// What a model file holds, read without running shape inference: enough to say which ops it
/// uses and which of them this build cannot run, even when it cannot be loaded.
public struct ModelSurvey: Sendable {
    public struct Node: Sendable, Equatable {
        public let name: String
        /// `Conv`, or `domain.Op` outside the default domain.
        public let op: String
    }

    public struct Unsupported: Sendable, Equatable {
        public let node: String
        public let op: String
        public let reason: String
    }

    public let path: String
    /// The default-domain opset (nil when the model imports none).
    public let opset: Int?
    public let irVersion: Int
    public let producer: String
    /// Nodes in file order, Constant nodes included.
    public let nodes: [Node]
    public let unsupported: [Unsupported]
    public let initializerCount: Int
    /// Bytes of all initializers as declared (external data included).
    public let parameterBytes: Int

    /// How many nodes use each op, most used first (ties by name).
    public var opHistogram: [(op: String, count: Int)] {
        let counts = nodes.reduce(into: [String: Int]()) { $0[$1.op, default: 0] += 1 }
        return counts.map { ($0.key, $0.value) }.sorted { $0.count != $1.count ? $0.count > $1.count : $0.op < $1.op }
    }
}

extension ONNXModel {
    /// Parses `path` and checks every node's op against this build, without loading weights or
    /// inferring shapes. Throws only when the file is not a readable ONNX model.
    public static func survey(path: String) throws -> ModelSurvey {
        try ModelLoader(path: path).survey()
    }
}

extension ModelLoader {
    func survey() throws -> ModelSurvey {
        let proto = try readProto()
        guard proto.hasGraph else { throw ModelError(.notAModel, "\(path): not an ONNX model: it has no graph") }
        let opset = defaultOpset(proto)
        var nodes: [ModelSurvey.Node] = []
        var unsupported: [ModelSurvey.Unsupported] = []
        for (index, nodeProto) in proto.graph.node.enumerated() {
            let node = ModelLoader.makeNode(nodeProto, index: index)
            nodes.append(ModelSurvey.Node(name: node.name, op: node.qualifiedOp))
            let isDefaultDomain = node.domain.isEmpty || node.domain == "ai.onnx"
            if isDefaultDomain && opset == nil {
                unsupported.append(.init(node: node.name, op: node.qualifiedOp, reason: "the model imports no default-domain opset"))
                continue
            }
            let nodeOpset = isDefaultDomain ? (opset ?? 0) : domainOpset(proto, node.domain)
            switch OpRegistry.schema(for: node, opset: nodeOpset) {
            case .success(let schema):
                // The op exists; its attributes may still ask for something unsupported.
                do {
                    _ = try schema.make(OpContext(node: node, opset: nodeOpset))
                } catch let e as OpError where e.kind == .unsupportedFeature || e.kind == .unsupportedOp {
                    unsupported.append(.init(node: node.name, op: node.qualifiedOp, reason: e.message))
                } catch {
                    // Invalid attributes: loading reports them with the node's name.
                }
            case .failure(let reason):
                unsupported.append(.init(node: node.name, op: node.qualifiedOp, reason: reason.message))
            }
        }
        // Declared sizes, summed without trusting them: a hostile file's dims are refused by
        // loading, and here only make the total saturate.
        let bytes = proto.graph.initializer.reduce(0) { total, t in
            guard let dtype = TensorDecoder.dtype(onnx: t.dataType),
                  let size = TensorDecoder.byteCount(dtype, t.dims.map { Int($0) }) else { return total }
            let (sum, overflow) = total.addingReportingOverflow(size)
            return overflow ? Int.max : sum
        }
        return ModelSurvey(path: path, opset: opset, irVersion: Int(proto.irVersion), producer:
                            [proto.producerName, proto.producerVersion].filter { !$0.isEmpty }.joined(separator: " "),
                           nodes: nodes, unsupported: unsupported, initializerCount: proto.graph.initializer.count,
                           parameterBytes: bytes)
    }
}
