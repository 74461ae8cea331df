import Foundation
import SluiceTensor

/// The classical machine-learning domain (`ai.onnx.ml`), as skl2onnx and onnxmltools export
/// it: feature transforms here, linear and SVM models in MLLinear.swift, tree ensembles in
/// MLTrees.swift. Results match onnxruntime's CPU kernels (the tests compare them).
enum MLOps {
    static let opsets = 1...OpRegistry.latestMLOpset

    static let schemas: [OpSchema] = [
        OpSchema(name: "Scaler", opsets: opsets, inputs: 1...1) { try ScalerOperator($0) },
        OpSchema(name: "Normalizer", opsets: opsets, inputs: 1...1) { try NormalizerOperator($0) },
        OpSchema(name: "Binarizer", opsets: opsets, inputs: 1...1) { try BinarizerOperator($0) },
        OpSchema(name: "Imputer", opsets: opsets, inputs: 1...1) { try ImputerOperator($0) },
        OpSchema(name: "LabelEncoder", opsets: opsets, inputs: 1...1) { try LabelEncoderOperator($0) },
        OpSchema(name: "OneHotEncoder", opsets: opsets, inputs: 1...1) { try OneHotEncoderOperator($0) },
        OpSchema(name: "ArrayFeatureExtractor", opsets: opsets, inputs: 2...2) { _ in ArrayFeatureExtractorOperator() },
        OpSchema(name: "FeatureVectorizer", opsets: opsets, inputs: 1...OpSchema.anyCount.upperBound) { try FeatureVectorizerOperator($0) },
        OpSchema(name: "ZipMap", opsets: opsets, inputs: 1...1) { try ZipMapOperator($0) },
        OpSchema(name: "LinearClassifier", opsets: opsets, inputs: 1...1, outputs: 1...2) { try LinearClassifierOperator($0) },
        OpSchema(name: "LinearRegressor", opsets: opsets, inputs: 1...1) { try LinearRegressorOperator($0) },
        OpSchema(name: "SVMClassifier", opsets: opsets, inputs: 1...1, outputs: 1...2) { try SVMClassifierOperator($0) },
        OpSchema(name: "SVMRegressor", opsets: opsets, inputs: 1...1) { try SVMRegressorOperator($0) },
        OpSchema(name: "TreeEnsembleClassifier", opsets: opsets, inputs: 1...1, outputs: 1...2) { try TreeEnsembleOperator($0, classifier: true) },
        OpSchema(name: "TreeEnsembleRegressor", opsets: opsets, inputs: 1...1) { try TreeEnsembleOperator($0, classifier: false) },
    ]

    /// The numeric inputs ai.onnx.ml models read.
    static let featureTypes: [DType] = [.float32, .float64, .int64, .int32]

    /// A feature input as [rows, columns]: a rank-1 input is one row.
    static func rowsAndColumns(_ shape: [Int]) -> (rows: Int, columns: Int) {
        if shape.count <= 1 { return (1, shape.first ?? 1) }
        let columns = shape.last ?? 1
        return (columns == 0 ? 0 : Tensor.elementCount(of: shape) / columns, columns)
    }

    /// Every element as a Float, as the ML kernels compute.
    static func floats(_ tensor: Tensor) -> [Float] {
        tensor.dtype == .float32 ? tensor.floats : tensor.doubles.map { Float($0) }
    }

    /// A per-column attribute: one value for every column, or one value per column.
    static func perColumn(_ values: [Float], columns: Int, name: String) throws -> [Float] {
        if values.count == columns { return values }
        if values.count == 1 { return Array(repeating: values[0], count: columns) }
        throw OpError("\(name) has \(values.count) values for \(columns) columns (needs 1 or \(columns))")
    }

    /// Class labels: strings, or integers (written as their decimal text where a name is needed).
    enum Labels: Equatable, Sendable {
        case strings([String])
        case integers([Int64])

