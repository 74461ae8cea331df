import Foundation
import SluiceConfig
import SluiceONNX
import SluiceTensor

/// Everything decided before any process starts: the model's layers, the split over stages,
/// and which graph input and output the pipeline feeds and reports.
public struct PipelinePlan {
    public let config: PipelineConfig
    public let model: ONNXModel
    public let graph: PlanGraph
    public let cut: LayerCut
    public let partition: Partition
    /// Processes and threads per stage, as configured or as the planner chose them.
    public let shapes: [StageShape]
    public let inputName: String
    /// The output the sink writes as each window's scores.
    public let outputName: String
    /// The output that gives each window's class, where the model has one (a classifier's
    /// label); nil: the class is the best score's.
    public let labelName: String?
    /// The model's own class labels as text (a ZipMap's or a classifier's), which label values
    /// are; nil where the graph does not say.
    public let modelLabels: [String]?
    /// The model input's shape without the batch dimension.
    public let windowShape: [Int]
    public let classes: [String]

    /// Until stages report measured times, a byte crossing a stage boundary is priced like this
    /// many FLOPs (a ZeroMQ hop moves ~2.5 GB/s while one core computes ~50 GFLOP/s).
    public static let flopsPerTransferredByte = 20.0

    /// `recordingChannels`: how many channels a recording source's file holds (nil: unknown),
    /// which only the roles, who read recordings, can say. `maximumBatchElements`: the most
    /// elements one batch tensor may have on the wire.
    public static func make(config: PipelineConfig, recordingChannels: (RecordingSource) -> Int?,
                            maximumBatchElements: Int) throws -> PipelinePlan {
        let model = try ONNXModel.load(path: config.model.path)
        // Every stage needs a layer, and a layer holds at least one node: checked before the
        // cut, which works in memory proportional to the count it is asked for.
        if let count = config.stages.count, count > model.nodes.count {
            throw config.issue("stages.count", "\(count) stages, but the model has \(model.nodes.count) nodes, so at most \(model.nodes.count) layers")
        }
        let graph = PlanGraph(model: model)
        let cut = LayerCut.cut(graph, maxLiveTensors: 1, minimumLayers: config.stages.count ?? 1)
        let (input, windowShape) = try windowInput(config, model)
        try checkWindow(config, input: input.name, windowShape: windowShape, recordingChannels: recordingChannels)
        try checkBatchSize(config, windowShape: windowShape, maximumBatchElements: maximumBatchElements)
        let outputs = try chooseOutputs(config, model)
        let modelLabels = model.classLabels(of: outputs.scores)
        let classes = config.model.classes ?? metadataClasses(of: model) ?? modelLabels ?? []
        let (partition, shapes) = try stages(config, cut: cut, graph: graph)
        return PipelinePlan(config: config, model: model, graph: graph, cut: cut, partition: partition, shapes: shapes, inputName: input.name,
                            outputName: outputs.scores, labelName: outputs.label, modelLabels: modelLabels,
                            windowShape: windowShape, classes: classes)
    }

    /// Which outputs the sink uses, by what they hold. Scores: `model.output`, else the output
    /// holding class probabilities (a ZipMap's or a classifier's scores), else the first
    /// floating-point output, else the first numeric one. Label: another output with one integer
    /// or string per window (a classifier's label), which then names each window's class.
    static func chooseOutputs(_ config: PipelineConfig, _ model: ONNXModel) throws -> (scores: String, label: String?) {
        try outputsByMeaning(model, named: config.model.output) { config.issue("model.output", $0) }
    }

    /// `chooseOutputs` for a model alone (`sluice inspect`); `refuse` makes the error for an
    /// output named that does not fit.
    public static func outputsByMeaning(_ model: ONNXModel, named wanted: String?,
                                        refuse: (String) -> Error = { PlanError($0) }) throws -> (scores: String, label: String?) {
        let numeric = model.outputs.filter { $0.dtype != .string }
        let scores: String
        if let wanted {
            guard let found = model.outputs.first(where: { $0.name == wanted }) else {
                throw refuse("the model has no output '\(wanted)' (outputs: \(model.outputs.map(\.name).joined(separator: ", ")))")
            }
            guard found.dtype != .string else {
                throw refuse("output '\(wanted)' holds strings; scores must be numbers (a string label names each window's class by itself)")
            }
            scores = wanted
        } else {
            // Scores are numbers a model computes, not the integer label beside them.
            let floating = numeric.filter { $0.dtype.isFloatingPoint }
            guard let chosen = floating.first(where: { model.classLabels(of: $0.name) != nil }) ?? floating.first ?? numeric.first else {
                throw PlanError("the model has no numeric output for the sink to write (outputs: \(model.outputs.map { "\($0)" }.joined(separator: ", ")))")
            }
            scores = chosen.name
        }
        let label = model.outputs.first { info in
            info.name != scores && (info.dtype == .string || info.dtype == .int64 || info.dtype == .int32)
                && info.shape.dropFirst().allSatisfy { $0 == 1 }
        }
        return (scores, label?.name)
    }

