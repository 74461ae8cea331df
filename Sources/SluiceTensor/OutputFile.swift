import Foundation

/// A path Sluice was asked to write could not be opened or written.
public struct OutputFileError: Error, CustomStringConvertible {
    public let path: String
    public let reason: String
    public var description: String { "cannot write \(path): \(reason)" }
    public init(path: String, reason: String) { self.path = path; self.reason = reason }
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

    /// Opens `path`; "-" is standard output, which is written but never closed. `keepingContents`:
    /// a regular file is not truncated, and writes go after what it holds.
    public init(path: String, keepingContents: Bool = false) throws {
        self.path = path
        if path == "-" {
            descriptor = STDOUT_FILENO
            owned = false
        } else {
            // No O_EXCL or unlink: the path is the user's; O_CLOEXEC keeps it out of the roles
            // this process starts.
            let flags = O_WRONLY | O_CREAT | O_CLOEXEC | (keepingContents ? 0 : O_TRUNC)
            let opened = path.withCString { open($0, flags, 0o666) }
            guard opened >= 0 else { throw OutputFileError(path: path, reason: String(cString: strerror(errno))) }
            descriptor = opened
            owned = true
        }
        var info = stat()
        isRegularFile = fstat(descriptor, &info) == 0 && (info.st_mode & S_IFMT) == S_IFREG
        if isRegularFile, keepingContents, lseek(descriptor, 0, SEEK_END) < 0 {
            throw OutputFileError(path: path, reason: String(cString: strerror(errno)))
        }
    }

    /// The length of a regular file; nil for anything else.
    public func length() -> Int? {
        var info = stat()
        guard isRegularFile, descriptor >= 0, fstat(descriptor, &info) == 0 else { return nil }
        return Int(info.st_size)
    }

    /// Up to `count` bytes of a regular file from `offset`: the very file this one has open
    /// (through /proc, as the path may have been moved since), read without moving the write position.
    public func read(at offset: Int, count: Int) throws -> [UInt8] {
        guard isRegularFile, descriptor >= 0 else { throw OutputFileError(path: path, reason: "not a regular file, so it cannot be read back") }
        let reader = open("/proc/self/fd/\(descriptor)", O_RDONLY | O_CLOEXEC)
        guard reader >= 0 else { throw OutputFileError(path: path, reason: "cannot read it back: \(String(cString: strerror(errno)))") }
        defer { _ = Foundation.close(reader) }
        var bytes = [UInt8](repeating: 0, count: max(0, count))
        var done = 0
        while done < bytes.count {
            let got = bytes.withUnsafeMutableBytes { raw -> Int in
                guard let base = raw.baseAddress else { return 0 }
                return pread(reader, base + done, raw.count - done, off_t(offset + done))
            }
            if got < 0, errno == EINTR { continue }
            guard got >= 0 else { throw OutputFileError(path: path, reason: "cannot read it back: \(String(cString: strerror(errno)))") }
            if got == 0 { break }
            done += got
        }
        return Array(bytes[0..<done])
    }

    /// Cuts a regular file to `length` bytes; writes go on from there.
    public func truncate(to length: Int) throws {
        guard isRegularFile, descriptor >= 0 else { throw OutputFileError(path: path, reason: "not a regular file, so it cannot be cut") }
        guard ftruncate(descriptor, off_t(length)) == 0, lseek(descriptor, 0, SEEK_END) >= 0 else {
            throw OutputFileError(path: path, reason: String(cString: strerror(errno)))
        }
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
