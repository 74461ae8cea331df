import SluiceTensor

/// TreeEnsembleClassifier and TreeEnsembleRegressor: random forests and gradient-boosted
/// trees, compiled once into a `Forest`. Thresholds, weights and base values may come as float
/// lists or (opset 3) as `*_as_tensor` tensors; with double thresholds the trees compare and
/// sum in double, as onnxruntime does for double input.
struct TreeEnsembleOperator: Operator {
    let classifier: Bool
    let forest: Forest
    let aggregate: Forest.Aggregate
    let baseValues: [Double]
    let transform: PostTransform
    /// Classifier only.
    let labels: MLOps.Labels?
    /// Classifier only: one class id carries every weight of a two-class problem.
    let binary: Bool
    let allWeightsPositive: Bool
    /// Weights given as a double tensor: only double input may use them.
    let doubleWeights: Bool

    init(_ context: OpContext, classifier: Bool) throws {
        let a = context.attributes
        self.classifier = classifier
        func tensorValues(_ name: String) throws -> (values: [Double], isDouble: Bool)? {
            guard let proto = try a.tensor(name) else { return nil }
            let tensor = try TensorDecoder.decode(proto, name: name, baseDirectory: nil)
            guard tensor.dtype == .float32 || tensor.dtype == .float64 else {
                throw OpError.invalid("\(name) is \(tensor.dtype); it must be float or double")
            }
            return (tensor.doubles, tensor.dtype == .float64)
        }
        /// A float list or its `_as_tensor` form, not both.
        func numbers(_ name: String) throws -> (values: [Double], isDouble: Bool) {
            let list = try a.floats(name) ?? []
            let tensor = try tensorValues(name + "_as_tensor")
            if let tensor, !list.isEmpty, !tensor.values.isEmpty { throw OpError.invalid("has both \(name) and \(name)_as_tensor") }
            return tensor ?? (list.map(Double.init), false)
        }
        let treeIds = try a.ints("nodes_treeids") ?? []
        let count = treeIds.count
        let modeNames = try a.strings("nodes_modes") ?? []
        let modes: [Forest.Mode] = try modeNames.map { name in
            switch name {
            case "BRANCH_LEQ": return .lessOrEqual
            case "BRANCH_LT": return .less
            case "BRANCH_GTE": return .greaterOrEqual
            case "BRANCH_GT": return .greater
            case "BRANCH_EQ": return .equal
            case "BRANCH_NEQ": return .notEqual
            case "LEAF": return .leaf
            default: throw OpError.unsupported("nodes_modes has '\(name)'; Sluice implements BRANCH_LEQ, BRANCH_LT, BRANCH_GTE, BRANCH_GT, BRANCH_EQ, BRANCH_NEQ and LEAF")
            }
        }
        let thresholds = try numbers("nodes_values")
        var missing = (try a.ints("nodes_missing_value_tracks_true") ?? []).map { $0 != 0 }
        guard missing.count <= count else { throw OpError.invalid("nodes_missing_value_tracks_true has \(missing.count) entries for \(count) nodes") }
        // A shorter list leaves the remaining nodes sending missing values the false way.
        missing += Array(repeating: false, count: count - missing.count)
        let prefix = classifier ? "class" : "target"
        let weightTrees = try a.ints("\(prefix)_treeids") ?? []
        let weightNodes = try a.ints("\(prefix)_nodeids") ?? []
        let weightTargets = try a.ints("\(prefix)_ids") ?? []
        let weightValues = try numbers("\(prefix)_weights")
        guard weightNodes.count == weightTrees.count, weightTargets.count == weightTrees.count, weightValues.values.count == weightTrees.count else {
            throw OpError.invalid("\(prefix)_treeids, \(prefix)_nodeids, \(prefix)_ids and \(prefix)_weights differ in length")
        }
        let targets: Int
        if classifier {
            guard let labels = try MLOps.Labels(a, strings: "classlabels_strings", integers: "classlabels_int64s") else {
                throw OpError.invalid("needs classlabels_strings or classlabels_int64s")
            }
            self.labels = labels
            targets = labels.count
            aggregate = .sum
            binary = labels.count == 2 && Set(weightTargets).count == 1
            allWeightsPositive = weightValues.values.allSatisfy { $0 >= 0 }
        } else {
            labels = nil
            targets = try a.int("n_targets", default: 0)
            guard targets >= 1 else { throw OpError.invalid("n_targets must be positive, got \(targets)") }
            switch try a.string("aggregate_function") ?? "SUM" {
            case "SUM": aggregate = .sum
            case "AVERAGE": aggregate = .average
            case "MIN": aggregate = .minimum
            case "MAX": aggregate = .maximum
            case let other: throw OpError.invalid("aggregate_function '\(other)' is not SUM, AVERAGE, MIN or MAX")
            }
            binary = false
            allWeightsPositive = false
        }
        var weights: [(tree: Int, node: Int, target: Int, weight: Double)] = []
        var seen = Set<[Int]>()
        for i in weightTrees.indices {
            // With one target, a leaf counts only its first weight, as onnxruntime does.
            if !classifier && targets == 1 && !seen.insert([weightTrees[i], weightNodes[i]]).inserted { continue }
            weights.append((weightTrees[i], weightNodes[i], weightTargets[i], weightValues.values[i]))
        }
        let description = Forest.Description(
            treeIds: treeIds, nodeIds: try a.ints("nodes_nodeids") ?? [], features: try a.ints("nodes_featureids") ?? [],
            modes: modes, thresholds: thresholds.values, trueIds: try a.ints("nodes_truenodeids") ?? [],
            falseIds: try a.ints("nodes_falsenodeids") ?? [], missingGoesTrue: missing, weights: weights, targets: targets)
        do {
            forest = try Forest(description)
        } catch let error as ForestError {
            throw OpError.invalid(error.description)
        }
        let base = try numbers("base_values")
        baseValues = base.values
        doubleWeights = thresholds.isDouble || weightValues.isDouble || base.isDouble
        if classifier {
            guard baseValues.isEmpty || baseValues.count == targets || (targets <= 2 && baseValues.count <= 2) else {
                throw OpError.invalid("has \(baseValues.count) base_values for \(targets) classes")
            }
        } else {
            guard baseValues.isEmpty || baseValues.count == targets || baseValues.count == 1 else {
                throw OpError.invalid("has \(baseValues.count) base_values for \(targets) targets")
            }
        }
        transform = try PostTransform(a)
    }

