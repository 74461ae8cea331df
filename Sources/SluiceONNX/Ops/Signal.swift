import Foundation
import SluiceTensor

/// Signal processing: window functions, DFT, STFT and the mel filter bank (spectrogram
/// front ends for audio and vibration models).
enum SignalOps {
    static let schemas: [OpSchema] = [
        OpSchema(name: "HannWindow", opsets: 17...OpRegistry.latestOpset, inputs: 1...1) { try WindowOperator($0, .hann) },
        OpSchema(name: "HammingWindow", opsets: 17...OpRegistry.latestOpset, inputs: 1...1) { try WindowOperator($0, .hamming) },
        OpSchema(name: "BlackmanWindow", opsets: 17...OpRegistry.latestOpset, inputs: 1...1) { try WindowOperator($0, .blackman) },
        OpSchema(name: "DFT", opsets: 17...19, inputs: 1...2) { try DFTOperator($0) },
        OpSchema(name: "STFT", opsets: 17...OpRegistry.latestOpset, inputs: 2...4) { try STFTOperator($0) },
        OpSchema(name: "MelWeightMatrix", opsets: 17...OpRegistry.latestOpset, inputs: 5...5) { try MelWeightMatrixOperator($0) },
    ]
}

/// The output dtype an `output_datatype` attribute names (default float32).
private func outputDType(_ context: OpContext) throws -> DType {
    let code = try context.attributes.int("output_datatype", default: 1)
    guard let dtype = TensorDecoder.numericDType(onnx: Int32(truncatingIfNeeded: code)) else {
        throw OpError.unsupported("output_datatype \(TensorDecoder.onnxTypeName(Int32(truncatingIfNeeded: code))) is not supported")
    }
    return dtype
}

/// A scalar integer input's value, when known.
private func scalar(_ inputs: InferenceInputs, _ i: Int, _ role: String) throws -> Int {
    guard let v = inputs.value(i) else { throw OpError.needsValue(role) }
    guard v.elementCount == 1 else { throw OpError("\(role) must be a scalar") }
    return Int(v.int64Values[0])
}

struct WindowOperator: Operator {
    enum Kind { case hann, hamming, blackman }
    let kind: Kind
    let periodic: Bool
    let dtype: DType

    init(_ context: OpContext, _ kind: Kind) throws {
        self.kind = kind
        periodic = try context.attributes.int("periodic", default: 1) != 0
        dtype = try outputDType(context)
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        _ = try inputs.type(0, oneOf: [.int64, .int32], role: "size")
        return [ValueType(dtype, [Swift.max(0, try scalar(inputs, 0, "size"))])]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let size = outputs[0].shape[0]
        let n = Double(periodic ? size : size - 1)
        let values = (0..<size).map { i -> Double in
            let x = Double(i) * 2 * Double.pi / n
            switch kind {
            case .hann: return 0.5 - 0.5 * Foundation.cos(x)
            case .hamming: return 25.0 / 46.0 - (21.0 / 46.0) * Foundation.cos(x)
            case .blackman: return 0.42 - 0.5 * Foundation.cos(x) + 0.08 * Foundation.cos(2 * x)
            }
        }
        return [Tensor(dtype: dtype, shape: [size], doubles: values)]
    }
}

/// Discrete Fourier transform of complex samples (re, im) with `length` points of `signal`
/// (zero-padded or truncated); inverse divides by `length`.
private func dft(_ re: [Double], _ im: [Double], length: Int, bins: Int, inverse: Bool) -> ([Double], [Double]) {
    var outRe = [Double](repeating: 0, count: bins), outIm = [Double](repeating: 0, count: bins)
    let sign = inverse ? 1.0 : -1.0
    let count = Swift.min(re.count, length)
    for k in 0..<bins {
        var sr = 0.0, si = 0.0
        for n in 0..<count {
            let angle = sign * 2 * Double.pi * Double((k * n) % length) / Double(length)
            let c = Foundation.cos(angle), s = Foundation.sin(angle)
            sr += re[n] * c - im[n] * s
            si += re[n] * s + im[n] * c
        }
        outRe[k] = inverse ? sr / Double(length) : sr
        outIm[k] = inverse ? si / Double(length) : si
    }
    return (outRe, outIm)
}

