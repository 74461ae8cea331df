import Foundation

/// Who and when a window is: carried through the stages untouched in the metadata frame, so
/// the sink can label each prediction with its sensor and window start.
public struct WindowKey: Codable, Equatable, Sendable {
    /// Sensor id (tensors sources: "row").
    public var sensor: String
    /// Time of the window's first sample, in the recording's seconds (tensors sources: row index).
    public var start: Double
    /// Ground truth when the recording has it, for the accuracy in the run summary.
    public var label: String?

    public init(sensor: String, start: Double, label: String? = nil) {
        self.sensor = sensor
        self.start = start
        self.label = label
    }

    /// Written by hand rather than with JSONEncoder, which throws on a non-finite number: any
    /// key encodes, and a non-finite start (which a source never cuts, but a key is data) is
    /// written as the string "inf", "-inf" or "nan", as `decode` reads it back.
    public static func encode(_ keys: [WindowKey]) -> [UInt8] {
        var out = "["
        for (index, key) in keys.enumerated() {
            if index > 0 { out += "," }
            out += "{\"sensor\":" + JSONText.string(key.sensor) + ",\"start\":" + JSONText.number(key.start)
            if let label = key.label { out += ",\"label\":" + JSONText.string(label) }
            out += "}"
        }
        out += "]"
        return Array(out.utf8)
    }

    public static func decode(_ bytes: UnsafeRawBufferPointer) throws -> [WindowKey] {
        do {
            let decoder = JSONDecoder()
            decoder.nonConformingFloatDecodingStrategy = JSONText.nonFiniteDecoding
            return try decoder.decode([WindowKey].self, from: Data(bytes))
        } catch {
            throw WireError.malformed("metadata frame is not a JSON array of window keys: \(error)")
        }
    }
}

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

/// The JSON pieces window keys (and the sink's JSON lines) are written with.
public enum JSONText {
    public static let nonFiniteDecoding = JSONDecoder.NonConformingFloatDecodingStrategy.convertFromString(
        positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")

    /// A finite number as JSON reads it (Swift's shortest round-trip form); others as strings.
    static func number(_ value: Double) -> String {
        if value.isFinite { return "\(value)" }
        return value.isNaN ? "\"nan\"" : (value > 0 ? "\"inf\"" : "\"-inf\"")
    }

    /// `text` as a JSON string: quotes, backslashes and every control character escaped.
    public static func string(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 {
                    out += "\\u" + String(repeating: "0", count: 4 - String(scalar.value, radix: 16).count) + String(scalar.value, radix: 16)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}
