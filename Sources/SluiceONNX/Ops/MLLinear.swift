import Foundation
import SluiceTensor

/// X · coefficientsᵀ + intercepts for rows of features (float32), through BLAS.
private func linearScores(_ x: [Float], rows: Int, features: Int, coefficients: [Float], outputs: Int, intercepts: [Float]?) -> [Float] {
    var scores = [Float](repeating: 0, count: rows * outputs)
    if let intercepts {
        for row in 0..<rows { for j in 0..<outputs { scores[row * outputs + j] = intercepts[j] } }
    }
    x.withUnsafeBufferPointer { a in
        coefficients.withUnsafeBufferPointer { b in
            scores.withUnsafeMutableBufferPointer { c in
                guard let a = a.baseAddress, let b = b.baseAddress, let c = c.baseAddress else { return }
                Kernels.sgemm(transA: false, transB: true, m: rows, n: outputs, k: features, a: a, lda: features,
                              b: b, ldb: features, beta: intercepts == nil ? 0 : 1, c: c, ldc: outputs)
            }
        }
    }
    return scores
}

/// The position of the largest value in a row, the first on a tie.
private func argmax(_ row: ArraySlice<Float>) -> Int {
    var best = row.startIndex
    for i in row.indices where row[i] > row[best] { best = i }
    return best - row.startIndex
}

/// LinearClassifier: one linear score per class; the label is the best raw score's class (or,
/// with one score, its sign), and the scores are then transformed.
struct LinearClassifierOperator: Operator {
    let coefficients: [Float]
    let intercepts: [Float]
    let labels: MLOps.Labels
    let transform: PostTransform
    var classes: Int { intercepts.count }

    init(_ context: OpContext) throws {
        let a = context.attributes
        coefficients = try a.floats("coefficients") ?? []
        intercepts = try a.floats("intercepts") ?? []
        guard let labels = try MLOps.Labels(a, strings: "classlabels_strings", integers: "classlabels_ints") else {
            throw OpError.invalid("needs classlabels_strings or classlabels_ints")
        }
        self.labels = labels
        transform = try PostTransform(a)
        guard !intercepts.isEmpty, !coefficients.isEmpty, coefficients.count % intercepts.count == 0 else {
            throw OpError.invalid("has \(coefficients.count) coefficients for \(intercepts.count) intercepts; needs a whole number per class")
        }
        guard intercepts.count == 1 || intercepts.count <= labels.count else {
            throw OpError.invalid("scores \(intercepts.count) classes but has \(labels.count) labels")
        }
    }

    var features: Int { coefficients.count / classes }
    var scoreColumns: Int { classes == 1 && labels.count == 2 ? 2 : classes }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let x = try inputs.type(0, oneOf: MLOps.featureTypes, role: "X")
        let (rows, columns) = MLOps.rowsAndColumns(x.shape)
        guard columns == features else { throw OpError("X has \(columns) features; the coefficients are for \(features)") }
        return [ValueType(labels.dtype, [rows]), ValueType(.float32, [rows, scoreColumns])]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let rows = outputs[0].shape[0]
        var scores = linearScores(MLOps.floats(inputs[0]!), rows: rows, features: features, coefficients: coefficients,
                                  outputs: classes, intercepts: intercepts)
        let label: Tensor
        if classes == 1 {
            // The sign of the one score picks the second label or the first (1 or 0 without two labels).
            let positive = scores.map { $0 > 0 }
            if labels.count == 2 {
                label = labels.tensor(positive.map { $0 ? 1 : 0 }, shape: [rows])
            } else if case .strings = labels {
                label = Tensor(shape: [rows], strings: positive.map { $0 ? "1" : "0" })
            } else {
                label = Tensor(shape: [rows], int64s: positive.map { $0 ? 1 : 0 })
            }
            if labels.count == 2 {
                // The transformed score is the second class's; the first gets the rest.
                if transform == .logistic { scores = scores.map(PostTransform.logistic) }
                scores = scores.flatMap { transform.widen($0, .complement) }
            } else {
                transform.apply(rows: rows, columns: 1, &scores)
            }
        } else {
            label = labels.tensor((0..<rows).map { argmax(scores[($0 * classes)..<(($0 + 1) * classes)]) }, shape: [rows])
            transform.apply(rows: rows, columns: classes, &scores)
        }
        return [label, Tensor(shape: [rows, scoreColumns], floats: scores)]
    }

    var takesStrings: Bool { false }
}