        init?(_ attributes: Attributes, strings: String, integers: String) throws {
            if let names = try attributes.strings(strings), !names.isEmpty {
                self = .strings(names)
            } else if let numbers = try attributes.ints(integers), !numbers.isEmpty {
                self = .integers(numbers.map { Int64($0) })
            } else {
                return nil
            }
        }

        var count: Int {
            switch self {
            case .strings(let s): return s.count
            case .integers(let i): return i.count
            }
        }

        var dtype: DType {
            switch self {
            case .strings: return .string
            case .integers: return .int64
            }
        }

        var names: [String] {
            switch self {
            case .strings(let s): return s
            case .integers(let i): return i.map(String.init)
            }
        }

        /// A label tensor from class positions.
        func tensor(_ positions: [Int], shape: [Int]) -> Tensor {
            switch self {
            case .strings(let s): return Tensor(shape: shape, strings: positions.map { s[$0] })
            case .integers(let i): return Tensor(shape: shape, int64s: positions.map { i[$0] })
            }
        }
    }
}

/// Scaler: (x − offset) · scale per column, as float.
struct ScalerOperator: Operator {
    let offset: [Float]
    let scale: [Float]

    init(_ context: OpContext) throws {
        offset = try context.attributes.floats("offset") ?? []
        scale = try context.attributes.floats("scale") ?? []
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let x = try inputs.type(0, oneOf: MLOps.featureTypes, role: "X")
        let columns = MLOps.rowsAndColumns(x.shape).columns
        _ = try MLOps.perColumn(offset.isEmpty ? [0] : offset, columns: columns, name: "offset")
        _ = try MLOps.perColumn(scale.isEmpty ? [1] : scale, columns: columns, name: "scale")
        return [ValueType(.float32, x.shape)]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let x = inputs[0]!
        let columns = MLOps.rowsAndColumns(x.shape).columns
        let offsets = try MLOps.perColumn(offset.isEmpty ? [0] : offset, columns: columns, name: "offset")
        let scales = try MLOps.perColumn(scale.isEmpty ? [1] : scale, columns: columns, name: "scale")
        let values = MLOps.floats(x)
        var y = [Float](repeating: 0, count: values.count)
        for i in values.indices { y[i] = (values[i] - offsets[i % columns]) * scales[i % columns] }
        return [Tensor(shape: x.shape, floats: y)]
    }
}

/// Normalizer: each row divided by its maximum, its L1 norm or its L2 norm.
struct NormalizerOperator: Operator {
    enum Norm: String { case max = "MAX", l1 = "L1", l2 = "L2" }
    let norm: Norm

    init(_ context: OpContext) throws {
        let text = try context.attributes.string("norm") ?? "MAX"
        guard let norm = Norm(rawValue: text) else { throw OpError.invalid("norm '\(text)' is not MAX, L1 or L2") }
        self.norm = norm
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let x = try inputs.type(0, oneOf: MLOps.featureTypes, role: "X")
        guard x.shape.count <= 2 else { throw OpError("X is \(describe(x.shape)); Normalizer takes [C] or [N, C]") }
        return [ValueType(.float32, x.shape)]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let x = inputs[0]!
        let (rows, columns) = MLOps.rowsAndColumns(x.shape)
        var y = MLOps.floats(x)
        for row in 0..<rows {
            let start = row * columns
            let row = start..<(start + columns)
            switch norm {
            case .max:
                // A NaN is never the maximum, as in onnxruntime.
                var largest = -Float.greatestFiniteMagnitude
                for i in row where y[i] > largest { largest = y[i] }
                guard largest != 0 else { continue }
                for i in row { y[i] /= largest }
            case .l1:
                let sum = y[row].reduce(0) { $0 + abs($1) }
                guard sum != 0 else { continue }
                for i in row { y[i] /= sum }
            case .l2:
                let sum = y[row].reduce(0) { $0 + $1 * $1 }
                guard sum != 0 else { continue }
                for i in row { y[i] = (y[i] < 0 ? -1 : 1) * (y[i] * y[i] / sum).squareRoot() }
            }
        }
        return [Tensor(shape: x.shape, floats: y)]
    }
}

