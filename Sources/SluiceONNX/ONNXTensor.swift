import Foundation
import SluiceTensor

/// Serialized ONNX `TensorProto`s, the format of ONNX's test data (`input_0.pb`, …).
public enum ONNXTensor {
    /// Decodes one serialized TensorProto (raw or typed fields) into its name and a tensor.
    public static func decode(_ data: Data, path: String = "<memory>") throws -> (name: String, tensor: Tensor) {
        let proto: Onnx_TensorProto
        do {
            proto = try Onnx_TensorProto(serializedBytes: data)
        } catch {
            throw ModelError(.notAModel, "\(path): not an ONNX TensorProto (\(error))")
        }
        do {
            return (proto.name, try TensorDecoder.decode(proto, name: proto.name, baseDirectory: nil))
        } catch let e as OpError {
            throw ModelError(e.kind, "\(path): tensor '\(proto.name)' \(e.message)")
        }
    }

    public static func read(path: String) throws -> (name: String, tensor: Tensor) {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ModelError(.fileNotReadable, "\(path): cannot open the tensor file")
        }
        return try decode(data, path: path)
    }

    /// Encodes a tensor as a TensorProto with raw_data.
    public static func encode(_ tensor: Tensor, name: String) -> Data {
        var proto = Onnx_TensorProto()
        proto.name = name
        proto.dataType = Int32(tensor.dtype.rawValue)
        proto.dims = tensor.shape.map { Int64($0) }
        proto.rawData = Data(bytes: tensor.storage.bytes, count: tensor.byteCount)
        return (try? proto.serializedData()) ?? Data()
    }
}