/// LinearRegressor: X · coefficientsᵀ + intercepts, one column per target.
struct LinearRegressorOperator: Operator {
    let coefficients: [Float]
    let intercepts: [Float]?
    let targets: Int
    let transform: PostTransform

    init(_ context: OpContext) throws {
        let a = context.attributes
        coefficients = try a.floats("coefficients") ?? []
        targets = try a.int("targets", default: 1)
        guard targets >= 1, targets <= coefficients.count, coefficients.count % targets == 0 else {
            throw OpError.invalid("has \(coefficients.count) coefficients for \(targets) targets; needs a whole number per target")
        }
        let given = try a.floats("intercepts") ?? []
        // onnxruntime uses the intercepts only when there is one per target.
        intercepts = given.count == targets ? given : nil
        transform = try PostTransform(a)
    }

    var features: Int { coefficients.count / targets }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let x = try inputs.type(0, oneOf: MLOps.featureTypes, role: "X")
        let (rows, columns) = MLOps.rowsAndColumns(x.shape)
        guard columns == features else { throw OpError("X has \(columns) features; the coefficients are for \(features)") }
        return [ValueType(.float32, [rows, targets])]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let rows = outputs[0].shape[0]
        var y = linearScores(MLOps.floats(inputs[0]!), rows: rows, features: features, coefficients: coefficients,
                             outputs: targets, intercepts: intercepts)
        transform.apply(rows: rows, columns: targets, &y)
        return [Tensor(shape: [rows, targets], floats: y)]
    }
}

/// The kernel of a support vector machine, k(x, v).
struct SVMKernel: Sendable {
    enum Kind: String { case linear = "LINEAR", poly = "POLY", rbf = "RBF", sigmoid = "SIGMOID" }
    let kind: Kind
    let gamma: Float
    let coef0: Float
    let degree: Float

    init(_ attributes: Attributes) throws {
        let text = try attributes.string("kernel_type") ?? "LINEAR"
        guard let kind = Kind(rawValue: text) else { throw OpError.invalid("kernel_type '\(text)' is not LINEAR, POLY, RBF or SIGMOID") }
        self.kind = kind
        let params = try attributes.floats("kernel_params") ?? []
        gamma = params.count > 0 ? params[0] : 0
        coef0 = params.count > 1 ? params[1] : 0
        degree = params.count > 2 ? params[2] : 0
    }

    /// k(x, v) for every row of x and every vector: rows × vectors values.
    func values(_ x: [Float], rows: Int, vectors: [Float], count: Int, features: Int) -> [Float] {
        if kind == .rbf {
            var out = [Float](repeating: 0, count: rows * count)
            for row in 0..<rows {
                for v in 0..<count {
                    var sum: Float = 0
                    for f in 0..<features {
                        let d = x[row * features + f] - vectors[v * features + f]
                        sum += d * d
                    }
                    out[row * count + v] = exp(-gamma * sum)
                }
            }
            return out
        }
        var dots = linearScores(x, rows: rows, features: features, coefficients: vectors, outputs: count, intercepts: nil)
        switch kind {
        case .linear, .rbf: break
        case .poly:
            for i in dots.indices {
                let base = gamma * dots[i] + coef0
                dots[i] = degree == 2 ? base * base : degree == 3 ? base * base * base : pow(base, degree)
            }
        case .sigmoid: for i in dots.indices { dots[i] = tanh(gamma * dots[i] + coef0) }
        }
        return dots
    }
}