/// Binarizer: 1 where x > threshold, else 0, in x's type.
struct BinarizerOperator: Operator {
    let threshold: Double

    init(_ context: OpContext) throws {
        threshold = Double(try context.attributes.float("threshold", default: 0))
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        [try inputs.type(0, oneOf: MLOps.featureTypes, role: "X")]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let x = inputs[0]!
        let values = x.doubles
        if let nan = values.firstIndex(where: \.isNaN) { throw OpError("element \(nan) of X is NaN, which is neither above nor below the threshold") }
        return [Tensor(dtype: x.dtype, shape: x.shape, doubles: values.map { $0 > threshold ? 1 : 0 })]
    }
}

/// Imputer: a value that stands for "missing" (NaN, or `replaced_value_*`) becomes the
/// column's imputed value.
struct ImputerOperator: Operator {
    let imputedFloats: [Float]
    let replacedFloat: Float
    let imputedIntegers: [Int64]
    let replacedInteger: Int64

    init(_ context: OpContext) throws {
        let a = context.attributes
        imputedFloats = try a.floats("imputed_value_floats") ?? []
        replacedFloat = try a.float("replaced_value_float", default: 0)
        imputedIntegers = (try a.ints("imputed_value_int64s") ?? []).map { Int64($0) }
        replacedInteger = Int64(try a.int("replaced_value_int64", default: 0))
        guard !imputedFloats.isEmpty || !imputedIntegers.isEmpty else {
            throw OpError.invalid("needs imputed_value_floats or imputed_value_int64s")
        }
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let x = try inputs.type(0, oneOf: MLOps.featureTypes, role: "X")
        if x.dtype.isFloatingPoint {
            guard !imputedFloats.isEmpty else { throw OpError("X is \(x.dtype) but only imputed_value_int64s is given") }
            return [ValueType(.float32, x.shape)]
        }
        guard !imputedIntegers.isEmpty else { throw OpError("X is \(x.dtype) but only imputed_value_floats is given") }
        return [ValueType(.int64, x.shape)]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let x = inputs[0]!
        let columns = MLOps.rowsAndColumns(x.shape).columns
        if x.dtype.isFloatingPoint {
            // As onnxruntime: one value per column, else the first for every column.
            let imputed = imputedFloats.count == columns ? imputedFloats : Array(repeating: imputedFloats[0], count: columns)
            var y = MLOps.floats(x)
            for i in y.indices where replacedFloat.isNaN ? y[i].isNaN : y[i] == replacedFloat { y[i] = imputed[i % columns] }
            return [Tensor(shape: x.shape, floats: y)]
        }
        var y = x.int64Values
        for i in y.indices where y[i] == replacedInteger {
            y[i] = imputedIntegers.count == columns ? imputedIntegers[i % columns] : imputedIntegers[0]
        }
        return [Tensor(shape: x.shape, int64s: y)]
    }
}

/// LabelEncoder: maps each element through a key → value table (strings, integers or floats),
/// with a default for keys it lacks. Opset 1 maps strings to their position in `classes_strings`
/// and back; opset 2 names keys and values; opset 4 may give them as tensors.
struct LabelEncoderOperator: Operator {
    enum Key: Hashable {
        case string(String)
        case integer(Int64)
        /// Bit pattern of the key as a Double; every NaN is one key.
        case number(UInt64)

        init(number: Double) { self = .number(number.isNaN ? Double.nan.bitPattern : (number == 0 ? 0 : number.bitPattern)) }
    }

    let keyType: DType
    let valueType: DType
    let table: [Key: Int]
    let values: Tensor
    let defaultValue: Tensor

