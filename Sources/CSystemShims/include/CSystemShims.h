#ifndef CERM_CSYSTEMSHIMS_H
#define CERM_CSYSTEMSHIMS_H
/* Process-level calls Swift's Glibc module does not expose (prctl is variadic). */

/* Asks the kernel to send `sig` to this process when its parent dies. Returns 0 on success,
   -1 where unsupported. */
int cerm_set_parent_death_signal(int sig);
#endif
