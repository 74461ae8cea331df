import Logging
import SluiceProtocol

/// Counts what a role drops and logs it with its reason. A flood of bad input (a fuzzer, a broken
/// sensor) must not flood the log too: per reason, at most `burst` lines per `period` seconds,
/// then one line saying how many more were dropped unlogged.
final class DropLog {
    private(set) var counts = DropCounts()
    private let logger: Logger
    private let burst: Int
    private let period: Double
    private var windows: [DropReason: (start: Double, logged: Int, unlogged: Int)] = [:]

    init(logger: Logger, burst: Int = 5, period: Double = 10) {
        self.logger = logger
        self.burst = burst
        self.period = period
    }

    /// Counts `what` (count per unit) as dropped for `reason`; `detail` says which and why.
    func drop(_ what: [(count: Int, unit: DropUnit)], _ reason: DropReason, _ detail: @autoclosure () -> String) {
        for part in what { counts.add(part.count, part.unit, reason) }
        let now = monotonicSeconds()
        var window = windows[reason] ?? (now, 0, 0)
        if now - window.start >= period {
            if window.unlogged > 0 { note(reason, unlogged: window.unlogged) }
            window = (now, 0, 0)
        }
        if window.logged < burst {
            window.logged += 1
            let amounts = what.filter { $0.count > 0 }.map { $0.unit.counted($0.count) }
            logger.warning("dropped \(amounts.joined(separator: ", ")) (\(reason.rawValue)): \(detail())")
        } else {
            window.unlogged += 1
        }
        windows[reason] = window
    }

    /// Logs what the rate limit held back; call before the role exits.
    func flush() {
        for (reason, window) in windows where window.unlogged > 0 {
            note(reason, unlogged: window.unlogged)
            windows[reason] = (window.start, window.logged, 0)
        }
    }

    private func note(_ reason: DropReason, unlogged: Int) {
        logger.warning("dropped \(unlogged) more (\(reason.rawValue)) without logging each; totals so far: \(counts.summary)")
    }
}
