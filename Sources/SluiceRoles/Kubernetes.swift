import Foundation
import SluicePlan
import SluiceConfig
import SluiceProtocol
import SluiceTransport
import SluiceWire

/// YAML for manifests: maps keep their order, and every string is written double-quoted (JSON's
/// escapes are YAML's), so no value can change type or break the document.
indirect enum YAMLValue {
    case string(String)
    case int(Int)
    case bool(Bool)
    case list([YAMLValue])
    case map([(String, YAMLValue)])

    func render(indent: Int = 0) -> String {
        let pad = String(repeating: " ", count: indent)
        switch self {
        case .list(let items) where items.isEmpty: return "[]"
        case .map(let entries) where entries.isEmpty: return "{}"
        case .list(let items):
            return items.map { item in
                switch item {
                case .map, .list:
                    let inner = item.render(indent: indent + 2)
                    return "\(pad)- " + inner.dropFirst(indent + 2)
                default:
                    return "\(pad)- \(item.render())"
                }
            }.joined(separator: "\n")
        case .map(let entries):
            return entries.map { key, value in
                switch value {
                case .map(let inner) where !inner.isEmpty: return "\(pad)\(key):\n" + value.render(indent: indent + 2)
                case .list(let inner) where !inner.isEmpty: return "\(pad)\(key):\n" + value.render(indent: indent)
                default: return "\(pad)\(key): \(value.render())"
                }
            }.joined(separator: "\n")
        case .string(let text): return JSONText.string(text)
        case .int(let number): return "\(number)"
        case .bool(let flag): return flag ? "true" : "false"
        }
    }
}


/// Manifests that run a pipeline on Kubernetes with the same commands an operator runs by hand
/// on several hosts: the controller as a Deployment with a Service, the stage processes as one
/// Deployment of pods that join the pool, the source and the sink; each with a Secret holding
/// its own CURVE key (the stage pods share the pool's).
public struct KubernetesManifests {
    public struct Options {
        public var image: String
        public var namespace: String?
        /// The image holds the pipeline's folder at /sluice/pipeline (its model and input): for
        /// files past a ConfigMap's 1 MiB.
        public var filesInImage: Bool
        public init(image: String, namespace: String? = nil, filesInImage: Bool = false) {
            self.image = image; self.namespace = namespace; self.filesInImage = filesInImage
        }
    }

    static let pipelineFolder = "/sluice/pipeline"
    static let keyFolder = "/sluice/keys"
    static let metricsPort = 9100
    static let dataPort = 7200
    /// The stage processes: pods of one Deployment that join the run's pool, sharing its key.
    static let poolName = "stages"

    let plan: PipelinePlan
    let pipelineText: String
    let pipelineName: String
    /// Files the pipeline names (model, recording), by their path relative to the pipeline's folder.
    let files: [(relative: String, contents: Data)]
    let options: Options

    /// `pipelineFile`'s model and input files must lie in its folder or below, where the
    /// pods find them at the same relative paths.
    public init(pipelineFile: String, plan: PipelinePlan, options: Options) throws {
        guard plan.config.transport.kind == .tcp else {
            throw RoleError("\(pipelineFile): pods reach each other over tcp only: set transport.kind: tcp")
        }
        guard plan.config.transport.curve else {
            throw RoleError("\(pipelineFile): transport.curve is off; on a cluster every link is secured: turn it on")
        }
        self.plan = plan
        self.options = options
        pipelineText = try String(contentsOfFile: pipelineFile, encoding: .utf8)
        pipelineName = URL(fileURLWithPath: pipelineFile).lastPathComponent
        let folder = URL(fileURLWithPath: pipelineFile).standardizedFileURL.deletingLastPathComponent().path + "/"
        var files: [(String, Data)] = []
        for path in [plan.config.model.path] + Self.files(of: plan.config.source) {
            guard path.hasPrefix(folder) else {
                throw RoleError("\(path) is not in the pipeline's folder \(folder): give it a path relative to the pipeline file, so the pods find it")
            }
            if options.filesInImage { continue }
            guard let data = FileManager.default.contents(atPath: path) else { throw RoleError("cannot read \(path)") }
            files.append((String(path.dropFirst(folder.count)), data))
        }
        self.files = files
        let bytes = files.reduce(pipelineText.utf8.count) { $0 + $1.1.count }
        // One ConfigMap holds at most 1 MiB; stages fetch the model from the controller.
        guard bytes < 1_000_000 else {
            throw RoleError("the pipeline, its model and its input are \(bytes) bytes, over a ConfigMap's 1 MiB: put the pipeline's folder in the image at \(Self.pipelineFolder) and give --files-in-image")
        }
    }

    static func files(of source: SourceConfig) -> [String] {
        switch source {
        case .recording(let recording): return [recording.path]
        case .tensors(let tensors): return [tensors.path]
        case .zmq: return []
        }
    }

    var name: String {
        let lowered = plan.config.name.lowercased().map { $0.isLetter || $0.isNumber ? $0 : "-" }
        let trimmed = String(lowered).trimmingCharacters(in: CharacterSet(charactersIn: "-"))
        return String((trimmed.isEmpty ? "sluice" : trimmed).prefix(40))
    }

