import Foundation
import SluiceONNX
import SluiceTensor
import Testing

/// ONNX's own backend test cases (Debian package libonnx-testdata): the `node`,
/// `pytorch-converted`, `pytorch-operator` and `simple` folders. A case is named
/// `folder/test_name`.
enum BackendTestData {
    static let root = "/usr/share/libonnx-testdata/data"
    static let folders = ["node", "pytorch-converted", "pytorch-operator", "simple"]
    static var available: Bool { FileManager.default.fileExists(atPath: "\(root)/node") }

    enum Outcome: Equatable, CustomStringConvertible {
        case pass, loadError(String), runError(String), mismatch(String)

        var description: String {
            switch self {
            case .pass: return "pass"
            case .loadError(let m): return "load error: \(m)"
            case .runError(let m): return "run error: \(m)"
            case .mismatch(let m): return "mismatch: \(m)"
            }
        }
    }

    /// Every case of every folder, sorted.
    static func allCases() -> [String] {
        folders.flatMap { folder in
            ((try? FileManager.default.contentsOfDirectory(atPath: "\(root)/\(folder)")) ?? [])
                .filter { FileManager.default.fileExists(atPath: "\(root)/\(folder)/\($0)/model.onnx") }
                .map { "\(folder)/\($0)" }
        }.sorted()
    }

    /// Loads `case`, feeds every test_data_set_*, and compares with the expected outputs:
    /// floating point within |a − b| ≤ 1e-4 · max(1, |b|) (NaN matches NaN), everything else
    /// exactly.
    static func run(_ name: String) -> Outcome {
        let directory = "\(root)/\(name)"
        let model: ONNXModel
        do { model = try ONNXModel.load(path: "\(directory)/model.onnx") } catch { return .loadError("\(error)") }
        let sets = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [])
            .filter { $0.hasPrefix("test_data_set_") }.sorted()
        for set in sets {
            let folder = "\(directory)/\(set)"
            do {
                var inputs: [String: Tensor] = [:]
                for (i, info) in model.inputs.enumerated() {
                    let path = "\(folder)/input_\(i).pb"
                    guard FileManager.default.fileExists(atPath: path) else { break }
                    inputs[info.name] = asDeclared(try ONNXTensor.read(path: path).tensor, info.dtype)
                }
                let outputs = try model.run(inputs: inputs)
                for (i, info) in model.outputs.enumerated() {
                    let expected = asDeclared(try ONNXTensor.read(path: "\(folder)/output_\(i).pb").tensor, info.dtype)
                    guard let actual = outputs[info.name] else { return .mismatch("\(set): no output \(info.name)") }
                    if let problem = compare(actual, expected) { return .mismatch("\(set): \(info.name) \(problem)") }
                }
            } catch {
                return .runError("\(set): \(error)")
            }
        }
        return .pass
    }

    /// NumPy has no bfloat16, so this test data (ONNX 1.12) stores bfloat16 tensors as uint16
    /// holding the bits: read those as the bfloat16 the model declares.
    static func asDeclared(_ tensor: Tensor, _ dtype: DType) -> Tensor {
        guard tensor.dtype == .uint16, dtype == .bfloat16 else { return tensor }
        return Tensor(dtype: .bfloat16, shape: tensor.shape, storage: tensor.storage)
    }

    /// Why `actual` does not match `expected`, or nil when it does.
    static func compare(_ actual: Tensor, _ expected: Tensor) -> String? {
        guard actual.dtype == expected.dtype, actual.shape == expected.shape else {
            return "is \(actual) expected \(expected)"
        }
        func close(_ a: [Double], _ b: [Double]) -> String? {
            var worst = 0.0
            for (x, y) in zip(a, b) {
                if x.isNaN || y.isNaN {
                    if x.isNaN != y.isNaN { return "has \(x) where \(y) is expected" }
                    continue
                }
                if x == y { continue }
                worst = max(worst, abs(x - y) / max(1, abs(y)))
            }
            return worst <= 1e-4 ? nil : "max relative error \(worst)"
        }
        switch actual.dtype {
        case .float32:
            return close(actual.floats.map(Double.init), expected.floats.map(Double.init))
        case .float64:
            return close(actual.withUnsafeBufferPointer(as: Double.self) { Array($0) },
                         expected.withUnsafeBufferPointer(as: Double.self) { Array($0) })
        case .float16:
            func halves(_ t: Tensor) -> [Double] {
                t.withUnsafeBufferPointer(as: UInt16.self) { $0.map { Double(Float(Float16(bitPattern: $0))) } }
            }
            // Half precision has an 11-bit significand: compare at its resolution.
            let a = halves(actual), b = halves(expected)
            for (x, y) in zip(a, b) where !(x.isNaN && y.isNaN) && !(abs(x - y) <= 1e-3 * max(1, abs(y))) {
                return "has \(x) where \(y) is expected"
            }
            return nil
        default:
            if Data(bytes: actual.storage.bytes, count: actual.byteCount)
                != Data(bytes: expected.storage.bytes, count: expected.byteCount) {
                return "differs"
            }
            return nil
        }
    }
}

