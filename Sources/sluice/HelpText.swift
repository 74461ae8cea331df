import ArgumentParser
import Foundation

/// Help text, wrapped once, here. swift-argument-parser wraps help to the terminal on its own,
/// so discussion text with line breaks in it was wrapped twice (ragged lines), and an example
/// command longer than the terminal was split mid-argument, so a pasted copy no longer ran.
/// Sluice asks the parser for its help unwrapped and wraps it itself: paragraphs and option
/// help to the terminal's width, with their hanging indents, and example lines (indented lines
/// that start with `sluice `) never, so each can be copied whole.
enum HelpText {
    /// Wider than any line of help, so the parser wraps nothing.
    static let unwrapped = 100_000

    /// Where option and subcommand help starts (swift-argument-parser's label column).
    private static let labelColumn = 26

    static func wrap(_ text: String, columns: Int) -> String {
        text.split(separator: "\n", omittingEmptySubsequences: false)
            .map { wrapLine(String($0), columns: columns) }
            .joined(separator: "\n")
    }

    /// An example: an indented command line, to be copied as it is.
    static func isExample(_ line: String) -> Bool {
        line.hasPrefix("  ") && line.drop { $0 == " " }.hasPrefix("sluice ")
    }

    private static func wrapLine(_ line: String, columns: Int) -> String {
        guard line.count > columns, !isExample(line) else { return line }
        let characters = Array(line)
        let lead = characters.prefix { $0 == " " }.count
        // The first row keeps its start (indent, or an option's label padded to the label
        // column); the rows after it hang at the indent of the text they continue.
        var start = lead
        var indent = lead
        var keepBracketsWhole = false
        if line.hasPrefix("USAGE: ") {
            start = 7
            indent = 7
            keepBracketsWhole = true
        } else if lead == 2, characters.count > labelColumn, characters[labelColumn - 2] == " ",
                  characters[labelColumn - 1] == " ", characters[labelColumn] != " " {
            start = labelColumn
            indent = labelColumn
        }
        if columns - indent < 20 { indent = min(indent, 2) }
        // Words; on a usage line, [...] and <...> are single words, so an option stays whole.
        var words: [String] = []
        var current = ""
        var depth = 0
        for character in characters[start...] {
            if keepBracketsWhole {
                if character == "[" || character == "<" { depth += 1 }
                if character == "]" || character == ">" { depth = max(0, depth - 1) }
            }
            if character == " " && depth == 0 {
                if !current.isEmpty { words.append(current) }
                current = ""
            } else {
                current.append(character)
            }
        }
        if !current.isEmpty { words.append(current) }
        var rows: [String] = []
        var row = String(characters[..<start])
        var rowHasWord = false
        for word in words {
            if rowHasWord && row.count + 1 + word.count > columns {
                rows.append(row)
                row = String(repeating: " ", count: indent) + word
            } else {
                row += (rowHasWord ? " " : "") + word
            }
            rowHasWord = true
        }
        rows.append(row)
        return rows.joined(separator: "\n")
    }

    /// The terminal's width: $COLUMNS, else the terminal's own, else 80.
    static func terminalColumns() -> Int {
        if let text = ProcessInfo.processInfo.environment["COLUMNS"], let columns = Int(text), columns > 0 { return columns }
        var size = winsize()
        if ioctl(STDOUT_FILENO, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 0 { return Int(size.ws_col) }
        return 80
    }
}