/// DFT (opsets 17 to 19): along `axis`, last dimension 1 (real) or 2 (complex); onesided keeps
/// the first length/2 + 1 bins; inverse with onesided reconstructs a real signal.
struct DFTOperator: Operator {
    let axis: Int
    let inverse: Bool
    let onesided: Bool

    init(_ context: OpContext) throws {
        axis = try context.attributes.int("axis", default: 1)
        inverse = try context.attributes.int("inverse", default: 0) != 0
        onesided = try context.attributes.int("onesided", default: 0) != 0
    }

    func plan(_ inputs: InferenceInputs) throws -> (axis: Int, length: Int, bins: Int, shape: [Int]) {
        let x = try inputs.type(0, oneOf: [.float32, .float64], role: "input")
        guard x.shape.count >= 3, let last = x.shape.last, last == 1 || last == 2 else {
            throw OpError("input must end in a dimension of 1 (real) or 2 (complex), got \(describe(x.shape))")
        }
        let a = try Shapes.axis(axis, rank: x.shape.count)
        guard a != x.shape.count - 1 else { throw OpError("axis must not be the last (real/imaginary) dimension") }
        var length = inverse && onesided ? 2 * (x.shape[a] - 1) : x.shape[a]
        if inputs.optionalType(1) != nil { length = try scalar(inputs, 1, "dft_length") }
        let bins = inverse && onesided ? length : (onesided ? length / 2 + 1 : length)
        var shape = x.shape
        shape[a] = bins
        shape[shape.count - 1] = inverse && onesided ? 1 : 2
        return (a, length, bins, shape)
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let p = try plan(inputs)
        return [ValueType(try inputs.type(0).dtype, p.shape)]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let x = inputs[0]!
        let p = try plan(InferenceInputs(tensors: inputs))
        let channels = x.shape.last!
        let v = x.doubles
        let (outer, n, innerWithChannels) = split(x.shape, at: p.axis)
        let inner = innerWithChannels / channels
        let outChannels = p.shape.last!
        var y = [Double](repeating: 0, count: outer * p.bins * inner * outChannels)
        for o in 0..<outer {
            for i in 0..<inner {
                var re = (0..<n).map { v[((o * n + $0) * inner + i) * channels] }
                var im = (0..<n).map { channels == 2 ? v[((o * n + $0) * inner + i) * channels + 1] : 0 }
                if inverse && onesided {
                    // Rebuild the Hermitian spectrum, then the real inverse.
                    var fullRe = [Double](repeating: 0, count: p.length), fullIm = fullRe
                    for k in 0..<p.length {
                        let source = k < n ? k : p.length - k
                        guard source < n else { continue }
                        fullRe[k] = re[source]
                        fullIm[k] = k < n ? im[source] : -im[source]
                    }
                    (re, im) = (fullRe, fullIm)
                }
                let (r, m) = dft(re, im, length: p.length, bins: p.bins, inverse: inverse)
                for k in 0..<p.bins {
                    let base = ((o * p.bins + k) * inner + i) * outChannels
                    y[base] = r[k]
                    if outChannels == 2 { y[base + 1] = m[k] }
                }
            }
        }
        return [Tensor(dtype: x.dtype, shape: p.shape, doubles: y)]
    }
}

/// STFT: frames of `frame_length` every `frame_step` samples, windowed, each transformed.
struct STFTOperator: Operator {
    let onesided: Bool

    init(_ context: OpContext) throws {
        onesided = try context.attributes.int("onesided", default: 1) != 0
    }

