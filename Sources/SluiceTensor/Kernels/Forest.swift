import CKernels

/// Decision-tree ensembles (random forests, gradient boosting), compiled for speed: each tree's
/// nodes in one contiguous array, depth first, a branch's false child right after it, so a walk
/// mostly reads forward through memory. `ReferenceKernels.forestScores` walks the trees the way
/// the ONNX attributes list them, for the tests to compare.
public struct Forest: Sendable {
    /// How a branch compares the feature with its threshold; the true branch is taken when
    /// the comparison holds (or the feature is NaN and the node says missing goes true).
    public enum Mode: UInt8, Sendable {
        case lessOrEqual, less, greaterOrEqual, greater, equal, notEqual, leaf
    }

    /// How trees' weights for one target combine.
    public enum Aggregate: Sendable {
        case sum, average, minimum, maximum
    }

    /// The trees as the attributes list them: parallel arrays, one entry per node, nodes named by
    /// (tree id, node id); children named by node id within their tree. `weights` attaches
    /// (target, weight) pairs to leaves.
    public struct Description: Sendable {
        public var treeIds: [Int]
        public var nodeIds: [Int]
        public var features: [Int]
        public var modes: [Mode]
        public var thresholds: [Double]
        public var trueIds: [Int]
        public var falseIds: [Int]
        public var missingGoesTrue: [Bool]
        public var weights: [(tree: Int, node: Int, target: Int, weight: Double)]
        public var targets: Int

        public init(treeIds: [Int], nodeIds: [Int], features: [Int], modes: [Mode], thresholds: [Double], trueIds: [Int],
                    falseIds: [Int], missingGoesTrue: [Bool], weights: [(tree: Int, node: Int, target: Int, weight: Double)], targets: Int) {
            self.treeIds = treeIds; self.nodeIds = nodeIds; self.features = features; self.modes = modes
            self.thresholds = thresholds; self.trueIds = trueIds; self.falseIds = falseIds
            self.missingGoesTrue = missingGoesTrue; self.weights = weights; self.targets = targets
        }

        /// Tree ids in the order their first node appears: the order trees are summed in.
        var treeOrder: [Int] {
            var seen = Set<Int>()
            return treeIds.filter { seen.insert($0).inserted }
        }
    }

    /// 16 bytes each (`sluice_tree_node`): a branch, or a leaf whose weights are
    /// `leafWeights[true_child ..< true_child + feature]`.
    typealias Node = sluice_tree_node
    let nodes: [Node]
    /// Double thresholds for the nodes whose threshold a Float does not hold exactly (nil when
    /// every one fits, the usual case).
    let wideThresholds: [Double]?
    /// Every branch compares with <=, which takes the kernel's shorter loop.
    let allLessOrEqual: Bool
    let roots: [Int32]
    /// How many branches each tree's deepest leaf lies below its root.
    let depths: [Int32]
    let leafTargets: [Int32]
    let leafWeights: [Double]
    public let targets: Int
    /// The largest feature index a branch reads, plus one: rows must have at least this many.
    public let featureCount: Int
    public var treeCount: Int { roots.count }

