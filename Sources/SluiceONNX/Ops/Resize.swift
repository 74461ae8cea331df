import Foundation
import SluiceTensor

/// Resize and the older Upsample: nearest, linear and cubic interpolation along each resized
/// axis in turn (the interpolation is separable), as ONNX defines them. GridSample: the same
/// interpolations at positions a grid gives.
enum ResizeOps {
    static let schemas: [OpSchema] = [
        OpSchema(name: "Resize", opsets: 10...OpRegistry.latestOpset, inputsSince: [10: 2...2, 11: 1...4]) { try ResizeOperator($0) },
        OpSchema(name: "Upsample", opsets: 7...9, inputsSince: [7: 1...1, 9: 2...2]) { try ResizeOperator(upsample: $0) },
        OpSchema(name: "GridSample", opsets: 16...OpRegistry.latestOpset, inputs: 2...2) { try GridSampleOperator($0) },
    ]
}

struct ResizeOperator: Operator {
    enum Mode: String { case nearest, linear, cubic }
    enum Coordinates: String {
        case halfPixel = "half_pixel", pytorchHalfPixel = "pytorch_half_pixel", alignCorners = "align_corners"
        case asymmetric, tfHalfPixelForNN = "tf_half_pixel_for_nn", tfCropAndResize = "tf_crop_and_resize"
        case halfPixelSymmetric = "half_pixel_symmetric"
    }
    enum Nearest: String { case roundPreferFloor = "round_prefer_floor", roundPreferCeil = "round_prefer_ceil", floor, ceil }

    let mode: Mode
    let coordinates: Coordinates
    let nearest: Nearest
    let cubicA: Double
    let excludeOutside: Bool
    let extrapolation: Double
    /// Where scales and sizes come from: (roi, scales, sizes) input positions, or scale attribute.
    let roiInput: Int?
    let scalesInput: Int?
    let sizesInput: Int?
    let attributeScales: [Float]?

    init(_ context: OpContext) throws {
        let a = context.attributes
        let modeText = try a.string("mode") ?? "nearest"
        guard let mode = Mode(rawValue: modeText) else { throw OpError.invalid("mode '\(modeText)' is not nearest, linear or cubic") }
        self.mode = mode
        if try a.int("antialias", default: 0) != 0 { throw OpError.unsupported("antialias is not supported") }
        if let axes = try a.ints("axes"), !axes.isEmpty { throw OpError.unsupported("the axes attribute is not supported") }
        if let policy = try a.string("keep_aspect_ratio_policy"), policy != "stretch" {
            throw OpError.unsupported("keep_aspect_ratio_policy '\(policy)' is not supported")
        }
        if context.opset < 11 {
            // Opset 10: (X, scales), asymmetric coordinates, nearest rounds down.
            coordinates = .asymmetric
            nearest = .floor
            roiInput = nil
            scalesInput = 1
            sizesInput = nil
        } else {
            let c = try a.string("coordinate_transformation_mode") ?? "half_pixel"
            guard let coordinates = Coordinates(rawValue: c) else { throw OpError.invalid("coordinate_transformation_mode '\(c)' is not supported") }
            self.coordinates = coordinates
            let n = try a.string("nearest_mode") ?? "round_prefer_floor"
            guard let nearest = Nearest(rawValue: n) else { throw OpError.invalid("nearest_mode '\(n)' is not supported") }
            self.nearest = nearest
            let inputs = context.node.inputs
            func present(_ i: Int) -> Int? { i < inputs.count && !inputs[i].isEmpty ? i : nil }
            roiInput = present(1)
            scalesInput = present(2)
            sizesInput = present(3)
        }
        cubicA = Double(try a.float("cubic_coeff_a", default: -0.75))
        excludeOutside = try a.int("exclude_outside", default: 0) != 0
        extrapolation = Double(try a.float("extrapolation_value", default: 0))
        attributeScales = nil
    }

    /// Upsample (opsets 7 to 9): scales as an attribute (7) or input (9), asymmetric coordinates.
    init(upsample context: OpContext) throws {
        let modeText = try context.attributes.string("mode") ?? "nearest"
        guard modeText == "nearest" || modeText == "linear" || modeText == "bilinear" else {
            throw OpError.invalid("mode '\(modeText)' is not nearest or linear")
        }
        mode = modeText == "nearest" ? .nearest : .linear
        coordinates = .asymmetric
        nearest = .floor
        cubicA = -0.75
        excludeOutside = false
        extrapolation = 0
        roiInput = nil
        sizesInput = nil
        if context.opset < 9 {
            scalesInput = nil
            guard let scales = try context.attributes.floats("scales") else { throw OpError.invalid("attribute scales is required") }
            attributeScales = scales
        } else {
            scalesInput = 1
            attributeScales = nil
        }
    }

