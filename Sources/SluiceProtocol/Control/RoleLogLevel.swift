/// How loudly a role's machine asks its shell to log a line (the shell maps it onto its logger).
public enum RoleLogLevel: String, Equatable, Sendable {
    case debug, info, warning, error
}
