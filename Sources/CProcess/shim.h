#include <malloc.h>
#include <signal.h>
#include <sys/prctl.h>

// prctl is variadic, which Swift cannot call directly.
static inline int sluice_signal_when_parent_dies(int signal) { return prctl(PR_SET_PDEATHSIG, signal); }

// Returns freed heap pages to the system, so resident memory reflects what is still held.
static inline void sluice_release_free_memory(void) { malloc_trim(0); }

#include <sys/syscall.h>
#include <unistd.h>
#include <errno.h>

// A descriptor that becomes readable when process `pid` exits (Linux 5.3+); -1 where the
// kernel has none. syscall is variadic, which Swift cannot call directly.
static inline int sluice_pidfd_open(int pid) {
#ifdef SYS_pidfd_open
    return (int)syscall(SYS_pidfd_open, pid, 0);
#else
    errno = ENOSYS;
    return -1;
#endif
}

// Sends `signal` to the process a pidfd refers to: unlike kill(pid), never to a process that
// took the pid over after it exited.
static inline int sluice_pidfd_send_signal(int fd, int signal) {
#ifdef SYS_pidfd_send_signal
    return (int)syscall(SYS_pidfd_send_signal, fd, signal, NULL, 0);
#else
    errno = ENOSYS;
    return -1;
#endif
}
