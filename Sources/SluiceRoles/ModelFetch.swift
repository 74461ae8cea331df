import Foundation
import SluiceProtocol

/// A model file fetched from the controller piece by piece, for a stage on a host without it
/// (the whole model, or the weights of its layers only): written to a file of its own in the
/// cache folder, hashed as it comes, and kept under its digest only when the whole file arrived
/// and its SHA-256 is the one the controller named.
final class ModelFetch {
    let digest: String
    let total: Int
    private let folder: String
    private let partialPath: String
    private let file: FileHandle
    private var hash = SHA256()
    private(set) var received = 0
    /// Larger models are refused before a byte is written: no model Sluice runs is near it.
    static let largestModel = 1 << 40

    /// Where fetched models are kept: `SLUICE_MODEL_CACHE`, else the user's cache folder.
    static var defaultFolder: String {
        let environment = ProcessInfo.processInfo.environment
        if let folder = environment["SLUICE_MODEL_CACHE"], !folder.isEmpty { return folder }
        let cache = environment["XDG_CACHE_HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory() + "/.cache"
        return cache + "/sluice/models"
    }

    static func isDigest(_ text: String) -> Bool {
        text.utf8.count == 64 && text.utf8.allSatisfy { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains($0) }
    }

    /// The kept file for `digest` in `folder`, if it is there and still hashes to it.
    static func cached(_ digest: String, in folder: String) -> String? {
        guard isDigest(digest) else { return nil }
        let path = "\(folder)/\(digest).onnx"
        return SHA256.file(path) == digest ? path : nil
    }

    init(digest: String, total: Int, folder: String) throws {
        guard Self.isDigest(digest) else { throw RoleError("the controller named a model by '\(digest.prefix(80))', which is no SHA-256 digest") }
        guard (1...Self.largestModel).contains(total) else { throw RoleError("the controller offered a model of \(total) bytes") }
        self.digest = digest
        self.total = total
        self.folder = folder
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        partialPath = "\(folder)/\(digest).onnx.partial-\(getpid())"
        let descriptor = open(partialPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw RoleError("cannot write \(partialPath): \(String(cString: strerror(errno)))") }
        file = FileHandle(fileDescriptor: descriptor, closeOnDealloc: true)
    }

    deinit { unlink(partialPath) }

    /// Takes the next piece; returns the kept file's path once the whole model arrived and checked.
    func take(_ piece: ModelPiece) throws -> String? {
        guard piece.fileDigest ?? piece.digest == digest, piece.total == total, piece.offset == received else {
            throw RoleError("a model piece out of turn: offset \(piece.offset) of \(piece.total) bytes, expected \(received) of \(total)")
        }
        guard let data = Data(base64Encoded: piece.data), !data.isEmpty, data.count <= total - received else {
            throw RoleError("a model piece at \(piece.offset) is not base64, is empty, or runs past the model's \(total) bytes")
        }
        try file.write(contentsOf: data)
        hash.update(data)
        received += data.count
        guard received == total else { return nil }
        try file.close()
        let got = hash.hexDigest()
        guard got == digest else { throw RoleError("the model fetched from the controller hashes to \(got), not \(digest)") }
        let path = "\(folder)/\(digest).onnx"
        guard rename(partialPath, path) == 0 else { throw RoleError("cannot keep the fetched model at \(path): \(String(cString: strerror(errno)))") }
        return path
    }
}
