import Testing
import SluiceConfig
import SluicePlan
@testable import SluiceProtocol

private let cut = LayerCut(layers: (0..<6).map {
    Layer(index: $0, nodeStart: $0, nodeEnd: $0 + 1, opTypes: ["F"], flopsPerWindow: 1, parameterBytes: 4, outputs: ["x"], outputBytesPerWindow: 8)
}, inputs: ["x"], inputBytesPerWindow: 8)

private func assignment(_ layers: Range<Int>, stage: Int = 1) -> StageAssignment {
    StageAssignment(stageIndex: stage, epoch: 1, modelPath: "m.onnx", cut: cut, layers: LayerSpan(layers),
                    pullEndpoint: "p", pushEndpoints: [], slowdown: 0, liveness: Liveness(heartbeatSeconds: 1, timeoutSeconds: 5))
}

/// Stage 1 of three, holding layers 2..<4.
private func assigned() -> StageMachine {
    var stage = StageMachine()
    #expect(stage.handle(.control(.assignStage(assignment(2..<4)))) == [.takeAssignment(assignment(2..<4), layers: 2..<4)])
    #expect(stage.handle(.assignmentTaken) == [.send(.ready)])
    return stage
}

private func move(_ epoch: UInt32, _ middle: Range<Int>) -> ControlMessage {
    .prepare(Move(epoch: epoch, ranges: [LayerSpan(start: 0, end: middle.lowerBound), LayerSpan(start: middle.lowerBound, end: middle.upperBound),
                                         LayerSpan(start: middle.upperBound, end: 6)]))
}

private func sends(_ actions: [StageAction]) -> [ControlMessage] {
    actions.compactMap { if case .send(let message) = $0 { return message } else { return nil } }
}

@Test func refusesAnAssignmentOutsideTheModel() {
    var stage = StageMachine()
    let actions = stage.handle(.control(.assignStage(assignment(4..<9))))
    #expect(sends(actions) == [.failed(message: "layer range 4-8 is outside the model's 6 layers")])
    #expect(actions.last == .finish(status: 1, finalHeartbeat: false))
    #expect(stage.handle(.batch(sequence: 0, cursor: 0)) == [.reject(.notAssigned, "no assignment yet")])
}

@Test func answersEachBatchByItsCursor() {
    var stage = assigned()
    #expect(stage.handle(.batch(sequence: 0, cursor: 2)) == [.run(2..<4)])
    #expect(stage.handle(.batch(sequence: 1, cursor: 3)) == [.run(3..<4)])
    #expect(stage.handle(.batch(sequence: 2, cursor: 4)) == [.passThrough])
    guard case .reject(.misrouted, _)? = stage.handle(.batch(sequence: 3, cursor: 1)).first else {
        Issue.record("a batch before the held layers was not rejected")
        return
    }
}

@Test func acksAPrepareOnlyOnceItsWeightsAreInstalled() {
    var stage = assigned()
    let prepare = stage.handle(.control(move(2, 1..<4)))
    #expect(prepare.last == .loadWeights(layers: 1..<4, acking: 2))
    #expect(sends(prepare).isEmpty)
    // Until the load lands, batches keep running on what is installed.
    #expect(stage.handle(.batch(sequence: 0, cursor: 2)) == [.run(2..<4)])
    #expect(stage.handle(.weightsLoaded(layers: 1..<4, acking: 2, failure: nil)) == [.install(layers: 1..<4), .send(.prepared(epoch: 2))])
    #expect(sends(stage.handle(.control(.commit(epoch: 2)))) == [.committed(epoch: 2)])
    #expect(stage.handle(.batch(sequence: 1, cursor: 1)) == [.run(1..<4)])
}

@Test func acksAtOnceWhenTheExecutorAlreadyHoldsTheLayers() {
    var stage = assigned()
    // Shrinking needs no new weights: old ∪ new is what is held.
    #expect(stage.handle(.control(move(2, 3..<4))) == [.send(.prepared(epoch: 2))])
}

