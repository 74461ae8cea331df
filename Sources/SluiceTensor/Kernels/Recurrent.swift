import CKernels
import Foundation

/// An activation of ONNX's recurrent ops (the `activations` attribute).
public enum RecurrentActivation: Sendable, Equatable {
    case sigmoid, tanh, relu, softsign, softplus
    case hardSigmoid(alpha: Float, beta: Float)
    case leakyRelu(alpha: Float)
    case thresholdedRelu(alpha: Float)
    case scaledTanh(alpha: Float, beta: Float)
    case affine(alpha: Float, beta: Float)
    case elu(alpha: Float)

    /// Applies the activation in place to `count` floats (vectorized for sigmoid and tanh).
    @inline(__always)
    public func apply(_ p: UnsafeMutablePointer<Float>, count: Int) {
        switch self {
        case .sigmoid: FastMath.sigmoid(p, p, count: count)
        case .tanh: FastMath.tanh(p, p, count: count)
        case .relu: for i in 0..<count { p[i] = Swift.max(p[i], 0) }
        default: for i in 0..<count { p[i] = self(p[i]) }
        }
    }

    @inline(__always)
    public func callAsFunction(_ x: Float) -> Float {
        switch self {
        case .sigmoid: return Activation.sigmoid(x)
        case .tanh: return Foundation.tanhf(x)
        case .relu: return Swift.max(x, 0)
        case .softsign: return x / (1 + Swift.abs(x))
        case .softplus: return Foundation.log1pf(Foundation.expf(-Swift.abs(x))) + Swift.max(x, 0)
        case .hardSigmoid(let a, let b): return Swift.max(0, Swift.min(1, a * x + b))
        case .leakyRelu(let a): return x < 0 ? a * x : x
        case .thresholdedRelu(let a): return x > a ? x : 0
        case .scaledTanh(let a, let b): return a * Foundation.tanhf(b * x)
        case .affine(let a, let b): return a * x + b
        case .elu(let a): return x < 0 ? a * (Foundation.expf(x) - 1) : x
        }
    }
}

/// One direction of an ONNX RNN, GRU or LSTM over a whole sequence.
public struct RecurrentCell: Sendable {
    public enum Kind: Sendable, Equatable {
        case rnn
        case gru(linearBeforeReset: Bool)
        case lstm
    }

    public let kind: Kind
    public let hidden: Int
    /// f, g (and h for LSTM) as ONNX names them; RNN uses f only.
    public let activations: [RecurrentActivation]
    public let clip: Float?

    public init(kind: Kind, hidden: Int, activations: [RecurrentActivation], clip: Float?) {
        self.kind = kind
        self.hidden = hidden
        self.activations = activations
        self.clip = clip
    }

    /// Gates per step: 1 (RNN), 3 (GRU: z, r, h), 4 (LSTM: i, o, f, c).
    public var gates: Int {
        switch kind {
        case .rnn: return 1
        case .gru: return 3
        case .lstm: return 4
        }
    }

    /// Everything one direction reads and writes. Pointers into the op's tensors.
    public struct Buffers {
        /// X as [steps, batch, input].
        public var x: UnsafePointer<Float>
        /// W [gates·hidden, input] and R [gates·hidden, hidden] of this direction.
        public var w: UnsafePointer<Float>
        public var r: UnsafePointer<Float>
        /// Wb and Rb, each gates·hidden, or nil.
        public var bias: UnsafePointer<Float>?
        /// LSTM peepholes [i, o, f] · hidden, or nil.
        public var peepholes: UnsafePointer<Float>?
        /// Rᵀ packed by `RecurrentCell.packRecurrentWeights`, when prepared ahead of the run.
        public var packedR: UnsafePointer<Float>?
        public var initialH: UnsafePointer<Float>?
        public var initialC: UnsafePointer<Float>?
        /// Y: the output at step t for batch row b goes to y + t·yStepStride + b·hidden (or nil).
        public var y: UnsafeMutablePointer<Float>?
        public var yStepStride: Int
        /// The final states, [batch, hidden].
        public var yh: UnsafeMutablePointer<Float>
        public var yc: UnsafeMutablePointer<Float>?

