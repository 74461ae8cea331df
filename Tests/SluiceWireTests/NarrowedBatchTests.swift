import Foundation
import Testing
import SluiceConfig
import SluiceTensor
@testable import SluiceWire

/// Frames as a socket would hand them over, from bytes (shifted by one byte when asked, so that
/// nothing in them is aligned).
private final class BytesFrame: ReceivedFrame {
    private let storage: [UInt8]
    private let offset: Int
    init(_ bytes: [UInt8], misaligned: Bool = false) {
        offset = misaligned ? 1 : 0
        storage = (misaligned ? [0] : []) + bytes
    }
    var count: Int { storage.count - offset }
    func withBytes<Result>(_ body: (UnsafeRawBufferPointer) throws -> Result) rethrows -> Result {
        try storage.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[offset...])) }
    }
}

private func received(_ batch: Batch, misaligned: Bool = false) -> [BytesFrame] {
    batch.frames().map { frame in
        switch frame {
        case .bytes(let bytes): return BytesFrame(bytes, misaligned: misaligned)
        case .tensor(let tensor):
            let bytes = withExtendedLifetime(tensor.storage) {
                Array(UnsafeRawBufferPointer(start: tensor.storage.bytes, count: tensor.byteCount))
            }
            return BytesFrame(bytes, misaligned: misaligned)
        }
    }
}

/// A batch of two float32 tensors and one int64 one, which narrowing leaves alone.
private func sampleBatch() -> Batch {
    var rng = SystemRandomNumberGenerator()
    let activations = Tensor(shape: [4, 3, 5], floats: (0..<60).map { _ in Float.random(in: -3...3, using: &rng) })
    let small = Tensor(shape: [4, 2], floats: [0, 1e-3, -2e-3, 7, 0.5, -0.25, 100, -100])
    let ids = Tensor(shape: [4], int64s: [1, 2, 3, Int64.max])
    var batch = Batch(header: BatchHeader(batchSequence: 9, firstWindow: 36, windowCount: 4, epoch: 2, cursor: 3, created: 1, tensors: []),
                      metadata: [1, 2, 3], tensors: [:])
    batch.setTensors(["activations": activations, "small": small, "ids": ids], order: ["activations", "small", "ids"])
    return batch
}

@Test(arguments: [Compression.fp16, .int8], [false, true])
func narrowedBatchesComeBackAsFloat32(compression: Compression, misaligned: Bool) throws {
    let original = sampleBatch()
    var narrowed = original
    var tally = NarrowingTally()
    narrowed.compress(compression, tally: &tally)
    let expectedBytes = compression == .fp16 ? 2 : 1
    #expect(narrowed.header.tensors[0].byteCount == 60 * expectedBytes)
    #expect(narrowed.header.tensors[2].encoding == .raw)
    let decoded = try Batch.decode(received(narrowed, misaligned: misaligned))
    #expect(decoded.header.tensors.map(\.encoding) == [.raw, .raw, .raw], "a decoded batch holds float32 again")
    #expect(decoded.header.tensors.map(\.dtype) == [.float32, .float32, .int64])
    #expect(decoded.tensors["ids"]?.int64s == original.tensors["ids"]?.int64s)
    for name in ["activations", "small"] {
        let exact = original.tensors[name]!.floats
        let back = decoded.tensors[name]!.floats
        let largest = exact.map(abs).max() ?? 0
        // fp16: 11 significant bits; int8: half a step of the largest magnitude over 127.
        let bound: (Float) -> Float = compression == .fp16 ? { abs($0) / 2048 + 6e-8 } : { _ in largest / 127 / 2 * 1.001 }
        #expect(zip(exact, back).allSatisfy { abs($0 - $1) <= bound($0) }, "\(compression) \(name): \(exact) -> \(back)")
    }
    #expect((tally.relativeError ?? 1) < (compression == .fp16 ? 1e-3 : 2e-2))
    #expect((tally.relativeError ?? 0) > 0)
}

@Test func int8LeavesTensorsHoldingInfinityAsTheyAre() throws {
    var batch = sampleBatch()
    let withInfinity = Tensor(shape: [4, 1], floats: [1, .infinity, 2, 3])
    batch.setTensors(["activations": withInfinity], order: ["activations"])
    var tally = NarrowingTally()
    batch.compress(.int8, tally: &tally)
    #expect(batch.header.tensors[0].encoding == .raw)
    let decoded = try Batch.decode(received(batch))
    #expect(decoded.tensors["activations"]?.floats == [1, .infinity, 2, 3])
}

@Test func hostileEncodingsAreRejected() throws {
    var batch = sampleBatch()
    var tally = NarrowingTally()
    batch.compress(.int8, tally: &tally)
    let frames = received(batch)
    let header = frames[0].withBytes { Array($0) }
    // The encoding byte follows the first tensor's name ("activations") and dtype.
    let nameEnd = 44 + 2 + "activations".utf8.count
    #expect(header[nameEnd + 1] == 2, "int8's code")
    func decode(_ bytes: [UInt8]) throws -> Batch {
        try Batch.decode([BytesFrame(bytes)] + Array(frames.dropFirst()))
    }
    var unknown = header
    unknown[nameEnd + 1] = 7
    #expect(throws: WireError.self) { try decode(unknown) }
    var nanScale = header
    withUnsafeBytes(of: Float.nan.bitPattern.littleEndian) { nanScale.replaceSubrange((nameEnd + 2)..<(nameEnd + 6), with: $0) }
    #expect(throws: WireError.self) { try decode(nanScale) }
    var negativeScale = header
    withUnsafeBytes(of: Float(-1).bitPattern.littleEndian) { negativeScale.replaceSubrange((nameEnd + 2)..<(nameEnd + 6), with: $0) }
    #expect(throws: WireError.self) { try decode(negativeScale) }
    // Narrowing claimed for an int64 tensor.
    var narrowedIDs = sampleBatch()
    narrowedIDs.header.tensors[2].encoding = .float16
    #expect(throws: WireError.self) { try Batch.decode(received(narrowedIDs)) }
    // A frame sized for float32 under a half-precision header.
    var wrongSize = sampleBatch()
    wrongSize.header.tensors[0].encoding = .float16
    #expect(throws: WireError.self) { try Batch.decode(received(wrongSize)) }
}