@Suite(.enabled(if: BackendTestData.available, "libonnx-testdata is not installed"))
struct ConformanceTests {
    @Test(arguments: ConformanceCases.mustPass)
    func passes(name: String) {
        let outcome = BackendTestData.run(name)
        #expect(outcome == .pass, "\(name): \(outcome)")
    }

    /// A skipped case that starts passing belongs in `mustPass` (`tools/conformance.sh --promote`).
    @Test(arguments: ConformanceCases.skipped.keys.sorted())
    func skippedCasesStillFail(name: String) {
        #expect(BackendTestData.run(name) != .pass, "\(name) passes now: run tools/conformance.sh --promote")
    }

    /// Every case of the four folders is accounted for: it must pass, or it is skipped with a reason.
    @Test func everyCaseIsListed() throws {
        let all = BackendTestData.allCases()
        #expect(all.count > 1000)
        let mustPass = Set(ConformanceCases.mustPass)
        #expect(mustPass.count == ConformanceCases.mustPass.count, "mustPass lists a case twice")
        for name in all {
            #expect(mustPass.contains(name) || ConformanceCases.skipped[name] != nil,
                    "\(name) is in neither list: run tools/conformance.sh --promote")
            #expect(!(mustPass.contains(name) && ConformanceCases.skipped[name] != nil), "\(name) is in both lists")
        }
        for (name, reason) in ConformanceCases.skipped { #expect(!reason.isEmpty, "\(name) is skipped without a reason") }
    }
}

/// `tools/conformance.sh` runs this: every case of every folder, one line per case appended
/// to the file named by SLUICE_CONFORMANCE_REPORT (`name<TAB>outcome<TAB>detail`). A line
/// `name<TAB>start` goes out before each case, so that when a case crashes the process, the
/// next sweep (the script reruns it) records that case as a crash and resumes after it.
@Suite(.enabled(if: BackendTestData.available && ProcessInfo.processInfo.environment["SLUICE_CONFORMANCE_REPORT"] != nil))
struct ConformanceSweep {
    @Test func sweep() throws {
        let environment = ProcessInfo.processInfo.environment
        let path = environment["SLUICE_CONFORMANCE_REPORT"]!
        if !FileManager.default.fileExists(atPath: path) { FileManager.default.createFile(atPath: path, contents: nil) }
        let previous = String(decoding: FileManager.default.contents(atPath: path) ?? Data(), as: UTF8.self)
            .split(separator: "\n").map { $0.split(separator: "\t", omittingEmptySubsequences: false).map(String.init) }
        var done = Set(previous.filter { $0.count > 1 && $0[1] != "start" }.map { $0[0] })
        let handle = try #require(FileHandle(forWritingAtPath: path))
        defer { try? handle.close() }
        handle.seekToEndOfFile()
        func write(_ line: String) {
            handle.write(Data((line.replacingOccurrences(of: "\n", with: " ") + "\n").utf8))
            try? handle.synchronize()
        }
        if let last = previous.last, last.count == 2, last[1] == "start", !done.contains(last[0]) {
            write("\(last[0])\tcrash\tthe process crashed running this case")
            done.insert(last[0])
        }
        for name in BackendTestData.allCases() where !done.contains(name) {
            write("\(name)\tstart")
            let outcome = BackendTestData.run(name)
            switch outcome {
            case .pass: write("\(name)\tpass\t")
            case .loadError(let m): write("\(name)\tload\t\(m)")
            case .runError(let m): write("\(name)\trun\t\(m)")
            case .mismatch(let m): write("\(name)\tmismatch\t\(m)")
            }
        }
    }
}

/// The cases the executor must pass, and those it skips with their reasons: the checked-in list
/// `tools/conformance.sh --promote` writes (Tests/Fixtures/conformance-cases.json).
enum ConformanceCases {
    private struct List: Decodable {
        var mustPass: [String]
        var skipped: [String: String]
    }

    private static let list: List = {
        let path = Paths.fixture("conformance-cases.json")
        do {
            return try JSONDecoder().decode(List.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
        } catch {
            fatalError("cannot read the conformance case list \(path): \(error)")
        }
    }()

    static var mustPass: [String] { list.mustPass }
    static var skipped: [String: String] { list.skipped }
}
