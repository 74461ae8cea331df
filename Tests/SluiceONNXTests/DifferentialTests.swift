import Foundation
import SluiceONNX
import SluiceTensor
import SluiceTestSupport
import Testing

/// Random graphs of the supported ops (tools/difftest.py) against onnxruntime's outputs for them:
/// each run whole, node by node, and split over two or three executors at random cut points, at
/// every kernel level this CPU runs, at batch sizes 1, 3 and 8 (and 1 again, on the plan cached
/// for it). A conformance list covers the cases someone thought of; buffer aliasing and fusion
/// bugs live between them.
@Suite struct DifferentialTests {
    static let committed = DifferentialCase.models(in: Paths.fixture("differential"))

    /// The committed fixed-seed cases and regressions.
    @Test func committedCases() throws {
        #expect(Self.committed.count >= 200, "Tests/Fixtures/differential holds \(Self.committed.count) cases")
        let failures = try Self.check(Self.committed)
        #expect(failures.isEmpty, "\(failures.count) mismatches:\n\(failures.prefix(40).joined(separator: "\n"))")
    }

    /// Cases generated elsewhere (`tools/difftest.py generate --out DIR`), when
    /// SLUICE_DIFFTEST_DIR=DIR is set: the long run and the shrinker's oracle.
    @Test func generatedCases() throws {
        guard let directory = ProcessInfo.processInfo.environment["SLUICE_DIFFTEST_DIR"] else { return }
        let paths = DifferentialCase.models(in: directory)
        let start = Date()
        let failures = try Self.check(paths)
        print("difftest: \(paths.count) graphs, \(Set(failures.map { $0.split(separator: " ")[2] }).count) mismatching, "
              + "\(failures.count) failed checks, \(String(format: "%.1f", Date().timeIntervalSince(start))) s")
        #expect(!paths.isEmpty, "no cases in \(directory)")
        #expect(failures.isEmpty, "\(failures.count) mismatches:\n\(failures.prefix(40).joined(separator: "\n"))")
    }

    /// The failed checks of all cases, one line each ("difftest FAIL CASE MODE …").
    static func check(_ paths: [String]) throws -> [String] {
        var failures: [String] = []
        for path in paths {
            let c = try DifferentialCase(model: path)
            let lines = check(c)
            for line in lines { print(line) }
            failures += lines
        }
        return failures
    }

