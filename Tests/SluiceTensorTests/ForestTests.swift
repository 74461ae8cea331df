import SluiceTensor
import Testing

/// The compiled forest against the naive walk of its description, on random ensembles, and its
/// refusals of trees that are not trees.
@Suite struct ForestTests {
    /// Random trees of every branch mode, listed in a shuffled order within each tree, with node
    /// ids that are not positions, missing values sent either way, and several targets.
    static func randomForest(seed: UInt64, features: Int, targets: Int, onlyLessOrEqual: Bool = false) -> Forest.Description {
        var g = SeededGenerator(seed: Int(truncatingIfNeeded: seed))
        var d = Forest.Description(treeIds: [], nodeIds: [], features: [], modes: [], thresholds: [], trueIds: [],
                                   falseIds: [], missingGoesTrue: [], weights: [], targets: targets)
        let modes: [Forest.Mode] = onlyLessOrEqual ? [.lessOrEqual] : [.lessOrEqual, .less, .greaterOrEqual, .greater, .equal, .notEqual]
        for tree in 0..<Int.random(in: 1...12, using: &g) {
            let treeId = tree * 3 + 5
            var entries: [(id: Int, feature: Int, mode: Forest.Mode, threshold: Double, t: Int, f: Int, missing: Bool)] = []
            var nextId = 100
            func build(depth: Int) -> Int {
                let id = nextId
                nextId += 7
                let index = entries.count
                entries.append((id, 0, .leaf, 0, 0, 0, false))
                if depth == 0 || Int.random(in: 0..<5, using: &g) == 0 {
                    for _ in 0..<Int.random(in: 0...2, using: &g) {
                        d.weights.append((treeId, id, Int.random(in: 0..<targets, using: &g), Double(Float.random(in: -2...2, using: &g))))
                    }
                    return id
                }
                let trueId = build(depth: depth - 1)
                let falseId = build(depth: depth - 1)
                // Thresholds on a coarse grid, so equality branches are taken too.
                entries[index] = (id, Int.random(in: 0..<features, using: &g), modes.randomElement(using: &g)!,
                                  Double(Int.random(in: -4...4, using: &g)) / 2, trueId, falseId, Bool.random(using: &g))
                return id
            }
            _ = build(depth: Int.random(in: 0...6, using: &g))
            // The root stays first (it is how a tree's root is known); the rest in any order.
            let ordered = [entries[0]] + entries.dropFirst().shuffled(using: &g)
            for e in ordered {
                d.treeIds.append(treeId); d.nodeIds.append(e.id); d.features.append(e.feature); d.modes.append(e.mode)
                d.thresholds.append(e.threshold); d.trueIds.append(e.t); d.falseIds.append(e.f); d.missingGoesTrue.append(e.missing)
            }
        }
        return d
    }

    @Test(arguments: 0..<40)
    func compiledForestAgreesWithTheNaiveWalk(seed: Int) throws {
        var g = SeededGenerator(seed: seed &* 977)
        let features = 5, targets = Int.random(in: 1...3, using: &g), rows = 300
        // Half the seeds only <= (what exporters write), which the kernel walks several rows at a time.
        let description = Self.randomForest(seed: UInt64(seed), features: features, targets: targets, onlyLessOrEqual: seed % 2 == 0)
        let forest = try Forest(description)
        // Values on the thresholds' grid, and some NaN.
        let x: [Double] = (0..<(rows * features)).map { _ in Int.random(in: 0..<10, using: &g) == 0 ? .nan : Double(Int.random(in: -5...5, using: &g)) / 2 }
        for aggregate in [Forest.Aggregate.sum, .average, .minimum, .maximum] {
            var scores: [Double] = [], reached: [Bool] = []
            forest.scores(x, rows: rows, columns: features, aggregate: aggregate, scores: &scores, reached: &reached)
            let reference = ReferenceKernels.forestScores(description, x, rows: rows, columns: features, aggregate: aggregate)
            #expect(reached == reference.reached, "seed \(seed) \(aggregate)")
            let worst = zip(scores, reference.scores).map { abs($0 - $1) }.max() ?? 0
            #expect(worst < 1e-9, "seed \(seed) \(aggregate): \(worst)")
        }
    }

    static func oneBranch(trueId: Int = 1, falseId: Int = 2) -> Forest.Description {
        Forest.Description(treeIds: [0, 0, 0], nodeIds: [0, 1, 2], features: [0, 0, 0], modes: [.lessOrEqual, .leaf, .leaf],
                           thresholds: [0, 0, 0], trueIds: [trueId, 0, 0], falseIds: [falseId, 0, 0], missingGoesTrue: [false, false, false],
                           weights: [(0, 1, 0, 1), (0, 2, 0, 2)], targets: 1)
    }

    @Test func refusesWhatIsNotATree() {
        #expect(throws: ForestError.self) { try Forest(Self.oneBranch(trueId: 0)) }          // a cycle through the root
        #expect(throws: ForestError.self) { try Forest(Self.oneBranch(trueId: 9)) }          // a child the tree lacks
        var sharedFalse = Self.oneBranch()
        sharedFalse.modes[1] = .less
        sharedFalse.trueIds[1] = 2
        sharedFalse.falseIds[1] = 2                                                         // node 2 is the false child twice
        #expect(throws: ForestError.self) { try Forest(sharedFalse) }
        var strayWeight = Self.oneBranch()
        strayWeight.weights.append((0, 7, 0, 1))
        #expect(throws: ForestError.self) { try Forest(strayWeight) }
        var badTarget = Self.oneBranch()
        badTarget.weights.append((0, 1, 3, 1))
        #expect(throws: ForestError.self) { try Forest(badTarget) }
        var duplicate = Self.oneBranch()
        duplicate.nodeIds[2] = 1
        #expect(throws: ForestError.self) { try Forest(duplicate) }
        var short = Self.oneBranch()
        short.features.removeLast()
        #expect(throws: ForestError.self) { try Forest(short) }
    }

    /// LightGBM's chains of equality branches share one true child: kept once, and walked right.
    @Test func aSharedTrueChildIsKept() throws {
        let d = Forest.Description(treeIds: [0, 0, 0, 0], nodeIds: [0, 1, 2, 3], features: [0, 0, 0, 0],
                                   modes: [.equal, .equal, .leaf, .leaf], thresholds: [1, 2, 0, 0], trueIds: [2, 2, 0, 0],
                                   falseIds: [1, 3, 0, 0], missingGoesTrue: [false, false, false, false],
                                   weights: [(0, 2, 0, 10), (0, 3, 0, 20)], targets: 1)
        let forest = try Forest(d)
        let x: [Double] = [1, 2, 3]
        var scores: [Double] = [], reached: [Bool] = []
        forest.scores(x, rows: 3, columns: 1, aggregate: .sum, scores: &scores, reached: &reached)
        #expect(scores == [10, 10, 20])
    }
}
