import Foundation
import Testing
import SluiceTensor

/// .npy files are input (recordings, tensors sources, `sluice infer`): a header's shape is
/// parsed strictly and checked against the bytes that follow before anything is allocated.
@Suite struct HostileNPYTests {
    static func file(_ shape: String, dataBytes: Int = 16) -> Data {
        var header = "{'descr': '<f4', 'fortran_order': False, 'shape': \(shape), }"
        header += String(repeating: " ", count: (64 - (10 + header.utf8.count + 1) % 64) % 64) + "\n"
        var data = Data([0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, 1, 0, UInt8(header.utf8.count & 0xFF), UInt8(header.utf8.count >> 8)])
        data.append(contentsOf: Array(header.utf8))
        data.append(Data(repeating: 0, count: dataBytes))
        return data
    }

    @Test(arguments: [
        ("(1099511627776, 1099511627776)", "too large for any file"),   // overflowed the element count
        ("(9223372036854775807,)", "expected more bytes"),             // allocated before checking
        ("(1073741824, 1024)", "bytes of data"),                          // 4 TiB with 16 bytes behind it
        ("(-1, 4)", "not a size"),                                        // was dropped: read as (4,)
        ("(1, x)", "not a size"),                                         // was dropped: read as (1,)
    ])
    func shapesTheFileCannotHoldAreRefused(shape: String, reason: String) throws {
        let error = try #require(throws: NPYError.self) { try NPY.decode(Self.file(shape), path: "x.npy") }
        #expect(error.reason.contains(reason), "\(error)")
    }

    @Test func aShapeTheBytesHoldStillReads() throws {
        let tensor = try NPY.decode(Self.file("(2, 2)"), path: "x.npy")
        #expect(tensor.shape == [2, 2] && tensor.floats == [0, 0, 0, 0])
        #expect(NPY.shape(ofHeader: Self.file("(5, 6)", dataBytes: 0)) == [5, 6])
    }
}
