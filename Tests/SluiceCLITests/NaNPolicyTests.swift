import Foundation
import SluiceTensor
import Testing

extension MultiProcess {
    /// Windows holding NaN, ±infinity, or values so large the model overflows: never a class
    /// picked from meaningless scores, and a rejected window is a counted loss, never "none lost".
    @Suite struct NaNPolicyTests {
        /// The quickstart's 16 test windows with row 2 holding a NaN, row 5 +infinity, row 9
        /// −infinity and row 12 3e38 everywhere (finite, but the network overflows on it).
        static func poisonedWindows() throws -> String {
            var windows = try NPY.read(path: fixture("quickstart_input.npy")).floats
            let row = 6 * 100
            windows[2 * row + 17] = .nan
            windows[5 * row + 300] = .infinity
            windows[9 * row] = -.infinity
            for k in (12 * row)..<(13 * row) { windows[k] = 3e38 }
            let path = temporaryPath("poisoned.npy")
            try NPY.write(Tensor(shape: [16, 6, 100], floats: windows), path: path)
            return path
        }

        static func pipeline(input: String, policy: String?) throws -> String {
            try writePipeline("""
            model:
              path: {root}/pipelines/models/basicmotions-cnn.onnx
            source:
              type: tensors
              path: \(input)
            \(policy.map { "  nan_policy: \($0)" } ?? "")
            batching:
              max_size: 4
            stages:
              count: 2
            sink:
              type: jsonl
              path: "-"
            """)
        }

        static func predictions(_ stdout: String) throws -> [[String: Any]] {
            try stdout.split(separator: "\n").map {
                try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
            }
        }

        @Test func rejectDropsAndCountsWindowsWithNonFiniteValues() throws {
            let input = try Self.poisonedWindows()
            let result = try sluice("run", try Self.pipeline(input: input, policy: nil))
            #expect(result.status == 0, "\(result.stderr)")
            let lines = try Self.predictions(result.stdout)
            // Rows 2, 5 and 9 hold non-finite values and are dropped at the source; row 12 is
            // finite and goes through, but its scores overflow, so it names no class.
            #expect(lines.count == 13, "\(result.stdout)")
            let named = lines.filter { $0["class"] != nil }
            #expect(named.count == 12, "\(result.stdout)")
            #expect(result.stderr.contains("non-finite value"), "\(result.stderr)")
            #expect(!result.stderr.contains("none lost"), "\(result.stderr)")
        }

        @Test func passKeepsTheWindowsButNamesNoClassFromNonFiniteScores() throws {
            let input = try Self.poisonedWindows()
            let result = try sluice("run", try Self.pipeline(input: input, policy: "pass"))
            #expect(result.status == 0, "\(result.stderr)")
            let lines = try Self.predictions(result.stdout)
            #expect(lines.count == 16, "\(result.stdout)")
            for (row, line) in lines.enumerated() {
                let scores = try #require(line["scores"] as? [Any])
                let finite = scores.allSatisfy { $0 is NSNumber }
                // JSON has no NaN: a score that is not finite is written as null, and no class is named.
                #expect((line["class"] == nil) == !finite, "row \(row): \(line)")
                if [2, 5, 9, 12].contains(row) { #expect(!finite, "row \(row): \(line)") }
            }
        }

        @Test func anUnknownPolicyIsAConfigErrorWithItsLine() throws {
            let file = try Self.pipeline(input: fixture("quickstart_input.npy"), policy: "drop")
            let result = try sluice("validate", file)
            #expect(result.status == 2)
            #expect(result.stderr.contains("\(file):6: source.nan_policy: must be one of: reject, pass, not 'drop'"), "\(result.stderr)")
        }
    }
}