    /// Compiles the trees, checking that every child exists in its own tree, that no node is
    /// reached twice (a tree, not a graph, so its size is bounded by the attributes'), and that
    /// weights name leaves and targets that exist.
    public init(_ description: Description) throws {
        let d = description
        let count = d.treeIds.count
        guard [d.nodeIds.count, d.features.count, d.modes.count, d.thresholds.count, d.trueIds.count, d.falseIds.count,
               d.missingGoesTrue.count].allSatisfy({ $0 == count }) else {
            throw ForestError("the node attributes have different lengths")
        }
        guard d.targets >= 1, d.targets <= 1 << 20 else { throw ForestError("\(d.targets) targets") }
        guard count < Int(Int32.max) / 2, d.weights.count < Int(Int32.max) else { throw ForestError("too many nodes") }
        struct Key: Hashable { let tree: Int, node: Int }
        var index: [Key: Int] = [:]
        for i in 0..<count {
            guard index.updateValue(i, forKey: Key(tree: d.treeIds[i], node: d.nodeIds[i])) == nil else {
                throw ForestError("tree \(d.treeIds[i]) has two nodes with id \(d.nodeIds[i])")
            }
        }
        var weightsOf: [Int: [(target: Int, weight: Double)]] = [:]
        for w in d.weights {
            guard let node = index[Key(tree: w.tree, node: w.node)] else {
                throw ForestError("a weight names node \(w.node) of tree \(w.tree), which does not exist")
            }
            guard w.target >= 0, w.target < d.targets else {
                throw ForestError("a weight of node \(w.node) of tree \(w.tree) is for target \(w.target); there are \(d.targets)")
            }
            weightsOf[node, default: []].append((w.target, w.weight))
        }
        var nodes: [Node] = []
        nodes.reserveCapacity(count)
        var wide: [Double] = []
        var needsWide = false
        var leafTargets: [Int32] = [], leafWeights: [Double] = []
        var roots: [Int32] = []
        var positions = [Int?](repeating: nil, count: count)
        func position(_ attribute: Int) -> Int? { positions[attribute] }
        var featureCount = 0
        var firstOfTree: [Int: Int] = [:]
        for i in 0..<count where firstOfTree[d.treeIds[i]] == nil { firstOfTree[d.treeIds[i]] = i }
        for tree in d.treeOrder {
            guard let root = firstOfTree[tree] else { continue }
            roots.append(Int32(nodes.count))
            // Depth first with an explicit stack: (attribute index, where to patch the parent's true child).
            var stack: [(node: Int, patch: Int?)] = [(root, nil)]
            while let (attribute, patch) = stack.popLast() {
                if let earlier = position(attribute) {
                    // A shared true child (LightGBM writes chains of EQ branches so) is kept once;
                    // a false child must come right after its branch, so it cannot be shared.
                    guard let patch else { throw ForestError("node \(d.nodeIds[attribute]) of tree \(tree) is the false child of two branches") }
                    nodes[patch].true_child = Int32(earlier)
                    continue
                }
                let position = nodes.count
                positions[attribute] = position
                if let patch { nodes[patch].true_child = Int32(position) }
                let mode = d.modes[attribute]
                if mode == .leaf {
                    let weights = weightsOf[attribute] ?? []
                    nodes.append(Node(threshold: 0, feature: Int32(weights.count), true_child: Int32(leafWeights.count), mode: Mode.leaf.rawValue,
                                      missing_goes_true: 0, padding: 0))
                    wide.append(0)
                    for w in weights { leafTargets.append(Int32(w.target)); leafWeights.append(w.weight) }
                    continue
                }
                let feature = d.features[attribute]
                guard feature >= 0, feature < 1 << 24 else { throw ForestError("node \(d.nodeIds[attribute]) of tree \(tree) reads feature \(feature)") }
                featureCount = max(featureCount, feature + 1)
                let threshold = d.thresholds[attribute]
                if Double(Float(threshold)) != threshold && !threshold.isNaN { needsWide = true }
                nodes.append(Node(threshold: Float(threshold), feature: Int32(feature), true_child: -1, mode: mode.rawValue,
                                  missing_goes_true: d.missingGoesTrue[attribute] ? 1 : 0, padding: 0))
                wide.append(threshold)
                guard let trueChild = index[Key(tree: tree, node: d.trueIds[attribute])],
                      let falseChild = index[Key(tree: tree, node: d.falseIds[attribute])] else {
                    throw ForestError("node \(d.nodeIds[attribute]) of tree \(tree) names a child that tree lacks")
                }
                // Popped first, so placed right after this node: the false child.
                stack.append((trueChild, position))
                stack.append((falseChild, nil))
            }
        }
        depths = try Self.depths(nodes, roots: roots)
        allLessOrEqual = nodes.allSatisfy { $0.mode == Mode.lessOrEqual.rawValue || $0.mode == Mode.leaf.rawValue }
        self.nodes = nodes
        wideThresholds = needsWide ? wide : nil
        self.roots = roots
        self.leafTargets = leafTargets
        self.leafWeights = leafWeights
        targets = d.targets
        self.featureCount = featureCount
    }

    /// Each tree's depth in branches. A shared true child could lead back up the tree, and a walk
    /// would never end: refused.
    private static func depths(_ nodes: [Node], roots: [Int32]) throws -> [Int32] {
        var state = [UInt8](repeating: 0, count: nodes.count)  // 0 new, 1 on the path, 2 done
        var depth = [Int32](repeating: 0, count: nodes.count)
        for root in roots where state[Int(root)] == 0 {
            var stack: [(node: Int, next: Int)] = [(Int(root), 0)]
            state[Int(root)] = 1
            while let top = stack.last {
                let node = nodes[top.node]
                let children = node.mode == Mode.leaf.rawValue ? [] : [top.node + 1, Int(node.true_child)]
                if top.next < children.count {
                    stack[stack.count - 1].next += 1
                    let child = children[top.next]
                    guard child >= 0, child < nodes.count else { throw ForestError("a branch leads outside its tree") }
                    if state[child] == 1 { throw ForestError("a tree's branches form a cycle") }
                    if state[child] == 0 {
                        state[child] = 1
                        stack.append((child, 0))
                    }
                } else {
                    state[top.node] = 2
                    if node.mode != Mode.leaf.rawValue { depth[top.node] = 1 + max(depth[top.node + 1], depth[Int(node.true_child)]) }
                    stack.removeLast()
                }
            }
        }
        return roots.map { depth[Int($0)] }
    }


