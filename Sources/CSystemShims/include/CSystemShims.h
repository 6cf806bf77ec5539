#ifndef CERM_CSYSTEMSHIMS_H
#define CERM_CSYSTEMSHIMS_H
/* Process-level calls Swift's Glibc module does not expose (prctl is variadic;
   posix_spawn_file_actions_addclosefrom_np needs _GNU_SOURCE; eventfd is not in it). */
#include <spawn.h>

/* Asks the kernel to send `sig` to this process when its parent dies. Returns 0 on success,
   -1 where unsupported. */
int cerm_set_parent_death_signal(int sig);

/* Adds "close every descriptor >= low" to `actions` (glibc 2.34+), so a child inherits no
   open file (and none of its locks) or socket of the parent. Returns 0, or an errno value
   where unsupported. */
int cerm_spawn_close_from(posix_spawn_file_actions_t *actions, int low);

/* A non-blocking, close-on-exec eventfd (a counter another thread can make readable), or -1
   where there is none. */
int cerm_eventfd_create(void);
#endif
