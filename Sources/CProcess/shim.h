#include <malloc.h>
#include <signal.h>
#include <sys/prctl.h>

// prctl is variadic, which Swift cannot call directly.
static inline int sluice_terminate_with_parent(void) { return prctl(PR_SET_PDEATHSIG, SIGTERM); }

// Returns freed heap pages to the system, so resident memory reflects what is still held.
static inline void sluice_release_free_memory(void) { malloc_trim(0); }
