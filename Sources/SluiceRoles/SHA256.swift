import CDigest
import Foundation

/// SHA-256 (FIPS 180-4), to check a model file that crossed the network against the
/// controller's: streamed, so a file of any size is hashed in fixed memory. The work is C's
/// (Sources/CDigest), optimized in every build; tests compare it with a Swift reference.
struct SHA256 {
    private var state = sluice_sha256()

    init() { sluice_sha256_init(&state) }

    mutating func update<Bytes: Collection>(_ bytes: Bytes) where Bytes.Element == UInt8 {
        let done = bytes.withContiguousStorageIfAvailable { buffer -> Bool in
            sluice_sha256_update(&state, buffer.baseAddress, buffer.count)
            return true
        } ?? false
        if !done {
            let copy = Array(bytes)
            copy.withUnsafeBufferPointer { sluice_sha256_update(&state, $0.baseAddress, $0.count) }
        }
    }

    mutating func update(_ data: Data) {
        data.withUnsafeBytes { sluice_sha256_update(&state, $0.bindMemory(to: UInt8.self).baseAddress, $0.count) }
    }

    /// The digest as 64 lowercase hex digits.
    mutating func hexDigest() -> String {
        var digest = [UInt8](repeating: 0, count: 32)
        sluice_sha256_final(&state, &digest)
        return digest.map { byte in
            let hex = String(byte, radix: 16)
            return byte < 16 ? "0" + hex : hex
        }.joined()
    }

    /// The digest of a whole file, read in 1 MiB pieces; nil when it cannot be read.
    static func file(_ path: String) -> String? {
        guard let handle = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? handle.close() }
        var hash = SHA256()
        while true {
            // nil (or an empty piece) is the end of the file; a failed read is no digest.
            let piece: Data?
            do {
                piece = try handle.read(upToCount: 1 << 20)
            } catch {
                return nil
            }
            guard let piece, !piece.isEmpty else { break }
            hash.update(piece)
        }
        return hash.hexDigest()
    }
}