@Test func retireDropsWeightsOutsideTheRangeAndASupersededLoadIsDropped() {
    var stage = assigned()
    _ = stage.handle(.control(move(2, 3..<5)))
    _ = stage.handle(.weightsLoaded(layers: 2..<5, acking: 2, failure: nil))
    _ = stage.handle(.control(.commit(epoch: 2)))
    #expect(stage.handle(.control(.retire(epoch: 2))) == [.loadWeights(layers: 3..<5, acking: nil)])
    // A move back before that load lands: the executor still holds 2..<5, all it needs.
    #expect(stage.handle(.control(move(3, 2..<5))) == [.send(.prepared(epoch: 3))])
    #expect(stage.handle(.weightsLoaded(layers: 3..<5, acking: nil, failure: nil)).isEmpty)
    #expect(stage.executorLayers == 2..<5)
    // Retiring before the commit keeps the old weights: batches of the old plan may still come.
    #expect(stage.handle(.control(.retire(epoch: 2))).isEmpty)
    #expect(stage.layers?.held == 2..<5)
}

@Test func reportsAFailedLoadAndAnUnknownCommit() {
    var stage = assigned()
    _ = stage.handle(.control(move(2, 1..<4)))
    #expect(sends(stage.handle(.weightsLoaded(layers: 1..<4, acking: 2, failure: "no file")))
            == [.failed(message: "cannot load weights for layers 1-3: no file")])
    #expect(stage.executorLayers == 2..<4)
    #expect(sends(stage.handle(.control(.commit(epoch: 7)))).isEmpty)
    #expect(stage.layers?.range == 2..<4)
}

@Test func ignoresAPrepareOutsideTheModel() {
    var stage = assigned()
    let bad = ControlMessage.prepare(Move(epoch: 2, ranges: [LayerSpan(start: 0, end: 2), LayerSpan(start: 2, end: 9), LayerSpan(start: 9, end: 10)]))
    let actions = stage.handle(.control(bad))
    #expect(actions.count == 1)
    guard case .log(.warning, _)? = actions.first else {
        Issue.record("no warning: \(actions)")
        return
    }
    #expect(stage.layers?.held == 2..<4)
}

@Test func endsOnShutdownOrSignalWithAFinalHeartbeat() {
    var stage = assigned()
    #expect(stage.handle(.control(.shutdown(reason: "done"))).last == .finish(status: 0, finalHeartbeat: true))
    #expect(stage.handle(.stopSignal) == [.finish(status: 0, finalHeartbeat: true)])
    #expect(stage.handle(.control(.connect(endpoint: "ipc://next"))) == [.connect(endpoint: "ipc://next")])
}

@Test func anOldPlansBatchItCannotRunIsSupersededNotMisrouted() {
    var stage = assigned()
    let epoch = stage.layers?.epoch ?? 0
    // Sent under an older plan before a stage process died: the replay that followed sends it again.
    guard case .reject(.superseded, _)? = stage.handle(.batch(sequence: 3, cursor: 1, epoch: epoch - 1)).first else {
        Issue.record("an old-plan copy was not taken for superseded")
        return
    }
    // Of the plan in force, the same cursor is a fault.
    guard case .reject(.misrouted, _)? = stage.handle(.batch(sequence: 3, cursor: 1, epoch: epoch)).first else {
        Issue.record("a batch of the plan in force was not rejected as misrouted")
        return
    }
    #expect(stage.handle(.batch(sequence: 4, cursor: 2, epoch: epoch - 1)) == [.run(2..<4)], "an old-plan batch it can run runs")
}

@Test func narrowsItsOutputWhenToldAndSaysSoOnRejoining() {
    var machine = assigned()
    #expect(machine.handle(.control(.compress(.fp16))).first == .compress(.fp16))
    #expect(machine.handle(.control(.compress(.fp16))).isEmpty, "already so")
    guard case .rejoined(let state)? = sends(machine.handle(.control(.rejoin))).first else {
        Issue.record("no rejoined answer")
        return
    }
    #expect(state.stage?.assignment.compression == .fp16)
}
