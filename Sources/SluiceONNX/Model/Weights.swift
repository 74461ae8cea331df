import Foundation
import SwiftProtobuf

extension ONNXModel {
    /// Weights smaller than this stay in every stage's file: shapes and axes that shape
    /// inference reads as values are among them, and they cost nothing to send.
    public static let weightsAlwaysKept = 1024

    /// This model's file with only the weights that nodes `nodes` read (and the small ones):
    /// every other initializer, and every large Constant node no node in `nodes` reads, becomes
    /// a graph input of the same type and shape. The graph and its node order are unchanged,
    /// so the file loads into the same nodes, the same cut and the same shapes, and an executor
    /// for `nodes` built from it computes what one built from the whole file does: a stage on
    /// another host is sent the weights of its layers, not the whole model.
    public func weightsFile(for nodes: Range<Int>) throws -> Data {
        guard nodes.lowerBound >= 0, nodes.upperBound <= graph.count else {
            throw ModelError(.invalidGraph, "\(path): nodes \(nodes) are outside the model's \(graph.count)")
        }
        var proto = try ModelLoader(path: path).readProto()
        let read = Set(graph[nodes].flatMap(\.inputs))
        let declared = Set(proto.graph.input.map(\.name))
        var inputs: [Onnx_ValueInfoProto] = []
        func input(_ name: String, _ tensor: Onnx_TensorProto) {
            guard !declared.contains(name) else { return }
            var value = Onnx_ValueInfoProto()
            value.name = name
            value.type.tensorType.elemType = tensor.dataType
            value.type.tensorType.shape.dim = tensor.dims.map { size in
                var dimension = Onnx_TensorShapeProto.Dimension()
                dimension.dimValue = size
                return dimension
            }
            inputs.append(value)
        }
        proto.graph.initializer = proto.graph.initializer.filter { tensor in
            let kept = read.contains(tensor.name) || (initializers[tensor.name]?.byteCount ?? 0) <= Self.weightsAlwaysKept
            if !kept { input(tensor.name, tensor) }
            return kept
        }
        proto.graph.node = proto.graph.node.filter { node in
            let isConstant = (node.domain.isEmpty || node.domain == "ai.onnx") && node.opType == "Constant"
            guard isConstant, node.output.count == 1, !read.contains(node.output[0]),
                  (initializers[node.output[0]]?.byteCount ?? 0) > Self.weightsAlwaysKept,
                  let value = node.attribute.first(where: { $0.name == "value" && $0.hasT })?.t else { return true }
            input(node.output[0], value)
            return false
        }
        proto.graph.input += inputs
        return try proto.serializedBytes()
    }
}
