import Foundation

/// A self-contained SVG picture of a profile: per-stage stacked busy / blocked / idle bars, and
/// a timeline with one row per stage and one rectangle per traced micro-batch's compute span.
public enum SVGChart {
    static let width = 1000.0
    static let labelWidth = 170.0
    static let plotWidth = 700.0
    static let rowHeight = 22.0
    static let busyColour = "#d95f02"
    static let blockedColour = "#7570b3"
    static let idleColour = "#c7c7c7"
    static let computeColour = "#1b9e77"

    public static func render(_ profile: ProfileData) -> String {
        var body: [String] = []
        var y = 30.0
        body.append(text(x: 10, y: y, "\(profile.pipeline): \(rate(profile.windowsPerSecond)) windows/s over "
            + String(format: "%.2f s", profile.durationSeconds), size: 16, weight: "bold"))
        y += 30
        body.append(text(x: 10, y: y, "time per stage (busy + blocked + idle = wall time)", size: 13, weight: "bold"))
        y += 10
        for stage in profile.stages {
            body.append(text(x: 10, y: y + 15, "stage \(stage.index) (\(stage.firstLayer == stage.lastLayer ? "layer" : "layers") \(stage.layers))", size: 12))
            var x = labelWidth
            for (fraction, colour, name) in [(stage.busyFraction, busyColour, "busy"), (stage.blockedFraction, blockedColour, "blocked"),
                                             (stage.idleFraction, idleColour, "idle")] {
                let w = max(0, min(1, fraction.isFinite ? fraction : 0)) * plotWidth
                guard w > 0 else { continue }
                body.append(rect(x: x, y: y, width: w, height: rowHeight - 4, fill: colour, title: "stage \(stage.index) \(name) \(percent(fraction))"))
                if w > 34 { body.append(text(x: x + 4, y: y + 13, percent(fraction), size: 11, fill: colour == idleColour ? "#222222" : "#ffffff")) }
                x += w
            }
            if profile.bottleneck.limiter == .stage && profile.bottleneck.stage == stage.index {
                body.append(text(x: labelWidth + plotWidth + 8, y: y + 13, "◀ bottleneck", size: 12, weight: "bold"))
            }
            y += rowHeight
        }
        if profile.bottleneck.limiter == .sink || profile.bottleneck.limiter == .input {
            body.append(text(x: labelWidth, y: y + 12, profile.bottleneck.limiter == .sink ? "limited by the sink" : "limited by the input rate",
                             size: 12, weight: "bold"))
            y += rowHeight
        }
        y += 8
        body += legend(y: y, [(busyColour, "busy (computing)"), (blockedColour, "blocked (waiting for room downstream)"),
                              (idleColour, "idle (waiting for input)")])
        y += 40
        body += timeline(profile, top: y)
        y += 40 + rowHeight * Double(max(profile.stages.count, 1)) + 40
        let height = y
        return """
        <?xml version="1.0" encoding="UTF-8"?>
        <svg xmlns="http://www.w3.org/2000/svg" width="\(fmt(width))" height="\(fmt(height))" viewBox="0 0 \(fmt(width)) \(fmt(height))" font-family="sans-serif">
        <rect x="0" y="0" width="\(fmt(width))" height="\(fmt(height))" fill="#ffffff"/>
        \(body.joined(separator: "\n"))
        </svg>

        """
    }

    static func timeline(_ profile: ProfileData, top: Double) -> [String] {
        var parts = [text(x: 10, y: top, "timeline: compute per traced micro-batch", size: 13, weight: "bold")]
        let traces = profile.traces
        let rowsTop = top + 20
        let stages = profile.stages.map(\.index)
        guard let start = traces.map(\.created).min(), let end = traces.map(\.sinkReceived).max(), end > start else {
            parts.append(text(x: labelWidth, y: rowsTop + 14, "no micro-batch was traced", size: 12))
            return parts
        }
        let span = Double(end - start)
        func x(_ nanos: UInt64) -> Double { labelWidth + plotWidth * Double(nanos &- min(nanos, start)) / span }
        for (row, stage) in stages.enumerated() {
            let y = rowsTop + Double(row) * rowHeight
            parts.append(text(x: 10, y: y + 15, "stage \(stage)", size: 12))
            parts.append(rect(x: labelWidth, y: y, width: plotWidth, height: rowHeight - 4, fill: "#f4f4f4", title: nil))
            for trace in traces {
                for hop in trace.hops where Int(hop.stage) == stage {
                    let left = x(hop.computeStart)
                    // At least a third of a pixel, so short spans still show.
                    let w = max(0.33, x(max(hop.computeEnd, hop.computeStart)) - left)
                    parts.append(rect(x: left, y: y, width: w, height: rowHeight - 4, fill: computeColour,
                                      title: "batch \(trace.batchSequence) on stage \(stage): "
                                        + fixed(Double(hop.computeEnd &- min(hop.computeStart, hop.computeEnd)) / 1e6, 3) + " ms"))
                }
            }
        }
        let axisY = rowsTop + Double(max(stages.count, 1)) * rowHeight + 4
        parts.append("<line x1=\"\(fmt(labelWidth))\" y1=\"\(fmt(axisY))\" x2=\"\(fmt(labelWidth + plotWidth))\" y2=\"\(fmt(axisY))\" stroke=\"#333333\"/>")
        for tick in 0...5 {
            let fraction = Double(tick) / 5
            let tx = labelWidth + plotWidth * fraction
            let seconds = span * fraction / 1e9
            let label = span / 1e9 >= 2 ? String(format: "%.1f s", seconds) : String(format: "%.1f ms", seconds * 1000)
            parts.append("<line x1=\"\(fmt(tx))\" y1=\"\(fmt(axisY))\" x2=\"\(fmt(tx))\" y2=\"\(fmt(axisY + 4))\" stroke=\"#333333\"/>")
            parts.append(text(x: tx - 14, y: axisY + 16, label, size: 10))
        }
        return parts
    }

    static func legend(y: Double, _ items: [(String, String)]) -> [String] {
        var parts: [String] = []
        var x = labelWidth
        for (colour, label) in items {
            parts.append(rect(x: x, y: y, width: 12, height: 12, fill: colour, title: nil))
            parts.append(text(x: x + 16, y: y + 10, label, size: 11))
            x += 20 + Double(label.count) * 6.2
        }
        return parts
    }

    static func rect(x: Double, y: Double, width: Double, height: Double, fill: String, title: String?) -> String {
        let open = "<rect x=\"\(fmt(x))\" y=\"\(fmt(y))\" width=\"\(fmt(width))\" height=\"\(fmt(height))\" fill=\"\(fill)\""
        guard let title else { return open + "/>" }
        return open + "><title>\(escape(title))</title></rect>"
    }

    static func text(x: Double, y: Double, _ content: String, size: Int, weight: String = "normal", fill: String = "#222222") -> String {
        "<text x=\"\(fmt(x))\" y=\"\(fmt(y))\" font-size=\"\(size)\" font-weight=\"\(weight)\" fill=\"\(fill)\">\(escape(content))</text>"
    }

    static func fmt(_ value: Double) -> String { value.isFinite ? String(format: "%.2f", value) : "0" }

    /// Text safe inside an element or attribute.
    public static func escape(_ text: String) -> String {
        var out = ""
        for character in text {
            switch character {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&apos;"
            default:
                // Control characters other than tab and newline are not allowed in XML 1.0.
                if let scalar = character.unicodeScalars.first, character.unicodeScalars.count == 1,
                   scalar.value < 0x20, scalar != "\t", scalar != "\n" { continue }
                out.append(character)
            }
        }
        return out
    }
}
