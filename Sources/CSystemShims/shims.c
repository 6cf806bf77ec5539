#define _GNU_SOURCE
#include "CSystemShims.h"
#ifdef __linux__
#include <sys/prctl.h>
int cerm_set_parent_death_signal(int sig) { return prctl(PR_SET_PDEATHSIG, (unsigned long)sig, 0, 0, 0); }
#else
int cerm_set_parent_death_signal(int sig) { (void)sig; return -1; }
#endif

#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
int cerm_spawn_close_from(posix_spawn_file_actions_t *actions, int low) {
    return posix_spawn_file_actions_addclosefrom_np(actions, low);
}
#else
#include <errno.h>
int cerm_spawn_close_from(posix_spawn_file_actions_t *actions, int low) { (void)actions; (void)low; return ENOSYS; }
#endif

#ifdef __linux__
#include <sys/eventfd.h>
int cerm_eventfd_create(void) { return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC); }
#else
int cerm_eventfd_create(void) { return -1; }
#endif