/// SVMClassifier: one-vs-one support vector classifiers voting for a class (libsvm's SVC), or
/// one linear score per class; with `prob_a`/`prob_b`, Platt-scaled pairwise probabilities
/// coupled into class probabilities.
struct SVMClassifierOperator: Operator {
    let kernel: SVMKernel
    let labels: MLOps.Labels
    let transform: PostTransform
    let vectorsPerClass: [Int]
    let supportVectors: [Float]
    let coefficients: [Float]
    let rho: [Float]
    let probA: [Float]
    let probB: [Float]
    let features: Int
    /// Support vectors in all; 0 for the linear form (one coefficient row per class).
    let vectorCount: Int
    let allWeightsPositive: Bool

    var classes: Int { labels.count }
    var pairs: Int { classes * (classes - 1) / 2 }
    var hasProbabilities: Bool { !probA.isEmpty }

    init(_ context: OpContext) throws {
        let a = context.attributes
        kernel = try SVMKernel(a)
        guard let labels = try MLOps.Labels(a, strings: "classlabels_strings", integers: "classlabels_ints") else {
            throw OpError.invalid("needs classlabels_strings or classlabels_ints")
        }
        self.labels = labels
        transform = try PostTransform(a)
        vectorsPerClass = try a.ints("vectors_per_class") ?? []
        supportVectors = try a.floats("support_vectors") ?? []
        coefficients = try a.floats("coefficients") ?? []
        rho = try a.floats("rho") ?? []
        probA = try a.floats("prob_a") ?? []
        probB = try a.floats("prob_b") ?? []
        let classes = labels.count
        guard classes >= 1, classes < 1 << 16 else { throw OpError.invalid("has \(classes) class labels") }
        guard !coefficients.isEmpty, !rho.isEmpty else { throw OpError.invalid("needs coefficients and rho") }
        guard probA.count == probB.count else { throw OpError.invalid("prob_a has \(probA.count) values, prob_b \(probB.count)") }
        guard vectorsPerClass.allSatisfy({ $0 >= 0 && $0 < 1 << 24 }) else { throw OpError.invalid("vectors_per_class \(vectorsPerClass) has a negative count") }
        vectorCount = vectorsPerClass.reduce(0, +)
        let pairs = classes * (classes - 1) / 2
        if vectorCount > 0 {
            guard vectorsPerClass.count == classes else { throw OpError.invalid("vectors_per_class has \(vectorsPerClass.count) counts for \(classes) classes") }
            guard !supportVectors.isEmpty, supportVectors.count % vectorCount == 0 else {
                throw OpError.invalid("has \(supportVectors.count) support vector values for \(vectorCount) vectors")
            }
            features = supportVectors.count / vectorCount
            guard coefficients.count >= (classes - 1) * vectorCount, rho.count >= pairs else {
                throw OpError.invalid("needs \((classes - 1) * vectorCount) coefficients and \(pairs) rho for \(classes) classes of \(vectorCount) vectors")
            }
            guard probA.isEmpty || probA.count >= pairs else { throw OpError.invalid("prob_a has \(probA.count) values for \(pairs) class pairs") }
        } else {
            guard coefficients.count % classes == 0 else { throw OpError.invalid("has \(coefficients.count) coefficients for \(classes) classes") }
            features = coefficients.count / classes
        }
        allWeightsPositive = coefficients.allSatisfy { $0 >= 0 }
    }

