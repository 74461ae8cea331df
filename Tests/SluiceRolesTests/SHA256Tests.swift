import Foundation
import Testing
import SluiceProtocol
@testable import SluiceRoles

/// Known answers (FIPS 180-4 examples) and a file compared with the system's sha256sum, fed in
/// pieces that straddle the 64-byte blocks.
@Test func sha256GivesTheKnownDigests() throws {
    func digest(_ text: String) -> String {
        var hash = SHA256()
        hash.update(Array(text.utf8))
        return hash.hexDigest()
    }
    #expect(digest("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    #expect(digest("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    #expect(digest("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")
            == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
    var pieces = SHA256()
    let million = [UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000)
    var offset = 0
    for size in [1, 63, 64, 65, 1000, 12345] + Array(repeating: 100_003, count: 10) where offset < million.count {
        let end = min(million.count, offset + size)
        pieces.update(million[offset..<end])
        offset = end
    }
    pieces.update(million[offset...])
    #expect(pieces.hexDigest() == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
}

/// The optimized C digest against the Swift reference, on random lengths fed in random pieces.
@Test func theFastDigestMatchesTheReference() {
    var generator = SystemRandomNumberGenerator()
    for _ in 0..<200 {
        let bytes = (0..<Int.random(in: 0...700, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }
        var fast = SHA256()
        var reference = ReferenceSHA256()
        var offset = 0
        while offset < bytes.count {
            let end = min(bytes.count, offset + Int.random(in: 1...130, using: &generator))
            fast.update(bytes[offset..<end])
            reference.update(bytes[offset..<end])
            offset = end
        }
        #expect(fast.hexDigest() == reference.hexDigest(), "\(bytes.count) bytes")
    }
}

@Test func sha256OfAFileMatchesTheSystemsTool() throws {
    let model = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("pipelines/models/basicmotions-cnn.onnx").path
    let tool = Process()
    tool.executableURL = URL(fileURLWithPath: "/usr/bin/sha256sum")
    tool.arguments = [model]
    let pipe = Pipe()
    tool.standardOutput = pipe
    try tool.run()
    let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    tool.waitUntilExit()
    #expect(SHA256.file(model) == output.split(separator: " ").first.map(String.init))
}

/// A fetched model is kept only whole and under the digest it hashes to; a piece out of turn,
/// past the end or not base64 stops the fetch, and no partial file is left behind.
@Test func aFetchedModelIsKeptOnlyWholeAndChecked() throws {
    let folder = NSTemporaryDirectory() + "sluice-fetch-\(UUID().uuidString)"
    defer { try? FileManager.default.removeItem(atPath: folder) }
    let bytes = Data((0..<3000).map { UInt8(truncatingIfNeeded: $0 &* 7) })
    var hash = SHA256()
    hash.update(bytes)
    let digest = hash.hexDigest()
    func piece(_ range: Range<Int>, digest: String = digest) -> ModelPiece {
        ModelPiece(digest: digest, offset: range.lowerBound, total: bytes.count, data: bytes[range].base64EncodedString())
    }
    let fetch = try ModelFetch(digest: digest, total: bytes.count, folder: folder)
    #expect(try fetch.take(piece(0..<1000)) == nil)
    #expect(throws: RoleError.self) { try fetch.take(piece(2000..<3000)) }
    let fresh = try ModelFetch(digest: digest, total: bytes.count, folder: folder)
    #expect(try fresh.take(piece(0..<2000)) == nil)
    let kept = try #require(try fresh.take(piece(2000..<3000)))
    #expect(FileManager.default.contents(atPath: kept) == bytes)
    #expect(ModelFetch.cached(digest, in: folder) == kept)

    let wrong = String(repeating: "0", count: 64)
    let lying = try ModelFetch(digest: wrong, total: bytes.count, folder: folder)
    #expect(throws: RoleError.self) { try lying.take(piece(0..<3000, digest: wrong)) }
    #expect(ModelFetch.cached(wrong, in: folder) == nil)
    #expect(throws: RoleError.self) { try ModelFetch(digest: "../../etc/passwd", total: 10, folder: folder) }
    #expect(throws: RoleError.self) { try ModelFetch(digest: digest, total: 0, folder: folder) }
    let garbage = try ModelFetch(digest: digest, total: bytes.count, folder: folder)
    #expect(throws: RoleError.self) { try garbage.take(ModelPiece(digest: digest, offset: 0, total: bytes.count, data: "not base64!")) }
    #expect(throws: RoleError.self) { try garbage.take(ModelPiece(digest: digest, offset: 0, total: bytes.count,
                                                                  data: Data(count: 4000).base64EncodedString())) }
    _ = (fetch, lying, garbage)
}