        public init(x: UnsafePointer<Float>, w: UnsafePointer<Float>, r: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                    peepholes: UnsafePointer<Float>?, initialH: UnsafePointer<Float>?, initialC: UnsafePointer<Float>?,
                    y: UnsafeMutablePointer<Float>?, yStepStride: Int, yh: UnsafeMutablePointer<Float>,
                    yc: UnsafeMutablePointer<Float>?) {
            self.x = x
            self.w = w
            self.r = r
            self.bias = bias
            self.peepholes = peepholes
            self.initialH = initialH
            self.initialC = initialC
            self.y = y
            self.yStepStride = yStepStride
            self.yh = yh
            self.yc = yc
        }
    }

    /// Runs the sequence forward or in reverse. `lengths` (per batch row, or nil for all
    /// `steps`) stop a row early: its later outputs are 0 and its final state is the last valid one.
    public func run(_ b: Buffers, steps: Int, batch: Int, inputSize: Int, reverse: Bool, lengths: [Int]?, scratch: Scratch) {
        let g = gates, h = hidden, gh = g * h
        // Scratch: input projections for all steps, recurrent projections, state.
        let panels = (gh + 15) / 16 * 16 * h
        let total = steps * batch * gh + batch * gh + 3 * batch * h + panels + h * gh
        let base = scratch.floats(total)
        let xw = base, hr = base + steps * batch * gh
        let state = hr + batch * gh, cell = state + batch * h, rh = cell + batch * h
        // Rᵀ [h, gates·h] packed once per sequence: every step's H·Rᵀ then streams it in order
        // (OpenBLAS would repack R on every one of the steps).
        var packedR = UnsafePointer(rh + batch * h)
        if let prepared = b.packedR {
            packedR = prepared
        } else {
            Self.packRecurrentWeights(b.r, gates: g, hidden: h, into: rh + batch * h, scratch: rh + batch * h + panels)
        }

        // X·Wᵀ for every step at once, plus the input bias.
        Kernels.sgemm(transA: false, transB: true, m: steps * batch, n: gh, k: inputSize, a: b.x, lda: inputSize,
                      b: b.w, ldb: inputSize, c: xw, ldc: gh)
        if let bias = b.bias {
            for row in 0..<(steps * batch) {
                let p = xw + row * gh
                for j in 0..<gh { p[j] += bias[j] }
            }
        }
        if let h0 = b.initialH { state.update(from: h0, count: batch * h) } else { state.update(repeating: 0, count: batch * h) }
        if let c0 = b.initialC { cell.update(from: c0, count: batch * h) } else { cell.update(repeating: 0, count: batch * h) }
        let rb = b.bias.map { $0 + gh }
        let f = activations[0], gAct = activations.count > 1 ? activations[1] : .tanh
        let hAct = activations.count > 2 ? activations[2] : .tanh
        let linearBeforeReset: Bool
        if case .gru(let lbr) = kind { linearBeforeReset = lbr } else { linearBeforeReset = false }
        let fullProducts = kind == .gru(linearBeforeReset: false) ? 2 * h : gh
        @inline(__always) func activate(_ a: RecurrentActivation, _ p: UnsafeMutablePointer<Float>, _ count: Int) {
            if let clip { for j in 0..<count { p[j] = Swift.min(Swift.max(p[j], -clip), clip) } }
            a.apply(p, count: count)
        }
        for step in 0..<steps {
            if fullProducts == gh {
                sluice_sgemm_packed(batch, gh, h, 1, state, h, packedR, 0, hr, gh)
            } else {
                Kernels.sgemm(transA: false, transB: true, m: batch, n: fullProducts, k: h, a: state, lda: h, b: b.r, ldb: h,
                              c: hr, ldc: gh)
            }
            for row in 0..<batch {
                // Rows past their length keep their state and output zeros; reverse runs each
                // row backwards within its own length.
                let length = lengths?[row] ?? steps
                guard step < length else {
                    if let y = b.y { (y + step * b.yStepStride + row * h).update(repeating: 0, count: h) }
                    continue
                }
                let t = reverse ? length - 1 - step : step
                let pre = xw + (t * batch + row) * gh
                let rec = hr + row * gh
                let hPrev = state + row * h, cPrev = cell + row * h
                let work = rh + row * h
                switch kind {
                case .rnn:
                    for j in 0..<h { work[j] = pre[j] + rec[j] }
                    if let rb { for j in 0..<h { work[j] += rb[j] } }
                    activate(f, work, h)
                    hPrev.update(from: work, count: h)
                case .gru:
                    // rec[0..<h] becomes z, rec[h..<2h] becomes r.
                    for j in 0..<(2 * h) { rec[j] += pre[j] }
                    if let rb { for j in 0..<(2 * h) { rec[j] += rb[j] } }
                    activate(f, rec, 2 * h)
                    let z = rec, r = rec + h
                    if linearBeforeReset {
                        let recurrent = rec + 2 * h, input = pre + 2 * h
                        if let rb {
                            let rbh = rb + 2 * h
                            for j in 0..<h { work[j] = input[j] + r[j] * (recurrent[j] + rbh[j]) }
                        } else {
                            for j in 0..<h { work[j] = input[j] + r[j] * recurrent[j] }
                        }
                    } else {
                        // (r ⊙ H)·Rhᵀ needs r first: one more product per row.
                        let product = rec + 2 * h
                        for j in 0..<h { work[j] = r[j] * hPrev[j] }
                        Kernels.sgemm(transA: false, transB: true, m: 1, n: h, k: h, a: work, lda: h, b: b.r + 2 * h * h, ldb: h,
                                      c: product, ldc: h)
                        for j in 0..<h { work[j] = pre[2 * h + j] + product[j] }
                        if let rb { for j in 0..<h { work[j] += rb[2 * h + j] } }
                    }
                    activate(gAct, work, h)
                    for j in 0..<h { hPrev[j] = (1 - z[j]) * work[j] + z[j] * hPrev[j] }
                case .lstm:
                    // Gates i, o, f, c in rec.
                    for j in 0..<gh { rec[j] += pre[j] }
                    if let rb { for j in 0..<gh { rec[j] += rb[j] } }
                    let gi = rec, go = rec + h, gf = rec + 2 * h, gc = rec + 3 * h
                    if let p = b.peepholes {
                        for j in 0..<h { gi[j] += p[j] * cPrev[j]; gf[j] += p[2 * h + j] * cPrev[j] }
                    }
                    activate(f, gi, h)
                    activate(f, gf, h)
                    activate(gAct, gc, h)
                    for j in 0..<h { cPrev[j] = gf[j] * cPrev[j] + gi[j] * gc[j] }
                    if let p = b.peepholes { for j in 0..<h { go[j] += p[h + j] * cPrev[j] } }
                    activate(f, go, h)
                    work.update(from: cPrev, count: h)
                    if clip != nil || hAct != .tanh { activate(hAct, work, h) } else { hAct.apply(work, count: h) }
                    for j in 0..<h { hPrev[j] = go[j] * work[j] }
                }
                if let y = b.y { (y + t * b.yStepStride + row * h).update(from: hPrev, count: h) }
            }
        }
        b.yh.update(from: state, count: batch * h)
        b.yc?.update(from: cell, count: batch * h)
    }
}

