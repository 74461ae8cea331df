import Foundation
import SluiceTensor

/// Tensors as the fixture sets of Tests/Fixtures/ml and Tests/Fixtures/exporters write them
/// (tools/fixture_json.py): `{"dtype", "shape", "values"}`, values flat and row-major, every
/// float as text (parsed exactly; "nan", "inf"), or `{"dtype", "shape", "npy"}` naming a .npy
/// file beside the JSON that holds them.
public enum FixtureTensor {
    public struct Malformed: Error, CustomStringConvertible {
        public let description: String
    }

    /// `folder`: where an `npy` file the JSON names lies.
    public static func decode(_ json: [String: Any], folder: String = ".") throws -> Tensor {
        if let file = json["npy"] as? String { return try NPY.read(path: folder + "/" + file) }
        guard let dtype = json["dtype"] as? String, let shape = json["shape"] as? [Int], let values = json["values"] as? [Any] else {
            throw Malformed(description: "a fixture tensor needs dtype, shape and values (or npy): \(json.keys.sorted())")
        }
        switch dtype {
        case "string": return Tensor(shape: shape, strings: values.map { "\($0)" })
        case "bool": return Tensor(shape: shape, bools: values.map { ($0 as? Bool) ?? false })
        case "float32", "float64", "int64", "int32":
            let numbers = values.map { value -> Double in
                if let number = value as? NSNumber { return number.doubleValue }
                return Double("\(value)") ?? .nan
            }
            let type: DType = dtype == "float32" ? .float32 : dtype == "float64" ? .float64 : dtype == "int64" ? .int64 : .int32
            return Tensor(dtype: type, shape: shape, doubles: numbers)
        default:
            throw Malformed(description: "unknown dtype \(dtype)")
        }
    }
}
