import ArgumentParser
import Foundation
import SluiceRoles

extension Sluice {
    struct Deploy: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write what runs a pipeline on a cluster engine.",
            subcommands: [Kubernetes.self])

        struct Kubernetes: ParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Write Kubernetes manifests that run a pipeline: every role a pod, every link under CURVE.",
                discussion: """
                Writes one file of manifests: the pipeline (and, unless --files-in-image, its \
                model and input) as a ConfigMap; a Secret per process holding its own CURVE key, made \
                now; the controller as a Deployment with a Service (control and metrics ports, \
                Prometheus scrape annotations, probes on /health); one Deployment per stage process, \
                the sink and the source, each running the command an operator runs on a host of its \
                own (stages and the sink bind their pod's address; stages fetch the model from the \
                controller). The image must hold the sluice binary (see the Dockerfile). Keys are \
                made anew each time: apply the file whole.

                Example:
                  sluice deploy kubernetes pipelines/cluster.yaml --image sluice:0.2.0 --out cluster.yaml
                """)

            @Argument(help: "The pipeline file (YAML); transport.kind must be tcp.")
            var pipeline: String

            @Option(help: "The container image holding sluice.")
            var image = "sluice:\(SluiceVersion.current)"

            @Option(help: "The namespace to put every object in (default: the one kubectl uses).")
            var namespace: String?

            @Flag(help: "The image holds the pipeline's folder at /sluice/pipeline: only the pipeline file goes into the ConfigMap (for models past 1 MiB).")
            var filesInImage = false

            @Option(help: "The file to write (never replaced); '-' for standard output.")
            var out: String

            func run() throws {
                let plan = try loadPlan(pipeline)
                let text: String
                do {
                    let manifests = try KubernetesManifests(pipelineFile: pipeline, plan: plan,
                                                            options: .init(image: image, namespace: namespace, filesInImage: filesInImage))
                    text = try manifests.render()
                } catch {
                    throw ExitCodes.report(error)
                }
                if out == "-" {
                    print(text, terminator: "")
                    return
                }
                let descriptor = open(out, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
                guard descriptor >= 0 else {
                    throw ValidationError("cannot write \(out): \(errno == EEXIST ? "it exists (manifests hold secret keys; they are never written over an existing file)" : String(cString: strerror(errno)))")
                }
                defer { close(descriptor) }
                let bytes = Array(text.utf8)
                guard write(descriptor, bytes, bytes.count) == bytes.count else { throw ValidationError("cannot write \(out): \(String(cString: strerror(errno)))") }
                writeStandardError("wrote \(out): \(plan.stageNames.count) stage processes, a controller, a source and a sink; apply it with kubectl apply -f \(out)\n")
            }
        }
    }
}
