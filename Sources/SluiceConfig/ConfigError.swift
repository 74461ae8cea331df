/// One problem in a pipeline file, located by file, line and key path.
public struct ConfigIssue: Sendable, Equatable, CustomStringConvertible {
    public var file: String
    public var line: Int?
    public var key: String
    public var message: String

    public var description: String {
        let location = line.map { "\(file):\($0)" } ?? file
        let text = key.isEmpty ? "\(location): \(message)" : "\(location): \(key): \(message)"
        return Self.printable(text)
    }

    /// Keys and values are quoted from the file: their control characters (a terminal escape,
    /// a newline that would fake another message) are shown escaped, never written raw.
    static func printable(_ text: String) -> String {
        var out = ""
        for scalar in text.unicodeScalars {
            if scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value) {
                out += "\\u{\(String(scalar.value, radix: 16))}"
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return out
    }
}

/// Every problem found in a pipeline file; the file is rejected as a whole.
public struct ConfigError: Error, Sendable, CustomStringConvertible {
    public var issues: [ConfigIssue]
    public var description: String { issues.map(\.description).joined(separator: "\n") }
}
