/* The inference engine's parallel parts: see include/cerm_pool.h. */
#include "cerm_pool.h"
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>

static inline void cerm_pool_relax(void) {
#if defined(__x86_64__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static inline long cerm_pool_now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long)t.tv_sec * 1000000000L + t.tv_nsec;
}

static struct {
    pthread_mutex_t run_lock;     /* one run at a time; also guards starting helpers */
    pthread_mutex_t sleep_lock;
    pthread_cond_t wake;
    long helpers;                 /* started; helper h runs part h + 1 */
    /* A run: published by incrementing `generation`; every helper acknowledges it by
       decrementing `unacknowledged` after its part (or at once when it has none), so a
       run's fields are never overwritten while a helper may still read them. */
    cerm_pool_fn fn;
    void *context;
    long parts;
    atomic_ulong generation;
    atomic_long unacknowledged;
    atomic_long sleepers;
    /* The generation when helper h was started (before its first run was published). */
    unsigned long started_at[CERM_POOL_MAX_HELPERS + 1];
} pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER};

static void *cerm_pool_helper(void *argument) {
    const long part = (long)argument;
    unsigned long seen = pool.started_at[part];
    for (;;) {
        unsigned long now = atomic_load(&pool.generation);
        if (now == seen) {
            const long deadline = cerm_pool_now_ns() + CERM_POOL_SPIN_NS;
            long spins = 0;
            while ((now = atomic_load(&pool.generation)) == seen) {
                cerm_pool_relax();
                if (++spins % 256 != 0) continue;
                /* More threads than free cores: let the thread with work run. */
                sched_yield();
                if (cerm_pool_now_ns() < deadline) continue;
                pthread_mutex_lock(&pool.sleep_lock);
                atomic_fetch_add(&pool.sleepers, 1);
                while ((now = atomic_load(&pool.generation)) == seen) pthread_cond_wait(&pool.wake, &pool.sleep_lock);
                atomic_fetch_sub(&pool.sleepers, 1);
                pthread_mutex_unlock(&pool.sleep_lock);
            }
        }
        seen = now;
        if (part < pool.parts) pool.fn(pool.context, part);
        atomic_fetch_sub(&pool.unacknowledged, 1);
    }
    return NULL;
}

long cerm_pool_helpers(void) {
    pthread_mutex_lock(&pool.run_lock);
    long helpers = pool.helpers;
    pthread_mutex_unlock(&pool.run_lock);
    return helpers;
}

void cerm_pool_run(long parts, cerm_pool_fn fn, void *context) {
    if (parts <= 1 || pthread_mutex_trylock(&pool.run_lock) != 0) {
        for (long p = 0; p < parts; p++) fn(context, p);
        return;
    }
    while (pool.helpers < parts - 1 && pool.helpers < CERM_POOL_MAX_HELPERS) {
        pthread_t thread;
        pthread_attr_t attributes;
        pthread_attr_init(&attributes);
        pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
        pool.started_at[pool.helpers + 1] = atomic_load(&pool.generation);
        int failed = pthread_create(&thread, &attributes, cerm_pool_helper, (void *)(pool.helpers + 1));
        pthread_attr_destroy(&attributes);
        if (failed) break;
        pool.helpers += 1;
    }
    pool.fn = fn;
    pool.context = context;
    pool.parts = parts;
    atomic_store(&pool.unacknowledged, pool.helpers);
    atomic_fetch_add(&pool.generation, 1);
    if (atomic_load(&pool.sleepers) > 0) {
        pthread_mutex_lock(&pool.sleep_lock);
        pthread_cond_broadcast(&pool.wake);
        pthread_mutex_unlock(&pool.sleep_lock);
    }
    fn(context, 0);
    /* Parts beyond the helpers (a helper could not be started) run here. */
    for (long p = pool.helpers + 1; p < parts; p++) fn(context, p);
    long spins = 0;
    while (atomic_load(&pool.unacknowledged) > 0) {
        cerm_pool_relax();
        if (++spins % 4096 == 0) sched_yield();
    }
    pthread_mutex_unlock(&pool.run_lock);
}
