#ifndef CERM_CZEROMQ_SHIM_H
#define CERM_CZEROMQ_SHIM_H
#include <zmq.h>
#include <errno.h>

/* Function-like or composite macros that Swift cannot import. */
static inline int cerm_zmq_eagain(void) { return EAGAIN; }
static inline int cerm_zmq_eintr(void) { return EINTR; }
static inline int cerm_zmq_eterm(void) { return ETERM; }
static inline int cerm_zmq_ehostunreach(void) { return EHOSTUNREACH; }
#endif
