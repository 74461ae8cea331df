import SluiceTensor

/// Text features over token ids. Strings are not tensors Sluice carries, so the pools and
/// inputs here are integers.
enum TextOps {
    static let schemas: [OpSchema] = [
        OpSchema(name: "TfIdfVectorizer", opsets: 9...OpRegistry.latestOpset, inputs: 1...1) { try TfIdfVectorizerOperator($0) },
    ]
}

/// TfIdfVectorizer: counts the pool's n-grams in each row (also with up to `max_skip_count`
/// tokens skipped between the items of an n-gram) and weighs the counts by mode.
struct TfIdfVectorizerOperator: Operator {
    enum Mode: String { case tf = "TF", idf = "IDF", tfidf = "TFIDF" }
    let mode: Mode
    let minLength: Int
    let maxLength: Int
    let maxSkip: Int
    /// Output position of each pooled n-gram whose length lies in minLength…maxLength.
    let positions: [[Int64]: Int]
    let outputSize: Int
    let weights: [Float]?

    init(_ context: OpContext) throws {
        let a = context.attributes
        let modeText = try a.string("mode") ?? ""
        guard let mode = Mode(rawValue: modeText) else { throw OpError.invalid("mode '\(modeText)' is not TF, IDF or TFIDF") }
        self.mode = mode
        minLength = try a.int("min_gram_length") ?? 0
        maxLength = try a.int("max_gram_length") ?? 0
        maxSkip = try a.int("max_skip_count") ?? 0
        guard minLength >= 1, maxLength >= minLength, maxSkip >= 0 else {
            throw OpError.invalid("needs 1 ≤ min_gram_length ≤ max_gram_length and max_skip_count ≥ 0, got \(minLength), \(maxLength), \(maxSkip)")
        }
        if let strings = try a.strings("pool_strings"), !strings.isEmpty {
            throw OpError.unsupported("pool_strings: string tensors are not supported (pool_int64s with integer token ids are)")
        }
        let pool = (try a.ints("pool_int64s") ?? []).map { Int64($0) }
        let starts = try a.ints("ngram_counts") ?? []
        let indexes = try a.ints("ngram_indexes") ?? []
        guard !indexes.isEmpty, indexes.allSatisfy({ $0 >= 0 }) else { throw OpError.invalid("ngram_indexes must be non-empty and not negative") }
        guard starts.first == 0, zip(starts, starts.dropFirst()).allSatisfy({ $0 <= $1 }), (starts.last ?? 0) <= pool.count else {
            throw OpError.invalid("ngram_counts \(starts) must rise from 0 within the pool of \(pool.count)")
        }
        // The pool holds the 1-grams, then the 2-grams, …; ngram_counts says where each length
        // starts, and the n-grams are numbered through all lengths in pool order.
        var positions: [[Int64]: Int] = [:]
        var number = 0
        for (i, start) in starts.enumerated() {
            let length = i + 1
            let end = i + 1 < starts.count ? starts[i + 1] : pool.count
            guard (end - start) % length == 0 else {
                throw OpError.invalid("the pool's \(length)-grams (items \(start)..<\(end)) are not a whole number of \(length)-grams")
            }
            for gram in stride(from: start, to: end, by: length) {
                guard number < indexes.count else { throw OpError.invalid("ngram_indexes has \(indexes.count) entries, fewer than the pool's n-grams") }
                if (minLength...maxLength).contains(length) { positions[Array(pool[gram..<(gram + length)])] = indexes[number] }
                number += 1
            }
        }
        self.positions = positions
        outputSize = indexes.max()! + 1
        weights = try a.floats("weights").flatMap { $0.isEmpty ? nil : $0 }
        if let weights, weights.count < outputSize {
            throw OpError.invalid("weights has \(weights.count) values for \(outputSize) outputs")
        }
    }

    func infer(_ inputs: InferenceInputs) throws -> [ValueType] {
        let x = try inputs.type(0, oneOf: [.int64, .int32], role: "X")
        guard x.shape.count == 1 || x.shape.count == 2 else { throw OpError("X is \(describe(x.shape)), not [C] or [N, C]") }
        return [ValueType(.float32, x.shape.count == 1 ? [outputSize] : [x.shape[0], outputSize])]
    }

    func evaluate(_ inputs: [Tensor?], outputs: [ValueType], scratch: Scratch) throws -> [Tensor] {
        let x = inputs[0]!
        let tokens = x.int64Values
        let rows = x.rank == 1 ? 1 : x.shape[0]
        let length = rows == 0 ? 0 : tokens.count / rows
        var y = [Float](repeating: 0, count: rows * outputSize)
        for r in 0..<rows {
            let row = tokens[(r * length)..<((r + 1) * length)]
            var counts = [Int](repeating: 0, count: outputSize)
            for step in 1...(maxSkip + 1) {
                // 1-grams have no gaps to skip: count them on the first pass only.
                let shortest = step == 1 ? minLength : Swift.max(minLength, 2)
                guard shortest <= maxLength else { break }
                for start in row.indices {
                    for n in shortest...maxLength {
                        let last = start + (n - 1) * step
                        guard last < row.endIndex else { break }
                        let gram = stride(from: start, through: last, by: step).map { row[$0] }
                        if let position = positions[gram] { counts[position] += 1 }
                    }
                }
            }
            for i in 0..<outputSize {
                let count = Float(counts[i]), weight = weights?[i] ?? 1
                switch mode {
                case .tf: y[r * outputSize + i] = count
                case .idf: y[r * outputSize + i] = count > 0 ? weight : 0
                case .tfidf: y[r * outputSize + i] = count * weight
                }
            }
        }
        return [Tensor(shape: outputs[0].shape, floats: y)]
    }
}
