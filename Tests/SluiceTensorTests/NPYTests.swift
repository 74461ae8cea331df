import Foundation
import SluiceTensor
import Testing

@Suite struct NPYTests {
    @Test func floatRoundTripThroughAFile() throws {
        var rng = SeededGenerator(seed: 1)
        let x = rng.tensor([3, 6, 100])
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-npy-\(UUID().uuidString).npy").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try NPY.write(x, path: path)
        let y = try NPY.read(path: path)
        #expect(y.dtype == .float32 && y.shape == x.shape && y.floats == x.floats)
    }

    @Test func otherDtypesAndShapesRoundTrip() throws {
        for x in [Tensor(shape: [4], int64s: [1, -2, 3, Int64.max]), Tensor(shape: [], floats: [2.5]),
                  Tensor(shape: [2, 0, 3], floats: []), Tensor(zeros: .int32, shape: [2, 2]), Tensor(zeros: .bool, shape: [3])] {
            let data = NPY.encode(x)
            // NumPy aligns the data to 64 bytes.
            #expect((data.count - x.byteCount) % 64 == 0)
            let y = try NPY.decode(data)
            #expect(y.dtype == x.dtype && y.shape == x.shape)
            #expect(Data(bytes: y.storage.bytes, count: y.byteCount) == Data(bytes: x.storage.bytes, count: x.byteCount))
        }
    }

    @Test func rejectsGarbageWithAReason() {
        #expect(throws: NPYError.self) { try NPY.decode(Data([1, 2, 3])) }
        #expect(throws: NPYError.self) { try NPY.read(path: "/nonexistent/sluice.npy") }
        var truncated = NPY.encode(Tensor(shape: [8], floats: Array(repeating: 1, count: 8)))
        truncated.removeLast(4)
        #expect(throws: NPYError.self) { try NPY.decode(truncated) }
    }
}
