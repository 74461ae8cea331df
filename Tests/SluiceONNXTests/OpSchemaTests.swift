import Foundation
@testable import SluiceONNX
import SluiceTensor
import Testing

/// What each op's schema declares once for all of its nodes: how many inputs and outputs a
/// node may have (checked by the registry before the op is configured), and whether the op
/// counts FLOPs.
@Suite struct OpSchemaTests {
    static func node(_ op: String, inputs: [String], outputs: [String]) -> Node {
        Node(index: 0, name: "n", opType: op, domain: "", inputs: inputs, outputs: outputs, attributes: Attributes([]))
    }

    static func arityError(_ op: String, opset: Int, inputs: [String], outputs: [String] = ["y"]) throws -> String? {
        let node = Self.node(op, inputs: inputs, outputs: outputs)
        let schema = try OpRegistry.schema(for: node, opset: opset).get()
        do {
            try schema.checkArity(OpContext(node: node, opset: opset))
            return nil
        } catch let error as OpError {
            return error.message
        }
    }

    @Test func inputCountsFollowTheOpset() throws {
        // Slice reads starts and ends from attributes before opset 10 and from inputs after.
        #expect(try Self.arityError("Slice", opset: 9, inputs: ["x"]) == nil)
        #expect(try Self.arityError("Slice", opset: 9, inputs: ["x", "s", "e"]) == "expects 1 input(s), has 3")
        #expect(try Self.arityError("Slice", opset: 10, inputs: ["x", "s", "e"]) == nil)
        #expect(try Self.arityError("Slice", opset: 13, inputs: ["x"]) == "expects 3 to 5 inputs, has 1")
        // Trailing omitted inputs do not count.
        #expect(try Self.arityError("Gather", opset: 13, inputs: ["x", "i", ""]) == nil)
        #expect(try Self.arityError("Gather", opset: 13, inputs: ["x", "i", "j"]) == "expects 2 input(s), has 3")
    }

    @Test func outputCountsAreCheckedForEveryOp() throws {
        #expect(try Self.arityError("Relu", opset: 13, inputs: ["x"], outputs: ["y", "z"])
            == "asks for 2 outputs; Sluice implements 1")
        #expect(try Self.arityError("MaxPool", opset: 13, inputs: ["x"], outputs: ["y", "indices"]) == nil)
        #expect(try Self.arityError("AveragePool", opset: 13, inputs: ["x"], outputs: ["y", "indices"])
            == "asks for 2 outputs; Sluice implements 1")
    }

    /// Every path that configures an op checks its arity, loading included.
    @Test func aLoadedNodeWithTooManyInputsNamesItself() throws {
        var b = ModelBuilder()
        b.input("x", [nil, 4])
        b.node("Relu", ["x", "x"], ["y"], name: "act")
        b.output("y")
        let error = try #require(throws: ModelError.self) { try b.load() }
        #expect(error.description.contains("node 'act' (Relu): expects 1 input(s), has 2"), "\(error)")

        var constant = ModelBuilder()
        constant.input("x", [nil, 1])
        constant.node("Constant", ["x"], ["c"], name: "c", ["value_float": Float(1)])
        constant.node("Add", ["x", "c"], ["y"])
        constant.output("y")
        let constantError = try #require(throws: ModelError.self) { try constant.load() }
        #expect(constantError.description.contains("node 'c' (Constant): expects 0 input(s), has 1"), "\(constantError)")
    }

    @Test func dataMovementCountsNoFLOPs() throws {
        var b = ModelBuilder()
        b.input("x", [nil, 4, 3])
        b.node("Transpose", ["x"], ["t"], ["perm": [0, 2, 1]])
        b.node("Relu", ["t"], ["y"])
        b.output("y")
        let model = try b.load()
        #expect(model.nodes.map(\.flopsPerWindow) == [0, 12])
    }
}
