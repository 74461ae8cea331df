import SluiceTensor

/// Object-detection heads: RoiAlign pools feature-map regions, NonMaxSuppression picks boxes.
enum DetectionOps {
    static let schemas: [OpSchema] = [
        OpSchema(name: "RoiAlign", opsets: 10...OpRegistry.latestOpset, inputs: 3...3) { try RoiAlignOperator($0) },
        OpSchema(name: "NonMaxSuppression", opsets: 10...OpRegistry.latestOpset, inputs: 2...5) { try NonMaxSuppressionOperator($0) },
    ]
}

struct RoiAlignOperator: Operator {
    let alignment: RoiAlignment

    init(_ context: OpContext) throws {
        let a = context.attributes
        let modeText = try a.string("mode") ?? "avg"
        guard modeText == "avg" || modeText == "max" else { throw OpError.invalid("mode '\(modeText)' is not avg or max") }
        // Opset 10 had no choice: its boxes map as output_half_pixel does.
        let coordinates = try a.string("coordinate_transformation_mode") ?? (context.opset < 16 ? "output_half_pixel" : "half_pixel")
        guard coordinates == "half_pixel" || coordinates == "output_half_pixel" else {
            throw OpError.invalid("coordinate_transformation_mode '\(coordinates)' is not half_pixel or output_half_pixel")
        }
        let outputHeight = try a.int("output_height", default: 1), outputWidth = try a.int("output_width", default: 1)
        guard outputHeight > 0, outputWidth > 0 else {
            throw OpError.invalid("output_height and output_width must be positive, got \(outputHeight) and \(outputWidth)")
        }
        let samplingRatio = try a.int("sampling_ratio", default: 0)
        guard samplingRatio >= 0 else { throw OpError.invalid("sampling_ratio must not be negative, got \(samplingRatio)") }
        alignment = RoiAlignment(mode: modeText == "avg" ? .average : .max, outputHeight: outputHeight, outputWidth: outputWidth,
                                 samplingRatio: samplingRatio, spatialScale: try a.float("spatial_scale", default: 1),
                                 halfPixel: coordinates == "half_pixel")
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let x = try inputs.type(0, oneOf: DType.floatingPoint, role: "X")
        let rois = try inputs.type(1, oneOf: DType.floatingPoint, role: "rois")
        let indices = try inputs.type(2, oneOf: [.int64], role: "batch_indices")
        guard x.shape.count == 4 else { throw OpError("X is \(describe(x.shape)), not [N, C, H, W]") }
        guard rois.shape.count == 2, rois.shape[1] == 4, indices.shape == [rois.shape[0]] else {
            throw OpError("rois \(describe(rois.shape)) and batch_indices \(describe(indices.shape)) must be [R, 4] and [R]")
        }
        if let batches = inputs.integers(2), let bad = batches.first(where: { $0 < 0 || $0 >= x.shape[0] }) {
            throw OpError("batch index \(bad) is outside X's batch of \(x.shape[0])")
        }
        return [ValueType(x.dtype, [rois.shape[0], x.shape[1], alignment.outputHeight, alignment.outputWidth])]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let x = Kernels.cast(inputs[0]!, to: .float32), rois = Kernels.cast(inputs[1]!, to: .float32)
        // Computed indices and boxes reach here unchecked by `infer`: a bad one would read outside X.
        let batches = inputs[2]!.int64Values
        if let bad = batches.first(where: { $0 < 0 || $0 >= x.shape[0] }) {
            throw OpError("batch index \(bad) is outside X's batch of \(x.shape[0])")
        }
        if let bad = rois.floats.firstIndex(where: { !$0.isFinite }) {
            throw OpError("roi \(bad / 4) has a non-finite coordinate \(rois.floats[bad])")
        }
        let y = Kernels.roiAlign(x, rois: rois, batchIndices: batches.map { Int($0) }, alignment)
        return [Kernels.cast(y, to: outputs[0].dtype)]
    }
}

/// NonMaxSuppression: how many boxes it keeps depends on the scores, so its output has a shape
/// only once they are known (at run time, as NonZero's).
struct NonMaxSuppressionOperator: DataMovementOperator {
    let centerPointBox: Bool

    init(_ context: OpContext) throws {
        let format = try context.attributes.int("center_point_box", default: 0)
        guard format == 0 || format == 1 else { throw OpError.invalid("center_point_box must be 0 or 1, got \(format)") }
        centerPointBox = format == 1
    }

    /// The kept (image, class, box) triples, once every input's value is known.
    func select(_ inputs: InferenceInputs) throws -> [Int64] {
        let boxes = try inputs.type(0, oneOf: [.float32], role: "boxes")
        let scores = try inputs.type(1, oneOf: [.float32], role: "scores")
        guard boxes.shape.count == 3, boxes.shape[2] == 4, scores.shape.count == 3,
              scores.shape[0] == boxes.shape[0], scores.shape[2] == boxes.shape[1] else {
            throw OpError("boxes \(describe(boxes.shape)) and scores \(describe(scores.shape)) must be [B, S, 4] and [B, K, S]")
        }
        for (i, role) in [(3, "iou_threshold"), (4, "score_threshold")] where inputs.optionalType(i) != nil {
            _ = try inputs.type(i, oneOf: [.float32], role: role)
        }
        if inputs.optionalType(2) != nil { _ = try inputs.type(2, oneOf: [.int64], role: "max_output_boxes_per_class") }
        for i in 0..<inputs.count where inputs.optionalType(i) != nil && inputs.value(i) == nil {
            throw OpError.needsValue(["boxes", "scores", "max_output_boxes_per_class", "iou_threshold", "score_threshold"][i])
        }
        func single(_ i: Int) -> Tensor? { inputs.value(i).flatMap { $0.elementCount > 0 ? $0 : nil } }
        let suppression = BoxSuppression(centerPointBox: centerPointBox,
                                         maxPerClass: Int(single(2)?.int64s[0] ?? 0),
                                         iouThreshold: single(3)?.floats[0] ?? 0,
                                         scoreThreshold: single(4)?.floats[0])
        return Kernels.nonMaxSuppression(boxes: inputs.value(0)!, scores: inputs.value(1)!, suppression)
            .flatMap { [Int64($0.image), Int64($0.class), Int64($0.box)] }
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        [ValueType(.int64, [try select(inputs).count / 3, 3])]
    }

    /// A run selects once, in `evaluate`, instead of once to size the output and again to fill it.
    var outputTypesNeedEvaluation: Bool { true }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let triples = try select(InferenceInputs(tensors: inputs))
        return [Tensor(shape: [triples.count / 3, 3], int64s: triples)]
    }
}
