import Foundation
import SluiceONNX
import SluiceTensor
import Testing

/// If, Loop and Scan beyond ONNX's node tests: subgraphs reading the enclosing graph's values
/// (nested too), stage cuts around them, scan axes and directions, and errors from inside.
@Suite struct ControlFlowTests {
    /// x → Relu → r; If(cond) gives r·w (then) or r + Loop(3 times: acc += r) (else); y = that + x.
    static func branchingModel() -> ModelBuilder {
        var then = ModelBuilder()
        then.node("Mul", ["r", "w"], ["scaled"])
        then.output("scaled")

        var loopBody = ModelBuilder()
        loopBody.input("i", [], .int64)
        loopBody.input("going", [], .bool)
        loopBody.inputs.append(ModelBuilder.valueInfo("acc", .float32, nil))  // untyped shape, as exporters write it
        loopBody.node("Identity", ["going"], ["going_out"])
        loopBody.node("Add", ["acc", "r"], ["acc_out"])
        loopBody.output("going_out", [], .bool)
        loopBody.output("acc_out")
        var otherwise = ModelBuilder()
        otherwise.initializer("three", Tensor(shape: [], int64s: [3]))
        otherwise.node("Loop", ["three", "", "r"], ["summed"], name: "repeat", ["body": loopBody.graph("repeat_body")])
        otherwise.output("summed")

        var b = ModelBuilder()
        b.opset = 13
        b.input("x", [nil, 3])
        b.input("cond", [], .bool)
        b.initializer("w", Tensor(shape: [3], floats: [2, 3, 4]))
        b.node("Relu", ["x"], ["r"], name: "relu")
        b.node("If", ["cond"], ["picked"], name: "branch",
               ["then_branch": then.graph("then"), "else_branch": otherwise.graph("else")])
        b.node("Add", ["picked", "x"], ["y"], name: "add")
        b.output("y", [nil, 3])
        return b
    }

    @Test func subgraphsReadTheEnclosingGraphAndCutsGoAroundThem() throws {
        let model = try Self.branchingModel().load()
        // One node for the If, whatever its branches hold; what they read comes after its own input.
        #expect(model.nodes.map(\.opType) == ["Relu", "If", "Add"])
        #expect(model.nodes[1].inputs == ["cond", "r", "w"])
        // Its output's shape is known only once a branch has run.
        #expect(model.outputs[0].shape == [nil, nil])
        let x = Tensor(shape: [2, 3], floats: [1, -2, 3, -4, 5, 0.5])
        let relu = x.floats.map { max($0, 0) }
        for (condition, expected) in [(true, zip(relu, [2, 3, 4, 2, 3, 4] as [Float]).map(*)), (false, relu.map { 4 * $0 })] {
            let want = zip(expected, x.floats).map(+)
            let inputs = ["x": x, "cond": Tensor(shape: [], bools: [condition])]
            #expect(try model.run(inputs: inputs)["y"]?.floats == want, "cond \(condition)")
            // Split into stages at every boundary, the values between them passed along.
            for cut in 1..<3 {
                var values = inputs
                try Executor(model: model, nodes: 0..<cut).run(0..<cut, values: &values)
                try Executor(model: model, nodes: cut..<3).run(cut..<3, values: &values)
                #expect(values["y"]?.floats == want, "cond \(condition), cut before node \(cut)")
            }
        }
    }

    @Test func scanAxesAndDirections() throws {
        var body = ModelBuilder()
        body.input("total", [2])
        body.input("column", [2])
        body.node("Add", ["total", "column"], ["next"])
        body.node("Identity", ["next"], ["partial"])
        body.output("next", [2])
        body.output("partial", [2])
        var b = ModelBuilder()
        b.opset = 16
        b.input("start", [2])
        b.input("m", [2, 3])
        b.node("Scan", ["start", "m"], ["total", "partials"], name: "sum",
               ["body": body.graph("sum_body"), "num_scan_inputs": 1, "scan_input_axes": [1], "scan_input_directions": [1],
                "scan_output_axes": [-1]])
        b.output("total")
        b.output("partials")
        let out = try b.load().run(inputs: ["start": Tensor(shape: [2], floats: [0, 100]),
                                            "m": Tensor(shape: [2, 3], floats: [1, 2, 3, 4, 5, 6])])
        #expect(out["total"]?.floats == [6, 115])
        // Columns taken last to first; the partial sums stacked along the last axis.
        #expect(out["partials"]?.shape == [2, 3] && out["partials"]?.floats == [3, 5, 6, 106, 111, 115])
    }

    @Test func errorsInsideASubgraphNameBothNodes() throws {
        var then = ModelBuilder()
        then.node("MatMul", ["x", "x"], ["bad"], name: "square")
        then.output("bad")
        var otherwise = ModelBuilder()
        otherwise.node("Identity", ["x"], ["same"])
        otherwise.output("same")
        var b = ModelBuilder()
        b.input("x", [2, 3])
        b.input("cond", [], .bool)
        b.node("If", ["cond"], ["y"], name: "branch", ["then_branch": then.graph("then"), "else_branch": otherwise.graph("else")])
        b.output("y", [2, 3])
        let model = try b.load()
        let x = Tensor(shape: [2, 3], floats: [1, 2, 3, 4, 5, 6])
        let error = try #require(throws: ModelError.self) { try model.run(inputs: ["x": x, "cond": Tensor(shape: [], bools: [true])]) }
        #expect(error.message.contains("node 'branch' (If): in its subgraph, node 'square' (MatMul):"), "\(error)")
        #expect(try model.run(inputs: ["x": x, "cond": Tensor(shape: [], bools: [false])])["y"]?.floats == x.floats)

        var unsupported = ModelBuilder()
        unsupported.node("DynamicQuantizeLinear", ["x"], ["q", "s", "z"], name: "quantize")
        unsupported.output("q")
        b.nodes[0].attribute = [ModelBuilder.attribute("then_branch", unsupported.graph("then")),
                                ModelBuilder.attribute("else_branch", otherwise.graph("else"))]
        let loadError = try #require(throws: ModelError.self) { try b.load() }
        #expect(loadError.message.contains("node 'branch' (If): in its subgraph, node 'quantize' (DynamicQuantizeLinear): unsupported op"),
                "\(loadError)")
    }

    /// A Loop may carry nothing and only collect scan outputs.
    @Test func loopWithOnlyScanOutputs() throws {
        var body = ModelBuilder()
        body.input("i", [], .int64)
        body.input("going", [], .bool)
        body.node("Identity", ["going"], ["going_out"])
        body.node("Cast", ["i"], ["step"], ["to": 1])
        body.output("going_out", [], .bool)
        body.output("step", [])
        var b = ModelBuilder()
        b.opset = 13
        b.input("n", [], .int64)
        b.node("Loop", ["n", ""], ["steps"], name: "count", ["body": body.graph("count_body")])
        b.output("steps", nil)
        let y = try b.load().run(inputs: ["n": Tensor(shape: [], int64s: [4])])["steps"]
        #expect(y?.floats == [0, 1, 2, 3])
    }
}