    init(_ context: OpContext) throws {
        let a = context.attributes
        func decode(_ name: String) throws -> Tensor? {
            try a.tensor(name).map { try TensorDecoder.decode($0, name: name, baseDirectory: nil) }
        }
        let keys: Tensor
        let values: Tensor
        if context.opset < 2 {
            // Opset 1: strings map to their position in `classes_strings`, integers back.
            let classes = try a.strings("classes_strings") ?? []
            keyType = .string
            valueType = .int64
            self.values = Tensor(shape: [classes.count], int64s: classes.indices.map { Int64($0) })
            defaultValue = Tensor(shape: [], int64s: [Int64(try a.int("default_int64", default: -1))])
            table = Dictionary(classes.enumerated().map { (Key.string($1), $0) }, uniquingKeysWith: { _, last in last })
            classNames = classes
            defaultName = try a.string("default_string") ?? "_Unused"
            nanMatches = false
            return
        }
        classNames = nil
        defaultName = ""
        if let tensor = try decode("keys_tensor") {
            keys = tensor
        } else if let strings = try a.strings("keys_strings"), !strings.isEmpty {
            keys = Tensor(shape: [strings.count], strings: strings)
        } else if let integers = try a.ints("keys_int64s"), !integers.isEmpty {
            keys = Tensor(shape: [integers.count], int64s: integers.map { Int64($0) })
        } else if let floats = try a.floats("keys_floats"), !floats.isEmpty {
            keys = Tensor(shape: [floats.count], floats: floats)
        } else {
            throw OpError.invalid("needs keys: keys_strings, keys_int64s, keys_floats or keys_tensor")
        }
        if let tensor = try decode("values_tensor") {
            values = tensor
        } else if let strings = try a.strings("values_strings"), !strings.isEmpty {
            values = Tensor(shape: [strings.count], strings: strings)
        } else if let integers = try a.ints("values_int64s"), !integers.isEmpty {
            values = Tensor(shape: [integers.count], int64s: integers.map { Int64($0) })
        } else if let floats = try a.floats("values_floats"), !floats.isEmpty {
            values = Tensor(shape: [floats.count], floats: floats)
        } else {
            throw OpError.invalid("needs values: values_strings, values_int64s, values_floats or values_tensor")
        }
        guard keys.elementCount == values.elementCount else {
            throw OpError.invalid("has \(keys.elementCount) keys but \(values.elementCount) values")
        }
        keyType = keys.dtype
        valueType = values.dtype
        self.values = values
        if let tensor = try decode("default_tensor") {
            guard tensor.dtype == values.dtype, tensor.elementCount == 1 else {
                throw OpError.invalid("default_tensor must be one \(values.dtype) value, got \(tensor.dtype)\(describe(tensor.shape))")
            }
            defaultValue = tensor
        } else {
            switch values.dtype {
            case .string: defaultValue = Tensor(shape: [], strings: [try a.string("default_string") ?? "_Unused"])
            case .int64: defaultValue = Tensor(shape: [], int64s: [Int64(try a.int("default_int64", default: -1))])
            case .float32: defaultValue = Tensor(shape: [], floats: [try a.float("default_float", default: -0.0)])
            default: defaultValue = Tensor(dtype: values.dtype, shape: [], doubles: [0])
            }
        }
        let nanMatches = context.opset >= 4
        self.nanMatches = nanMatches
        table = Dictionary(Self.keys(of: keys).enumerated().compactMap { nanMatches || $1 != Key(number: .nan) ? ($1, $0) : nil },
                           uniquingKeysWith: { first, _ in first })
    }

    /// From opset 4 a NaN input finds a NaN key; before, NaN matches nothing.
    let nanMatches: Bool

    /// Opset 1 also maps integers to the names at their positions, or to `defaultName`.
    let classNames: [String]?
    let defaultName: String