extension ReferenceKernels {
    /// One direction of RNN/GRU/LSTM straight from ONNX's equations, in Double: X [steps,
    /// batch, input], W [gates·hidden, input], R [gates·hidden, hidden], bias [2·gates·hidden].
    /// Returns Y [steps, batch, hidden] and the final H [batch, hidden].
    public static func recurrent(_ cell: RecurrentCell, x: Tensor, w: Tensor, r: Tensor, bias: Tensor?, peepholes: Tensor?,
                                 initialH: Tensor?, reverse: Bool) -> (Tensor, Tensor) {
        let (steps, batch, input) = (x.shape[0], x.shape[1], x.shape[2])
        let h = cell.hidden, g = cell.gates
        let xv = x.doubles, wv = w.doubles, rv = r.doubles
        let bv = bias?.doubles ?? [Double](repeating: 0, count: 2 * g * h)
        let pv = peepholes?.doubles
        func act(_ k: Int, _ v: Double) -> Double {
            let f = k < cell.activations.count ? cell.activations[k] : .tanh
            var value = v
            if let clip = cell.clip { value = Swift.min(Swift.max(value, Double(-clip)), Double(clip)) }
            return Double(f(Float(value)))
        }
        var state = initialH?.doubles ?? [Double](repeating: 0, count: batch * h)
        var c = [Double](repeating: 0, count: batch * h)
        var y = [Double](repeating: 0, count: steps * batch * h)
        for step in 0..<steps {
            let t = reverse ? steps - 1 - step : step
            var next = state
            for b in 0..<batch {
                // xw[gate·h + j] and hr[gate·h + j]: the input and recurrent products.
                var xw = [Double](repeating: 0, count: g * h), hr = xw
                for row in 0..<(g * h) {
                    for k in 0..<input { xw[row] += xv[(t * batch + b) * input + k] * wv[row * input + k] }
                    for k in 0..<h { hr[row] += state[b * h + k] * rv[row * h + k] }
                    xw[row] += bv[row]
                }
                // GRU's reset gate for every unit, needed before any candidate.
                let resets = g == 3 ? (0..<h).map { act(0, xw[h + $0] + hr[h + $0] + bv[g * h + h + $0]) } : []
                for j in 0..<h {
                    let hPrev = state[b * h + j]
                    switch cell.kind {
                    case .rnn:
                        next[b * h + j] = act(0, xw[j] + hr[j] + bv[g * h + j])
                    case .gru(let lbr):
                        let z = act(0, xw[j] + hr[j] + bv[g * h + j])
                        let rg = act(0, xw[h + j] + hr[h + j] + bv[g * h + h + j])
                        var candidate: Double
                        if lbr {
                            candidate = act(1, xw[2 * h + j] + rg * (hr[2 * h + j] + bv[g * h + 2 * h + j]))
                        } else {
                            var sum = 0.0
                            for k in 0..<h { sum += resets[k] * state[b * h + k] * rv[(2 * h + j) * h + k] }
                            candidate = act(1, xw[2 * h + j] + sum + bv[g * h + 2 * h + j])
                        }
                        next[b * h + j] = (1 - z) * candidate + z * hPrev
                    case .lstm:
                        let cPrev = c[b * h + j]
                        let i = act(0, xw[j] + hr[j] + bv[g * h + j] + (pv?[j] ?? 0) * cPrev)
                        let f = act(0, xw[2 * h + j] + hr[2 * h + j] + bv[g * h + 2 * h + j] + (pv?[2 * h + j] ?? 0) * cPrev)
                        let candidate = act(1, xw[3 * h + j] + hr[3 * h + j] + bv[g * h + 3 * h + j])
                        let newC = f * cPrev + i * candidate
                        let o = act(0, xw[h + j] + hr[h + j] + bv[g * h + h + j] + (pv?[h + j] ?? 0) * newC)
                        c[b * h + j] = newC
                        next[b * h + j] = o * act(2, newC)
                    }
                }
            }
            state = next
            for i in 0..<(batch * h) { y[t * batch * h + i] = state[i] }
        }
        return (Tensor(dtype: .float32, shape: [steps, batch, h], doubles: y), Tensor(dtype: .float32, shape: [batch, h], doubles: state))
    }
}

