/* Threads reallocating fast-tier blocks at once must never take the fast tier past its limit.
 *
 * Each thread owns one fast-tier block with a free neighbour above it, so most reallocs grow or shrink
 * in place, and swings it between a small and a large size. The limit admits two large blocks plus the
 * small ones, so threads keep racing for the same room. The allocator records the peak of live fast
 * bytes under its lock at every change; after each round the peak must not exceed the limit. The threads
 * meet at a barrier every PHASE reallocs so that none runs its whole loop alone in one time slice, and
 * once more before they free their blocks.
 *
 * Whether threads really race depends on the scheduler: on a loaded machine each thread may run its
 * phase alone, and then nothing is tested (the limit may even refuse requests, against the idle blocks
 * of the waiting threads). So the test counts what it needs instead of assuming it: reallocs that began
 * while another thread was inside one (relaxed atomics, which give ThreadSanitizer no ordering that
 * could hide a race in the allocator). It runs at least the given rounds, then more rounds (for at most
 * EXTRA_S seconds) until MIN_OVERLAPS such reallocs were seen and the limit refused something; short of
 * that it fails as inconclusive rather than passing; each round draws other sizes. (On one busy core the
 * ThreadSanitizer run, 2 rounds of 4000, saw as few as 5 refusals, and one phase of 2048 reallocs per
 * round saw none in 15 of 15 runs.) Every block must keep its data and the arenas must be consistent at
 * the end.
 *
 * usage: limit_race [threads] [reallocs per thread] [rounds]
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "marl_test_api.h"

#define SMALL (16 * 1024)
#define LARGE (480 * 1024) /* two large blocks fit under the limit, three do not */
#define LIMIT (1u << 20)

static int iterations = 20000;
static pthread_barrier_t phase; /* all threads run every phase together: none can finish alone */
#define PHASE 2048
#define MIN_OVERLAPS 1000 /* reallocs that overlapped another thread's, needed for a conclusive run */
#define EXTRA_S 45.0 /* wall-time cap on rounds beyond the given ones (alarm() stops a hang at 120 s) */

static int round_no; /* each round draws other sizes (set before its threads start) */
static atomic_int inside;    /* threads inside realloc now */
static atomic_long overlaps; /* reallocs that began while another thread was inside one */

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
    uint64_t r = 0x9E3779B97F4A7C15ull * (uint64_t)(me + 1) + 0x2545F4914F6CDD1Dull * (uint64_t)round_no;
    size_t n = SMALL;
    for (int i = 0; i < iterations; i++) {
        if (i % PHASE == 0) pthread_barrier_wait(&phase);
        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        size_t want = (r & 1) ? LARGE - (size_t)(r >> 40) % 4096 : SMALL + (size_t)(r >> 40) % 4096;
        if (atomic_fetch_add_explicit(&inside, 1, memory_order_relaxed) > 0)
            atomic_fetch_add_explicit(&overlaps, 1, memory_order_relaxed);
        unsigned char *q = A(realloc)(p, want);
        atomic_fetch_sub_explicit(&inside, 1, memory_order_relaxed);
        CHECK(q, "realloc to %zu failed", want);
        CHECK(q[0] == (unsigned char)me, "thread %d: block lost its data", me);
        q[want - 1] = (unsigned char)i;
        p = q;
        n = want;
    }
    (void)n;
    pthread_barrier_wait(&phase); /* hold the block until all are done: a thread that ran alone saw the rest */
    A(free)(p);
    A(free)(guard);
    CTL(marl_set_tier)(MARL_TIER_DEFAULT);
    return NULL;
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
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
    marl_tier_stats fast = {0}, slow;
    int rounds = argc > 3 ? atoi(argv[3]) : 5, round = 0;
    double extra_until = 0;
    for (;; round++) {
        if (round == rounds) extra_until = now_s() + EXTRA_S;
        int conclusive = atomic_load(&overlaps) >= MIN_OVERLAPS && fast.overflow_count > 0;
        if (round >= rounds && (conclusive || now_s() > extra_until)) break;
        round_no = round;
        for (int i = 0; i < threads; i++) pthread_create(&th[i], NULL, worker, (void *)(intptr_t)i);
        for (int i = 0; i < threads; i++) pthread_join(th[i], NULL);
        CTL(marl_get_stats)(MARL_TIER_FAST, &fast);
        CHECK(fast.peak_bytes <= LIMIT, "round %d: peak live fast bytes %llu exceed the limit %u (by %llu)", round,
              (unsigned long long)fast.peak_bytes, LIMIT, (unsigned long long)(fast.peak_bytes - LIMIT));
    }
    CTL(marl_get_stats)(MARL_TIER_SLOW, &slow);
    CHECK(CTL(marl_check_heap)(MARL_TIER_FAST) == 0 && CTL(marl_check_heap)(MARL_TIER_SLOW) == 0, "heap");
    CHECK(atomic_load(&overlaps) >= MIN_OVERLAPS && fast.overflow_count > 0,
          "inconclusive after %d rounds: %ld reallocs overlapped another thread's (need %d), the limit refused %llu",
          round, atomic_load(&overlaps), MIN_OVERLAPS, (unsigned long long)fast.overflow_count);
    CHECK(fast.live_bytes == 0 && slow.live_bytes == 0, "blocks leaked");
    printf("ok threads=%d reallocs=%d rounds=%d overlaps=%ld fast_peak=%llu limit=%u overflows=%llu\n", threads,
           iterations, round, atomic_load(&overlaps), (unsigned long long)fast.peak_bytes, LIMIT,
           (unsigned long long)fast.overflow_count);
    return 0;
}
