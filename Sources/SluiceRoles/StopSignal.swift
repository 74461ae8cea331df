import CProcess
import Foundation
import Synchronization

/// Counts requests to stop, as signals deliver them; loops poll it between waits of at most ~50 ms.
public enum StopSignal {
    /// Bumped from the signal handler, which may interrupt a read of it on the same thread or
    /// run beside one on another: a lock-free atomic is all a handler may touch (a plain static
    /// var goes through Swift's exclusivity checks and lazy initialization, neither safe there).
    static let count = Atomic<Int32>(0)

    public static var received: Int32 { count.load(ordering: .acquiring) }

    /// What the launcher sends the controller it manages to ask for a drain (twice: stop at once).
    public static let drainRequest = SIGUSR1
    /// What a managed controller receives when its launcher dies.
    static let launcherGone = SIGHUP
    static let launcherGoneCount = Atomic<Int32>(0)

    /// Whether this process's launcher died (managed controllers only).
    public static var launcherDied: Bool { launcherGoneCount.load(ordering: .acquiring) > 0 }

    /// Who handles which signal.
    public enum Mode {
        /// Started by hand: SIGINT and SIGTERM ask to stop.
        case byHand
        /// A role under `sluice run`: it stops when its controller says so, and only then.
        case managedRole
        /// The controller under `sluice run` (the launcher's process id): it drains when its
        /// launcher asks (`drainRequest`) or dies (`launcherGone`), and then shuts the roles
        /// down in order.
        case managedController(launcher: pid_t)
    }

    /// Installs the handlers. A managed process ignores SIGINT and SIGTERM: a terminal's Ctrl-C,
    /// or a service manager's SIGTERM (systemd, Kubernetes), may reach every process of the run
    /// at once, and only the launcher acts on it, asking its controller for a drain, which stops
    /// the source and shuts every role down in order, losing nothing. When the launcher dies,
    /// its controller drains the run the same way; a role whose controller is gone too leaves
    /// after the controller's liveness timeout, so no process is left behind for long.
    public static func install(_ mode: Mode) {
        // Initialize the atomics now, so a handler never runs their lazy initializers.
        _ = count.load(ordering: .relaxed)
        _ = launcherGoneCount.load(ordering: .relaxed)
        let stop: @convention(c) (Int32) -> Void = { _ in StopSignal.count.wrappingAdd(1, ordering: .releasing) }
        // The kernel sends the parent-death signal again each time the process is handed to
        // another thread of its dying launcher, then to init: one drain request, however many.
        let orphaned: @convention(c) (Int32) -> Void = { _ in
            if StopSignal.launcherGoneCount.wrappingAdd(1, ordering: .acquiringAndReleasing).oldValue == 0 {
                StopSignal.count.wrappingAdd(1, ordering: .releasing)
            }
        }
        // A parent may have started us with these blocked (the mask survives exec).
        var unblock = sigset_t()
        sigemptyset(&unblock)
        for wanted in [SIGINT, SIGTERM, drainRequest, launcherGone] { sigaddset(&unblock, wanted) }
        pthread_sigmask(SIG_UNBLOCK, &unblock, nil)
        switch mode {
        case .byHand:
            signal(SIGINT, stop)
            signal(SIGTERM, stop)
        case .managedRole:
            signal(SIGINT, SIG_IGN)
            signal(SIGTERM, SIG_IGN)
        case .managedController(let launcher):
            signal(SIGINT, SIG_IGN)
            signal(SIGTERM, SIG_IGN)
            signal(drainRequest, stop)
            signal(launcherGone, orphaned)
            _ = sluice_signal_when_parent_dies(launcherGone)
            // The launcher died before we could ask to hear of it.
            if getppid() != launcher { orphaned(launcherGone) }
        }
        signal(SIGPIPE, SIG_IGN)
    }
}
