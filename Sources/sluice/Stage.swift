import ArgumentParser
import Foundation
import SluiceRoles

extension Sluice {
    struct Stage: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run one pipeline stage: it holds the layers the controller assigns and runs them on every batch.",
            discussion: """
            `sluice run` starts this for you; start it by hand to run it as a service of its own.

            Example:
              sluice stage --controller tcp://10.0.0.5:5600 --name stage-1 --key keys/stage-1.key --controller-key keys/controller.pub

            Without --name it joins the run's pool and takes the first stage that has no process, \
            now or when one dies:
              sluice stage --join tcp://10.0.0.5:5600 --key keys/pool-a.key --controller-key keys/controller.pub
            """)

        @OptionGroup var options: RoleOptions

        @Option(help: "Where to keep models fetched from the controller, for a host without the pipeline's model file (default: $SLUICE_MODEL_CACHE, else ~/.cache/sluice/models).")
        var modelCache: String?

        func run() throws {
            try runRole(StageRole.self, options, joins: true) { role in
                if let modelCache { role.modelCache = modelCache }
            }
        }
    }
}