    /// Score columns: the pairwise decisions (two for a binary problem), or one per class.
    var scoreColumns: Int {
        if vectorCount == 0 || hasProbabilities { return classes }
        return classes > 2 ? pairs : 2
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let x = try inputs.type(0, oneOf: MLOps.featureTypes, role: "X")
        let (rows, columns) = MLOps.rowsAndColumns(x.shape)
        guard columns == features else { throw OpError("X has \(columns) features; the model's vectors have \(features)") }
        return [ValueType(labels.dtype, [rows]), ValueType(.float32, [rows, scoreColumns])]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let rows = outputs[0].shape[0]
        let x = MLOps.floats(inputs[0]!)
        var chosen = [Int](repeating: 0, count: rows)
        var scores: [Float] = []
        scores.reserveCapacity(rows * scoreColumns)
        if vectorCount == 0 {
            var linear = kernel.values(x, rows: rows, vectors: coefficients, count: classes, features: features)
            for i in linear.indices { linear[i] += rho[0] }
            for row in 0..<rows {
                let slice = linear[(row * classes)..<((row + 1) * classes)]
                let best = argmax(slice)
                let weight = slice[slice.startIndex + best]
                chosen[row] = best
                if classes == 2 {
                    if allWeightsPositive && weight >= 0.5 { chosen[row] = 1 } else if weight > 0 && !allWeightsPositive { chosen[row] = 1 }
                }
            }
            transform.apply(rows: rows, columns: classes, &linear)
            scores = linear
        } else {
            let k = kernel.values(x, rows: rows, vectors: supportVectors, count: vectorCount, features: features)
            var starts = [0]
            for count in vectorsPerClass.dropLast() { starts.append(starts.last! + count) }
            for row in 0..<rows {
                let kernelRow = row * vectorCount
                var votes = [Int](repeating: 0, count: classes)
                var decisions: [Float] = []
                decisions.reserveCapacity(pairs)
                var pair = 0
                for i in 0..<classes {
                    for j in (i + 1)..<max(classes, i + 1) {
                        // Products in float, sums in double, as libsvm's and onnxruntime's code has it.
                        var sum = 0.0
                        for v in starts[i]..<(starts[i] + vectorsPerClass[i]) {
                            sum += Double(coefficients[(j - 1) * vectorCount + v] * k[kernelRow + v])
                        }
                        for v in starts[j]..<(starts[j] + vectorsPerClass[j]) {
                            sum += Double(coefficients[i * vectorCount + v] * k[kernelRow + v])
                        }
                        sum += Double(rho[pair])
                        decisions.append(Float(sum))
                        votes[sum > 0 ? i : j] += 1
                        pair += 1
                    }
                }
                var best = 0
                for c in 1..<max(classes, 1) where votes[c] > votes[best] { best = c }
                chosen[row] = best
                if hasProbabilities {
                    scores.append(contentsOf: Self.coupledProbabilities(decisions, classes: classes, probA: probA, probB: probB))
                } else if classes > 2 {
                    scores.append(contentsOf: decisions)
                } else {
                    scores.append(contentsOf: transform.widen(decisions.first ?? 0, transform == .none ? .mirror : .complement))
                }
            }
            if hasProbabilities || classes > 2 { transform.apply(rows: rows, columns: scoreColumns, &scores) }
        }
        return [labels.tensor(chosen, shape: [rows]), Tensor(shape: [rows, scoreColumns], floats: scores)]
    }

