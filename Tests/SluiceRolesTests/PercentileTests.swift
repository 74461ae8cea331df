import Foundation
import Testing
import SluiceProtocol
@testable import SluiceRoles
import SluiceWire

/// The one nearest-rank percentile both the sink's latency and a stage's time in stage use.
@Test func nearestRankIsAValueReallyMeasured() {
    let hundred = (1...100).map(Double.init)
    #expect(nearestRank(0.5, of: hundred) == 50)
    #expect(nearestRank(0.99, of: hundred) == 99)
    #expect(nearestRank(0.5, of: [1, 2, 3]) == 2)
    #expect(nearestRank(0.99, of: [7]) == 7)
    #expect(nearestRank(0.5, of: []) == nil)
}

/// Sensor names and labels reach the JSON lines through one escaper: every control character,
/// quote and backslash must read back unchanged.
@Test func everyControlCharacterSurvivesAJSONRoundTrip() throws {
    let text = String(String.UnicodeScalarView((0..<0x20).compactMap(Unicode.Scalar.init))) + "\"\\é😀"
    let line = "{\"s\":" + JSONText.string(text) + "}"
    let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String])
    #expect(object["s"] == text)
}
