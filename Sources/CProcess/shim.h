#include <signal.h>
#include <sys/prctl.h>

// prctl is variadic, which Swift cannot call directly.
static inline int sluice_terminate_with_parent(void) { return prctl(PR_SET_PDEATHSIG, SIGTERM); }
