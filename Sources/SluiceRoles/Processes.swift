import Foundation

/// A worker process of a pipeline (stage, source, sink): it says hello to the controller,
/// takes its assignment from it and runs until told to shut down.
public protocol PipelineRole {
    /// `keys`: this process's CURVE keys, for a controller on tcp with CURVE.
    init(name: String, controller endpoint: String, keys: RoleKeys?) throws
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
