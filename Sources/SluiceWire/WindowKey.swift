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
