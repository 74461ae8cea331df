/// Role names of stage processes: "stage-2" for a stage's first process, "stage-2.1", … for
/// its replicas.
public enum StageInstance {
    public static func name(stage: Int, replica: Int) -> String {
        replica == 0 ? "stage-\(stage)" : "stage-\(stage).\(replica)"
    }

    /// The replica number of a stage process's role name (0 for "stage-2"), or nil.
    public static func replica(of name: String) -> Int? {
        guard stage(of: name) != nil else { return nil }
        guard let dot = name.firstIndex(of: ".") else { return 0 }
        return Int(name[name.index(after: dot)...])
    }

    /// The stage a role name belongs to, or nil for roles that are not stages.
    public static func stage(of name: String) -> Int? {
        guard name.hasPrefix("stage-") else { return nil }
        return Int(name.dropFirst("stage-".count).prefix { $0 != "." })
    }
}
