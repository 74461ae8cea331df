import Foundation
import Logging
import SluicePlan

/// `sluice run`: starts the controller, the stages, the sink and the source as separate
/// processes of this same executable, waits for the controller to finish the run, and makes
/// sure no process outlives it.
public final class Launcher {
    /// Controllers started in place of killed ones in one run, at most: past that, something
    /// kills every controller, and the run ends as it does without one.
    static let controllerRestartLimit = 10
    private let pipelineFile: String
    private let plan: PipelinePlan
    private let controllerOptions: [String]
    private let stopAfter: Double?
    private let progress: ((Double) -> Void)?
    private var logger = makeLogger("run")

    /// `controllerOptions` are passed on to `sluice controller` (--report, --metrics-port, …).
    /// `stopAfter`: drain and stop after this many seconds, as a first Ctrl-C would;
    /// `progress` is called with the seconds elapsed, about five times a second.
    public init(pipelineFile: String, plan: PipelinePlan, controllerOptions: [String] = [], stopAfter: Double? = nil,
                progress: ((Double) -> Void)? = nil) {
        self.pipelineFile = pipelineFile
        self.plan = plan
        self.controllerOptions = controllerOptions
        self.stopAfter = stopAfter
        self.progress = progress
    }

    /// A new folder for the run's ipc endpoints, readable by this user only: `sluice-PID` in the
    /// temporary folder, or a fresh `sluice-PID-XXXXXX` when something is already there (it is
    /// never replaced or deleted: it may be anyone's).
    static func makeRunDirectory(
        base: String = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-\(getpid())").path
    ) throws -> String {
        if mkdir(base, 0o700) == 0 { return base }
        var template = Array((base + "-XXXXXX").utf8CString)
        let made = template.withUnsafeMutableBufferPointer { buffer in buffer.baseAddress.map { mkdtemp($0) != nil } ?? false }
        guard made else {
            throw RoleError("cannot make a run folder beside \(base): \(String(cString: strerror(errno)))")
        }
        return String(cString: template)
    }

    /// Whether `path` is a run folder `makeRunDirectory` makes for the launcher `pid`: what a
    /// controller whose launcher died may remove in its place, and nothing else.
    public static func isRunDirectory(_ path: String, madeBy pid: pid_t,
                                      in folder: String = FileManager.default.temporaryDirectory.path) -> Bool {
        let url = URL(fileURLWithPath: path).standardizedFileURL
        guard url.deletingLastPathComponent().path == URL(fileURLWithPath: folder).standardizedFileURL.path else { return false }
        let name = url.lastPathComponent
        let base = "sluice-\(pid)"
        return name == base || (name.hasPrefix(base + "-") && name.count == base.count + 7)
    }