    /// Output sizes and scale factors per dimension.
    func plan(_ inputs: InferenceInputs, shape: [Int]) throws -> (sizes: [Int], scales: [Double]) {
        let rank = shape.count
        if let sizesInput, let sizeType = inputs.optionalType(sizesInput), sizeType.elementCount > 0 {
            guard let sizes = inputs.integers(sizesInput) else { throw OpError.needsValue("sizes") }
            guard sizes.count == rank else { throw OpError("sizes \(describe(sizes)) need \(rank) values") }
            return (sizes, (0..<rank).map { Double(sizes[$0]) / Double(shape[$0]) })
        }
        var scales: [Double]
        if let attributeScales {
            scales = attributeScales.map(Double.init)
        } else if let scalesInput, inputs.optionalType(scalesInput) != nil {
            guard let value = inputs.value(scalesInput) else { throw OpError.needsValue("scales") }
            scales = value.doubles
        } else {
            throw OpError.invalid("needs scales or sizes")
        }
        guard scales.count == rank, scales.allSatisfy({ $0 > 0 }) else { throw OpError("scales \(scales) need \(rank) positive values") }
        let sizes = (0..<rank).map { Int((Double(shape[$0]) * scales[$0]).rounded(.down)) }
        return (sizes, scales)
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let x = try inputs.type(0, oneOf: [.float32, .float64, .float16, .uint8, .int8, .int32, .int64], role: "X")
        return [ValueType(x.dtype, try plan(inputs, shape: x.shape).sizes)]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let x = inputs[0]!
        let known = InferenceInputs(tensors: inputs)
        let (sizes, scales) = try plan(known, shape: x.shape)
        var roi: [Double]?
        if let roiInput, let r = inputs[roiInput], r.elementCount == 2 * x.rank { roi = r.doubles }
        var shape = x.shape
        var data = x.doubles
        for axis in 0..<x.rank {
            let unchanged = sizes[axis] == shape[axis] && abs(scales[axis] - 1) < 1e-9
                && (coordinates != .tfCropAndResize || roi == nil || (roi![axis] == 0 && roi![axis + x.rank] == 1))
            if unchanged { continue }
            (data, shape) = resize(data, shape: shape, axis: axis, size: sizes[axis], scale: scales[axis],
                                   roi: roi.map { ($0[axis], $0[axis + x.rank]) })
        }
        if x.dtype.isInteger { data = data.map { $0.rounded(.toNearestOrEven) } }
        return [Tensor(dtype: x.dtype, shape: shape, doubles: data)]
    }

    /// The source coordinate of output position `y` along one axis; nil when it falls outside
    /// the crop (tf_crop_and_resize), where the extrapolation value goes.
    func source(_ y: Int, inSize: Int, outSize: Int, scale: Double, roi: (Double, Double)?) -> Double? {
        let y = Double(y), input = Double(inSize)
        let outWidth = scale * input
        switch coordinates {
        case .alignCorners: return outWidth == 1 ? 0 : y * (input - 1) / (outWidth - 1)
        case .asymmetric: return y / scale
        case .pytorchHalfPixel: return outWidth == 1 ? -0.5 : (y + 0.5) / scale - 0.5
        case .halfPixel: return (y + 0.5) / scale - 0.5
        case .tfHalfPixelForNN: return (y + 0.5) / scale
        case .halfPixelSymmetric:
            let adjustment = Double(outSize) / outWidth
            return input / 2 * (1 - adjustment) + (y + 0.5) / scale - 0.5
        case .tfCropAndResize:
            let (start, end) = roi ?? (0, 1)
            var x = outWidth == 1 ? (end - start) * (input - 1) / 2 : y * (end - start) * (input - 1) / (outWidth - 1)
            x += start * (input - 1)
            return x < 0 || x > input - 1 ? nil : x
        }
    }

