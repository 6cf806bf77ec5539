#include "CSystemShims.h"
#ifdef __linux__
#include <sys/prctl.h>
int cerm_set_parent_death_signal(int sig) { return prctl(PR_SET_PDEATHSIG, (unsigned long)sig, 0, 0, 0); }
#else
int cerm_set_parent_death_signal(int sig) { (void)sig; return -1; }
#endif
