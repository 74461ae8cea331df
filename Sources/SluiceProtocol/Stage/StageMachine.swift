import SluiceConfig

/// What a stage does with a batch, given the batch's cursor.
public enum StageDecision: Equatable, Sendable {
    /// Run these layers, then forward with the cursor at their end.
    case run(Range<Int>)
    /// The batch is already past this stage's range: forward it untouched.
    case passThrough
    /// The stage lacks the weights for the batch's next layer (a protocol violation: counted, logged, dropped).
    case reject(String)
}

/// A stage's layer bookkeeping: which range it runs now, which layers it must hold weights for,
/// and how a boundary move changes both.
///
/// Moves are two-phase. `prepare` widens the held layers to old ∪ new range (the stage loads
/// the new weights, then acks); `commit` switches the range new batches run to; `retire`, sent
/// once no batch that any stage handled under an older range can still arrive, drops the
/// weights outside the range. Between prepare and retire a batch may arrive with a cursor
/// anywhere in the held layers (an upstream stage not yet committed stopped early, or ran on
/// past a boundary), and the cursor rule still runs every layer exactly once.
public struct StageLayers: Equatable, Sendable {
    public private(set) var range: Range<Int>
    public private(set) var held: Range<Int>
    public private(set) var epoch: UInt32
    public private(set) var preparing: (epoch: UInt32, range: Range<Int>)?

    public init(range: Range<Int>, epoch: UInt32) {
        self.range = range
        held = range
        self.epoch = epoch
    }

    public static func == (lhs: StageLayers, rhs: StageLayers) -> Bool {
        lhs.range == rhs.range && lhs.held == rhs.held && lhs.epoch == rhs.epoch
            && lhs.preparing?.epoch == rhs.preparing?.epoch && lhs.preparing?.range == rhs.preparing?.range
    }

    public func decide(cursor: Int) -> StageDecision {
        if cursor >= range.upperBound { return .passThrough }
        guard held.contains(cursor) else {
            return .reject("next layer \(cursor) is outside the layers this stage holds (\(LayerSpan(held)))")
        }
        return .run(cursor..<range.upperBound)
    }

    /// Starts a move to `newRange`; returns the layers whose weights must be held before acking.
    public mutating func prepare(epoch newEpoch: UInt32, range newRange: Range<Int>) -> Range<Int> {
        preparing = (newEpoch, newRange)
        held = min(held.lowerBound, newRange.lowerBound)..<max(held.upperBound, newRange.upperBound)
        return held
    }

    /// Switches to the prepared range. Returns false for an epoch that was never prepared.
    public mutating func commit(epoch newEpoch: UInt32) -> Bool {
        guard let preparing, preparing.epoch == newEpoch else { return false }
        range = preparing.range
        epoch = newEpoch
        self.preparing = nil
        return true
    }

    /// Drops weights outside the committed range; returns the layers still held.
    public mutating func retire(epoch retiredUpTo: UInt32) -> Range<Int> {
        if retiredUpTo >= epoch, preparing == nil { held = range }
        return held
    }
}

public enum StageEvent: Equatable, Sendable {
    case control(ControlMessage)
    /// Answers to `takeAssignment`.
    case assignmentTaken
    case assignmentFailed(String)
    /// A background load finished (`failure` says why it did not), in the order the loads were asked for.
    case weightsLoaded(layers: Range<Int>, acking: UInt32?, failure: String?)
    /// A batch arrived with its cursor at layer `cursor`, sent under plan `epoch` (nil: not
    /// told); the machine answers run, pass through or reject.
    case batch(sequence: UInt64, cursor: Int, epoch: UInt32? = nil)
    case stopSignal
}

public enum StageAction: Equatable, Sendable {
    case send(ControlMessage)
    /// Load the weights of `layers` now and open the sockets; answer `assignmentTaken` or `assignmentFailed`.
    case takeAssignment(StageAssignment, layers: Range<Int>)
    /// Build an executor for `layers` in the background, one load at a time and in order, while
    /// batches flow; answer `weightsLoaded` when done.
    case loadWeights(layers: Range<Int>, acking: UInt32?)
    /// Run on the executor the load of `layers` just built, from now on.
    case install(layers: Range<Int>)
    /// The batch: run these layers, then forward it with the cursor at their end.
    case run(Range<Int>)
    /// The batch: forward it untouched.
    case passThrough
    /// The batch: count, log and drop it.
    case reject(DropReason, String)
    /// A replica joined the next hop: send to it too.
    case connect(endpoint: String)
    /// Narrow what goes to the next hop this way from now on.
    case compress(Compression)
    case log(RoleLogLevel, String)
    case finish(status: Int32, finalHeartbeat: Bool)
}

/// A stage's protocol, free of sockets, clocks, threads and files: taking its assignment, the
/// two-phase moves (see `StageLayers`) with their weight loads and acks, and what to do with
/// each batch. Weights load in the background while batches flow; a load whose layers are no
/// longer the ones to hold when it finishes is dropped, as a later load is on its way.
public struct StageMachine: Equatable, Sendable {
    private var offered: StageAssignment?
    public private(set) var assignment: StageAssignment?
    public private(set) var layers: StageLayers?
    /// Layers the installed executor holds weights for.
    public private(set) var executorLayers: Range<Int>?