    /// A process's name as a Kubernetes object name (`stage-1.1` → `stage-1-1`).
    func objectName(_ role: String) -> String { "\(name)-\(role.replacingOccurrences(of: ".", with: "-"))" }

    var controllerEndpoint: String { "tcp://\(name)-controller:\(plan.config.transport.basePort)" }

    /// The command line of each role, as its pod runs it (`$(POD_IP)` is the pod's address).
    public func arguments(of role: String) -> [String] {
        let bind = "tcp://0.0.0.0:\(Self.dataPort)"
        switch role {
        case ControllerKeys.controllerName:
            return ["controller", "\(Self.pipelineFolder)/\(pipelineName)", "--control", "tcp://0.0.0.0:\(plan.config.transport.basePort)",
                    "--keys", Self.keyFolder, "--metrics-port", "\(Self.metricsPort)", "--metrics-host", "0.0.0.0"]
        case "source":
            return RoleCommand.arguments(role: role, controller: controllerEndpoint, keyFolder: Self.keyFolder)
        case "sink":
            return RoleCommand.arguments(role: role, controller: controllerEndpoint, keyFolder: Self.keyFolder, bind: bind, advertise: "$(POD_IP)")
        default:
            // No --name: each pod joins the pool and is given a stage process's place.
            return RoleCommand.arguments(role: role, controller: controllerEndpoint, keyFolder: Self.keyFolder, bind: bind,
                                         advertise: "$(POD_IP)", modelCache: "/sluice/cache", joining: true)
        }
    }

    /// The manifests, one YAML document each, and the keys made for them.
    public func render() throws -> String {
        let roles = ["source", "sink", Self.poolName]
        var pairs: [String: CurveKeyPairText] = [:]
        for role in [ControllerKeys.controllerName] + roles { pairs[role] = try CurveKeyPairText.make(role) }
        var documents: [YAMLValue] = [configMap()]
        let controllerPublic = pairs[ControllerKeys.controllerName]?.publicFile ?? ""
        var controllerSecret: [(String, YAMLValue)] = [("controller.key", .string(pairs[ControllerKeys.controllerName]?.keyFile ?? ""))]
        for role in roles { controllerSecret.append(("\(role).pub", .string(pairs[role]?.publicFile ?? ""))) }
        documents.append(secret(ControllerKeys.controllerName, controllerSecret))
        for role in roles {
            documents.append(secret(role, [("\(role).key", .string(pairs[role]?.keyFile ?? "")), ("controller.pub", .string(controllerPublic))]))
        }
        documents.append(deployment(ControllerKeys.controllerName, cores: 1))
        documents.append(controllerService())
        documents.append(deployment(Self.poolName, cores: plan.shapes.map(\.threads).max() ?? 1, replicas: plan.stageNames.count))
        documents.append(deployment("sink", cores: 1))
        documents.append(deployment("source", cores: 1))
        return documents.map { "---\n" + $0.render() + "\n" }.joined()
    }

    private func metadata(_ objectName: String, role: String, annotations: [(String, YAMLValue)] = []) -> YAMLValue {
        var entries: [(String, YAMLValue)] = [("name", .string(objectName))]
        if let namespace = options.namespace { entries.append(("namespace", .string(namespace))) }
        entries.append(("labels", labels(role)))
        if !annotations.isEmpty { entries.append(("annotations", .map(annotations))) }
        return .map(entries)
    }

    private func labels(_ role: String) -> YAMLValue {
        .map([("app.kubernetes.io/name", .string("sluice")), ("app.kubernetes.io/instance", .string(name)),
              ("sluice/role", .string(role.replacingOccurrences(of: ".", with: "-")))])
    }

    private func configMap() -> YAMLValue {
        var binary: [(String, YAMLValue)] = []
        for (index, file) in files.enumerated() { binary.append(("file-\(index)", .string(file.contents.base64EncodedString()))) }
        return .map([("apiVersion", .string("v1")), ("kind", .string("ConfigMap")),
                     ("metadata", metadata("\(name)-pipeline", role: "pipeline")),
                     ("data", .map([("pipeline.yaml", .string(pipelineText))])), ("binaryData", .map(binary))])
    }

    private func secret(_ role: String, _ entries: [(String, YAMLValue)]) -> YAMLValue {
        .map([("apiVersion", .string("v1")), ("kind", .string("Secret")), ("metadata", metadata(objectName(role) + "-key", role: role)),
              ("type", .string("Opaque")), ("stringData", .map(entries))])
    }

    private func controllerService() -> YAMLValue {
        .map([("apiVersion", .string("v1")), ("kind", .string("Service")), ("metadata", metadata("\(name)-controller", role: "controller")),
              ("spec", .map([("selector", labels(ControllerKeys.controllerName)),
                             ("ports", .list([
                                .map([("name", .string("control")), ("port", .int(plan.config.transport.basePort))]),
                                .map([("name", .string("metrics")), ("port", .int(Self.metricsPort))]),
                             ]))]))])
    }