    /// Removes a run folder once its run is over: the ipc sockets left in it (a process that
    /// died leaves its own) and the run's keys, then the folder if that empties it. Anything
    /// else found there is not the run's, and stays, with the folder around it.
    public static func removeRunDirectory(_ path: String) {
        let keys = path + "/keys"
        for name in (try? FileManager.default.contentsOfDirectory(atPath: keys)) ?? [] where name.hasSuffix(".key") || name.hasSuffix(".pub") {
            var info = stat()
            let entry = keys + "/" + name
            if lstat(entry, &info) == 0, info.st_mode & S_IFMT == S_IFREG { unlink(entry) }
        }
        rmdir(keys)
        for name in (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? [] where name.hasSuffix(".ipc") {
            var info = stat()
            let entry = path + "/" + name
            if lstat(entry, &info) == 0, info.st_mode & S_IFMT == S_IFSOCK { unlink(entry) }
        }
        rmdir(path)
    }

    /// Keys for the controller and every process the plan starts with, in the run folder.
    static func makeRunKeys(in runDirectory: String, plan: PipelinePlan) throws -> ControllerKeys {
        let folder = KeyFolder(runDirectory + "/keys")
        try folder.create()
        for name in [ControllerKeys.controllerName, "source", "sink"] + plan.stageNames { try folder.make(name) }
        return try ControllerKeys(folder: folder)
    }

    public func run() throws -> Int32 {
        let runDirectory = try Self.makeRunDirectory()
        defer { Self.removeRunDirectory(runDirectory) }
        let endpoints = plan.endpoints(runDirectory: runDirectory)

        // Over tcp, every process of the run gets a CURVE key of its own, made for this run.
        let keys = plan.config.transport.secured ? try Self.makeRunKeys(in: runDirectory, plan: plan) : nil
        let controllerArguments = ["controller", pipelineFile, "--control", endpoints.control, "--managed",
                                   "--launcher-pid", "\(getpid())", "--run-directory", runDirectory]
            + (keys.map { ["--keys", $0.folder.path] } ?? []) + controllerOptions
        var children: [(name: String, process: Process)] = []
        func spawn(_ name: String, _ arguments: [String]) throws {
            children.append((name, try startSluiceProcess(arguments)))
        }
        func spawnRole(_ command: String, _ name: String) throws {
            try spawn(name, [command, "--controller", endpoints.control, "--name", name, "--managed"] + (keys?.roleArguments(name) ?? []))
        }
        do {
            try spawn("controller", controllerArguments)
            for name in plan.stageNames { try spawnRole("stage", name) }
            try spawnRole("sink", "sink")
            try spawnRole("source", "source")
        } catch {
            // Managed processes ignore SIGTERM (it is the group's, for the launcher to act on).
            children.forEach { kill($0.process.processIdentifier, SIGKILL) }
            throw RoleError("cannot start the pipeline's processes: \(error)")
        }

        var controller = children[0].process
        var controllerRestarts = 0
        var forwardedSignals: Int32 = 0
        var killDeadline: Double?
        let started = monotonicSeconds()
        var stoppedOnTime = false
        var nextProgress = 0.0
        // A controller killed by a signal is started again: the roles, still running, rejoin it.
        // (Whether roles live is not asked: those started in place of dead ones are the dead
        // controller's children, not this process's. With none left, the new one says so.)
        var controllerRestartDue: Bool {
            !controller.isRunning && controller.terminationReason == .uncaughtSignal && killDeadline == nil
                && controllerRestarts < Self.controllerRestartLimit && forwardedSignals < 2
        }
        while children.contains(where: { $0.process.isRunning }) || controllerRestartDue {
            let elapsed = monotonicSeconds() - started
            if let progress, elapsed >= nextProgress {
                nextProgress = elapsed + 0.2
                progress(elapsed)
            }
            if let stopAfter, elapsed >= stopAfter, !stoppedOnTime, controller.isRunning {
                stoppedOnTime = true
                kill(controller.processIdentifier, StopSignal.drainRequest)
            }
            if StopSignal.received > forwardedSignals {
                forwardedSignals = StopSignal.received
                if controller.isRunning {
                    // First Ctrl-C: the controller stops the source and drains. Second: stop now.
                    logger.info(forwardedSignals == 1 ? "stopping: draining the pipeline (Ctrl-C again to stop at once)" : "stopping at once")
                    kill(controller.processIdentifier, StopSignal.drainRequest)
                }
                if forwardedSignals >= 3 { killDeadline = monotonicSeconds() }
            }
            if controllerRestartDue {
                controllerRestarts += 1
                logger.warning("the controller was killed (signal \(controller.terminationStatus)); starting it again, and the roles rejoin it")
                do {
                    controller = try startSluiceProcess(controllerArguments + ["--rejoin"])
                    children[0] = ("controller", controller)
                    if forwardedSignals > 0 { kill(controller.processIdentifier, StopSignal.drainRequest) }
                    continue
                } catch {
                    logger.error("cannot start the controller again: \(error)")
                }
            }
            if !controller.isRunning, killDeadline == nil {
                // Roles leave on the controller's shutdown; give them a moment, then make sure.
                killDeadline = monotonicSeconds() + 5
            }
            if let deadline = killDeadline, monotonicSeconds() >= deadline {
                for child in children where child.process.isRunning {
                    logger.warning("\(child.name) did not exit after the run; killing it")
                    kill(child.process.processIdentifier, SIGKILL)
                }
            }
            usleep(20_000)
        }
        for child in children.dropFirst() where child.process.terminationStatus != 0 {
            logger.warning("\(child.name) exited with status \(child.process.terminationStatus)")
        }
        return controller.terminationStatus
    }
}
