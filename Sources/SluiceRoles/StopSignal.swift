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
    /// What a managed process receives when its launcher dies.
    static let launcherGone = SIGHUP

    /// Installs the handlers. By hand, SIGINT and SIGTERM ask to stop. A managed process
    /// (started by `sluice run`) ignores both: a terminal's Ctrl-C, or a service manager's
    /// SIGTERM (systemd, Kubernetes), may reach every process of the run, and only the
    /// launcher acts on it, asking its controller for a drain (`drainRequest`), which then stops
    /// the source and shuts every role down in order, losing nothing. A managed process also
    /// stops when its launcher dies (`launcherGone`), so no process is ever left behind.
    public static func install(managed: Bool) {
        // Initialize the atomic now, so the handler never runs its lazy initializer.
        _ = count.load(ordering: .relaxed)
        let handler: @convention(c) (Int32) -> Void = { _ in StopSignal.count.wrappingAdd(1, ordering: .releasing) }
        // A parent may have started us with these blocked (the mask survives exec).
        var unblock = sigset_t()
        sigemptyset(&unblock)
        for wanted in [SIGINT, SIGTERM, drainRequest, launcherGone] { sigaddset(&unblock, wanted) }
        pthread_sigmask(SIG_UNBLOCK, &unblock, nil)
        if managed {
            signal(SIGINT, SIG_IGN)
            signal(SIGTERM, SIG_IGN)
            signal(drainRequest, handler)
            signal(launcherGone, handler)
            _ = sluice_signal_when_parent_dies(launcherGone)
            if getppid() == 1 { exit(1) }  // the launcher died before we could ask to follow it
        } else {
            signal(SIGINT, handler)
            signal(SIGTERM, handler)
        }
        signal(SIGPIPE, SIG_IGN)
    }
}