/// The naive reference SHA-256 (FIPS 180-4), in plain Swift: what `SHA256` (C, optimized)
/// is compared with.
private struct ReferenceSHA256 {
    private var state: [UInt32] = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]
    private var pending: [UInt8] = []
    private var length: UInt64 = 0

    private static let k: [UInt32] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
    ]

    mutating func update<Bytes: Collection>(_ bytes: Bytes) where Bytes.Element == UInt8 {
        length &+= UInt64(bytes.count)
        pending.append(contentsOf: bytes)
        var start = 0
        while pending.count - start >= 64 {
            pending.withUnsafeBufferPointer { compress(UnsafeBufferPointer(rebasing: $0[start..<(start + 64)])) }
            start += 64
        }
        if start > 0 { pending.removeFirst(start) }
    }

    /// The digest as 64 lowercase hex digits.
    mutating func hexDigest() -> String {
        let bits = length &* 8
        var tail: [UInt8] = [0x80]
        while (pending.count + tail.count) % 64 != 56 { tail.append(0) }
        for shift in stride(from: 56, through: 0, by: -8) { tail.append(UInt8(truncatingIfNeeded: bits >> UInt64(shift))) }
        let savedLength = length
        update(tail)
        length = savedLength
        return state.map { word in
            let hex = String(word, radix: 16)
            return String(repeating: "0", count: 8 - hex.count) + hex
        }.joined()
    }

    private mutating func compress(_ block: UnsafeBufferPointer<UInt8>) {
        var w = [UInt32](repeating: 0, count: 64)
        for i in 0..<16 {
            w[i] = UInt32(block[i * 4]) << 24 | UInt32(block[i * 4 + 1]) << 16 | UInt32(block[i * 4 + 2]) << 8 | UInt32(block[i * 4 + 3])
        }
        for i in 16..<64 {
            let s0 = rotate(w[i - 15], 7) ^ rotate(w[i - 15], 18) ^ (w[i - 15] >> 3)
            let s1 = rotate(w[i - 2], 17) ^ rotate(w[i - 2], 19) ^ (w[i - 2] >> 10)
            w[i] = w[i - 16] &+ s0 &+ w[i - 7] &+ s1
        }
        var (a, b, c, d, e, f, g, h) = (state[0], state[1], state[2], state[3], state[4], state[5], state[6], state[7])
        for i in 0..<64 {
            let s1 = rotate(e, 6) ^ rotate(e, 11) ^ rotate(e, 25)
            let choose = (e & f) ^ (~e & g)
            let t1 = h &+ s1 &+ choose &+ Self.k[i] &+ w[i]
            let s0 = rotate(a, 2) ^ rotate(a, 13) ^ rotate(a, 22)
            let majority = (a & b) ^ (a & c) ^ (b & c)
            let t2 = s0 &+ majority
            (h, g, f, e, d, c, b, a) = (g, f, e, d &+ t1, c, b, a, t1 &+ t2)
        }
        state[0] &+= a; state[1] &+= b; state[2] &+= c; state[3] &+= d
        state[4] &+= e; state[5] &+= f; state[6] &+= g; state[7] &+= h
    }

    private func rotate(_ value: UInt32, _ count: UInt32) -> UInt32 { value >> count | value << (32 - count) }
}
