/// What a stage measured of one layer, running totals since it took its assignment: stages
/// report these in their heartbeats, and the cost model takes the differences.
public struct LayerTiming: Codable, Equatable, Sendable {
    public var layer: Int
    public var seconds: Double
    public var windows: Int
    public init(layer: Int, seconds: Double, windows: Int) { self.layer = layer; self.seconds = seconds; self.windows = windows }
}
