import Foundation
import Testing
@testable import SluiceRoles

/// The stop-signal counter is bumped inside a signal handler, which can interrupt a read of the
/// counter on the very same thread. A plain Swift variable there trips the exclusivity check
/// ("simultaneous accesses") and kills the process; the counter must be an atomic.
@Suite struct StopSignalTests {
    @Test func signalsLandingInTheMiddleOfReadsAreCountedWithoutATrap() throws {
        StopSignal.install(.byHand)
        let before = StopSignal.received
        let target = pthread_self()
        let sent = 20_000
        final class Flag: @unchecked Sendable {
            private let lock = NSLock()
            private var value = false
            var isSet: Bool { lock.withLock { value } }
            func set() { lock.withLock { value = true } }
        }
        let done = Flag()
        Thread.detachNewThread {
            for _ in 0..<sent { pthread_kill(target, SIGTERM) }
            done.set()
        }
        var reads = 0
        while !done.isSet {
            for _ in 0..<1000 { reads &+= Int(StopSignal.received & 1) }
        }
        // Pending signals of one kind merge, so fewer may be counted than sent, but some are.
        let counted = Int(StopSignal.received - before)
        #expect(counted > 0 && counted <= sent, "\(counted) of \(sent), \(reads)")
    }
}