    static func keys(of tensor: Tensor) -> [Key] {
        switch tensor.dtype {
        case .string: return tensor.strings.map { .string($0) }
        case .float32, .float64, .float16, .bfloat16: return tensor.doubles.map { Key(number: $0) }
        default: return tensor.int64Values.map { .integer($0) }
        }
    }

    var takesStrings: Bool { true }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let x = try inputs.type(0)
        if classNames != nil, x.dtype == .int64 || x.dtype == .int32 { return [ValueType(.string, x.shape)] }
        guard x.dtype == keyType || (keyType.isFloatingPoint && x.dtype.isFloatingPoint) || (keyType == .int64 && x.dtype == .int32) else {
            throw OpError("X is \(x.dtype) but the keys are \(keyType)")
        }
        return [ValueType(valueType, x.shape)]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let x = inputs[0]!
        if let classNames, x.dtype == .int64 || x.dtype == .int32 {
            return [Tensor(shape: x.shape, strings: x.int64Values.map { $0 >= 0 && $0 < Int64(classNames.count) ? classNames[Int($0)] : defaultName })]
        }
        let positions = Self.keys(of: x).map { table[$0] }
        switch valueType {
        case .string:
            let all = values.strings, fallback = defaultValue.strings[0]
            return [Tensor(shape: x.shape, strings: positions.map { $0.map { all[$0] } ?? fallback })]
        default:
            let all = values.doubles, fallback = defaultValue.doubles[0]
            return [Tensor(dtype: valueType, shape: x.shape, doubles: positions.map { $0.map { all[$0] } ?? fallback })]
        }
    }
}

/// OneHotEncoder: each element becomes a row of zeros with a one at its category.
struct OneHotEncoderOperator: Operator {
    let categories: [LabelEncoderOperator.Key: Int]
    let count: Int
    let stringCategories: Bool
    /// false: an element outside the categories is an error, as `zeros: 0` asks.
    let unknownIsZeros: Bool

    init(_ context: OpContext) throws {
        let a = context.attributes
        if let strings = try a.strings("cats_strings"), !strings.isEmpty {
            // A repeated category answers to its last position, as in onnxruntime.
            categories = Dictionary(strings.enumerated().map { (.string($1), $0) }, uniquingKeysWith: { _, last in last })
            count = strings.count
            stringCategories = true
        } else if let integers = try a.ints("cats_int64s"), !integers.isEmpty {
            categories = Dictionary(integers.enumerated().map { (.integer(Int64($1)), $0) }, uniquingKeysWith: { _, last in last })
            count = integers.count
            stringCategories = false
        } else {
            throw OpError.invalid("needs cats_strings or cats_int64s")
        }
        unknownIsZeros = try a.int("zeros", default: 1) != 0
    }

    var takesStrings: Bool { true }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let x = try inputs.type(0, oneOf: MLOps.featureTypes + [.string], role: "X")
        guard (x.dtype == .string) == stringCategories else {
            throw OpError("X is \(x.dtype) but the categories are \(stringCategories ? "strings" : "integers")")
        }
        return [ValueType(.float32, x.shape + [count])]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let x = inputs[0]!
        let keys: [LabelEncoderOperator.Key] = x.dtype == .string ? x.strings.map { .string($0) } : x.int64Values.map { .integer($0) }
        var y = [Float](repeating: 0, count: keys.count * count)
        for (i, key) in keys.enumerated() {
            if let position = categories[key] {
                y[i * count + position] = 1
            } else if !unknownIsZeros {
                throw OpError("element \(i) is not one of the \(count) categories, and zeros is 0")
            }
        }
        return [Tensor(shape: x.shape + [count], floats: y)]
    }
}

