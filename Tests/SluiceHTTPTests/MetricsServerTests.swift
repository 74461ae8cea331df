import Foundation
#if canImport(Glibc)
import Glibc
#endif
import SluiceHTTP
import SluiceProfile
import SluiceProtocol
import SluiceTestSupport
import SluiceTransport
import Testing

/// A plain POSIX TCP client on loopback.
private final class Client {
    let fd: Int32

    init(port: UInt16) throws {
        guard let fd = connectToLoopback(port: port) else {
            throw MetricsServerError(description: "connect: \(String(cString: strerror(errno)))")
        }
        self.fd = fd
    }

    deinit { close(fd) }

    func send(_ text: String) {
        let bytes = Array(text.utf8)
        _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    /// Everything the server sends until it closes, servicing it meanwhile (one thread does both).
    func response(from server: MetricsServer, body: @escaping () -> String, seconds: Double = 3) -> String {
        var received: [UInt8] = []
        let deadline = Date().addingTimeInterval(seconds)
        var buffer = [UInt8](repeating: 0, count: 4096)
        while Date() < deadline {
            server.serviceReady(body: body)
            var item = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&item, 1, 10) > 0 else { continue }
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count <= 0 { break }
            received += buffer[0..<count]
        }
        return String(decoding: received, as: UTF8.self)
    }
}

private let metricsBody = "# HELP sluice_pipeline_epoch Plan epoch in force.\n# TYPE sluice_pipeline_epoch gauge\nsluice_pipeline_epoch 3\n"

@Test func metricsAreServedOverHTTP() throws {
    let server = try MetricsServer(host: "127.0.0.1", port: 0)
    #expect(server.port != 0)
    let client = try Client(port: server.port)
    client.send("GET /metrics HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n")
    var calls = 0
    let response = client.response(from: server, body: { calls += 1; return metricsBody })
    #expect(response.hasPrefix("HTTP/1.1 200 OK\r\n"))
    #expect(response.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"))
    #expect(response.contains("Content-Length: \(metricsBody.utf8.count)\r\n"))
    #expect(response.hasSuffix("\r\n\r\n" + metricsBody))
    #expect(calls == 1)
    #expect(server.openConnections == 0)
}

@Test func otherPathsAndMethodsAreRefused() throws {
    let server = try MetricsServer(host: "localhost", port: 0)
    let cases = [("GET / HTTP/1.1\r\n\r\n", "404 Not Found"), ("GET /metricsx HTTP/1.0\r\n\r\n", "404 Not Found"),
                 ("POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", "405 Method Not Allowed"),
                 ("\u{1}\u{2}garbage\n\n", "400 Bad Request"), ("GET\r\n\r\n", "400 Bad Request")]
    for (request, status) in cases {
        let client = try Client(port: server.port)
        client.send(request)
        var called = false
        let response = client.response(from: server, body: { called = true; return "" })
        #expect(response.hasPrefix("HTTP/1.1 \(status)\r\n"), "\(request.debugDescription) → \(response.debugDescription)")
        #expect(!called)
    }
    // Query strings are ignored, as scrapers may add them.
    let client = try Client(port: server.port)
    client.send("GET /metrics?name[]=x HTTP/1.1\r\n\r\n")
    #expect(client.response(from: server, body: { metricsBody }).hasPrefix("HTTP/1.1 200 OK"))
}

@Test func aSilentClientNeverBlocksTheLoopAndIsDroppedAfterTheTimeout() throws {
    var clock = 0.0
    let server = try MetricsServer(host: "127.0.0.1", port: 0, clientTimeoutSeconds: 5, now: { clock })
    let silent = try Client(port: server.port)
    let half = try Client(port: server.port)
    half.send("GET /metr")
    let started = Date()
    for _ in 0..<20 { server.serviceReady(body: { metricsBody }) }
    #expect(Date().timeIntervalSince(started) < 0.5)
    #expect(server.openConnections == 2)
    // Meanwhile a good client is answered.
    let good = try Client(port: server.port)
    good.send("GET /metrics HTTP/1.1\r\n\r\n")
    #expect(good.response(from: server, body: { metricsBody }).hasPrefix("HTTP/1.1 200 OK"))
    clock = 6
    server.serviceReady(body: { metricsBody })
    #expect(server.openConnections == 0)
    _ = silent
}

@Test func oversizedAndVanishingClientsDoNotBreakTheServer() throws {
    let server = try MetricsServer(host: "127.0.0.1", port: 0)
    let big = try Client(port: server.port)
    big.send("GET /" + String(repeating: "a", count: 20_000))
    #expect(big.response(from: server, body: { metricsBody }).hasPrefix("HTTP/1.1 431"))
    for _ in 0..<5 {
        let gone = try Client(port: server.port)
        gone.send("GET /metrics HTTP/1.1\r\n")
        _ = gone   // closed at the end of this iteration, before any answer
    }
    for _ in 0..<5 { server.serviceReady(body: { metricsBody }) }
    let after = try Client(port: server.port)
    after.send("GET /metrics HTTP/1.1\r\n\r\n")
    #expect(after.response(from: server, body: { metricsBody }).hasSuffix(metricsBody))
}

/// The server's descriptors as the ZeroMQ poll takes them, as the controller's loop passes them.
private func pollItems(_ server: MetricsServer) -> [(Int32, PollEvents)] {
    server.pollDescriptors.map { ($0.descriptor, $0.writing ? .writable : .readable) }
}

@Test func theListeningSocketWakesAZeroMQPoll() throws {
    let server = try MetricsServer(host: "127.0.0.1", port: 0)
    let idle = try poll([], descriptors: pollItems(server), timeoutMilliseconds: 0)
    #expect(idle.descriptors == [[]])
    let client = try Client(port: server.port)
    let ready = try poll([], descriptors: pollItems(server), timeoutMilliseconds: 1000)
    #expect(ready.descriptors.first?.contains(.readable) == true)
    server.serviceReady(body: { metricsBody })
    #expect(server.pollDescriptors.count == 2)   // the listener and the accepted connection
    _ = client
}

@Test func aPortInUseIsAnErrorThatSaysSo() throws {
    let first = try MetricsServer(host: "127.0.0.1", port: 0)
    let error = #expect(throws: MetricsServerError.self) { try MetricsServer(host: "127.0.0.1", port: first.port) }
    #expect(error?.description.contains("127.0.0.1:\(first.port)") == true)
}

@Test func theExpositionIsWhatTheServerSends() throws {
    let server = try MetricsServer(host: "127.0.0.1", port: 0)
    var stage = RoleCounters()
    stage.elapsedSeconds = 10
    stage.busySeconds = 5
    let snapshot = MetricsSnapshot(stages: [0: stage], ranges: [0..<2], layerSecondsPerWindow: [1e-4, 2e-4],
                                   epoch: 1, rebalances: 0)
    let client = try Client(port: server.port)
    client.send("GET /metrics HTTP/1.1\r\n\r\n")
    let response = client.response(from: server, body: { PrometheusExposition.render(snapshot) })
    #expect(response.contains("sluice_stage_busy_seconds_total{stage=\"0\"} 5\n"))
    #expect(PrometheusExposition.contentType == MetricsServer.contentType)
}
