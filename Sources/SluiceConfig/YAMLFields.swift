import Yams

/// Reads typed fields out of a YAML mapping while collecting every problem with its line and
/// key path, so `sluice validate` can report all of them at once.
final class YAMLFields {
    let file: String
    private(set) var issues: [ConfigIssue] = []
    /// The line of every key read, by key path ("stages.count"), for problems found later.
    private(set) var lines: [String: Int] = [:]

    init(file: String) { self.file = file }

    func report(_ node: Node?, _ key: String, _ message: String) {
        issues.append(ConfigIssue(file: file, line: node?.mark?.line, key: key, message: message))
    }

    /// A problem with a key read before, found by looking at it together with others.
    func report(key: String, _ message: String) {
        issues.append(ConfigIssue(file: file, line: lines[key], key: key, message: message))
    }

    /// A mapping's entries by key, reporting keys this reader does not know.
    func mapping(_ node: Node?, at path: String, allowed: Set<String>) -> [String: Node] {
        guard let node else { return [:] }
        guard let mapping = node.mapping else {
            report(node, path, "must be a mapping of keys to values")
            return [:]
        }
        var entries: [String: Node] = [:]
        for (keyNode, value) in mapping {
            let key = keyNode.string ?? ""
            let keyPath = path.isEmpty ? key : "\(path).\(key)"
            if let line = keyNode.mark?.line { lines[keyPath] = line }
            if !allowed.contains(key) {
                report(keyNode, keyPath, "unknown key (expected one of: \(allowed.sorted().joined(separator: ", ")))")
            }
            entries[key] = value
        }
        return entries
    }

    func string(_ entries: [String: Node], _ key: String, at path: String, parent: Node?, required: Bool = false) -> String? {
        guard let node = entries[key] else {
            if required { report(parent, join(path, key), "is required") }
            return nil
        }
        guard let value = node.scalar?.string, !value.isEmpty else {
            report(node, join(path, key), "must be a non-empty string")
            return nil
        }
        return value
    }

    func int(_ entries: [String: Node], _ key: String, at path: String, parent: Node?, required: Bool = false,
             minimum: Int? = nil, maximum: Int? = nil) -> Int? {
        guard let node = entries[key] else {
            if required { report(parent, join(path, key), "is required") }
            return nil
        }
        guard let text = node.scalar?.string, let value = Int(text) else {
            report(node, join(path, key), "must be an integer, not '\(node.scalar?.string ?? "a collection")'")
            return nil
        }
        if let minimum, value < minimum {
            report(node, join(path, key), "must be >= \(minimum)")
            return nil
        }
        if let maximum, value > maximum {
            report(node, join(path, key), "must be <= \(maximum)")
            return nil
        }
        return value
    }

    func double(_ entries: [String: Node], _ key: String, at path: String, parent: Node?, required: Bool = false,
                minimum: Double? = nil, exclusiveMinimum: Bool = false, maximum: Double? = nil) -> Double? {
        guard let node = entries[key] else {
            if required { report(parent, join(path, key), "is required") }
            return nil
        }
        guard let text = node.scalar?.string, let value = Double(text), value.isFinite else {
            report(node, join(path, key), "must be a number, not '\(node.scalar?.string ?? "a collection")'")
            return nil
        }
        if let minimum, exclusiveMinimum ? value <= minimum : value < minimum {
            report(node, join(path, key), "must be \(exclusiveMinimum ? ">" : ">=") \(minimum)")
            return nil
        }
        if let maximum, value > maximum {
            report(node, join(path, key), "must be <= \(maximum)")
            return nil
        }
        return value
    }

    func stringList(_ entries: [String: Node], _ key: String, at path: String) -> [String]? {
        guard let node = entries[key] else { return nil }
        guard let sequence = node.sequence else {
            report(node, join(path, key), "must be a list")
            return nil
        }
        var values: [String] = []
        for (index, item) in sequence.enumerated() {
            guard let value = item.scalar?.string, !value.isEmpty else {
                report(item, "\(join(path, key))[\(index)]", "must be a non-empty string")
                continue
            }
            values.append(value)
        }
        return values
    }

    func choice<T: RawRepresentable & CaseIterable>(_ entries: [String: Node], _ key: String, at path: String,
                                                    default defaultValue: T) -> T where T.RawValue == String {
        guard let node = entries[key] else { return defaultValue }
        guard let text = node.scalar?.string, let value = T(rawValue: text) else {
            report(node, join(path, key), "must be one of: \(T.allCases.map(\.rawValue).joined(separator: ", ")), not '\(node.scalar?.string ?? "a collection")'")
            return defaultValue
        }
        return value
    }

    /// on/off, true/false or yes/no.
    func flag(_ entries: [String: Node], _ key: String, at path: String, default defaultValue: Bool) -> Bool {
        guard let node = entries[key] else { return defaultValue }
        switch node.scalar?.string {
        case "true", "on", "yes": return true
        case "false", "off", "no": return false
        default:
            report(node, join(path, key), "must be on or off, not '\(node.scalar?.string ?? "a collection")'")
            return defaultValue
        }
    }

    func join(_ path: String, _ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }
}
