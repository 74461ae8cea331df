import Foundation
#if canImport(Glibc)
import Glibc
#endif

public struct MetricsServerError: Error, CustomStringConvertible {
    public var description: String
    public init(description: String) { self.description = description }
}

/// A minimal HTTP/1.1 server for Prometheus scrapes, made to live inside a poll loop: one
/// non-blocking listening socket, connections kept as small state machines, nothing ever waits.
///
/// Put `pollDescriptors` into the loop's poll (any poll that takes plain descriptors: the
/// controller's takes ZeroMQ sockets and descriptors together), then call `serviceReady(body:)` every turn.
/// `GET /metrics` answers 200 with `body()` as `text/plain; version=0.0.4`, `GET /health` 200
/// with `ok` (for probes); any other path 404,
/// any other method 405, a malformed request 400, a request over `maximumRequestBytes` 431.
/// Every answer closes its connection. A client that sends nothing is dropped after
/// `clientTimeoutSeconds`; beyond `maximumConnections` open ones, new ones are closed at once.
public final class MetricsServer {
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    /// The listening socket, for the caller's poll.
    public let fileDescriptor: Int32
    /// The port bound (the one chosen by the system when 0 was asked for).
    public let port: UInt16
    public let maximumRequestBytes = 8192
    public let maximumConnections = 16
    public let clientTimeoutSeconds: Double
    /// Requests answered so far, any status.
    public private(set) var served = 0

    private final class Connection {
        let fd: Int32
        let opened: Double
        var request: [UInt8] = []
        var response: [UInt8] = []
        var written = 0
        var answered = false
        init(fd: Int32, opened: Double) { self.fd = fd; self.opened = opened }
    }

    private var connections: [Connection] = []
    private let now: () -> Double

