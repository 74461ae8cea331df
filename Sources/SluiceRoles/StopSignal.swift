import CProcess
import Foundation
import Synchronization

/// Counts SIGINT/SIGTERM deliveries; loops poll it between waits of at most ~50 ms.
public enum StopSignal {
    /// Bumped from the signal handler, which may interrupt a read of it on the same thread or
    /// run beside one on another: a lock-free atomic is all a handler may touch (a plain static
    /// var goes through Swift's exclusivity checks and lazy initialization, neither safe there).
    static let count = Atomic<Int32>(0)

    public static var received: Int32 { count.load(ordering: .acquiring) }

    /// Installs the handlers. Managed roles (started by `sluice run`) ignore SIGINT: a terminal's
    /// Ctrl-C reaches the whole process group, and the launcher drains the pipeline in order
    /// instead. They also end with their launcher, so no process is ever left behind.
    public static func install(managed: Bool) {
        // Initialize the atomic now, so the handler never runs its lazy initializer.
        _ = count.load(ordering: .relaxed)
        let handler: @convention(c) (Int32) -> Void = { _ in StopSignal.count.wrappingAdd(1, ordering: .releasing) }
        // A parent may have started us with these blocked (the mask survives exec).
        var unblock = sigset_t()
        sigemptyset(&unblock)
        sigaddset(&unblock, SIGINT)
        sigaddset(&unblock, SIGTERM)
        pthread_sigmask(SIG_UNBLOCK, &unblock, nil)
        signal(SIGTERM, handler)
        if managed {
            signal(SIGINT, SIG_IGN)
            _ = sluice_terminate_with_parent()
            if getppid() == 1 { exit(1) }  // the launcher died before we could ask to follow it
        } else {
            signal(SIGINT, handler)
        }
        signal(SIGPIPE, SIG_IGN)
    }
}