extension RecurrentCell {
    /// Floats `packRecurrentWeights` writes for one direction.
    public static func packedRecurrentCount(gates: Int, hidden: Int) -> Int { (gates * hidden + 15) / 16 * 16 * hidden }

    /// Rᵀ [hidden, gates·hidden] of one direction's R [gates·hidden, hidden], packed in column
    /// panels for the per-step H·Rᵀ. `scratch` holds hidden · gates · hidden floats.
    public static func packRecurrentWeights(_ r: UnsafePointer<Float>, gates: Int, hidden h: Int, into packed: UnsafeMutablePointer<Float>,
                                            scratch transposed: UnsafeMutablePointer<Float>) {
        let gh = gates * h
        for i in 0..<gh { for j in 0..<h { transposed[j * gh + i] = r[i * h + j] } }
        sluice_pack_b(h, gh, transposed, gh, packed)
    }

    /// R [directions, gates·hidden, hidden] packed per direction: [directions, packedRecurrentCount].
    public static func packRecurrentWeights(_ r: Tensor, gates: Int) -> Tensor {
        let (directions, h) = (r.shape[0], r.shape[2])
        let count = packedRecurrentCount(gates: gates, hidden: h)
        let packed = Tensor(uninitialized: .float32, shape: [directions, count])
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: gates * h * h)
        defer { scratch.deallocate() }
        for d in 0..<directions {
            packRecurrentWeights(r.floatData + d * gates * h * h, gates: gates, hidden: h, into: packed.mutableFloatData + d * count,
                                 scratch: scratch)
        }
        return packed
    }
}
