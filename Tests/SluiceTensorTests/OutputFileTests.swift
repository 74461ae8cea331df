import Foundation
import SluiceTensor
import SluiceTestSupport
import Testing

/// A path a user names is opened and written, never replaced: /dev/null, a named pipe and a
/// symlink are each still what they were afterwards.
@Suite struct OutputFileTests {
    /// A null device node of our own (major 1, minor 3), so a regression replaces it and not
    /// the system's /dev/null.
    @Test(.enabled(if: getuid() == 0, "mknod needs root"))
    func aCharacterDeviceIsWrittenNotReplaced() throws {
        let folder = try FileNodes.temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let node = try FileNodes.nullNode(in: folder)
        try OutputFile.write(Data("predictions\n".utf8), to: node)
        try NPY.write(Tensor(shape: [2], floats: [1, 2]), path: node)
        #expect(FileNodes.isNullNode(node))
        #expect(FileNodes.kind("/dev/null") == S_IFCHR, "/dev/null is no longer a character device")
    }

    @Test func aNamedPipeIsWrittenNotReplaced() throws {
        let folder = try FileNodes.temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let fifo = folder + "/pipe"
        try #require(mkfifo(fifo, 0o600) == 0)
        let payload = Data((0..<200_000).map { UInt8($0 % 251) })
        // The reader: opening a FIFO for reading waits for the writer, and the reverse.
        final class Box: @unchecked Sendable { var data = Data() }
        let received = Box()
        let reader = Thread {
            let descriptor = open(fifo, O_RDONLY)
            guard descriptor >= 0 else { return }
            var chunk = [UInt8](repeating: 0, count: 65536)
            while true {
                let count = read(descriptor, &chunk, chunk.count)
                if count <= 0 { break }
                received.data.append(contentsOf: chunk[0..<count])
            }
            close(descriptor)
        }
        let done = DispatchSemaphore(value: 0)
        let watcher = Thread {
            while !reader.isFinished { usleep(1000) }
            done.signal()
        }
        reader.start()
        watcher.start()
        try OutputFile.write(payload, to: fifo)
        #expect(done.wait(timeout: .now() + 10) == .success)
        #expect(received.data == payload)
        #expect(FileNodes.kind(fifo) == S_IFIFO)
    }

    @Test func aSymlinkStaysAndItsTargetIsTruncatedAndWritten() throws {
        let folder = try FileNodes.temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let target = folder + "/target.jsonl"
        let link = folder + "/link.jsonl"
        try Data("an older and longer content\n".utf8).write(to: URL(fileURLWithPath: target))
        try #require(symlink(target, link) == 0)
        try OutputFile.write(Data("new\n".utf8), to: link)
        #expect(FileNodes.kind(link) == S_IFLNK)
        #expect(FileManager.default.contents(atPath: target) == Data("new\n".utf8))
    }

    @Test func aPathThatCannotBeOpenedSaysWhy() {
        #expect(throws: OutputFileError.self) { try OutputFile.write(Data(), to: "/nonexistent-folder/out.json") }
    }

    @Test func npyRowsStreamedInBlocksEqualTheWholeArray() throws {
        let folder = try FileNodes.temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let path = folder + "/rows.npy"
        let blocks = [Tensor(shape: [2, 4], floats: (0..<8).map(Float.init)), Tensor(shape: [0, 4], floats: []),
                      Tensor(shape: [5, 4], floats: (0..<20).map { Float($0) * -0.5 })]
        let writer = try NPYRowWriter(path: path)
        for block in blocks { try writer.append(block) }
        try writer.finish()
        let read = try NPY.read(path: path)
        let whole = Tensor.concatenatingRows(blocks)
        #expect(read.shape == [7, 4] && read.floats == whole.floats)
        // The header keeps NumPy's 64-byte alignment after the row count is rewritten.
        let size = try #require(FileManager.default.attributesOfItem(atPath: path)[.size] as? Int)
        #expect((size - whole.byteCount) % 64 == 0)
    }

    @Test func npyRowsOfAnotherShapeOrTypeAreRefused() throws {
        let folder = try FileNodes.temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let writer = try NPYRowWriter(path: folder + "/rows.npy")
        try writer.append(Tensor(shape: [1, 4], floats: [1, 2, 3, 4]))
        #expect(throws: OutputFileError.self) { try writer.append(Tensor(shape: [1, 3], floats: [1, 2, 3])) }
        #expect(throws: OutputFileError.self) { try writer.append(Tensor(zeros: .int64, shape: [1, 4])) }
    }

    @Test func npyWithNoRowsIsAnEmptyArray() throws {
        let folder = try FileNodes.temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let path = folder + "/empty.npy"
        try NPYRowWriter(path: path).finish()
        #expect(try NPY.read(path: path).shape == [0])
    }

    @Test func npyIsRefusedForANamedPipeWhichStaysOne() throws {
        let folder = try FileNodes.temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let fifo = folder + "/pipe.npy"
        try #require(mkfifo(fifo, 0o600) == 0)
        // Someone must hold the read end, or opening the write end waits forever.
        let reader = open(fifo, O_RDONLY | O_NONBLOCK)
        defer { close(reader) }
        #expect(throws: OutputFileError.self) { try NPYRowWriter(path: fifo) }
        #expect(FileNodes.kind(fifo) == S_IFIFO)
    }
}
