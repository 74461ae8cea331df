import Foundation
import Testing
import SluiceTensor
@testable import SluiceWire

/// A frame from bytes, as a socket would hand it over.
private final class Frame: ReceivedFrame {
    let bytes: [UInt8]
    init(_ bytes: [UInt8]) { self.bytes = bytes }
    var count: Int { bytes.count }
    func withBytes<Result>(_ body: (UnsafeRawBufferPointer) throws -> Result) rethrows -> Result { try bytes.withUnsafeBytes(body) }
}

private func frames(_ batch: Batch) -> [Frame] {
    batch.frames().map { frame in
        switch frame {
        case .bytes(let bytes): return Frame(bytes)
        case .tensor(let tensor):
            return Frame(withExtendedLifetime(tensor.storage) { Array(UnsafeRawBufferPointer(start: tensor.storage.bytes, count: tensor.byteCount)) })
        }
    }
}

private func labelBatch(_ labels: [String]) -> Batch {
    var batch = Batch(header: BatchHeader(batchSequence: 1, firstWindow: 0, windowCount: UInt32(labels.count), epoch: 1, cursor: 2, created: 1, tensors: []),
                      metadata: [], tensors: [:])
    batch.setTensors(["label": Tensor(shape: [labels.count], strings: labels),
                      "scores": Tensor(shape: [labels.count, 1], floats: labels.map { Float($0.count) })], order: ["label", "scores"])
    return batch
}

/// A classifier's string labels cross a link as they are, empty and non-ASCII ones included.
@Test func stringTensorsCrossTheWire() throws {
    let labels = ["walking", "", "Ünïcødé ✓", String(repeating: "x", count: 300)]
    let decoded = try Batch.decode(frames(labelBatch(labels)))
    #expect(decoded.tensors["label"]?.dtype == .string)
    #expect(decoded.tensors["label"]?.strings == labels)
    #expect(decoded.tensors["label"]?.shape == [4])
    #expect(decoded.verifiedWindowCount == 4)
}

/// Every length is checked against what is left of the frame, and a claimed element count
/// against the frame's size before anything is reserved.
@Test func hostileStringFramesAreRefused() throws {
    let good = frames(labelBatch(["ab", "c"]))
    func withLabelFrame(_ bytes: [UInt8]) -> [Frame] { [good[0], good[1], Frame(bytes), good[3]] }
    let length = { (n: UInt32) in withUnsafeBytes(of: n.littleEndian) { Array($0) } }
    let cases: [(String, [UInt8])] = [
        ("truncated length", length(2) + Array("ab".utf8) + [1, 0]),
        ("length past the end", length(2) + Array("ab".utf8) + length(1_000_000) + Array("c".utf8)),
        ("trailing bytes", length(2) + Array("ab".utf8) + length(1) + Array("c".utf8) + [0]),
        ("empty frame", []),
    ]
    for (what, bytes) in cases {
        #expect(throws: WireError.self, "\(what)") { try Batch.decode(withLabelFrame(bytes)) }
    }
    // A header claiming more strings than the frame could hold is refused without reserving them.
    #expect(throws: WireError.self) { try [UInt8](repeating: 0, count: 8).withUnsafeBytes { try StringFrame.decode($0, count: 1 << 40, name: "label") } }
    // Invalid UTF-8 is not trusted: it decodes with replacement characters.
    let invalid = try Batch.decode(withLabelFrame(length(2) + [0xFF, 0xFE] + length(1) + Array("c".utf8)))
    #expect(invalid.tensors["label"]?.strings == ["\u{FFFD}\u{FFFD}", "c"])
}