    func plan(_ inputs: InferenceInputs) throws -> (step: Int, length: Int, frames: Int, bins: Int) {
        let x = try inputs.type(0, oneOf: [.float32, .float64], role: "signal")
        guard x.shape.count == 3, x.shape[2] == 1 || x.shape[2] == 2 else { throw OpError("signal must be [batch, length, 1 or 2]") }
        let step = try scalar(inputs, 1, "frame_step")
        var length = inputs.optionalType(2)?.shape.first ?? 0
        if inputs.optionalType(3) != nil { length = try scalar(inputs, 3, "frame_length") }
        guard step > 0, length > 0, length <= x.shape[1] else { throw OpError("frame_step and frame_length must be positive and fit the signal") }
        let frames = 1 + (x.shape[1] - length) / step
        return (step, length, frames, onesided ? length / 2 + 1 : length)
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let p = try plan(inputs)
        let x = try inputs.type(0)
        return [ValueType(x.dtype, [x.shape[0], p.frames, p.bins, 2])]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let x = inputs[0]!
        let p = try plan(InferenceInputs(tensors: inputs))
        let v = x.doubles
        let (batch, samples, channels) = (x.shape[0], x.shape[1], x.shape[2])
        let window = inputs.count > 2 ? inputs[2]?.doubles : nil
        var y = [Double](repeating: 0, count: batch * p.frames * p.bins * 2)
        for b in 0..<batch {
            for f in 0..<p.frames {
                var re = [Double](repeating: 0, count: p.length), im = re
                for n in 0..<p.length {
                    let t = f * p.step + n
                    let w = window?[n] ?? 1
                    re[n] = v[(b * samples + t) * channels] * w
                    if channels == 2 { im[n] = v[(b * samples + t) * channels + 1] * w }
                }
                let (r, m) = dft(re, im, length: p.length, bins: p.bins, inverse: false)
                for k in 0..<p.bins {
                    y[((b * p.frames + f) * p.bins + k) * 2] = r[k]
                    y[((b * p.frames + f) * p.bins + k) * 2 + 1] = m[k]
                }
            }
        }
        return [Tensor(dtype: x.dtype, shape: outputs[0].shape, doubles: y)]
    }
}

/// MelWeightMatrix: triangular mel filters over the bins of a one-sided DFT.
struct MelWeightMatrixOperator: Operator {
    let dtype: DType

    init(_ context: OpContext) throws {
        dtype = try outputDType(context)
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let mels = try scalar(inputs, 0, "num_mel_bins"), length = try scalar(inputs, 1, "dft_length")
        return [ValueType(dtype, [length / 2 + 1, mels])]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let known = InferenceInputs(tensors: inputs)
        let mels = try scalar(known, 0, "num_mel_bins"), length = try scalar(known, 1, "dft_length")
        let rate = try scalar(known, 2, "sample_rate")
        let lower = inputs[3]!.doubles[0], upper = inputs[4]!.doubles[0]
        let bins = length / 2 + 1
        func mel(_ hz: Double) -> Double { 2595 * Foundation.log1p(hz / 700) / Foundation.log(10) }
        let low = mel(lower), high = mel(upper)
        let step = (high - low) / Double(mels + 2)
        let edges = (0..<(mels + 2)).map { i -> Int in
            let hz = 700 * Foundation.expm1((Double(i) * step + low) / 2595 * Foundation.log(10))
            return Int((Double(length + 1) * hz / Double(rate)).rounded(.down))
        }
        var w = [Double](repeating: 0, count: bins * mels)
        for i in 0..<mels {
            let left = edges[i], center = edges[i + 1], right = edges[i + 2]
            if center == left {
                if center >= 0 && center < bins { w[center * mels + i] = 1 }
            } else {
                for j in left...center where j >= 0 && j < bins { w[j * mels + i] = Double(j - left) / Double(center - left) }
            }
            if right > center {
                for j in center..<right where j >= 0 && j < bins { w[j * mels + i] = Double(right - j) / Double(right - center) }
            }
        }
        return [Tensor(dtype: dtype, shape: [bins, mels], doubles: w)]
    }
}
