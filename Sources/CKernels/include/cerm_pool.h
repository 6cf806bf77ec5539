#ifndef CERM_POOL_H
#define CERM_POOL_H
/*
 * The inference engine's parallel parts: `cerm_pool_run(parts, fn, context)` calls
 * fn(context, p) for p = 0..parts-1, part 0 on the calling thread and the others on helper
 * threads, and returns when all are done.
 *
 * Why not Dispatch's concurrentPerform: a decode step of SmolLM2-135M makes ~240 parallel
 * calls (7 projections and attention in each of 30 layers, and the LM head) of 0.1-0.5 ms each,
 * and a sleeping Dispatch worker takes 30-40 us to wake, so with 2 threads ~10% of a step was
 * spent waiting for the second thread to start. A helper here spins on the run counter for up
 * to CERM_POOL_SPIN_NS after its part (the next projection comes within microseconds) and only
 * then sleeps, as llama.cpp's thread pool does.
 *
 * One run at a time: a call made while another thread's run is in progress runs all its parts
 * itself (results never depend on how parts are spread). Helpers are started on first use, up to
 * parts - 1 (at most CERM_POOL_MAX_HELPERS), and live for the process.
 */
typedef void (*cerm_pool_fn)(void *context, long part);

/* How long an idle helper spins before sleeping, in nanoseconds. */
#define CERM_POOL_SPIN_NS 200000L
#define CERM_POOL_MAX_HELPERS 63

void cerm_pool_run(long parts, cerm_pool_fn fn, void *context);

/* Helper threads started so far (tests). */
long cerm_pool_helpers(void);

#endif
