import Foundation

/// Frame 0 of a live-sensor message (frame 1 holds count × channels float32 values,
/// sample-major). `{"v":1,"eos":true}` alone ends the stream.
public struct SampleChunkHeader: Codable, Equatable, Sendable {
    public var v: Int
    public var sensor: String?
    public var t0: Double?
    public var dt: Double?
    public var channels: Int?
    public var count: Int?
    public var labels: [String]?
    public var eos: Bool?
    /// Who sent the message; end of stream is per sender (docs/protocol.md §4). A chunk without
    /// it is its sensor's: the sender is named by the sensor id.
    public var sender: String?
    /// End of stream only: chunks the sender sent before it, so the source can count any that
    /// never arrived.
    public var chunks: Int?

    public init(sensor: String, t0: Double, dt: Double, channels: Int, count: Int, labels: [String]? = nil) {
        v = 1
        self.sensor = sensor
        self.t0 = t0
        self.dt = dt
        self.channels = channels
        self.count = count
        self.labels = labels
    }

    /// The end of `sender`'s stream, after `chunks` chunks (nil: not counted).
    public static func endOfStream(sender: String, chunks: Int? = nil) -> SampleChunkHeader {
        SampleChunkHeader(v: 1, eos: true, sender: sender, chunks: chunks)
    }

    private init(v: Int, eos: Bool, sender: String, chunks: Int?) {
        self.v = v
        self.eos = eos
        self.sender = sender
        self.chunks = chunks
    }

    public var isEndOfStream: Bool { eos == true }

    /// The sender whose stream this message belongs to: `sender`, or else the sensor id.
    public var senderName: String? { sender ?? sensor }

    /// Decodes and checks a chunk header against the payload size and the expected channels.
    public static func decode(_ bytes: UnsafeRawBufferPointer, payloadBytes: Int?, expectedChannels: Int) throws -> SampleChunkHeader {
        let header: SampleChunkHeader
        do {
            header = try JSONDecoder().decode(SampleChunkHeader.self, from: Data(bytes))
        } catch {
            throw WireError.malformed("sample header is not the documented JSON object: \(error)")
        }
        guard header.v == 1 else { throw WireError.unsupportedVersion(UInt8(clamping: header.v)) }
        if header.isEndOfStream {
            // An end of stream that names no sender could end other senders' input while their
            // chunks are still on the way: it is refused, never guessed at.
            guard let sender = header.sender, !sender.isEmpty else {
                throw WireError.malformed("end of stream must name its sender: {\"v\":1,\"eos\":true,\"sender\":\"…\"}")
            }
            if let chunks = header.chunks, chunks < 0 { throw WireError.malformed("end of stream of '\(sender)' counts \(chunks) chunks") }
            return header
        }
        guard let sensor = header.sensor, !sensor.isEmpty, let t0 = header.t0, t0.isFinite, let dt = header.dt, dt > 0, dt.isFinite,
              let channels = header.channels, let count = header.count, count > 0 else {
            throw WireError.malformed("sample header needs sensor, finite t0, finite dt > 0, channels and count > 0")
        }
        // Every sample's time becomes a window start: the last one must be a finite number too.
        guard (t0 + Double(count - 1) * dt).isFinite else {
            throw WireError.malformed("sensor '\(sensor)': the last of \(count) samples from t0 \(t0) every \(dt) s is past the largest time")
        }
        guard channels == expectedChannels else {
            throw WireError.malformed("sensor '\(sensor)' sent \(channels) channels; this pipeline expects \(expectedChannels)")
        }
        let values = count.multipliedReportingOverflow(by: channels)
        let expected = values.partialValue.multipliedReportingOverflow(by: MemoryLayout<Float>.size)
        guard let payloadBytes, !values.overflow, !expected.overflow, payloadBytes == expected.partialValue else {
            throw WireError.malformed("sensor '\(sensor)': \(count) samples of \(channels) float32 channels do not match a payload of \(payloadBytes.map(String.init) ?? "no") bytes")
        }
        if let labels = header.labels, labels.count != count {
            throw WireError.malformed("sensor '\(sensor)': \(labels.count) labels for \(count) samples")
        }
        return header
    }
}