    private func deployment(_ role: String, cores: Int, replicas: Int = 1) -> YAMLValue {
        let isController = role == ControllerKeys.controllerName
        let isStage = role == Self.poolName
        var mounts: [YAMLValue] = [
            .map([("name", .string("keys")), ("mountPath", .string(Self.keyFolder)), ("readOnly", .bool(true))]),
        ]
        var volumes: [YAMLValue] = [
            .map([("name", .string("keys")), ("secret", .map([("secretName", .string(objectName(role) + "-key")), ("defaultMode", .int(0o440))]))]),
        ]
        // The controller reads the pipeline and the model; the source its input. Stages fetch the model.
        if isController || role == "source" {
            // The image's own folder stays visible beside the one file mounted into it.
            mounts.append(options.filesInImage
                ? .map([("name", .string("pipeline")), ("mountPath", .string("\(Self.pipelineFolder)/\(pipelineName)")),
                        ("subPath", .string(pipelineName)), ("readOnly", .bool(true))])
                : .map([("name", .string("pipeline")), ("mountPath", .string(Self.pipelineFolder)), ("readOnly", .bool(true))]))
            var items: [YAMLValue] = [.map([("key", .string("pipeline.yaml")), ("path", .string(pipelineName))])]
            for (index, file) in files.enumerated() { items.append(.map([("key", .string("file-\(index)")), ("path", .string(file.relative))])) }
            volumes.append(.map([("name", .string("pipeline")), ("configMap", .map([("name", .string("\(name)-pipeline")), ("items", .list(items))]))]))
        }
        if isStage {
            mounts.append(.map([("name", .string("cache")), ("mountPath", .string("/sluice/cache"))]))
            volumes.append(.map([("name", .string("cache")), ("emptyDir", .map([]))]))
        }
        let port = isController ? plan.config.transport.basePort : Self.dataPort
        var container: [(String, YAMLValue)] = [
            ("name", .string("sluice")), ("image", .string(options.image)), ("imagePullPolicy", .string("IfNotPresent")),
            ("command", .list([.string("sluice")])), ("args", .list(arguments(of: role).map { .string($0) })),
            ("env", .list([.map([("name", .string("POD_IP")), ("valueFrom", .map([("fieldRef", .map([("fieldPath", .string("status.podIP"))]))]))])])),
            ("resources", .map([("requests", .map([("cpu", .string("\(cores)")), ("memory", .string("256Mi"))]))])),
            ("volumeMounts", .list(mounts)),
        ]
        if isController {
            container.append(("ports", .list([.map([("name", .string("control")), ("containerPort", .int(port))]),
                                               .map([("name", .string("metrics")), ("containerPort", .int(Self.metricsPort))])])))
            let probe = YAMLValue.map([("httpGet", .map([("path", .string("/health")), ("port", .int(Self.metricsPort))])), ("periodSeconds", .int(5))])
            container.append(("readinessProbe", probe))
            container.append(("livenessProbe", probe))
        } else if role != "source" {
            // No tcpSocket probe: a connection that never speaks CURVE is a refused peer, and
            // would be counted as one every period. A role that fails exits; the pod restarts.
            container.append(("ports", .list([.map([("name", .string("data")), ("containerPort", .int(port))])])))
        }
        let annotations: [(String, YAMLValue)] = isController
            ? [("prometheus.io/scrape", .string("true")), ("prometheus.io/port", .string("\(Self.metricsPort)")), ("prometheus.io/path", .string("/metrics"))]
            : []
        // The image's own user (tools/docker/Dockerfile); the keys are readable by its group.
        let podSpec = YAMLValue.map([
            ("securityContext", .map([("runAsNonRoot", .bool(true)), ("runAsUser", .int(10001)), ("runAsGroup", .int(10001)),
                                      ("fsGroup", .int(10001))])),
            ("containers", .list([.map(container)])), ("volumes", .list(volumes)),
        ])
        return .map([
            ("apiVersion", .string("apps/v1")), ("kind", .string("Deployment")), ("metadata", metadata(objectName(role), role: role)),
            ("spec", .map([
                ("replicas", .int(replicas)),
                // One process per role name at a time: the old pod is gone before its successor
                // starts. (Stage pods have no name of their own; scaling them adds processes
                // that wait in the pool.)
                ("strategy", .map([("type", .string(isStage ? "RollingUpdate" : "Recreate"))])),
                ("selector", .map([("matchLabels", labels(role))])),
                ("template", .map([("metadata", .map([("labels", labels(role))] + (annotations.isEmpty ? [] : [("annotations", .map(annotations))]))),
                                   ("spec", podSpec)])),
            ])),
        ])
    }
}

/// A key pair as the files `sluice keys` writes.
struct CurveKeyPairText {
    var keyFile: String
    var publicFile: String

    static func make(_ name: String) throws -> CurveKeyPairText {
        let keys = try CurveKeyPair.generate()
        return CurveKeyPairText(keyFile: KeyFolder.keyFileText(name, keys), publicFile: KeyFolder.publicFileText(name, keys.publicKey))
    }
}
