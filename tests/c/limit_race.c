/* Threads reallocating fast-tier blocks at once must never take the fast tier past its limit.
 *
 * Each thread owns one fast-tier block with a free neighbour above it, so most reallocs grow or shrink
 * in place, and swings it between a small and a large size. The limit admits two large blocks plus the
 * small ones, so threads keep racing for the same room. The allocator records the peak of live fast
 * bytes under its lock at every change; after each of several rounds (a race is a matter of chance) the
 * peak must not exceed the limit. The threads meet at a barrier every PHASE reallocs so that none runs
 * its whole loop alone in one time slice. The limit must have refused something, so that a quiet scheduler
 * cannot make the test pass without racing; every block must keep its data and the arenas must be
 * consistent at the end.
 *
 * usage: limit_race [threads] [reallocs per thread] [rounds]
 */
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "marl_test_api.h"

#define SMALL (16 * 1024)
#define LARGE (480 * 1024) /* two large blocks fit under the limit, three do not */
#define LIMIT (1u << 20)

static int iterations = 20000;
static pthread_barrier_t phase; /* all threads run every phase together: none can finish alone */
#define PHASE 2048

static void *worker(void *arg) {
    int me = (int)(intptr_t)arg;
    CTL(marl_set_tier)(MARL_TIER_FAST);
    /* the block, then room to grow into (freed), then a guard so the room stays a free neighbour */
    unsigned char *p = A(malloc)(SMALL);
    void *room = A(malloc)(LARGE);
    void *guard = A(malloc)(4096);
    CHECK(p && room && guard, "setup allocation failed");
    A(free)(room);
    p[0] = (unsigned char)me;
    uint64_t r = 0x9E3779B97F4A7C15ull * (uint64_t)(me + 1);
    size_t n = SMALL;
    for (int i = 0; i < iterations; i++) {
        if (i % PHASE == 0) pthread_barrier_wait(&phase);
        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        size_t want = (r & 1) ? LARGE - (size_t)(r >> 40) % 4096 : SMALL + (size_t)(r >> 40) % 4096;
        unsigned char *q = A(realloc)(p, want);
        CHECK(q, "realloc to %zu failed", want);
        CHECK(q[0] == (unsigned char)me, "thread %d: block lost its data", me);
        q[want - 1] = (unsigned char)i;
        p = q;
        n = want;
    }
    (void)n;
    A(free)(p);
    A(free)(guard);
    CTL(marl_set_tier)(MARL_TIER_DEFAULT);
    return NULL;
}

int main(int argc, char **argv) {
    api_init();
    alarm(120);
    int threads = argc > 1 ? atoi(argv[1]) : 4;
    if (threads < 2 || threads > 32) threads = 4;
    if (argc > 2) iterations = atoi(argv[2]);
    CTL(marl_set_threshold)(4096);
    CTL(marl_set_fast_limit)(LIMIT);
    CTL(marl_reset_stats)();
    pthread_barrier_init(&phase, NULL, (unsigned)threads);
    pthread_t th[32];
    marl_tier_stats fast, slow;
    int rounds = argc > 3 ? atoi(argv[3]) : 5;
    for (int round = 0; round < rounds; round++) {
        for (int i = 0; i < threads; i++) pthread_create(&th[i], NULL, worker, (void *)(intptr_t)i);
        for (int i = 0; i < threads; i++) pthread_join(th[i], NULL);
        CTL(marl_get_stats)(MARL_TIER_FAST, &fast);
        CHECK(fast.peak_bytes <= LIMIT, "round %d: peak live fast bytes %llu exceed the limit %u (by %llu)", round,
              (unsigned long long)fast.peak_bytes, LIMIT, (unsigned long long)(fast.peak_bytes - LIMIT));
    }
    CTL(marl_get_stats)(MARL_TIER_SLOW, &slow);
    CHECK(CTL(marl_check_heap)(MARL_TIER_FAST) == 0 && CTL(marl_check_heap)(MARL_TIER_SLOW) == 0, "heap");
    CHECK(fast.overflow_count > 0, "the limit never refused anything: the test did not race for room");
    CHECK(fast.live_bytes == 0 && slow.live_bytes == 0, "blocks leaked");
    printf("ok threads=%d reallocs=%d rounds=%d fast_peak=%llu limit=%u overflows=%llu\n", threads, iterations, rounds,
           (unsigned long long)fast.peak_bytes, LIMIT, (unsigned long long)fast.overflow_count);
    return 0;
}
