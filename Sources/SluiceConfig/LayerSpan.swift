/// Consecutive layers of a model, as one stage runs them: `start` up to, not including, `end`.
/// Written and read as people see it in configs, plans and reports: "3-5" for layers 3, 4
/// and 5, "4" for layer 4 alone; a split of a whole model as "0-2,3-5,6".
public struct LayerSpan: Hashable, Sendable, CustomStringConvertible {
    public var start: Int
    public var end: Int

    public init(start: Int, end: Int) { self.start = start; self.end = end }
    public init(_ layers: Range<Int>) { self.init(start: layers.lowerBound, end: layers.upperBound) }

    public var layers: Range<Int> { start..<end }
    public var count: Int { end - start }

    /// "" for no layers (a stage that holds none).
    public var description: String { end <= start ? "" : end - start == 1 ? "\(start)" : "\(start)-\(end - 1)" }

    /// "3-5" or "4" (spaces around the numbers allowed); nil for anything else.
    public init?(parsing text: some StringProtocol) {
        guard let span = try? LayerSpan.parse(text) else { return nil }
        self = span
    }

    /// "3-5" or "4" (spaces around the numbers allowed), or why not: not that form, backwards,
    /// or numbering a layer no model has.
    public static func parse(_ text: some StringProtocol) throws -> LayerSpan {
        let bounds = text.split(separator: "-", omittingEmptySubsequences: false).map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard bounds.count == 1 || bounds.count == 2, let first = bounds.first ?? nil, let last = bounds.last ?? nil,
              first >= 0, first <= last else {
            throw LayerSpanError(description: "must be a layer range such as '0-3' or '4', not '\(text)'")
        }
        guard last < Limits.layers else {
            throw LayerSpanError(description: "layer \(last) is past any model (layers are numbered below \(Limits.layers))")
        }
        return LayerSpan(start: first, end: last + 1)
    }

    /// "0-2,3-5,6".
    public static func describe(_ spans: [LayerSpan]) -> String { spans.map(\.description).joined(separator: ",") }

    public static func describe(_ ranges: [Range<Int>]) -> String { describe(ranges.map(LayerSpan.init)) }

    /// The spans of a split such as "0-2,3-5,6": contiguous and in order from layer 0; nil otherwise.
    public static func split(parsing text: some StringProtocol) -> [LayerSpan]? {
        var spans: [LayerSpan] = []
        for part in text.split(separator: ",") {
            guard let span = LayerSpan(parsing: part), span.start == (spans.last?.end ?? 0) else { return nil }
            spans.append(span)
        }
        return spans.isEmpty ? nil : spans
    }
}

public struct LayerSpanError: Error, CustomStringConvertible, Sendable {
    public var description: String
}

/// A span travels and is stored as its text, "3-5", so reports and messages read as configs do.
extension LayerSpan: Codable {
    public init(from decoder: Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let span = LayerSpan(parsing: text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "'\(text)' is not a layer span such as '3-5' or '4'"))
        }
        self = span
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

extension KeyedDecodingContainer {
    /// A split as a list of spans, or as the one string, "0-1,2,3-5", that reports held before
    /// splits were lists.
    public func decodeSplit(forKey key: Key) throws -> [LayerSpan] {
        if let spans = try? decode([LayerSpan].self, forKey: key) { return spans }
        let text = try decode(String.self, forKey: key)
        guard let spans = LayerSpan.split(parsing: text) else {
            throw DecodingError.dataCorruptedError(forKey: key, in: self, debugDescription: "'\(text)' is not a split such as '0-1,2,3-5'")
        }
        return spans
    }
}