    /// Class probabilities from the pairwise decisions: each pair's Platt-scaled probability,
    /// coupled by libsvm's second method (Wu, Lin and Weng, 2004), in float as onnxruntime does.
    static func coupledProbabilities(_ decisions: [Float], classes k: Int, probA: [Float], probB: [Float]) -> [Float] {
        var r = [Float](repeating: 0, count: k * k)
        var pair = 0
        for i in 0..<k {
            for j in (i + 1)..<max(k, i + 1) {
                let v = min(max(1 - PostTransform.logistic(decisions[pair] * probA[pair] + probB[pair]), 1e-7), 1 - 1e-7)
                r[i * k + j] = v
                r[j * k + i] = 1 - v
                pair += 1
            }
        }
        var q = [Float](repeating: 0, count: k * k)
        var p = [Float](repeating: 1 / Float(k), count: k)
        for i in 0..<k {
            for j in 0..<i {
                q[i * k + i] += r[j * k + i] * r[j * k + i]
                q[i * k + j] = q[j * k + i]
            }
            for j in (i + 1)..<max(k, i + 1) {
                q[i * k + i] += r[j * k + i] * r[j * k + i]
                q[i * k + j] = -r[j * k + i] * r[i * k + j]
            }
        }
        let epsilon = 0.005 / Float(k)
        var qp = [Float](repeating: 0, count: k)
        for _ in 0..<100 {
            var pqp: Float = 0
            for i in 0..<k {
                qp[i] = 0
                for j in 0..<k { qp[i] += q[i * k + j] * p[j] }
                pqp += p[i] * qp[i]
            }
            var largestError: Float = 0
            for i in 0..<k { largestError = max(largestError, abs(qp[i] - pqp)) }
            if largestError < epsilon { break }
            for i in 0..<k {
                let diff = (-qp[i] + pqp) / q[i * k + i]
                p[i] += diff
                pqp = (pqp + diff * (diff * q[i * k + i] + 2 * qp[i])) / (1 + diff) / (1 + diff)
                for j in 0..<k {
                    qp[j] = (qp[j] + diff * q[i * k + j]) / (1 + diff)
                    p[j] /= (1 + diff)
                }
            }
        }
        return p
    }
}

/// SVMRegressor: Σ coefficient · k(x, vector) + rho, or a linear model without vectors; a
/// one-class model answers 1 (inside) or −1.
struct SVMRegressorOperator: Operator {
    let kernel: SVMKernel
    let supportVectors: [Float]
    let coefficients: [Float]
    let rho: Float
    let vectorCount: Int
    let features: Int
    let oneClass: Bool

    init(_ context: OpContext) throws {
        let a = context.attributes
        kernel = try SVMKernel(a)
        supportVectors = try a.floats("support_vectors") ?? []
        coefficients = try a.floats("coefficients") ?? []
        guard let rho = try a.floats("rho")?.first else { throw OpError.invalid("needs rho") }
        self.rho = rho
        vectorCount = try a.int("n_supports", default: 0)
        oneClass = try a.int("one_class", default: 0) != 0
        guard !coefficients.isEmpty, vectorCount >= 0 else { throw OpError.invalid("needs coefficients and n_supports ≥ 0") }
        if vectorCount > 0 {
            guard supportVectors.count % vectorCount == 0, !supportVectors.isEmpty, coefficients.count >= vectorCount else {
                throw OpError.invalid("has \(supportVectors.count) support vector values and \(coefficients.count) coefficients for \(vectorCount) vectors")
            }
            features = supportVectors.count / vectorCount
        } else {
            features = coefficients.count
        }
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let x = try inputs.type(0, oneOf: MLOps.featureTypes, role: "X")
        let (rows, columns) = MLOps.rowsAndColumns(x.shape)
        guard columns == features else { throw OpError("X has \(columns) features; the model's vectors have \(features)") }
        return [ValueType(.float32, [rows, 1])]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let rows = outputs[0].shape[0]
        let x = MLOps.floats(inputs[0]!)
        var y: [Float]
        if vectorCount > 0 {
            let k = kernel.values(x, rows: rows, vectors: supportVectors, count: vectorCount, features: features)
            y = (0..<rows).map { row in
                var sum: Float = 0
                for v in 0..<vectorCount { sum += coefficients[v] * k[row * vectorCount + v] }
                return sum + rho
            }
        } else {
            y = linearScores(x, rows: rows, features: features, coefficients: coefficients, outputs: 1, intercepts: nil).map { $0 + rho }
        }
        if oneClass { y = y.map { $0 > 0 ? 1 : -1 } }
        return [Tensor(shape: [rows, 1], floats: y)]
    }
}