    public init() {}

    public mutating func handle(_ event: StageEvent) -> [StageAction] {
        switch event {
        case .control(let message):
            return handle(message)
        case .assignmentTaken:
            guard let offered else { return [] }
            let range = offered.layers.start..<offered.layers.end
            assignment = offered
            layers = StageLayers(range: range, epoch: offered.epoch)
            executorLayers = range
            return [.send(.ready)]
        case .assignmentFailed(let reason):
            return [.log(.error, "cannot take assignment: \(reason)"), .send(.failed(message: reason)), .finish(status: 1, finalHeartbeat: false)]
        case .weightsLoaded(let loaded, let acking, let failure):
            if let failure {
                let message = "cannot load weights for layers \(LayerSpan(loaded)): \(failure)"
                return [.log(.error, message), .send(.failed(message: message))]
            }
            guard loaded == layers?.held else { return [] }  // superseded: a later load brings what must be held
            executorLayers = loaded
            return [.install(layers: loaded)] + (acking.map { [.send(.prepared(epoch: $0))] } ?? [])
        case .batch(let sequence, let cursor, let epoch):
            guard let layers else { return [.reject(.notAssigned, "no assignment yet")] }
            switch layers.decide(cursor: cursor) {
            case .run(let range): return [.run(range)]
            case .passThrough: return [.passThrough]
            case .reject(let reason):
                // The two-phase move keeps every batch of a live plan runnable; one sent under an
                // older plan that cannot run is a copy left over from before a stage died (a
                // process started in its place holds only the plan in force): the replay that
                // followed the death resends it, or the sink released it already.
                if let epoch, epoch < layers.epoch {
                    return [.reject(.superseded, "batch \(sequence) of epoch \(epoch): \(reason)")]
                }
                return [.reject(.misrouted, "batch \(sequence): \(reason)")]
            }
        case .stopSignal:
            return [.finish(status: 0, finalHeartbeat: true)]
        }
    }

    private mutating func handle(_ message: ControlMessage) -> [StageAction] {
        switch message {
        case .assignStage(let new):
            let count = new.cut.layers.count
            guard new.layers.start >= 0, new.layers.start < new.layers.end, new.layers.end <= count else {
                return handle(.assignmentFailed("layer range \(new.layers) is outside the model's \(count) layers"))
            }
            offered = new
            return [.takeAssignment(new, layers: new.layers.start..<new.layers.end)]
        case .prepare(let move):
            return prepare(move)
        case .commit(let epoch):
            guard var layers else { return [] }
            guard layers.commit(epoch: epoch) else { return [.log(.warning, "commit of epoch \(epoch), which was never prepared here")] }
            self.layers = layers
            return [.log(.info, "epoch \(epoch): now running layers \(LayerSpan(layers.range))"), .send(.committed(epoch: epoch))]
        case .retire(let epoch):
            guard var layers else { return [] }
            let held = layers.retire(epoch: epoch)
            self.layers = layers
            return held == executorLayers ? [] : [.loadWeights(layers: held, acking: nil)]
        case .connect(let endpoint):
            return [.connect(endpoint: endpoint)]
        case .compress(let compression):
            guard var assignment, assignment.compression != compression else { return [] }
            assignment.compression = compression
            self.assignment = assignment
            return [.compress(compression), .log(.info, "output link: compression \(compression.rawValue) from now on")]
        case .rejoin:
            guard var assignment, let layers else { return [] }
            assignment.layers = LayerSpan(layers.range)
            assignment.epoch = layers.epoch
            let preparing = layers.preparing.map { PreparedRange(epoch: $0.epoch, layers: LayerSpan($0.range)) }
            return [.send(.rejoined(RoleState(stage: StageState(assignment: assignment, held: LayerSpan(layers.held), preparing: preparing))))]
        case .shutdown(let reason):
            return [.log(.debug, "shutdown: \(reason)"), .finish(status: 0, finalHeartbeat: true)]
        default:
            return []
        }
    }

    /// Acks at once when the executor already holds every layer the move needs; else loads them first.
    private mutating func prepare(_ move: Move) -> [StageAction] {
        guard let assignment, var layers, move.ranges.indices.contains(assignment.stageIndex) else { return [] }
        let range = move.ranges[assignment.stageIndex]
        let count = assignment.cut.layers.count
        guard range.start >= 0, range.start < range.end, range.end <= count else {
            return [.log(.warning, "ignoring prepare of epoch \(move.epoch): layer range \(range) is outside the model's \(count) layers")]
        }
        let held = layers.prepare(epoch: move.epoch, range: range.start..<range.end)
        self.layers = layers
        if held == executorLayers { return [.send(.prepared(epoch: move.epoch))] }
        return [.log(.info, "preparing epoch \(move.epoch): loading weights for layers \(LayerSpan(held)) while batches flow"),
                .loadWeights(layers: held, acking: move.epoch)]
    }
}