/// ArrayFeatureExtractor: the elements of X's last axis that Y's indices name.
struct ArrayFeatureExtractorOperator: DataMovementOperator {
    var takesStrings: Bool { true }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let x = try inputs.type(0, oneOf: MLOps.featureTypes + [.string], role: "X")
        let y = try inputs.type(1, oneOf: [.int64], role: "Y")
        guard !x.shape.isEmpty else { throw OpError("X is a scalar; it needs an axis to take elements from") }
        let count = y.elementCount
        let shape = x.shape.count == 1 ? [1, count] : Array(x.shape.dropLast()) + [count]
        return [ValueType(x.dtype, shape)]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let x = inputs[0]!, indices = inputs[1]!.int64s
        let stride = x.shape.last ?? 1
        let outer = stride == 0 ? 0 : x.elementCount / stride
        for index in indices where index < 0 || index >= Int64(stride) {
            throw OpError("index \(index) is outside X's last axis of \(stride)")
        }
        var positions: [Int] = []
        positions.reserveCapacity(outer * indices.count)
        for row in 0..<outer { for index in indices { positions.append(row * stride + Int(index)) } }
        let shape = outputs[0].shape
        if x.dtype == .string {
            let all = x.strings
            return [Tensor(shape: shape, strings: positions.map { all[$0] })]
        }
        let all = x.doubles
        return [Tensor(dtype: x.dtype, shape: shape, doubles: positions.map { all[$0] })]
    }
}

/// FeatureVectorizer: the inputs' columns side by side, each cut or padded with zeros to its
/// `inputdimensions` width.
struct FeatureVectorizerOperator: Operator {
    let widths: [Int]

    init(_ context: OpContext) throws {
        widths = try context.attributes.ints("inputdimensions") ?? []
        guard widths.count == context.node.declaredInputs.count, widths.allSatisfy({ $0 >= 0 && $0 <= 1 << 24 }) else {
            throw OpError.invalid("inputdimensions \(widths) must give a width (0 to 2^24) for each of the \(context.node.declaredInputs.count) inputs")
        }
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        var rows: Int?
        for i in 0..<inputs.count {
            let x = try inputs.type(i, oneOf: MLOps.featureTypes, role: "input \(i)")
            let r = MLOps.rowsAndColumns(x.shape).rows
            if let rows, rows != r { throw OpError("input \(i) has \(r) rows, input 0 has \(rows)") }
            rows = r
        }
        return [ValueType(.float32, [rows ?? 1, widths.reduce(0, +)])]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let rows = outputs[0].shape[0], total = outputs[0].shape[1]
        var y = [Float](repeating: 0, count: rows * total)
        var offset = 0
        for (x, width) in zip(inputs, widths) {
            guard let x else { continue }
            let columns = MLOps.rowsAndColumns(x.shape).columns
            let values = MLOps.floats(x)
            for row in 0..<rows {
                for column in 0..<min(columns, width) { y[row * total + offset + column] = values[row * columns + column] }
            }
            offset += width
        }
        return [Tensor(shape: [rows, total], floats: y)]
    }
}

/// ZipMap: in ONNX, one map of class label → probability per row. Sluice keeps the rows as
/// they are, a float [N, C] tensor whose columns are the labels in order (`labels`): the sink
/// prints them as the class scores they are, and names each class from the labels.
struct ZipMapOperator: DataMovementOperator {
    let labels: MLOps.Labels

    init(_ context: OpContext) throws {
        guard let labels = try MLOps.Labels(context.attributes, strings: "classlabels_strings", integers: "classlabels_int64s") else {
            throw OpError.invalid("needs classlabels_strings or classlabels_int64s")
        }
        self.labels = labels
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let x = try inputs.type(0, oneOf: [.float32], role: "X")
        guard x.shape.count == 1 || x.shape.count == 2, x.shape.last == labels.count else {
            throw OpError("X is \(describe(x.shape)); ZipMap with \(labels.count) labels takes [\(labels.count)] or [N, \(labels.count)]")
        }
        return [x]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] { [inputs[0]!] }
    var isView: Bool { true }
}
