import Foundation

/// Writes a .npy file row block by row block, so memory stays flat however long the stream:
/// the header goes out with the first rows, sized for any row count, and is rewritten in place
/// with the real count at the end. That rewrite needs a regular file; a pipe or a device cannot
/// seek back, so it is refused when opened.
public final class NPYRowWriter {
    public let path: String
    private let file: OutputFile
    private var layout: (dtype: DType, tail: [Int])?
    private var headerLength = 0
    public private(set) var rows = 0

    public init(path: String) throws {
        // Checked before opening too: opening a named pipe waits for a reader, maybe for ever.
        var info = stat()
        if stat(path, &info) == 0, (info.st_mode & S_IFMT) != S_IFREG {
            throw OutputFileError(path: path, reason: Self.needsRegularFile)
        }
        let file = try OutputFile(path: path)
        guard file.isRegularFile else {
            try? file.close()
            throw OutputFileError(path: path, reason: Self.needsRegularFile)
        }
        self.path = path
        self.file = file
    }

    /// Appends the rows of `tensor` (its first dimension); every block must match the first's
    /// dtype and row shape.
    public func append(_ tensor: Tensor) throws {
        guard tensor.rank >= 1 else { throw OutputFileError(path: path, reason: "a scalar output has no rows to append") }
        let tail = Array(tensor.shape.dropFirst())
        if let layout {
            guard layout.dtype == tensor.dtype, layout.tail == tail else {
                throw OutputFileError(path: path, reason: "rows of \(tensor.dtype)\(tail) cannot follow rows of \(layout.dtype)\(layout.tail)")
            }
        } else {
            layout = (tensor.dtype, tail)
            let header = Self.header(dtype: tensor.dtype, tail: tail, rows: 0, reserving: 0)
            headerLength = header.count
            try file.write(header)
        }
        try file.write(tensor.storage.bytes, count: tensor.byteCount)
        rows += tensor.shape[0]
    }

    /// Fixes the header's row count and closes the file. With no rows at all, the file holds an
    /// empty float32 array of shape (0,): the output's row shape was never seen.
    public func finish() throws {
        if let layout {
            let header = Self.header(dtype: layout.dtype, tail: layout.tail, rows: rows, reserving: headerLength)
            guard header.count == headerLength else {
                throw OutputFileError(path: path, reason: "the header grew past the space kept for it")
            }
            try file.overwrite(header, at: 0)
        } else {
            try file.write(NPY.header(dtype: .float32, shape: [0]))
        }
        try file.close()
    }

    static let needsRegularFile = "an npy output must be a regular file: its header holds the row count, "
        + "written once the stream ends (for a pipe or a device, use a jsonl sink)"

    /// The header with room for a row count of any size, so that the rewrite fits exactly.
    private static func header(dtype: DType, tail: [Int], rows: Int, reserving: Int) -> Data {
        let widest = NPY.header(dtype: dtype, shape: [Int.max] + tail).count
        return NPY.header(dtype: dtype, shape: [rows] + tail, minimumLength: max(reserving, widest))
    }
}
