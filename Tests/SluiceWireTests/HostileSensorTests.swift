import Foundation
import Testing
import SluiceTestSupport
@testable import SluiceWire

/// Live-sensor headers and window keys come from outside the process: whatever they hold,
/// decoding ends in a header whose every sample time is finite, or in a `WireError`.
@Suite struct HostileSensorTests {
    static func decode(_ json: String, payload: Int?, channels: Int = 6) throws -> SampleChunkHeader {
        try Array(json.utf8).withUnsafeBytes { try SampleChunkHeader.decode($0, payloadBytes: payload, expectedChannels: channels) }
    }

    /// Each of these made a window start that is not a finite number, which the source could
    /// not encode (it trapped on the first).
    @Test(arguments: [
        #"{"v":1,"sensor":"s","t0":1e308,"dt":1e307,"channels":6,"count":10}"#,
        #"{"v":1,"sensor":"s","t0":-1e308,"dt":1e308,"channels":6,"count":3}"#,
        #"{"v":1,"sensor":"s","t0":0,"dt":1.7976931348623157e308,"channels":6,"count":3}"#,
    ])
    func chunksWhoseTimesLeaveTheNumbersAreRefused(json: String) throws {
        let count = try #require(Int(json.split(separator: ":").last?.dropLast() ?? ""))
        let error = try #require(throws: WireError.self) { try Self.decode(json, payload: count * 24) }
        #expect("\(error)".contains("past the largest time"), "\(error)")
    }

    @Test func theLastFiniteTimeIsStillAccepted() throws {
        let header = try Self.decode(#"{"v":1,"sensor":"s","t0":1e308,"dt":1e292,"channels":6,"count":2}"#, payload: 48)
        #expect(header.count == 2)
    }

    @Test func windowKeysOfAnyValueEncodeAndComeBack() throws {
        var random = SplitMix(seed: 0xBAD5_EED)
        let specials: [Double] = [.infinity, -.infinity, .nan, .greatestFiniteMagnitude, -0.0, .leastNonzeroMagnitude, 1e-300]
        for _ in 0..<300 {
            let scalars = (0..<Int(random.next() % 12)).compactMap { _ in Unicode.Scalar(UInt32(random.next() % 0x3000)) }
            let sensor = String(String.UnicodeScalarView(scalars))
            let start = random.next() % 3 == 0 ? specials[Int(random.next() % UInt64(specials.count))]
                : Double(bitPattern: random.next())
            let label: String? = random.next() % 2 == 0 ? nil : "\"\\\u{0}\u{1B}[31m"
            let keys = [WindowKey(sensor: sensor, start: start, label: label), WindowKey(sensor: "row", start: 1)]
            let decoded = try WindowKey.encode(keys).withUnsafeBytes { try WindowKey.decode($0) }
            #expect(decoded.count == 2)
            #expect(decoded[0].sensor == sensor && decoded[0].label == label)
            #expect(decoded[0].start == start || (decoded[0].start.isNaN && start.isNaN), "\(start) came back as \(decoded[0].start)")
        }
    }

    /// Random bytes and mutated headers: a fixed-seed short run of tools/fuzz_sensors.py's
    /// mutations, at the unit that decodes them.
    @Test func mutatedHeadersDecodeOrFailCleanly() {
        var random = SplitMix(seed: 0x5E45_0A)
        let base = Array(#"{"v":1,"sensor":"imu-3","t0":12.5,"dt":0.1,"channels":6,"count":10,"labels":["a","b","c","d","e","f","g","h","i","j"]}"#.utf8)
        let hostile = ["1e308", "-1e308", "1e-320", "9223372036854775807", "-9223372036854775808", "null", "\"x\"", "[]", "{}",
                       "0", "-1", "4611686018427387904", "true", "1.5"]
        var accepted = 0
        for _ in 0..<2000 {
            var bytes = base
            switch random.next() % 3 {
            case 0:
                for _ in 0...(random.next() % 4) where !bytes.isEmpty {
                    bytes[Int(random.next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: random.next())
                }
            case 1:
                var text = String(decoding: bytes, as: UTF8.self)
                for key in ["\"t0\":12.5", "\"dt\":0.1", "\"count\":10", "\"channels\":6", "\"v\":1"] where random.next() % 3 == 0 {
                    let name = key.split(separator: ":")[0]
                    text = text.replacingOccurrences(of: key, with: "\(name):\(hostile[Int(random.next() % UInt64(hostile.count))])")
                }
                bytes = Array(text.utf8)
            default:
                bytes = Array(bytes.prefix(Int(random.next() % UInt64(bytes.count + 1))))
            }
            let payload = random.next() % 4 == 0 ? Int(random.next() % 400) : 240
            if let header = try? bytes.withUnsafeBytes({ try SampleChunkHeader.decode($0, payloadBytes: payload, expectedChannels: 6) }),
               !header.isEndOfStream {
                accepted += 1
                let count = header.count ?? 0, t0 = header.t0 ?? .nan, dt = header.dt ?? .nan
                #expect(count > 0 && payload == count * 24 && (t0 + Double(count - 1) * dt).isFinite, "\(header)")
            }
        }
        #expect(accepted > 0)
    }
}