    /// Binds `host:port` (a name or a numeric address; port 0 picks a free one) and listens.
    public init(host: String, port: UInt16, clientTimeoutSeconds: Double = 5, now: @escaping () -> Double = MetricsServer.monotonicSeconds) throws {
        self.clientTimeoutSeconds = clientTimeoutSeconds
        self.now = now
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV
        var results: UnsafeMutablePointer<addrinfo>?
        let resolved = getaddrinfo(host == "*" ? nil : host, String(port), &hints, &results)
        guard resolved == 0, let first = results else {
            throw MetricsServerError(description: "metrics server: cannot resolve \(host):\(port): \(String(cString: gai_strerror(resolved)))")
        }
        defer { freeaddrinfo(results) }
        var lastError = "no address"
        var candidate: UnsafeMutablePointer<addrinfo>? = first
        var bound: Int32 = -1
        while let info = candidate {
            candidate = info.pointee.ai_next
            let fd = socket(info.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { lastError = String(cString: strerror(errno)); continue }
            var yes: Int32 = 1
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
            if bind(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0, listen(fd, 16) == 0 {
                bound = fd
                break
            }
            lastError = String(cString: strerror(errno))
            close(fd)
        }
        guard bound >= 0 else { throw MetricsServerError(description: "metrics server: cannot listen on \(host):\(port): \(lastError)") }
        fileDescriptor = bound
        var address = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(bound, $0, &length) }
        }
        if named == 0 && Int32(address.ss_family) == AF_INET6 {
            self.port = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin6_port) } }
        } else if named == 0 {
            self.port = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin_port) } }
        } else {
            self.port = port
        }
    }

    deinit {
        for connection in connections { close(connection.fd) }
        close(fileDescriptor)
    }

    /// The listening socket and every open connection, with what each waits for.
    public var pollDescriptors: [(descriptor: Int32, writing: Bool)] {
        [(fileDescriptor, false)] + connections.map { ($0.fd, $0.answered) }
    }

    /// Open client connections (for tests and logs).
    public var openConnections: Int { connections.count }

    /// Accepts what is pending, reads what has arrived, answers complete requests, writes what
    /// the sockets take, and closes finished, broken or timed-out connections. Never blocks.
    /// `body` is called once per `GET /metrics` answered.
    public func serviceReady(body: () -> String) {
        acceptPending()
        let time = now()
        var open: [Connection] = []
        for connection in connections {
            if step(connection, body: body) && time - connection.opened < clientTimeoutSeconds {
                open.append(connection)
            } else {
                close(connection.fd)
            }
        }
        connections = open
    }

    private func acceptPending() {
        while true {
            let fd = accept(fileDescriptor, nil, nil)
            if fd < 0 { return }  // EAGAIN: none left; anything else: try again next turn
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            guard connections.count < maximumConnections else {
                close(fd)
                continue
            }
            connections.append(Connection(fd: fd, opened: now()))
        }
    }

    /// Moves one connection on; false when it is done with (answered and flushed, or broken).
    private func step(_ connection: Connection, body: () -> String) -> Bool {
        if !connection.answered {
            var buffer = [UInt8](repeating: 0, count: 2048)
            while connection.request.count <= maximumRequestBytes {
                let count = buffer.withUnsafeMutableBytes { recv(connection.fd, $0.baseAddress, $0.count, 0) }
                if count > 0 {
                    connection.request += buffer[0..<count]
                    if Self.headerEnd(connection.request) != nil { break }
                } else if count == 0 {
                    // The peer closed its side: answer what it sent if it is a whole request line.
                    if Self.requestLine(connection.request) == nil { return false }
                    break
                } else {
                    if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { break }
                    return false
                }
            }
            if connection.request.count > maximumRequestBytes {
                answer(connection, status: "431 Request Header Fields Too Large", body: "request too large\n")
            } else if Self.headerEnd(connection.request) != nil || (Self.requestLine(connection.request) != nil && isPeerClosed(connection)) {
                respond(connection, body: body)
            } else {
                return true  // wait for the rest
            }
        }
        while connection.written < connection.response.count {
            let count = connection.response.withUnsafeBytes {
                send(connection.fd, $0.baseAddress! + connection.written, $0.count - connection.written, Int32(MSG_NOSIGNAL))
            }
            if count > 0 {
                connection.written += count
            } else if count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                return true
            } else {
                return false
            }
        }
        shutdown(connection.fd, Int32(SHUT_WR))
        return false
    }

    private func isPeerClosed(_ connection: Connection) -> Bool {
        var byte: UInt8 = 0
        return recv(connection.fd, &byte, 1, Int32(MSG_PEEK)) == 0
    }

    private func respond(_ connection: Connection, body: () -> String) {
        guard let line = Self.requestLine(connection.request) else {
            return answer(connection, status: "400 Bad Request", body: "bad request\n")
        }
        let parts = line.split(separator: " ", omittingEmptySubsequences: true)
        guard parts.count == 3, parts[2].hasPrefix("HTTP/") else {
            return answer(connection, status: "400 Bad Request", body: "bad request\n")
        }
        let path = parts[1].split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
        guard path == "/metrics" || path == "/health" else { return answer(connection, status: "404 Not Found", body: "not found: try /metrics\n") }
        guard parts[0] == "GET" || parts[0] == "HEAD" else {
            return answer(connection, status: "405 Method Not Allowed", body: "only GET\n", extra: "Allow: GET, HEAD\r\n")
        }
        // Answered by the loop that runs the pipeline: a hung controller fails its probes.
        if path == "/health" { return answer(connection, status: "200 OK", body: "ok\n", headOnly: parts[0] == "HEAD") }
        answer(connection, status: "200 OK", body: body(), contentType: Self.contentType, headOnly: parts[0] == "HEAD")
    }

    private func answer(_ connection: Connection, status: String, body: String, contentType: String = "text/plain; charset=utf-8",
                        extra: String = "", headOnly: Bool = false) {
        let payload = Array(body.utf8)
        let head = "HTTP/1.1 \(status)\r\nContent-Type: \(contentType)\r\nContent-Length: \(payload.count)\r\n\(extra)Connection: close\r\n\r\n"
        connection.response = Array(head.utf8) + (headOnly ? [] : payload)
        connection.answered = true
        served += 1
    }

    /// Index just past the blank line that ends the headers, if it has arrived.
    static func headerEnd(_ bytes: [UInt8]) -> Int? {
        var index = 0
        while index < bytes.count {
            if bytes[index] == 0x0A {
                if index + 1 < bytes.count, bytes[index + 1] == 0x0A { return index + 2 }
                if index + 2 < bytes.count, bytes[index + 1] == 0x0D, bytes[index + 2] == 0x0A { return index + 3 }
            }
            index += 1
        }
        return nil
    }

    /// The first line, without its line end, once it is complete and printable.
    static func requestLine(_ bytes: [UInt8]) -> String? {
        guard let end = bytes.firstIndex(of: 0x0A) else { return nil }
        var line = bytes[..<end]
        if line.last == 0x0D { line = line.dropLast() }
        guard line.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) else { return nil }
        return String(decoding: line, as: UTF8.self)
    }

    public static func monotonicSeconds() -> Double {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return Double(spec.tv_sec) + Double(spec.tv_nsec) / 1e9
    }
}
