import ArgumentParser
import Foundation
import SluiceRoles

extension Sluice {
    struct Keys: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make CURVE key pairs for a pipeline's processes, to run its roles by hand over tcp.",
            discussion: """
            Writes NAME.key (the pair; readable by you only) and NAME.pub (the public key) for each \
            name into FOLDER, and prints the public keys. An existing key is never replaced. The \
            controller takes the folder (--keys FOLDER) and lets in every NAME.pub in it as NAME; \
            each role takes its own NAME.key and controller.pub. `sluice run` makes its own keys \
            for every run: this is for roles started by hand.

            Example:
              sluice keys keys --pipeline pipelines/imu-mlp-3stage.yaml
            """)

        @Argument(help: "The folder to write the keys into (made if missing).")
        var folder: String

        @Argument(help: "Names to make keys for (controller, source, sink, stage-0, …).")
        var names: [String] = []

        @Option(help: "Make keys for the controller and every process this pipeline starts with.")
        var pipeline: String?

        func run() throws {
            var all = names
            if let pipeline {
                let plan = try loadPlan(pipeline, predictions: nil)
                all = [ControllerKeys.controllerName, "source", "sink"] + plan.stageNames + all
            }
            guard !all.isEmpty else { throw ValidationError("name the processes to make keys for, or give --pipeline") }
            let keyFolder = KeyFolder(folder)
            do {
                try keyFolder.create()
                for name in all {
                    let keys = try keyFolder.make(name)
                    print("\(name): \(keys.publicKey)")
                }
            } catch {
                throw ExitCodes.report(error)
            }
        }
    }
}
