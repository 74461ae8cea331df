import ArgumentParser
import Foundation
import SluiceRoles

extension Sluice {
    struct Sink: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run a pipeline's sink: it writes predictions in sequence order, each exactly once.",
            discussion: """
            `sluice run` starts this for you; start it by hand to run it as a service of its own.

            Example:
              sluice sink --controller tcp://10.0.0.5:5600 --name sink --key keys/sink.key --controller-key keys/controller.pub
            """)

        @OptionGroup var options: RoleOptions

        func run() throws {
            try runRole(SinkRole.self, options)
        }
    }
}