    var classes: Int { forest.targets }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let x = try inputs.type(0, oneOf: MLOps.featureTypes, role: "X")
        guard !x.shape.isEmpty, x.shape.count <= 2 else { throw OpError("X is \(describe(x.shape)); a tree ensemble takes [N, F]") }
        if doubleWeights && x.dtype != .float64 { throw OpError("the trees' values are double tensors, which take double input, not \(x.dtype)") }
        let (rows, columns) = MLOps.rowsAndColumns(x.shape)
        let features = x.shape.count == 2 ? columns : 1
        guard forest.featureCount <= features else {
            throw OpError("X has \(features) features; the trees read feature \(forest.featureCount - 1)")
        }
        if let labels { return [ValueType(labels.dtype, [rows]), ValueType(.float32, [rows, classes])] }
        return [ValueType(.float32, [rows, classes])]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let x = inputs[0]!
        let (rows, columns) = MLOps.rowsAndColumns(x.shape)
        // Integer features are compared as float, as onnxruntime converts them.
        let values: [Double] = x.dtype == .float64 ? x.doubles : x.dtype == .float32 ? x.doubles : MLOps.floats(x).map(Double.init)
        // Float thresholds sum in float, double ones in double: onnxruntime's precision.
        if x.dtype == .float64 {
            var sums: [Double] = [], reached: [Bool] = []
            forest.scores(values, rows: rows, columns: columns, aggregate: aggregate, scores: &sums, reached: &reached)
            return finish(sums, reached, rows: rows)
        }
        var sums: [Float] = [], reached: [Bool] = []
        forest.scores(values, rows: rows, columns: columns, aggregate: aggregate, scores: &sums, reached: &reached)
        return finish(sums, reached, rows: rows)
    }

    private func finish<Score: BinaryFloatingPoint>(_ sums: [Score], _ reached: [Bool], rows: Int) -> [Tensor] {
        let k = classes
        let base = baseValues.map { Score($0) }
        if let labels { return classify(sums, reached, rows: rows, base: base, labels: labels) }
        var y = [Float](repeating: 0, count: rows * k)
        let trees = Score(forest.treeCount)
        for row in 0..<rows {
            for t in 0..<k {
                let slot = row * k + t
                // One base value serves a single target only; otherwise one per target, or none.
                let origin: Score = base.count == k ? base[t] : (k == 1 && base.count == 1 ? base[0] : 0)
                var score = sums[slot]
                switch aggregate {
                // Of several targets, one no tree gave a weight to is 0, base value or not.
                case .sum: score = k > 1 && !reached[slot] ? 0 : score + origin
                case .average: score = k > 1 && !reached[slot] ? 0 : score / (trees > 0 ? trees : 1) + origin
                case .minimum, .maximum: score = origin + (reached[slot] ? score : 0)
                }
                y[slot] = Float(score)
            }
        }
        transform.apply(rows: rows, columns: k, &y)
        return [Tensor(shape: [rows, k], floats: y)]
    }

    /// The label and class scores, with onnxruntime's rules for two classes.
    private func classify<Score: BinaryFloatingPoint>(_ sums: [Score], _ reached: [Bool], rows: Int, base: [Score], labels: MLOps.Labels) -> [Tensor] {
        let k = classes
        var chosen = [Int](repeating: 0, count: rows)
        var z = [Float]()
        z.reserveCapacity(rows * k)
        if k > 2 || k == 1 {
            // Scores as the trees summed them, base values added; unscored classes stay 0.
            var raw = sums
            for row in 0..<rows {
                let first = row * k
                var best: Int?
                for c in 0..<k {
                    let slot = first + c
                    var has = reached[slot]
                    if c < base.count {
                        raw[slot] = has ? raw[slot] + base[c] : base[c]
                        has = true
                    }
                    // The best raw score among the classes any tree (or base value) scored; first on a tie.
                    if has, best == nil || raw[slot] > raw[first + best!] { best = c }
                }
                chosen[row] = best ?? 0
            }
            z = raw.map { Float($0) }
            if k > 1 { transform.apply(rows: rows, columns: k, &z) } else if transform == .probit { z = z.map(PostTransform.probit) }
            return [labels.tensor(chosen, shape: [rows]), Tensor(shape: [rows, k], floats: z)]
        }
        // Two classes, row by row without arrays of their own.
        for row in 0..<rows {
            var (score0, score1) = (sums[row * 2], sums[row * 2 + 1])
            let (has0, has1) = (reached[row * 2], reached[row * 2 + 1])
            var single = false
            if base.count == 2 {
                // onnxruntime's rule, odd as it is: class 1's score becomes its base plus class 0's.
                if has1 {
                    score1 = base[1] + score0
                } else {
                    score0 += base[0]
                }
            } else if base.count == 1 {
                score0 += base[0]
                single = !has1
            } else {
                single = !has1
            }
            let positive: Score = !single && has1 ? score1 : (has0 ? score0 : 0)
            let second: PostTransform.SecondClass
            if binary {
                if allWeightsPositive {
                    chosen[row] = positive > 0.5 ? 1 : 0
                    second = .complement
                } else {
                    chosen[row] = positive > 0 ? 1 : 0
                    second = .mirror
                }
            } else {
                chosen[row] = positive > 0 ? 1 : 0
                second = .mirror
            }
            if single {
                z.append(contentsOf: transform.widen(Float(score0), base.isEmpty || binary ? second : .complement))
            } else {
                z.append(Float(score0))
                z.append(Float(score1))
                transform.apply(&z[(z.count - 2)...])
            }
        }
        return [labels.tensor(chosen, shape: [rows]), Tensor(shape: [rows, k], floats: z)]
    }
}
