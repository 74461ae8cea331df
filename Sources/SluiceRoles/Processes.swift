import Foundation

/// A worker process of a pipeline (stage, source, sink): it says hello to the controller,
/// takes its assignment from it and runs until told to shut down.
public protocol PipelineRole {
    /// `keys`: this process's CURVE keys, for a controller on tcp with CURVE. `binding`: where
    /// the role binds its data socket itself (another host than the controller's).
    init(name: String, controller endpoint: String, keys: RoleKeys?, binding: DataBinding?) throws
    /// The process exit status: 0 after shutdown, 1 on a fatal error.
    func run() -> Int32
}

/// Starts another process of this same executable (a role of the pipeline) with `arguments`.
func startSluiceProcess(_ arguments: [String]) throws -> Process {
    let process = Process()
    let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    try process.run()
    return process
}

/// Where a role binds its data socket itself, and the host others reach it by: for roles on
/// other hosts than the controller's, whose planned endpoints (`transport.host`) are not theirs.
public struct DataBinding: Equatable {
    public var bind: String
    public var advertise: String?

    public init(bind: String, advertise: String?) throws {
        guard bind.hasPrefix("tcp://") || bind.hasPrefix("ipc://") else {
            throw RoleError("--bind \(bind): give tcp://ADDRESS:PORT (port 0: any free port) or ipc://PATH")
        }
        if let advertise {
            guard !advertise.isEmpty, advertise.count <= 253, !advertise.contains("/"), !advertise.contains(" ") else {
                throw RoleError("--advertise \(advertise): give the host name or address others reach this role by")
            }
        }
        self.bind = bind
        self.advertise = advertise
    }

    /// The endpoint others connect to, given the one the bind took (`bound`, with its port):
    /// the advertised host in place of the bound address.
    public func advertised(bound: String) throws -> String {
        guard bound.hasPrefix("tcp://"), let colon = bound.lastIndex(of: ":") else { return bound }
        let host = String(bound[bound.index(bound.startIndex, offsetBy: 6)..<colon])
        let port = bound[bound.index(after: colon)...]
        if let advertise { return "tcp://\(advertise.contains(":") ? "[\(advertise)]" : advertise):\(port)" }
        guard !["0.0.0.0", "*", "[::]", "::"].contains(host) else {
            throw RoleError("--bind \(bind) listens on every address: give --advertise HOST, the one others reach this role by")
        }
        return bound
    }
}
