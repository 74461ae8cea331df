import Foundation

/// Folders and file nodes for tests of how Sluice writes a path a user gave: a device, a named
/// pipe or a symlink must still be what it was afterwards.
public enum FileNodes {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// A new empty folder in the temporary folder; the caller removes it.
    public static func temporaryFolder() throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-nodes-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// The kind of file at `path` (S_IFREG, S_IFCHR, S_IFIFO, S_IFLNK, …), not following a symlink.
    public static func kind(_ path: String) -> mode_t? {
        var info = stat()
        guard lstat(path, &info) == 0 else { return nil }
        return info.st_mode & S_IFMT
    }

    /// A null device node of the test's own (major 1, minor 3) in `folder`: a regression replaces
    /// this one, never the system's /dev/null. Making it needs root.
    public static let nullDevice: dev_t = (1 << 8) | 3
    public static func nullNode(in folder: String) throws -> String {
        let node = folder + "/null"
        guard mknod(node, S_IFCHR | 0o666, nullDevice) == 0 else {
            throw Failure(description: "mknod \(node): \(String(cString: strerror(errno)))")
        }
        return node
    }

    public static func isNullNode(_ path: String) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFCHR && info.st_rdev == nullDevice
    }
}