    /// The class names the model's metadata gives (`classes`, comma-separated), which the sink
    /// uses when the pipeline names none (`model.classes`).
    public static func metadataClasses(of model: ONNXModel) -> [String]? {
        model.metadata["classes"].map { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }
    }

    /// The model input windows feed, and the shape of one window (the input without its batch
    /// dimension).
    static func windowInput(_ config: PipelineConfig, _ model: ONNXModel) throws -> (TensorInfo, [Int]) {
        let inputs = model.inputs
        let input: TensorInfo
        if let wanted = config.model.input {
            guard let found = inputs.first(where: { $0.name == wanted }) else {
                throw config.issue("model.input", "the model has no input '\(wanted)' (inputs: \(inputs.map(\.name).joined(separator: ", ")))")
            }
            input = found
        } else {
            guard inputs.count == 1 else {
                throw config.issue("model.input", "the model has \(inputs.count) inputs (\(inputs.map(\.name).joined(separator: ", "))); name the one windows feed")
            }
            input = inputs[0]
        }
        guard input.dtype == .float32 else { throw PlanError("model input '\(input.name)' is \(input.dtype); windows are float32") }
        let windowDims = input.shape.dropFirst()
        guard !input.shape.isEmpty, windowDims.allSatisfy({ $0 != nil }) else {
            throw PlanError("model input '\(input.name)' has shape \(input.shape.map { $0.map(String.init) ?? "?" }); only the batch dimension may be symbolic")
        }
        let windowShape = windowDims.compactMap { $0 }
        return (input, windowShape)
    }

    /// A micro-batch travels as one tensor, which receivers refuse past `maximumBatchElements`;
    /// the source would also reserve room for a whole batch before the first window.
    static func checkBatchSize(_ config: PipelineConfig, windowShape: [Int], maximumBatchElements: Int) throws {
        let windowElements = windowShape.reduce(1) { $0.multipliedReportingOverflow(by: $1).overflow ? .max : $0 * $1 }
        let (batchElements, overflow) = windowElements.multipliedReportingOverflow(by: config.batching.maxSize)
        if overflow || batchElements > maximumBatchElements {
            throw config.issue("batching.max_size", "\(config.batching.maxSize) windows of \(windowShape) make a batch of more than \(maximumBatchElements) elements; make it at most \(max(1, maximumBatchElements / max(1, windowElements)))")
        }
    }

    /// How many stages, their layers, and each one's processes and threads: as configured, or
    /// as the planner chooses them for the core budget, by FLOP-based costs until measured.
    static func stages(_ config: PipelineConfig, cut: LayerCut, graph: PlanGraph) throws -> (Partition, [StageShape]) {
        var costs = PipelinePlan.estimatedCosts(cut)
        let stages = config.stages
        // A link narrowed from the start carries less: the first plan knows it (`auto` starts
        // uncompressed). With the count left to the planner, one setting covers every link.
        costs.linkFactors = (0..<(stages.count ?? cut.layers.count)).map { stages.compression(ofStage: $0).initial.floatBytesRatio }
        let splitRanges = stages.split.map { $0.map { $0.start..<$0.end } }
        if let split = stages.split, split.last?.end != cut.layers.count {
            throw config.issue("stages.split", "covers layers 0-\((split.last?.end ?? 1) - 1) but the model has \(cut.layers.count) layers (0-\(cut.layers.count - 1)); see `sluice plan`")
        }
        let partition: Partition
        let shapes: [StageShape]
        if stages.plansShapes {
            let count = stages.count ?? splitRanges?.count
            let planner = CorePlanner(costs: costs, parallelFractions: CorePlanner.parallelFractions(cut: cut, graph: graph))
            let constraints = CorePlanner.Constraints(
                stages: count, ranges: splitRanges,
                threads: count.map { count in (0..<count).map { stages.threads[$0] } })
            do {
                let chosen = try planner.plan(cores: config.coreBudget, constraints: constraints)
                partition = Partition(ranges: chosen.ranges, stageTimes: chosen.stageTimes)
                shapes = chosen.shapes
            } catch {
                throw config.issue("cores", "\(error)")
            }
        } else {
            let count = stages.count ?? 1
            if let ranges = splitRanges {
                partition = Partition(ranges: ranges, stageTimes: Partition.stageTimes(of: ranges, costs: costs, speeds: Array(repeating: 1, count: ranges.count)))
            } else {
                do {
                    partition = try Partition.optimal(costs: costs, stages: count)
                } catch {
                    throw config.issue("stages.count", "\(error)")
                }
            }
            shapes = (0..<count).map { StageShape(replicas: stages.replicas[$0] ?? 1, threads: stages.threads[$0] ?? 1) }
        }
        return (partition, shapes)
    }

