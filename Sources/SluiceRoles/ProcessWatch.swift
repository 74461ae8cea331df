import CProcess
import Foundation
import SluiceProtocol

/// Sees the processes of roles on this host exit the moment they do, so that a killed stage
/// is recovered from at once rather than after `controller.timeout_s` of silence. Each role's
/// pid comes from its hello; a pidfd for it becomes readable when it exits (even while it
/// waits to be reaped by its parent), so watching costs nothing until then and joins the
/// controller's existing poll. Roles on other hosts, or kernels without pidfds, fall back to
/// the heartbeat timeout.
final class ProcessWatch {
    private var descriptors: [String: (fd: Int32, pid: Int32)] = [:]
    private let host = ProcessInfo.processInfo.hostName

    deinit {
        for entry in descriptors.values { close(entry.fd) }
    }

    /// Watches the process that said `hello` as role `name` (in place of any earlier one).
    func watch(_ name: String, _ hello: Hello) {
        forget(name)
        guard hello.host == host, hello.pid > 0 else { return }
        let fd = sluice_pidfd_open(hello.pid)
        guard fd >= 0 else { return }
        descriptors[name] = (fd, hello.pid)
    }

    /// Kills the process watched as `name` and stops watching it (its exit is no news: the
    /// caller declared it dead already). The pid, or nil where it is not watched here.
    /// Waits (up to a second) until it is gone, so that its sockets are closed before a process
    /// takes its name.
    func kill(_ name: String) -> Int32? {
        guard let entry = descriptors[name] else { return nil }
        defer { forget(name) }
        guard sluice_pidfd_send_signal(entry.fd, SIGKILL) == 0 else { return errno == ESRCH ? entry.pid : nil }
        var exited = pollfd(fd: entry.fd, events: Int16(POLLIN), revents: 0)
        _ = poll(&exited, 1, 1000)
        return entry.pid
    }

    func forget(_ name: String) {
        if let entry = descriptors.removeValue(forKey: name) { close(entry.fd) }
    }

    /// The descriptors to poll, in the order `exited` takes their results.
    var pollDescriptors: [(name: String, fd: Int32)] {
        descriptors.keys.sorted().compactMap { name in descriptors[name].map { (name, $0.fd) } }
    }

    /// The roles whose descriptors polled readable: their processes exited. Each is reported once.
    func exited(_ polled: [(name: String, fd: Int32)], readable: [Bool]) -> [(name: String, pid: Int32)] {
        zip(polled, readable).compactMap { entry, readable in
            guard readable, let watched = descriptors[entry.name], watched.fd == entry.fd else { return nil }
            forget(entry.name)
            return (entry.name, watched.pid)
        }
    }
}
