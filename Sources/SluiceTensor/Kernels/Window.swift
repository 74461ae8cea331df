/// How ONNX derives padding for sliding windows (Conv and pooling's `auto_pad`).
public enum AutoPad: String, Sendable {
    case notSet = "NOTSET"
    case sameUpper = "SAME_UPPER"
    case sameLower = "SAME_LOWER"
    case valid = "VALID"
}

/// The geometry of a sliding window over the spatial dimensions of an N×C×spatial tensor:
/// kernel, strides, dilations, padding, and the resulting output size.
public struct KernelGeometry: Sendable, Equatable {
    public let input: [Int]
    public let kernel: [Int]
    public let strides: [Int]
    public let dilations: [Int]
    public let padsBegin: [Int]
    public let padsEnd: [Int]
    public let output: [Int]

    /// - Parameters:
    ///   - pads: ONNX order, all begins then all ends (`[x1_begin, x2_begin, ..., x1_end, x2_end, ...]`).
    ///   - ceilMode: round the output size up (pooling), dropping a last window that would start
    ///     inside the end padding.
    public init(input: [Int], kernel: [Int], strides: [Int]? = nil, dilations: [Int]? = nil, pads: [Int]? = nil,
                autoPad: AutoPad = .notSet, ceilMode: Bool = false) throws {
        let rank = input.count
        guard kernel.count == rank else { throw ShapeError("kernel \(kernel) has \(kernel.count) dimensions, the input has \(rank) spatial dimensions \(input)") }
        let strides = strides ?? Array(repeating: 1, count: rank)
        let dilations = dilations ?? Array(repeating: 1, count: rank)
        guard strides.count == rank else { throw ShapeError("strides \(strides) need \(rank) values") }
        guard dilations.count == rank else { throw ShapeError("dilations \(dilations) need \(rank) values") }
        guard strides.allSatisfy({ $0 >= 1 }) else { throw ShapeError("strides \(strides) must be positive") }
        guard dilations.allSatisfy({ $0 >= 1 }) else { throw ShapeError("dilations \(dilations) must be positive") }
        guard kernel.allSatisfy({ $0 >= 1 }) else { throw ShapeError("kernel \(kernel) must be positive") }
        var begin = [Int](repeating: 0, count: rank)
        var end = [Int](repeating: 0, count: rank)
        var output = [Int](repeating: 0, count: rank)
        for d in 0..<rank {
            let span = (kernel[d] - 1) * dilations[d] + 1
            switch autoPad {
            case .notSet:
                if let pads {
                    guard pads.count == 2 * rank else { throw ShapeError("pads \(pads) need \(2 * rank) values") }
                    guard pads.allSatisfy({ $0 >= 0 }) else { throw ShapeError("pads \(pads) must not be negative") }
                    begin[d] = pads[d]
                    end[d] = pads[d + rank]
                }
                let room = input[d] + begin[d] + end[d] - span
                guard room >= 0 else {
                    throw ShapeError("window of \(span) (kernel \(kernel[d]), dilation \(dilations[d])) is larger than the padded input \(input[d] + begin[d] + end[d]) in spatial dimension \(d)")
                }
                if ceilMode {
                    var size = (room + strides[d] - 1) / strides[d] + 1
                    // A last window that starts in the end padding covers no input: drop it.
                    if (size - 1) * strides[d] >= input[d] + begin[d] { size -= 1 }
                    output[d] = size
                } else {
                    output[d] = room / strides[d] + 1
                }
            case .valid:
                let room = input[d] - span
                guard room >= 0 else {
                    throw ShapeError("window of \(span) is larger than the input \(input[d]) in spatial dimension \(d) (auto_pad VALID)")
                }
                output[d] = room / strides[d] + 1
            case .sameUpper, .sameLower:
                output[d] = (input[d] + strides[d] - 1) / strides[d]
                let total = max(0, (output[d] - 1) * strides[d] + span - input[d])
                if autoPad == .sameUpper {
                    begin[d] = total / 2
                    end[d] = total - begin[d]
                } else {
                    end[d] = total / 2
                    begin[d] = total - end[d]
                }
            }
        }
        self.input = input
        self.kernel = kernel
        self.strides = strides
        self.dilations = dilations
        self.padsBegin = begin
        self.padsEnd = end
        self.output = output
    }

    /// The geometry seen as two spatial dimensions (1-D windows get a leading dimension of 1).
    var planar: Planar {
        if input.count == 1 {
            return Planar(h: 1, w: input[0], kh: 1, kw: kernel[0], sh: 1, sw: strides[0], dh: 1, dw: dilations[0],
                          ph: 0, pw: padsBegin[0], phEnd: 0, pwEnd: padsEnd[0], oh: 1, ow: output[0])
        }
        precondition(input.count == 2, "only 1-D and 2-D windows have a planar view")
        return Planar(h: input[0], w: input[1], kh: kernel[0], kw: kernel[1], sh: strides[0], sw: strides[1],
                      dh: dilations[0], dw: dilations[1], ph: padsBegin[0], pw: padsBegin[1],
                      phEnd: padsEnd[0], pwEnd: padsEnd[1], oh: output[0], ow: output[1])
    }

    struct Planar {
        let h, w, kh, kw, sh, sw, dh, dw, ph, pw, phEnd, pwEnd, oh, ow: Int

        /// The outputs `lo..<hi` along one dimension whose tap at `offset` (= k·dilation − pad)
        /// lands inside an input of `size`.
        @inline(__always)
        static func validOutputs(offset: Int, stride: Int, size: Int, count: Int) -> (Int, Int) {
            let lo = offset >= 0 ? 0 : (-offset + stride - 1) / stride
            let last = size - 1 - offset
            let hi = last < 0 ? 0 : min(count, last / stride + 1)
            return (min(lo, hi), hi)
        }
    }
}
