#include <malloc.h>
#include <signal.h>
#include <sys/prctl.h>

// prctl is variadic, which Swift cannot call directly.
static inline int sluice_signal_when_parent_dies(int signal) { return prctl(PR_SET_PDEATHSIG, signal); }

// Returns freed heap pages to the system, so resident memory reflects what is still held.
static inline void sluice_release_free_memory(void) { malloc_trim(0); }