    /// Runs one case every way at every level and compares with onnxruntime.
    static func check(_ c: DifferentialCase) -> [String] {
        var failures: [String] = []
        let model: ONNXModel
        do { model = try ONNXModel.load(path: c.model) } catch {
            return ["difftest FAIL \(c.name) load: \(error)"]
        }
        let count = model.nodes.count
        var rng = SeededGenerator(seed: stableHash(c.name))
        // Two or three pieces at random cut points (what pipeline stages hold), plus a cut inside
        // every fusion (a stage boundary between fused nodes).
        var cutSets: [[Int]] = []
        if count > 1 {
            for _ in 0..<2 {
                let pieces = min(count, Int.random(in: 2...3, using: &rng))
                cutSets.append(Array(Array(1..<count).shuffled(using: &rng).prefix(pieces - 1)).sorted())
            }
            let inside = model.fusionGroups.map { $0.lowerBound + 1 }.filter { $0 < count }
            if !inside.isEmpty { cutSets.append(inside) }
        }
        let batches = c.runs.keys.sorted() + (c.runs.keys.min().map { [$0] } ?? [])
        for level in InstructionLevel.runnable {
            InstructionLevel.capped(at: level) {
                func compare(_ mode: String, _ batch: Int, _ values: [String: Tensor]) {
                    guard let expected = c.runs[batch]?.outputs else { return }
                    for (name, want) in expected.sorted(by: { $0.key < $1.key }) {
                        if let why = mismatch(values[name], want) {
                            failures.append("difftest FAIL \(c.name) \(mode) [\(level)] batch \(batch) output \(name): \(why)")
                        }
                    }
                }
                // Whole: one executor for every batch size (a plan per size, the first reused at the end).
                do {
                    let whole = try Executor(model: model, nodes: 0..<count)
                    for batch in batches {
                        guard let run = c.runs[batch] else { continue }
                        var values = run.inputs
                        do {
                            try whole.run(0..<count, values: &values)
                            compare("whole", batch, values)
                        } catch {
                            failures.append("difftest FAIL \(c.name) whole [\(level)] batch \(batch): \(error)")
                        }
                    }
                } catch {
                    failures.append("difftest FAIL \(c.name) whole [\(level)] load: \(error)")
                }
                // Node by node, and split into pieces: one executor per piece, values passed along.
                let pieceSets = [Array(1..<max(count, 1))] + cutSets
                for (index, cuts) in pieceSets.enumerated() {
                    let mode = index == 0 ? "node-by-node" : "split\(cuts)"
                    let bounds = [0] + cuts + [count]
                    do {
                        let executors = try zip(bounds, bounds.dropFirst()).map { try Executor(model: model, nodes: $0..<$1) }
                        for batch in c.runs.keys.sorted() {
                            guard let run = c.runs[batch] else { continue }
                            var values = run.inputs
                            do {
                                for executor in executors { try executor.run(executor.nodes, values: &values) }
                                compare(mode, batch, values)
                            } catch {
                                failures.append("difftest FAIL \(c.name) \(mode) [\(level)] batch \(batch): \(error)")
                            }
                        }
                    } catch {
                        failures.append("difftest FAIL \(c.name) \(mode) [\(level)] load: \(error)")
                    }
                }
            }
        }
        return failures
    }

    /// FNV-1a of the name: the same random cuts for a case in every process.
    static func stableHash(_ text: String) -> Int {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 { h = (h ^ UInt64(byte)) &* 0x100_0000_01b3 }
        return Int(truncatingIfNeeded: h >> 1)
    }
}

/// Why `got` does not match onnxruntime's `want`, or nil: float32 within 2e-4 · max(1, |want|)
/// (NaN where onnxruntime has NaN), every other dtype bit for bit.
func mismatch(_ got: Tensor?, _ want: Tensor) -> String? {
    guard let got else { return "not computed" }
    guard got.dtype == want.dtype, got.shape == want.shape else {
        return "\(got.dtype)\(got.shape), onnxruntime \(want.dtype)\(want.shape)"
    }
    if want.dtype == .float32 {
        var worst: Float = 0, at = 0
        for (i, (x, y)) in zip(got.floats, want.floats).enumerated() {
            if x.isNaN != y.isNaN { return "element \(i): \(x), onnxruntime \(y)" }
            if x.isNaN || x == y { continue }
            let e = abs(x - y) / max(1, abs(y))
            if !(e <= worst) { worst = e; at = i }
        }
        return worst <= 2e-4 ? nil : "max relative error \(worst) at element \(at) (\(got.floats[at]), onnxruntime \(want.floats[at]))"
    }
    let a = Data(bytes: got.storage.bytes, count: got.byteCount), b = Data(bytes: want.storage.bytes, count: want.byteCount)
    return a == b ? nil : "\(want.dtype) values differ"
}

/// The level cap the differential test runs under holds on the calling thread only.
@Test func kernelLevelCapIsPerThread() {
    final class Seen: @unchecked Sendable { var level: InstructionLevel? }
    let process = InstructionLevel.inUse, seen = Seen(), done = DispatchSemaphore(value: 0)
    InstructionLevel.capped(at: .baseline) {
        #expect(InstructionLevel.inUse == .baseline)
        #expect(!FastMath.vectorized)
        Thread { seen.level = InstructionLevel.inUse; done.signal() }.start()
        done.wait()
    }
    #expect(seen.level == process)
    #expect(InstructionLevel.inUse == process)
}
