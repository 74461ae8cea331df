import ArgumentParser
import Foundation
import SluiceRoles

extension Sluice {
    struct Source: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run a pipeline's source: it reads sensors, cuts windows and sends micro-batches.",
            discussion: """
            `sluice run` starts this for you; start it by hand to run it as a service of its own.

            Example:
              sluice source --controller tcp://10.0.0.5:5600 --name source --key keys/source.key --controller-key keys/controller.pub
            """)

        @OptionGroup var options: RoleOptions

        func run() throws {
            try runRole(SourceRole.self, options)
        }
    }
}