    /// Taps (clamped input positions) and weights for one output position.
    func taps(_ x: Double, inSize: Int) -> [(Int, Double)] {
        let base = x.rounded(.down)
        let ratio = x - base
        let floor = Int(base)
        func clamp(_ i: Int) -> Int { Swift.min(Swift.max(i, 0), inSize - 1) }
        switch mode {
        case .nearest:
            let up: Bool
            if ratio == 0 {
                up = false
            } else {
                switch nearest {
                case .roundPreferFloor: up = ratio > 0.5
                case .roundPreferCeil: up = ratio >= 0.5
                case .floor: up = false
                case .ceil: up = true
                }
            }
            return [(clamp(floor + (up ? 1 : 0)), 1)]
        case .linear:
            return [(clamp(floor), 1 - ratio), (clamp(floor + 1), ratio)]
        case .cubic:
            var weights = Kernels.cubicWeights(ratio, a: cubicA)
            let positions = (0..<4).map { floor - 1 + $0 }
            if excludeOutside {
                for k in 0..<4 where positions[k] < 0 || positions[k] >= inSize { weights[k] = 0 }
                let sum = weights.reduce(0, +)
                if sum != 0 { weights = weights.map { $0 / sum } }
            }
            return (0..<4).map { (clamp(positions[$0]), weights[$0]) }
        }
    }

    private func resize(_ data: [Double], shape: [Int], axis: Int, size: Int, scale: Double,
                        roi: (Double, Double)?) -> ([Double], [Int]) {
        let (outer, length, inner) = split(shape, at: axis)
        let plan = (0..<size).map { y -> [(Int, Double)]? in
            source(y, inSize: length, outSize: size, scale: scale, roi: roi).map { taps($0, inSize: length) }
        }
        var result = [Double](repeating: 0, count: outer * size * inner)
        for o in 0..<outer {
            for y in 0..<size {
                let dst = (o * size + y) * inner
                guard let taps = plan[y] else {
                    for i in 0..<inner { result[dst + i] = extrapolation }
                    continue
                }
                for (position, weight) in taps where weight != 0 {
                    let src = (o * length + position) * inner
                    for i in 0..<inner { result[dst + i] += weight * data[src + i] }
                }
            }
        }
        var newShape = shape
        newShape[axis] = size
        return (result, newShape)
    }
}

/// GridSample over two spatial dimensions (X [N, C, H, W], grid [N, Hout, Wout, 2]), as
/// torch.nn.functional.grid_sample exports it. Opset 20 renamed the modes bilinear and bicubic
/// to linear and cubic and allowed more spatial dimensions; the 2-D case is what is implemented.
struct GridSampleOperator: Operator {
    let sampling: GridSampling

    init(_ context: OpContext) throws {
        let a = context.attributes
        let renamed = context.opset >= 20
        let modes: [String: GridSampling.Mode] = renamed
            ? ["nearest": .nearest, "linear": .linear, "cubic": .cubic]
            : ["nearest": .nearest, "bilinear": .linear, "bicubic": .cubic]
        let modeText = try a.string("mode") ?? (renamed ? "linear" : "bilinear")
        guard let mode = modes[modeText] else {
            throw OpError.invalid("mode '\(modeText)' is not one of \(modes.keys.sorted().joined(separator: ", ")) (opset \(context.opset))")
        }
        let paddings: [String: GridSampling.Padding] = ["zeros": .zeros, "border": .border, "reflection": .reflection]
        let paddingText = try a.string("padding_mode") ?? "zeros"
        guard let padding = paddings[paddingText] else {
            throw OpError.invalid("padding_mode '\(paddingText)' is not one of border, reflection, zeros")
        }
        sampling = GridSampling(mode: mode, padding: padding, alignCorners: try a.int("align_corners", default: 0) != 0)
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let x = try inputs.type(0, oneOf: DType.floatingPoint, role: "X")
        let grid = try inputs.type(1, oneOf: DType.floatingPoint, role: "grid")
        guard x.shape.count == 4 else {
            throw OpError.unsupported("X is \(describe(x.shape)): only two spatial dimensions ([N, C, H, W]) are supported")
        }
        guard grid.shape.count == 4, grid.shape[3] == 2, grid.shape[0] == x.shape[0] else {
            throw OpError("grid \(describe(grid.shape)) must be [N, Hout, Wout, 2] with N = \(x.shape[0]) as in X")
        }
        return [ValueType(x.dtype, [x.shape[0], x.shape[1], grid.shape[1], grid.shape[2]])]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let x = Kernels.cast(inputs[0]!, to: .float32), grid = Kernels.cast(inputs[1]!, to: .float32)
        return [Kernels.cast(Kernels.gridSample(x, grid: grid, sampling), to: outputs[0].dtype)]
    }

    func flops(_ inputs: [ValueType?], _ outputs: [ValueType]) -> Double {
        let taps = Double(sampling.tapsPerAxis * sampling.tapsPerAxis)
        return Double(outputs[0].elementCount) * 2 * taps
    }
}