    /// The windows the source will cut must be the rows the model takes: the same check for
    /// `sluice validate` and before `sluice run` starts any process. A sensor source gives
    /// [channels, length] (channels_first) or [length, channels] per window.
    static func checkWindow(_ config: PipelineConfig, input: String, windowShape: [Int],
                            recordingChannels: (RecordingSource) -> Int?) throws {
        // A tensors source's rows are the windows: its header says their shape.
        if case .tensors(let tensors) = config.source, let handle = FileHandle(forReadingAtPath: tensors.path) {
            defer { try? handle.close() }
            let head = (try? handle.read(upToCount: 1 << 16)) ?? Data()
            if let shape = NPY.shape(ofHeader: head), shape.count >= 2, Array(shape.dropFirst()) != windowShape {
                throw config.issue("source.path", "holds rows of \(Array(shape.dropFirst())), but model input '\(input)' takes \(windowShape) per window")
            }
        }
        guard let window = config.window, config.source.needsWindow else { return }
        let channels: Int?
        switch config.source {
        case .zmq(let zmq): channels = zmq.channels
        case .recording(let recording): channels = recordingChannels(recording)
        case .tensors: channels = nil
        }
        let layout = window.layout
        let takes = "model input '\(input)' takes \(windowShape) per window"
        if windowShape.count == 1 {
            // A model of flat feature rows (scikit-learn's) takes each window flattened in its
            // layout's order: channels × length values.
            let features = windowShape[0]
            if let channels {
                guard features == channels * window.length else {
                    let fits = features % window.length == 0 ? "; it fits \(features / window.length) channel(s) of \(window.length)" : ""
                    throw config.issue("window.length", "is \(window.length) samples of \(channels) channel(s), \(channels * window.length) values flattened, but \(takes)\(fits)")
                }
            } else if features % window.length != 0 {
                throw config.issue("window.length", "is \(window.length), but \(takes), which is no whole number of channels of \(window.length) samples")
            }
            return
        }
        guard windowShape.count == 2 else {
            throw config.issue("window", "\(takes), but sensor windows are 2-D ([channels, length] or [length, channels]) or flattened ([channels × length])")
        }
        let (modelChannels, modelLength) = layout == .channelsFirst ? (windowShape[0], windowShape[1]) : (windowShape[1], windowShape[0])
        let other = layout == .channelsFirst ? WindowLayout.channelsLast : .channelsFirst
        let swapped = window.length == modelChannels && (channels ?? modelLength) == modelLength
        let hint = swapped ? "; with window.layout: \(other.rawValue) it fits" : ""
        if window.length != modelLength {
            throw config.issue("window.length", "is \(window.length), but \(takes) (\(layout.rawValue): \(layout == .channelsFirst ? "[channels, length]" : "[length, channels]"))\(hint)")
        }
        if let channels, channels != modelChannels {
            let key = config.source.kind == "zmq" ? "source.channels" : "source"
            throw config.issue(key, "gives \(channels) channel(s), but \(takes) (\(layout.rawValue)): \(modelChannels) channel(s)\(hint)")
        }
    }

    /// FLOP-based costs per layer and per boundary, for planning before anything is measured.
    public static func estimatedCosts(_ cut: LayerCut) -> PartitionCosts {
        PartitionCosts(layerCosts: cut.layers.map(\.flopsPerWindow),
                       transferCosts: [Double(cut.inputBytesPerWindow) * flopsPerTransferredByte]
                           + cut.layers.map { Double($0.outputBytesPerWindow) * flopsPerTransferredByte })
    }

    /// Processes per stage (replicas).
    public var replicaCounts: [Int] { shapes.map(\.replicas) }

    /// Every stage process's role name, stage by stage: stage-1, stage-1.1, … for replicas.
    public var stageInstances: [[String]] {
        replicaCounts.enumerated().map { stage, count in (0..<count).map { StageInstance.name(stage: stage, replica: $0) } }
    }

    public var stageNames: [String] { stageInstances.flatMap { $0 } }
}

extension PlanGraph {
    /// What planning needs of a loaded model.
    public init(model: ONNXModel) {
        var bytes: [String: Int] = [:]
        var names = Set(model.inputs.map(\.name))
        for node in model.nodes { names.formUnion(node.outputs.filter { !$0.isEmpty }) }
        for name in names { bytes[name] = model.bytesPerWindow(of: name) }
        let constants = Set(model.nodes.flatMap(\.inputs).filter { !$0.isEmpty && model.isInitializer($0) })
        self.init(nodes: model.nodes.map {
                      PlanNode(name: $0.name, opType: $0.opType, inputs: $0.inputs, outputs: $0.outputs,
                               flopsPerWindow: $0.flopsPerWindow, parameterBytes: $0.parameterBytes)
                  },
                  inputs: model.inputs.map(\.name), outputs: model.outputs.map(\.name), constants: constants, bytesPerWindow: bytes,
                  unsplittable: model.fusionGroups)
    }
}
