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

    /// `resuming`: keep the rows the file holds (written by an earlier writer that did not
    /// finish) and append after them; a partly written last row is cut off.
    public init(path: String, resuming: Bool = false) throws {
        // Checked before opening too: opening a named pipe waits for a reader, maybe for ever.
        var info = stat()
        if stat(path, &info) == 0, (info.st_mode & S_IFMT) != S_IFREG {
            throw OutputFileError(path: path, reason: Self.needsRegularFile)
        }
        let file = try OutputFile(path: path, keepingContents: resuming)
        guard file.isRegularFile else {
            try? file.close()
            throw OutputFileError(path: path, reason: Self.needsRegularFile)
        }
        self.path = path
        self.file = file
        if resuming { try takeUpRows() }
    }

    /// Reads the header an earlier writer left and counts its whole rows.
    private func takeUpRows() throws {
        guard let length = file.length(), length > 0 else { return }
        let (dtype, shape, dataStart) = try NPY.parseHeader(try file.read(at: 0, count: min(length, 1 << 16)), path: path)
        guard !shape.isEmpty else { throw OutputFileError(path: path, reason: "it holds a scalar, not rows to append to") }
        let tail = Array(shape.dropFirst())
        var rowBytes: Int? = dtype.byteSize
        for dim in tail { rowBytes = rowBytes.flatMap { $0.multipliedReportingOverflow(by: dim) }.flatMap { $0.overflow ? nil : $0.partialValue } }
        guard let rowBytes, rowBytes > 0, length >= dataStart else {
            throw OutputFileError(path: path, reason: "its rows of \(dtype)\(tail) cannot be appended to")
        }
        let header = Self.header(dtype: dtype, tail: tail, rows: 0, reserving: 0)
        guard header.count == dataStart else {
            throw OutputFileError(path: path, reason: "its header was not written by Sluice, so the row count cannot be fixed up")
        }
        rows = (length - dataStart) / rowBytes
        try file.truncate(to: dataStart + rows * rowBytes)
        layout = (dtype, tail)
        headerLength = dataStart
    }

    /// Appends the rows of `tensor` (its first dimension) from row `firstRow` on; every block
    /// must match the first's dtype and row shape.
    public func append(_ tensor: Tensor, fromRow firstRow: Int = 0) throws {
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
        let skipped = min(max(firstRow, 0), tensor.shape[0])
        let rowBytes = tensor.shape[0] > 0 ? tensor.byteCount / tensor.shape[0] : 0
        try file.write(tensor.storage.bytes + skipped * rowBytes, count: tensor.byteCount - skipped * rowBytes)
        rows += tensor.shape[0] - skipped
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