    /// Sums (or averages, or takes the least or largest of) each target's leaf weights over the
    /// trees, for `rows` rows of `columns` features (row-major, as Double; none at all for no rows). `scores` gets
    /// rows × targets values; `reached` says which targets any tree gave a weight to.
    /// Accumulates in Float (float thresholds, as onnxruntime does) or Double.
    public func scores(_ x: [Double], rows: Int, columns: Int, aggregate: Aggregate,
                       scores: inout [Float], reached: inout [Bool]) {
        (scores, reached) = run(x, rows: rows, columns: columns, aggregate: aggregate, sluice_forest_scores_f32)
    }

    public func scores(_ x: [Double], rows: Int, columns: Int, aggregate: Aggregate,
                       scores: inout [Double], reached: inout [Bool]) {
        (scores, reached) = run(x, rows: rows, columns: columns, aggregate: aggregate, sluice_forest_scores_f64)
    }

    /// The C kernel's arguments, for either precision.
    private typealias Kernel<Score> = (UnsafePointer<sluice_tree_node>?, UnsafePointer<Double>?, Int32, UnsafePointer<Int32>?,
                                       UnsafePointer<Int32>?, Int, UnsafePointer<Int32>?, UnsafePointer<Double>?, Int, Int32,
                                       UnsafePointer<Double>?, Int, Int, UnsafeMutablePointer<Score>?, UnsafeMutablePointer<UInt8>?) -> Void

    private func run<Score: BinaryFloatingPoint>(_ x: [Double], rows: Int, columns: Int, aggregate: Aggregate,
                                                 _ kernel: Kernel<Score>) -> ([Score], [Bool]) {
        precondition(columns >= featureCount && x.count >= rows * columns, "\(rows) rows of \(columns) features in \(x.count) values; the trees read \(featureCount)")
        var sums = [Score](repeating: 0, count: rows * targets)
        var flags = [UInt8](repeating: 0, count: rows * targets)
        x.withUnsafeBufferPointer { rowsOfX in
            sums.withUnsafeMutableBufferPointer { out in
                flags.withUnsafeMutableBufferPointer { reached in
                    kernel(nodes, wideThresholds, allLessOrEqual ? 1 : 0, roots, depths, roots.count, leafTargets, leafWeights,
                           targets, aggregate.code, rowsOfX.baseAddress, rows, columns, out.baseAddress, reached.baseAddress)
                }
            }
        }
        return (sums, flags.map { $0 != 0 })
    }
}

extension Forest.Aggregate {
    var code: Int32 {
        switch self {
        case .sum, .average: return 0
        case .minimum: return 1
        case .maximum: return 2
        }
    }
}

public struct ForestError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

extension ReferenceKernels {
    /// The trees walked straight from their description, node by node through a dictionary,
    /// tree after tree and row after row: what `Forest.scores` must agree with.
    public static func forestScores(_ d: Forest.Description, _ x: [Double], rows: Int, columns: Int,
                                    aggregate: Forest.Aggregate) -> (scores: [Double], reached: [Bool]) {
        var scores = [Double](repeating: 0, count: rows * d.targets)
        var reached = [Bool](repeating: false, count: rows * d.targets)
        var at: [[Int]: Int] = [:]
        for i in d.treeIds.indices { at[[d.treeIds[i], d.nodeIds[i]]] = i }
        for row in 0..<rows {
            for tree in d.treeOrder {
                guard var node = d.treeIds.firstIndex(of: tree) else { continue }
                while d.modes[node] != .leaf {
                    let value = x[row * columns + d.features[node]]
                    let t = d.thresholds[node]
                    let comparison: Bool
                    switch d.modes[node] {
                    case .lessOrEqual: comparison = value <= t
                    case .less: comparison = value < t
                    case .greaterOrEqual: comparison = value >= t
                    case .greater: comparison = value > t
                    case .equal: comparison = value == t
                    case .notEqual: comparison = value != t
                    case .leaf: comparison = false
                    }
                    let goTrue = comparison || (value.isNaN && d.missingGoesTrue[node])
                    node = at[[tree, goTrue ? d.trueIds[node] : d.falseIds[node]]]!
                }
                for w in d.weights where w.tree == tree && w.node == d.nodeIds[node] {
                    let slot = row * d.targets + w.target
                    switch aggregate {
                    case .sum, .average: scores[slot] += w.weight
                    case .minimum: scores[slot] = reached[slot] ? min(scores[slot], w.weight) : w.weight
                    case .maximum: scores[slot] = reached[slot] ? max(scores[slot], w.weight) : w.weight
                    }
                    reached[slot] = true
                }
            }
        }
        return (scores, reached)
    }
}
