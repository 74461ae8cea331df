import ArgumentParser
import Foundation
import SluiceConfig
import SluiceProfile
import SluiceRoles
import SluiceTensor

extension Sluice {
    struct Controller: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run a pipeline's controller: it plans, assigns layers to stages and watches them.",
            discussion: """
            `sluice run` starts this for you. To run the roles as separate services instead, start \
            the controller and then `sluice stage|source|sink --controller ENDPOINT --name NAME` \
            for each role. Over tcp, make the run's keys first with `sluice keys`.

            Example:
              sluice controller pipelines/imu-mlp-3stage.yaml --control tcp://0.0.0.0:5700 --keys keys
            """)

        @Argument(help: "The pipeline file (YAML).")
        var pipeline: String

        @Option(help: "Endpoint to bind the control socket (ROUTER) to.")
        var control: String

        @Option(help: "Where ipc:// data endpoints live (default: a fresh folder in /tmp).")
        var runDirectory: String?

        @Option(help: "Also write the run summary as JSON to this file.")
        var report: String?

        @Option(help: "Write the profile (stages, layers, latency, traces, recommendation) as JSON to this file.")
        var profile: String?

        @OptionGroup var predictions: PredictionsOption

        @OptionGroup var observe: ObserveOptions

        @Option(help: "The run's CURVE keys (from `sluice keys`): controller.key, and NAME.pub for every process to let in. Needed when the pipeline's transport is tcp with curve on.")
        var keys: String?

        @Flag(help: "Take over a pipeline whose controller died: its roles, still running, rejoin and the run goes on where it was (give the dead one's --control and --run-directory).")
        var rejoin = false

        @Flag(help: .hidden)
        var managed = false

        /// Under `sluice run`: the launcher's process id.
        @Option(help: .hidden)
        var launcherPid: Int32?

        func run() throws {
            let launcher = launcherPid ?? getppid()
            StopSignal.install(managed ? .managedController(launcher: launcher) : .byHand)
            let plan = try loadPlan(pipeline, predictions: predictions.path)
            if let report { try OutputStreams.check("--report", report, sink: plan.config.sink, pipeline: pipeline) }
            if let profile { try OutputStreams.check("--profile", profile, sink: plan.config.sink, pipeline: pipeline) }
            let directory = runDirectory ?? FileManager.default.temporaryDirectory.appendingPathComponent("sluice-\(getpid())").path
            // Private to this user, like the launcher's: its ipc sockets are the run's doors.
            if mkdir(directory, 0o700) != 0 && errno != EEXIST {
                throw ExitCodes.report(RoleError("cannot make the run folder \(directory): \(String(cString: strerror(errno)))"))
            }
            // The run folder is the launcher's, made private to this run; with the launcher gone,
            // nobody else will remove it. Only a folder the launcher made is removed.
            defer {
                if managed, StopSignal.launcherDied, Launcher.isRunDirectory(directory, madeBy: launcher) {
                    Launcher.removeRunDirectory(directory)
                }
            }
            let result: (report: RunReport, exitCode: Int32)
            do {
                let runKeys = try Self.keys(keys, for: plan.config.transport, control: control)
                var endpoints = plan.endpoints(runDirectory: directory)
                endpoints.control = control
                let role = try ControllerRole(plan: plan, endpoints: endpoints, runDirectory: directory, spawnStages: managed,
                                              metricsPort: observe.metricsPort, metricsHost: observe.metricsHost,
                                              liveEvery: observe.live ? 1 : nil, rejoining: rejoin, keys: runKeys)
                result = role.run()
                if let profile, let data = role.lastProfile?.json() {
                    try OutputFile.write(data, to: profile)
                }
            } catch {
                throw ExitCodes.report(error)
            }
            writeStandardError(result.report.text + "\n")
            if let report {
                do {
                    try OutputFile.write(result.report.json(), to: report)
                } catch {
                    throw ExitCodes.report(error)
                }
            }
            if result.exitCode != 0 { throw ExitCode(result.exitCode) }
        }

        /// Every tcp socket of the run is secured unless the pipeline turns CURVE off: the control
        /// socket too, when it alone is on tcp.
        private static func keys(_ folder: String?, for transport: TransportConfig, control: String) throws -> ControllerKeys? {
            let secured = transport.curve && (transport.kind == .tcp || control.hasPrefix("tcp://"))
            switch (folder, secured) {
            case (let folder?, true): return try ControllerKeys(folder: KeyFolder(folder))
            case (nil, false): return nil
            case (nil, true):
                throw ValidationError("tcp links are secured with CURVE: give --keys FOLDER (make one with `sluice keys FOLDER --pipeline PIPELINE`), or set transport.curve: off on a network you trust")
            case (_?, false):
                throw ValidationError("--keys is for tcp links with CURVE, and this pipeline \(transport.curve ? "runs over ipc" : "turns curve off")")
            }
        }
    }
}
