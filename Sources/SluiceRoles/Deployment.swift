import SluiceConfig
import SluicePlan
import SluiceProtocol

/// How a plan becomes processes: where each role listens, and the assignment each is sent.
extension PipelinePlan {
    /// Where every role listens: ipc:// files in `runDirectory`, or consecutive tcp ports.
    public func endpoints(runDirectory: String) -> Endpoints {
        let instances = stageInstances
        switch config.transport.kind {
        case .ipc:
            return Endpoints(control: "ipc://\(runDirectory)/control.ipc",
                             stages: instances.map { $0.map { "ipc://\(runDirectory)/\($0).ipc" } },
                             sink: "ipc://\(runDirectory)/sink.ipc")
        case .tcp:
            let host = config.transport.host
            var port = config.transport.basePort
            func next() -> String {
                port += 1
                return "tcp://\(host):\(port)"
            }
            let stages = instances.map { $0.map { _ in next() } }
            return Endpoints(control: "tcp://\(host):\(config.transport.basePort)", stages: stages, sink: next())
        }
    }

    /// Where stage processes added during the run bind: ipc files beside the others, or the tcp
    /// ports after the sink's, one each.
    public func replicaEndpoints(runDirectory: String) -> (String) -> String {
        let ports = PortCounter(next: config.transport.basePort + stageNames.count + 2)
        let transport = config.transport
        return { name in
            switch transport.kind {
            case .ipc: return "ipc://\(runDirectory)/\(name).ipc"
            case .tcp: return "tcp://\(transport.host):\(ports.take())"
            }
        }
    }

    /// The assignment message for every role, by role name.
    public func assignments(_ endpoints: Endpoints) -> [String: ControlMessage] {
        let liveness = Liveness(heartbeatSeconds: config.controller.heartbeatMilliseconds / 1000,
                                timeoutSeconds: config.controller.timeoutSeconds)
        var messages: [String: ControlMessage] = [:]
        for (index, range) in partition.ranges.enumerated() {
            for (replica, name) in stageInstances[index].enumerated() {
                messages[name] = .assignStage(StageAssignment(
                    stageIndex: index, epoch: 1, modelPath: config.model.path, cut: cut,
                    layers: LayerSpan(range),
                    pullEndpoint: endpoints.stages[index][replica],
                    pushEndpoints: index + 1 < endpoints.stages.count ? endpoints.stages[index + 1] : [endpoints.sink],
                    slowdown: config.stages.slowdown[index] ?? 0, liveness: liveness, profiling: config.controller.profiling,
                    threads: shapes[index].threads, compression: config.stages.compression(ofStage: index).initial))
            }
        }
        messages["source"] = .assignSource(SourceAssignment(
            source: config.source, window: config.window, batching: config.batching, inputName: inputName,
            windowShape: windowShape, epoch: 1, pushEndpoints: endpoints.stages[0], liveness: liveness, nanPolicy: config.nanPolicy,
            replayBytes: Int(config.replayMiB * 1_048_576)))
        messages["sink"] = .assignSink(SinkAssignment(
            sink: config.sink, pullEndpoint: endpoints.sink, outputName: outputName, labelName: labelName, modelLabels: modelLabels, classes: classes,
            layerCount: cut.layers.count, liveness: liveness, profiling: config.controller.profiling))
        return messages
    }
}

private final class PortCounter: @unchecked Sendable {
    private var next: Int
    init(next: Int) { self.next = next }
    func take() -> Int {
        defer { next += 1 }
        return next
    }
}

public struct Endpoints: Equatable {
    public var control: String
    /// Per stage, one endpoint per process (replica).
    public var stages: [[String]]
    public var sink: String
}
