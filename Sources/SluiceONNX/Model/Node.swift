import SluiceTensor

/// A node as the loader keeps it: names resolved, attributes by name.
///
/// A node holding subgraphs (If, Loop, Scan) also reads, through them, values of the graph
/// around it. Those come last in `inputs`, after the ones the file lists, so that sorting,
/// liveness and stage cuts see every value the node needs.
struct Node: Sendable {
    let index: Int
    let name: String
    let opType: String
    let domain: String
    let inputs: [String]
    let outputs: [String]
    let attributes: Attributes
    /// How many of `inputs`, at the end, its subgraphs read from the enclosing graph.
    var implicitInputCount = 0

    /// The inputs the file lists for the node.
    var declaredInputs: ArraySlice<String> { inputs.dropLast(implicitInputCount) }

    /// The op as written in messages: `TopK`, or `com.example.Thing` outside the default domain.
    var qualifiedOp: String { domain.isEmpty || domain == "ai.onnx" ? opType : "\(domain).\(opType)" }
}

/// A node's attributes, read with the type ONNX specifies; a wrong type is an error, an
/// absent attribute gives the default.
struct Attributes: Sendable {
    private let values: [String: Onnx_AttributeProto]

    init(_ attributes: [Onnx_AttributeProto]) {
        var values: [String: Onnx_AttributeProto] = [:]
        for attribute in attributes { values[attribute.name] = attribute }
        self.values = values
    }

    var names: [String] { values.keys.sorted() }

    func has(_ name: String) -> Bool { values[name] != nil }

    /// The declared type, or for old files that leave it unset, the one implied by the fields set.
    private func type(of a: Onnx_AttributeProto) -> Onnx_AttributeProto.AttributeType {
        if a.type != .undefined { return a.type }
        if a.hasF { return .float }
        if a.hasI { return .int }
        if a.hasS { return .string }
        if a.hasT { return .tensor }
        if a.hasG { return .graph }
        if !a.floats.isEmpty { return .floats }
        if !a.ints.isEmpty { return .ints }
        if !a.strings.isEmpty { return .strings }
        return .undefined
    }

    private func attribute(_ name: String, _ expected: Onnx_AttributeProto.AttributeType) throws -> Onnx_AttributeProto? {
        guard let a = values[name] else { return nil }
        let actual = type(of: a)
        // An empty list carries no type information in old files.
        if actual == .undefined && (expected == .ints || expected == .floats || expected == .strings) { return a }
        guard actual == expected else {
            throw OpError.invalid("attribute '\(name)' must be \(expected), but it is \(actual)")
        }
        return a
    }

    func int(_ name: String) throws -> Int? {
        try attribute(name, .int).map { Int($0.i) }
    }

    func int(_ name: String, default value: Int) throws -> Int { try int(name) ?? value }

    func ints(_ name: String) throws -> [Int]? {
        try attribute(name, .ints).map { $0.ints.map { Int($0) } }
    }

    func float(_ name: String) throws -> Float? {
        try attribute(name, .float).map { $0.f }
    }

    func float(_ name: String, default value: Float) throws -> Float { try float(name) ?? value }

    func floats(_ name: String) throws -> [Float]? {
        try attribute(name, .floats).map { $0.floats }
    }

    func string(_ name: String) throws -> String? {
        try attribute(name, .string).map { String(decoding: $0.s, as: UTF8.self) }
    }

    func strings(_ name: String) throws -> [String]? {
        try attribute(name, .strings).map { $0.strings.map { String(decoding: $0, as: UTF8.self) } }
    }

    func tensor(_ name: String) throws -> Onnx_TensorProto? {
        try attribute(name, .tensor).map { $0.t }
    }

    func graph(_ name: String) throws -> Onnx_GraphProto? {
        try attribute(name, .graph).map { $0.g }
    }

    func isSet(_ name: String, of type: Onnx_AttributeProto.AttributeType) -> Bool {
        guard let a = values[name] else { return false }
        return self.type(of: a) == type
    }
}
