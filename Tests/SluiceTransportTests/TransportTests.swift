import Foundation
import Testing
import SluiceProtocol
import SluiceWire
import SluiceTensor
@testable import SluiceTransport

/// A port below Linux's ephemeral range (32768 on), which the kernel hands to outgoing
/// connections: one of those, made by a test running alongside, took a port this drew.
private func freePortEndpoint() -> String { "tcp://127.0.0.1:\(Int.random(in: 20000...32767))" }

private func pair(_ endpoint: String, context: ZMQContext, highWaterMark: Int32 = 4) throws -> (push: ZMQSocket, pull: ZMQSocket) {
    let pull = try ZMQSocket(context, .pull, lingerMilliseconds: 0, sendHighWaterMark: highWaterMark, receiveHighWaterMark: highWaterMark)
    try pull.bind(endpoint)
    let push = try ZMQSocket(context, .push, lingerMilliseconds: 0, sendHighWaterMark: highWaterMark, receiveHighWaterMark: highWaterMark)
    try push.connect(endpoint)
    return (push, pull)
}

@Test(arguments: ["tcp", "ipc"])
func batchesCrossASocketIntact(transport: String) throws {
    let context = ZMQContext()
    let endpoint = transport == "tcp" ? freePortEndpoint() : "ipc:///tmp/sluice-test-\(getpid())-\(UUID().uuidString.prefix(8)).ipc"
    let (push, pull) = try pair(endpoint, context: context)
    let values = (0..<(3 * 1000)).map { Float($0) * 0.5 }
    let ids: [Int64] = [7, 8, 9]
    var batch = Batch(header: BatchHeader(batchSequence: 5, firstWindow: 15, windowCount: 3, epoch: 2, cursor: 4, created: 99, tensors: []),
                      metadata: WindowKey.encode([WindowKey(sensor: "a", start: 1), WindowKey(sensor: "b", start: 2), WindowKey(sensor: "c", start: 3)]),
                      tensors: [:])
    batch.setTensors(["h": Tensor(shape: [3, 1000], floats: values), "ids": Tensor(shape: [3], int64s: ids)], order: ["h", "ids"])
    try push.send(batch.frames())
    let frames = try #require(try pull.receive())
    let received = try Batch.decode(frames)
    #expect(received.header == batch.header)
    #expect(received.metadata == batch.metadata)
    #expect(received.tensors["h"]?.floats == values)
    #expect(received.tensors["ids"]?.int64s == ids)
}

@Test func malformedBatchesAreRejectedNotCrashed() throws {
    let context = ZMQContext()
    let (push, pull) = try pair(freePortEndpoint(), context: context)
    let header = BatchHeader(batchSequence: 0, firstWindow: 0, windowCount: 1, epoch: 1, cursor: 0, created: 0,
                             tensors: [TensorDescriptor(name: "x", dtype: .float32, shape: [1, 4])])
    // Wrong tensor size, missing tensor frame, garbage header.
    let cases: [[OutgoingFrame]] = [
        [.bytes(header.encoded()), .bytes([]), .bytes([1, 2, 3])],
        [.bytes(header.encoded()), .bytes([])],
        [.bytes([0xde, 0xad]), .bytes([])],
        [.bytes(header.encoded())],
    ]
    for frames in cases {
        try push.send(frames)
        let received = try #require(try pull.receive())
        #expect(throws: WireError.self) { try Batch.decode(received) }
    }
}

@Test func aFullPeerMakesNonBlockingSendsReportBackpressure() throws {
    let context = ZMQContext()
    let (push, pull) = try pair(freePortEndpoint(), context: context, highWaterMark: 2)
    let big = Tensor(zeros: .float32, shape: [256 * 1024])
    var accepted = 0
    let deadline = Date().addingTimeInterval(5)
    // Nobody reads: after the high-water marks and kernel buffers fill, sends must say so.
    while Date() < deadline {
        if try push.send([.tensor(big)], dontWait: true) { accepted += 1 } else { break }
    }
    #expect(accepted > 0 && accepted < 100, "accepted \(accepted) sends with nobody reading")
    _ = pull
}

@Test func dealerAndRouterExchangeControlMessagesByName() throws {
    let context = ZMQContext()
    let endpoint = freePortEndpoint()
    let router = try ZMQSocket(context, .router, lingerMilliseconds: 0, sendHighWaterMark: 100, receiveHighWaterMark: 100)
    try router.bind(endpoint)
    let dealer = try ZMQSocket(context, .dealer, lingerMilliseconds: 0, sendHighWaterMark: 100, receiveHighWaterMark: 100, identity: "stage-2")
    try dealer.connect(endpoint)
    try dealer.send([.bytes(ControlMessage.ready.encoded())])
    #expect(try poll([(router, .readable)], timeoutMilliseconds: 5000) == [.readable])
    let frames = try #require(try router.receive())
    #expect(frames[0].text == "stage-2")
    #expect(try frames[1].withBytes { try ControlMessage.decode($0) } == .ready)
    try router.send([.bytes(Array("stage-2".utf8)), .bytes(ControlMessage.start.encoded())])
    let reply = try #require(try dealer.receive())
    #expect(try reply[0].withBytes { try ControlMessage.decode($0) } == .start)
}

@Test func ipcSocketFilesAreRemovedOnClose() throws {
    let path = "/tmp/sluice-test-\(getpid())-close.ipc"
    FileManager.default.createFile(atPath: path, contents: Data("stale".utf8))
    do {
        let context = ZMQContext()
        let pull = try ZMQSocket(context, .pull, lingerMilliseconds: 0, sendHighWaterMark: 1, receiveHighWaterMark: 1)
        try pull.bind("ipc://\(path)")
        #expect(FileManager.default.fileExists(atPath: path))
    }
    #expect(!FileManager.default.fileExists(atPath: path))
}
