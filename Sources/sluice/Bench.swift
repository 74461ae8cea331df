import ArgumentParser
import Foundation
import SluiceONNX
import SluiceTensor

extension Sluice {
    struct Bench: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Measure the single-process executor on a model: windows/s and latency per batch size.",
            discussion: """
            Feeds random inputs shaped as the model declares them (the first symbolic dimension \
            is the batch), warms up, then runs repeatedly for the given time at each batch size, \
            and prints windows per second, p50 and p99 latency per run, and achieved GFLOP/s. \
            This is what one process gives before the model is cut into a pipeline.

            Example:
              sluice bench pipelines/models/basicmotions-cnn.onnx --batch 1,8,32 --seconds 0.5
            """)

        @Argument(help: "The model (.onnx).")
        var model: String

        @Option(help: "Batch sizes, comma-separated.")
        var batch: String = "1,8,32"

        @Option(help: "Compute threads (BLAS).")
        var threads: Int = 1

        @Option(help: "Seconds of measured runs per batch size (after warm-up).")
        var seconds: Double = 2

        @Option(help: "Size for symbolic dimensions other than the batch.")
        var symbolic: Int = 1

        @Flag(help: "Print one JSON object per batch size instead of a table.")
        var json = false

        func validate() throws {
            guard threads >= 1 else { throw ValidationError("--threads must be at least 1") }
            guard seconds > 0 else { throw ValidationError("--seconds must be positive") }
            guard symbolic >= 1 else { throw ValidationError("--symbolic must be at least 1") }
            guard !batchSizes.isEmpty, batchSizes.allSatisfy({ $0 >= 1 }) else {
                throw ValidationError("--batch takes positive sizes separated by commas, not '\(batch)'")
            }
        }

        var batchSizes: [Int] { batch.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) } }

        func run() throws {
            let loaded: ONNXModel
            let executor: Executor
            do {
                loaded = try ONNXModel.load(path: model)
                executor = try Executor(model: loaded, nodes: 0..<loaded.nodes.count)
            } catch {
                throw ExitCodes.report(error)
            }
            Kernels.setThreads(threads)
            let flopsPerWindow = loaded.nodes.reduce(0) { $0 + $1.flopsPerWindow }
            if !json {
                print("model: \(model)")
                print("inputs: " + loaded.inputs.map(\.description).joined(separator: ", "))
                print("threads: \(threads), kernels: \(InstructionLevel.inUse), "
                      + String(format: "%.1f s per batch size, %.4f MFLOP per window", seconds, flopsPerWindow / 1e6))
                print(row(["batch", "runs", "windows/s", "p50 ms", "p99 ms", "GFLOP/s"], widths: [6, 8, 12, 10, 10, 8]))
            }
            var generator = SystemRandomNumberGenerator()
            for size in batchSizes {
                var inputs: [String: Tensor] = [:]
                for info in loaded.inputs {
                    var first = true
                    let shape = info.shape.map { d -> Int in
                        if let d { return d }
                        defer { first = false }
                        return first ? size : symbolic
                    }
                    inputs[info.name] = Self.randomTensor(info.dtype, shape, using: &generator)
                }
                let result: Measurement
                do {
                    result = try Self.measure(seconds: seconds) {
                        var values = inputs
                        try executor.run(0..<loaded.nodes.count, values: &values)
                    }
                } catch {
                    throw ExitCodes.report(error)
                }
                let windowsPerSecond = Double(size * result.runs) / result.seconds
                let gflops = windowsPerSecond * flopsPerWindow / 1e9
                if json {
                    print(String(format: "{\"batch\": %d, \"runs\": %d, \"windows_per_second\": %.3f, \"p50_ms\": %.5f, \"p99_ms\": %.5f, \"gflops\": %.4f, \"threads\": %d}",
                                 size, result.runs, windowsPerSecond, result.p50 * 1e3, result.p99 * 1e3, gflops, threads))
                } else {
                    print(row(["\(size)", "\(result.runs)", String(format: "%.1f", windowsPerSecond), String(format: "%.4f", result.p50 * 1e3),
                               String(format: "%.4f", result.p99 * 1e3), String(format: "%.2f", gflops)], widths: [6, 8, 12, 10, 10, 8]))
                }
            }
        }

        struct Measurement {
            var runs: Int
            var seconds: Double
            var p50: Double
            var p99: Double
        }

        /// Warms up (a tenth of the time, at least 3 runs), then runs `body` for `seconds`.
        static func measure(seconds: Double, _ body: () throws -> Void) throws -> Measurement {
            let warmup = now() + seconds / 10
            var warmRuns = 0
            while warmRuns < 3 || now() < warmup {
                try body()
                warmRuns += 1
            }
            var latencies: [Double] = []
            latencies.reserveCapacity(1 << 16)
            let start = now()
            let end = start + seconds
            var last = start
            repeat {
                try body()
                let t = now()
                latencies.append(t - last)
                last = t
            } while last < end || latencies.count < 3
            latencies.sort()
            func percentile(_ p: Double) -> Double { latencies[min(latencies.count - 1, Int(Double(latencies.count) * p))] }
            return Measurement(runs: latencies.count, seconds: last - start, p50: percentile(0.5), p99: percentile(0.99))
        }

        static func now() -> Double {
            var t = timespec()
            clock_gettime(CLOCK_MONOTONIC, &t)
            return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
        }

        /// Uniform floats in [-1, 1); zeros for integer and bool inputs (valid indices and masks).
        static func randomTensor<G: RandomNumberGenerator>(_ dtype: DType, _ shape: [Int], using generator: inout G) -> Tensor {
            let count = Tensor.elementCount(of: shape)
            switch dtype {
            case .float32:
                return Tensor(shape: shape, floats: (0..<count).map { _ in Float.random(in: -1..<1, using: &generator) })
            case .float64, .float16, .bfloat16:
                return Tensor(dtype: dtype, shape: shape, doubles: (0..<count).map { _ in Double.random(in: -1..<1, using: &generator) })
            default:
                return Tensor(zeros: dtype, shape: shape)
            }
        }
    }
}
