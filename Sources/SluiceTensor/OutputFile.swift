import Foundation

/// A path Sluice was asked to write could not be opened or written.
public struct OutputFileError: Error, CustomStringConvertible {
    public let path: String
    public let reason: String
    public var description: String { "cannot write \(path): \(reason)" }
}

/// A file a user named, opened for writing with open(2): created if missing, truncated if it
/// is a regular file, and otherwise written in place. Never replaced, renamed or deleted: the
/// path may be /dev/null, a named pipe, a terminal or a symlink, and each must still be what it
/// was once Sluice is done (a write-to-temp-and-rename would turn /dev/null into a plain file).
public final class OutputFile {
    public let path: String
    private var descriptor: Int32
    private let owned: Bool
    /// A regular file: it can seek, so a header can be fixed up once the rows are counted.
    public let isRegularFile: Bool

    /// Opens `path`; "-" is standard output, which is written but never closed.
    public init(path: String) throws {
        self.path = path
        if path == "-" {
            descriptor = STDOUT_FILENO
            owned = false
        } else {
            // No O_EXCL or unlink: the path is the user's; O_CLOEXEC keeps it out of the roles
            // this process starts.
            let opened = path.withCString { open($0, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o666) }
            guard opened >= 0 else { throw OutputFileError(path: path, reason: String(cString: strerror(errno))) }
            descriptor = opened
            owned = true
        }
        var info = stat()
        isRegularFile = fstat(descriptor, &info) == 0 && (info.st_mode & S_IFMT) == S_IFREG
    }

    deinit {
        if owned, descriptor >= 0 { _ = Foundation.close(descriptor) }
    }

    /// Opens `path`, writes `data` and closes it.
    public static func write(_ data: Data, to path: String) throws {
        let file = try OutputFile(path: path)
        try file.write(data)
        try file.close()
    }

    /// Writes every byte (a pipe or terminal may take fewer per call).
    public func write(_ data: Data) throws {
        try data.withUnsafeBytes { raw in
            guard let base = raw.baseAddress else { return }
            try write(base, count: raw.count)
        }
    }

    public func write(_ bytes: UnsafeRawPointer, count: Int) throws {
        guard descriptor >= 0 else { throw OutputFileError(path: path, reason: "already closed") }
        if let failure = writeEveryByte(bytes, count: count, { Foundation.write(descriptor, $0, $1) }) {
            throw OutputFileError(path: path, reason: String(cString: strerror(failure)))
        }
    }

    /// Overwrites bytes at `offset` without moving the write position; regular files only.
    public func overwrite(_ data: Data, at offset: Int) throws {
        guard isRegularFile else { throw OutputFileError(path: path, reason: "not a regular file, so it cannot be rewritten in place") }
        try data.withUnsafeBytes { raw in
            guard let base = raw.baseAddress else { return }
            let failure = writeEveryByte(base, count: raw.count) { next, remaining in
                pwrite(descriptor, next, remaining, off_t(offset + (raw.count - remaining)))
            }
            if let failure { throw OutputFileError(path: path, reason: String(cString: strerror(failure))) }
        }
    }

    /// Closes the file (standard output stays open); later writes fail.
    public func close() throws {
        guard descriptor >= 0 else { return }
        let closing = descriptor
        descriptor = -1
        guard owned else { return }
        if Foundation.close(closing) != 0 && errno != EINTR {
            throw OutputFileError(path: path, reason: String(cString: strerror(errno)))
        }
    }
}

/// Hands `write` the bytes not yet written until it has taken them all: a pipe or terminal may
/// take fewer per call, and a signal may interrupt one (EINTR), which is tried again. Returns the
/// errno of a failed call, or nil once every byte is written.
public func writeEveryByte(_ bytes: UnsafeRawPointer, count: Int, _ write: (UnsafeRawPointer, Int) -> Int) -> Int32? {
    var done = 0
    while done < count {
        let written = write(bytes + done, count - done)
        if written < 0 {
            if errno == EINTR { continue }
            return errno
        }
        done += written
    }
    return nil
}
