import Foundation

/// The score transforms of ai.onnx.ml's classifiers and regressors (`post_transform`), with
/// onnxruntime's rules for when they apply, which the ONNX spec leaves open: a single score
/// column is widened into two for a binary problem, mostly without the transform.
enum PostTransform: String, Sendable {
    case none = "NONE", logistic = "LOGISTIC", softmax = "SOFTMAX", softmaxZero = "SOFTMAX_ZERO", probit = "PROBIT"

    init(_ attributes: Attributes) throws {
        let text = try attributes.string("post_transform") ?? "NONE"
        guard let transform = PostTransform(rawValue: text) else {
            throw OpError.invalid("post_transform '\(text)' is not NONE, LOGISTIC, SOFTMAX, SOFTMAX_ZERO or PROBIT")
        }
        self = transform
    }

    static func logistic(_ x: Float) -> Float {
        let v = 1 / (1 + exp(-abs(x)))
        return x < 0 ? 1 - v : v
    }

    /// The inverse error function's approximation onnxruntime uses.
    static func inverseErf(_ value: Float) -> Float {
        let sign: Float = value < 0 ? -1 : 1
        let x = (1 - value) * (1 + value)
        let l = log(x)
        let v = 2 / (Float.pi * 0.147) + 0.5 * l
        let v2 = 1 / 0.147 * l
        return sign * (-v + (v * v - v2).squareRoot()).squareRoot()
    }

    static func probit(_ x: Float) -> Float { Float(2).squareRoot() * inverseErf(2 * x - 1) }

    static func softmax(_ row: inout ArraySlice<Float>) {
        let top = row.max() ?? 0
        var sum: Float = 0
        for i in row.indices {
            row[i] = exp(row[i] - top)
            sum += row[i]
        }
        for i in row.indices { row[i] /= sum }
    }

    /// Softmax over the nonzero scores only: a zero score stays (about) zero.
    static func softmaxZero(_ row: inout ArraySlice<Float>) {
        let top = row.max() ?? 0
        let scale = exp(-top)
        var sum: Float = 0
        for i in row.indices {
            if row[i] > 1e-7 || row[i] < -1e-7 {
                row[i] = exp(row[i] - top)
                sum += row[i]
            } else {
                row[i] *= scale
            }
        }
        for i in row.indices { row[i] /= sum }
    }

    /// Applies the transform to one row of two or more scores.
    func apply(_ row: inout ArraySlice<Float>) {
        switch self {
        case .none: break
        case .logistic: for i in row.indices { row[i] = Self.logistic(row[i]) }
        case .softmax: Self.softmax(&row)
        case .softmaxZero: Self.softmaxZero(&row)
        case .probit: for i in row.indices { row[i] = Self.probit(row[i]) }
        }
    }

    /// How a lone binary score becomes two columns (onnxruntime's `add_second_class`).
    enum SecondClass {
        /// The score is the positive class's probability: [1 − s, s], untransformed.
        case complement
        /// The score is a margin: [−s, s], or their logistics under LOGISTIC.
        case mirror
    }

    /// The two columns of a binary problem from its one score.
    func widen(_ s: Float, _ second: SecondClass) -> [Float] {
        switch (second, self) {
        // onnxruntime writes only the first column here and leaves the second unset; Sluice
        // writes its complement, which is what the first means.
        case (_, .probit): let p = Self.probit(s); return [p, 1 - p]
        case (.complement, _): return [1 - s, s]
        case (.mirror, .logistic): return [Self.logistic(-s), Self.logistic(s)]
        case (.mirror, _): return [-s, s]
        }
    }

    /// Scores of rows × columns, transformed row by row; a single column is transformed only
    /// by PROBIT, as onnxruntime does.
    func apply(rows: Int, columns: Int, _ scores: inout [Float]) {
        guard columns > 1 else {
            if self == .probit { for i in scores.indices { scores[i] = Self.probit(scores[i]) } }
            return
        }
        for row in 0..<rows { apply(&scores[(row * columns)..<((row + 1) * columns)]) }
    }
}
