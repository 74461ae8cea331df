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
