import Foundation
import Testing
import SluiceConfig
import SluicePlan
import SluiceRoles
import SluiceWire

/// `sluice deploy kubernetes` writes manifests that Kubernetes 1.31's schemas accept (checked
/// with kubernetes-validate, strict), whose pods run the commands the multi-host test runs.
@Suite struct DeployTests {
    static let kubernetesVersion = "1.31.0"

    @Test func manifestsValidateAndRunTheTestedCommands() throws {
        let out = temporaryPath("cluster.yaml")
        let made = try sluice("deploy", "kubernetes", pipelineFile("cluster.yaml"), "--image", "registry.example/sluice:0.2.0", "--out", out)
        #expect(made.status == 0, "\(made.stderr)")
        let validate = try Running(["kubernetes-validate", "-k", Self.kubernetesVersion, "--strict", out], executable: "/usr/bin/env").wait(timeout: 120)
        #expect(validate.status == 0, "\(validate.stdout)\n\(validate.stderr)")
        let text = try String(contentsOfFile: out, encoding: .utf8)
        let plan = try PipelinePlan.make(config: PipelineConfig.load(path: pipelineFile("cluster.yaml")))
        let manifests = try KubernetesManifests(pipelineFile: pipelineFile("cluster.yaml"), plan: plan, options: .init(image: "x"))
        let unindented = text.split(separator: "\n").map { $0.drop { $0 == " " } }.joined(separator: "\n")
        for role in ["controller", "source", "sink", "stages"] {
            // The args list as the manifest writes it: the same list the five-host test runs.
            let args = manifests.arguments(of: role).map { "- \(JSONText.string($0))" }.joined(separator: "\n")
            #expect(unindented.contains("args:\n" + args + "\n"), "\(role): \(args)")
        }
        #expect(manifests.arguments(of: "stages") == RoleCommand.arguments(
            role: "stages", controller: "tcp://imu-cluster-controller:7300", keyFolder: "/sluice/keys", bind: "tcp://0.0.0.0:7200",
            advertise: "$(POD_IP)", modelCache: "/sluice/cache", joining: true))
        #expect(!manifests.arguments(of: "stages").contains("--name"))
        #expect(text.contains("name: \"imu-cluster-stages\"") && text.contains("replicas: \(plan.stageNames.count)"))
        for expected in ["kind: \"Deployment\"", "kind: \"Service\"", "kind: \"Secret\"", "kind: \"ConfigMap\"", "path: \"/health\"",
                         "prometheus.io/scrape: \"true\"", "fieldPath: \"status.podIP\"", "cpu: \"1\""] {
            #expect(text.contains(expected), "\(expected)")
        }
        // Each role's Secret holds its own key and no other process's.
        let stageSecret = try #require(text.components(separatedBy: "---\n").first { $0.contains("name: \"imu-cluster-stages-key\"") })
        #expect(stageSecret.contains("stages.key:") && stageSecret.contains("controller.pub:"))
        #expect(!stageSecret.contains("controller.key") && !stageSecret.contains("sink"))
        let again = try sluice("deploy", "kubernetes", pipelineFile("cluster.yaml"), "--out", out)
        #expect(again.status != 0 && again.stderr.contains("it exists"), "\(again.stderr)")
    }

    @Test func anIpcPipelineIsRefusedWithItsReason() throws {
        let result = try sluice("deploy", "kubernetes", pipelineFile("quickstart.yaml"), "--out", "-")
        #expect(result.status != 0)
        #expect(result.stderr.contains("pods reach each other over tcp only: set transport.kind: tcp"), "\(result.stderr)")
        let big = try sluice("deploy", "kubernetes", pipelineFile("imu-mlp-3stage.yaml"), "--out", "-")
        #expect(big.status != 0 && big.stderr.contains("--files-in-image"), "\(big.stderr)")
        let inImage = try sluice("deploy", "kubernetes", pipelineFile("imu-mlp-3stage.yaml"), "--files-in-image", "--out", "-")
        #expect(inImage.status == 0 && inImage.stdout.contains("subPath: \"imu-mlp-3stage.yaml\""), "\(inImage.stderr)")
    }
}
