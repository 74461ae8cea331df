import Foundation
import Testing
import SluiceTensor
@testable import SluiceWire

private let sampleHeader = BatchHeader(
    batchSequence: 41, firstWindow: 328, windowCount: 8, epoch: 3, cursor: 5, created: 1_700_000_000_123_456_789,
    hops: [Hop(stage: 0, received: 1, computeStart: 2, computeEnd: 3, sendStart: 4),
           Hop(stage: 1, received: 5, computeStart: 6, computeEnd: 7, sendStart: UInt64.max)],
    tensors: [TensorDescriptor(name: "conv_out", dtype: .float32, shape: [8, 16, 50]),
              TensorDescriptor(name: "ids", dtype: .int64, shape: [8])])

@Test func batchHeaderRoundTrips() throws {
    let bytes = sampleHeader.encoded()
    let decoded = try bytes.withUnsafeBytes { try BatchHeader.decode($0) }
    #expect(decoded == sampleHeader)
}

@Test func batchHeaderLayoutIsTheDocumentedOne() {
    let bytes = sampleHeader.encoded()
    #expect(Array(bytes[0..<4]) == Array("SLB1".utf8))
    #expect(bytes[4] == 2)                                        // version
    #expect(bytes[8] == 41 && bytes[9] == 0)                       // batch sequence, little-endian
    #expect(bytes[16] == UInt8(328 & 0xFF) && bytes[17] == 1)      // first window
    #expect(bytes[24] == 8)                                        // window count
    #expect(bytes[28] == 3)                                        // epoch
    #expect(bytes[32] == 5)                                        // cursor
    #expect(bytes[34] == 2 && bytes[35] == 2)                      // hop count, tensor count
    // Per tensor: name (length + bytes), dtype, encoding, rank, dimensions.
    #expect(bytes.count == 44 + 2 * 34 + (2 + 8 + 3 + 3 * 8) + (2 + 3 + 3 + 8))
}

@Test func everyTruncationIsRejectedWithoutCrashing() {
    let bytes = sampleHeader.encoded()
    for length in 0..<bytes.count {
        let prefix = Array(bytes[0..<length])
        #expect(throws: WireError.self) { try prefix.withUnsafeBytes { try BatchHeader.decode($0) } }
    }
}

@Test func corruptHeadersAreRejected() {
    var badMagic = sampleHeader.encoded()
    badMagic[0] = UInt8(ascii: "X")
    #expect(throws: WireError.self) { try badMagic.withUnsafeBytes { try BatchHeader.decode($0) } }
    var badVersion = sampleHeader.encoded()
    badVersion[4] = 9
    #expect(throws: WireError.unsupportedVersion(9)) { try badVersion.withUnsafeBytes { try BatchHeader.decode($0) } }
    let trailing = sampleHeader.encoded() + [0]
    #expect(throws: WireError.self) { try trailing.withUnsafeBytes { try BatchHeader.decode($0) } }
    // Random bytes never crash the decoder.
    var generator = SystemRandomNumberGenerator()
    for _ in 0..<2000 {
        var noise = Array(sampleHeader.encoded())
        for _ in 0..<3 { noise[Int.random(in: 0..<noise.count, using: &generator)] = UInt8.random(in: 0...255, using: &generator) }
        _ = try? noise.withUnsafeBytes { try BatchHeader.decode($0) }
    }
}

@Test func windowKeysRoundTrip() throws {
    let keys = [WindowKey(sensor: "imu-3", start: 12.5, label: "Walking"), WindowKey(sensor: "row", start: 7)]
    let bytes = WindowKey.encode(keys)
    #expect(try bytes.withUnsafeBytes { try WindowKey.decode($0) } == keys)
    #expect(throws: WireError.self) { try Array("{\"no\":1}".utf8).withUnsafeBytes { try WindowKey.decode($0) } }
}

@Test func sampleChunksAreChecked() throws {
    let header = SampleChunkHeader(sensor: "imu-0", t0: 1.5, dt: 0.1, channels: 6, count: 10, labels: nil)
    let json = try JSONEncoder().encode(header)
    let decoded = try json.withUnsafeBytes { try SampleChunkHeader.decode($0, payloadBytes: 240, expectedChannels: 6) }
    #expect(decoded == header)
    #expect(throws: WireError.self) { try json.withUnsafeBytes { try SampleChunkHeader.decode($0, payloadBytes: 239, expectedChannels: 6) } }
    #expect(throws: WireError.self) { try json.withUnsafeBytes { try SampleChunkHeader.decode($0, payloadBytes: 240, expectedChannels: 3) } }
    let huge = Array(#"{"v":1,"sensor":"a","t0":0,"dt":1,"channels":3,"count":4000000000000000000}"#.utf8)
    #expect(throws: WireError.self) { try huge.withUnsafeBytes { try SampleChunkHeader.decode($0, payloadBytes: 12, expectedChannels: 3) } }
    let eos = try Array(#"{"v":1,"eos":true,"sender":"imu-3","chunks":7}"#.utf8).withUnsafeBytes {
        try SampleChunkHeader.decode($0, payloadBytes: nil, expectedChannels: 6)
    }
    #expect(eos.isEndOfStream && eos.senderName == "imu-3" && eos.chunks == 7)
    // An end of stream naming no sender could cut off other senders' chunks: refused.
    #expect(throws: WireError.self) {
        try Array(#"{"v":1,"eos":true}"#.utf8).withUnsafeBytes { try SampleChunkHeader.decode($0, payloadBytes: nil, expectedChannels: 6) }
    }
}
