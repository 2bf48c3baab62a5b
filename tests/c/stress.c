/* Stress test of the tiering allocator: several threads allocate, reallocate and free blocks of random
 * sizes around the threshold in random tiers (through every entry point), write a pattern into each
 * block and check it before every realloc and free; some blocks are freed by another thread. The fast
 * tier has a small limit so that overflow happens. At the end every tier must be empty again, the
 * counters must balance and the arenas must be consistent.
 *
 * usage: stress [threads] [iterations per thread] [seed]
 */
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "marl_test_api.h"

#define SLOTS 192
#define THRESHOLD 4096
#define FAST_LIMIT (3u << 20)

typedef struct {
    unsigned char *p;
    size_t n;
    uint32_t id;
    int tier; /* tier the thread had when the block was made (for the tier_of check) */
} slot_t;

static pthread_mutex_t mail_lock = PTHREAD_MUTEX_INITIALIZER;
static slot_t mailbox[64];
static int mail_count;
static int iterations = 4000;
static uint64_t seed0 = 1;

static uint64_t next_rand(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static unsigned char pat(uint32_t id, size_t i) { return (unsigned char)(id * 131u + i * 7u + (i >> 8)); }

static void fill(slot_t *s) {
    if (s->n <= 65536) {
        for (size_t i = 0; i < s->n; i++) s->p[i] = pat(s->id, i);
    } else { /* large: the first and last 4 KiB and one byte per 4 KiB in between */
        for (size_t i = 0; i < 4096; i++) s->p[i] = pat(s->id, i);
        for (size_t i = s->n - 4096; i < s->n; i++) s->p[i] = pat(s->id, i);
        for (size_t i = 4096; i < s->n - 4096; i += 4096) s->p[i] = pat(s->id, i);
    }
}

static void verify(const slot_t *s, size_t upto, const char *when) {
    size_t n = upto < s->n ? upto : s->n;
    if (s->n <= 65536) {
        for (size_t i = 0; i < n; i++)
            CHECK(s->p[i] == pat(s->id, i), "%s: block %u byte %zu of %zu corrupted", when, s->id, i, s->n);
    } else {
        for (size_t i = 0; i < 4096 && i < n; i++)
            CHECK(s->p[i] == pat(s->id, i), "%s: block %u byte %zu corrupted", when, s->id, i);
        for (size_t i = 4096; i + 4096 < s->n && i < n; i += 4096)
            CHECK(s->p[i] == pat(s->id, i), "%s: block %u byte %zu corrupted", when, s->id, i);
        if (n == s->n)
            for (size_t i = s->n - 4096; i < s->n; i++)
                CHECK(s->p[i] == pat(s->id, i), "%s: block %u byte %zu corrupted", when, s->id, i);
    }
}

static size_t pick_size(uint64_t *r) {
    uint64_t k = next_rand(r) % 100;
    if (k < 60) return THRESHOLD / 2 + next_rand(r) % (2 * THRESHOLD); /* around the threshold */
    if (k < 80) return 1 + next_rand(r) % 512;                         /* small */
    if (k < 97) return THRESHOLD + next_rand(r) % (128 * 1024);        /* medium */
    return 256 * 1024 + next_rand(r) % (2 * 1024 * 1024);              /* large */
}

static void check_tier(const slot_t *s) {
    int t = CTL(marl_tier_of)(s->p);
    if (s->tier == MARL_TIER_DEFAULT || s->n < THRESHOLD)
        CHECK(t == MARL_TIER_SYSTEM, "block of %zu B made in tier %d is in tier %d", s->n, s->tier, t);
    else if (s->tier == MARL_TIER_SLOW)
        CHECK(t == MARL_TIER_SLOW, "slow block of %zu B is in tier %d", s->n, t);
    else
        CHECK(t == MARL_TIER_FAST || t == MARL_TIER_SLOW, "fast block of %zu B is in tier %d", s->n, t);
    if (t != MARL_TIER_SYSTEM)
        CHECK(CTL(marl_block_size)(s->p) >= s->n, "block_size %zu < %zu", CTL(marl_block_size)(s->p), s->n);
    CHECK(A(malloc_usable_size)(s->p) >= s->n, "usable size %zu < %zu", A(malloc_usable_size)(s->p), s->n);
}

static void make(slot_t *s, uint64_t *r, uint32_t id) {
    s->n = pick_size(r);
    s->id = id;
    size_t align = (size_t)1 << (3 + next_rand(r) % 10); /* 8 .. 4096 */
    switch (next_rand(r) % 7) {
    case 0:
    case 1:
        s->p = A(malloc)(s->n);
        break;
    case 2: {
        size_t each = 1 + next_rand(r) % 8;
        s->n = (s->n + each - 1) / each * each;
        s->p = A(calloc)(s->n / each, each);
        CHECK(s->p, "calloc failed");
        for (size_t i = 0; i < s->n; i += (s->n > 65536 ? 512 : 1))
            CHECK(s->p[i] == 0, "calloc of %zu B not zero at %zu (tier %d)", s->n, i, CTL(marl_tier_of)(s->p));
        break;
    }
    case 3: {
        void *p = NULL;
        CHECK(A(posix_memalign)(&p, align, s->n) == 0, "posix_memalign failed");
        s->p = p;
        break;
    }
    case 4:
        s->n = (s->n + align - 1) / align * align;
        s->p = A(aligned_alloc)(align, s->n);
        break;
    case 5:
        s->p = A(memalign)(align, s->n);
        break;
    default:
        align = (size_t)sysconf(_SC_PAGESIZE);
        s->p = A(valloc)(s->n);
        break;
    }
    CHECK(s->p, "allocation of %zu B failed", s->n);
    if (s->p && ((uintptr_t)s->p % 16 == 0)) {
    } else {
        FAIL("pointer %p not 16-byte aligned", (void *)s->p);
    }
    fill(s);
}

static void *worker(void *arg) {
    int me = (int)(intptr_t)arg;
    uint64_t r = seed0 * 0x9E3779B97F4A7C15ull + (uint64_t)me * 7919u + 1;
    slot_t slots[SLOTS];
    memset(slots, 0, sizeof slots);
    uint32_t id = (uint32_t)me << 24;
    for (int it = 0; it < iterations; it++) {
        int tier = (int)(next_rand(&r) % 3); /* default, fast, slow */
        CTL(marl_set_tier)(tier);
        slot_t *s = &slots[next_rand(&r) % SLOTS];
        uint64_t op = next_rand(&r) % 10;
        if (!s->p) {
            make(s, &r, ++id);
            s->tier = tier;
            check_tier(s);
        } else if (op < 3) { /* realloc, possibly into another tier */
            verify(s, s->n, "before realloc");
            size_t n2 = pick_size(&r);
            unsigned char *q = (next_rand(&r) & 1) ? A(realloc)(s->p, n2) : A(reallocarray)(s->p, 1, n2);
            CHECK(q, "realloc to %zu failed", n2);
            s->p = q;
            verify(s, n2, "after realloc"); /* the common prefix moved intact */
            s->n = n2;
            s->tier = tier;
            fill(s);
            check_tier(s);
        } else if (op < 4) { /* hand it to another thread to free */
            verify(s, s->n, "before hand-off");
            pthread_mutex_lock(&mail_lock);
            if (mail_count < 64) {
                mailbox[mail_count++] = *s;
                s->p = NULL;
            }
            pthread_mutex_unlock(&mail_lock);
        } else if (op < 5) { /* free something another thread made */
            slot_t other = {0};
            pthread_mutex_lock(&mail_lock);
            if (mail_count) other = mailbox[--mail_count];
            pthread_mutex_unlock(&mail_lock);
            if (other.p) {
                verify(&other, other.n, "cross-thread free");
                A(free)(other.p);
            }
        } else {
            verify(s, s->n, "before free");
            A(free)(s->p);
            s->p = NULL;
        }
        if (me == 0 && it % 500 == 0) {
            CHECK(CTL(marl_check_heap)(MARL_TIER_FAST) == 0, "fast arena inconsistent");
            CHECK(CTL(marl_check_heap)(MARL_TIER_SLOW) == 0, "slow arena inconsistent");
        }
    }
    for (int i = 0; i < SLOTS; i++)
        if (slots[i].p) {
            verify(&slots[i], slots[i].n, "final free");
            A(free)(slots[i].p);
        }
    CTL(marl_set_tier)(MARL_TIER_DEFAULT);
    return NULL;
}

int main(int argc, char **argv) {
    api_init();
    alarm(120);
    int threads = argc > 1 ? atoi(argv[1]) : 4;
    if (argc > 2) iterations = atoi(argv[2]);
    if (argc > 3) seed0 = strtoull(argv[3], NULL, 10);
    CTL(marl_set_threshold)(THRESHOLD);
    CTL(marl_set_fast_limit)(FAST_LIMIT);
    CTL(marl_reset_stats)();
    marl_tier_stats before[3];
    CTL(marl_get_stats)(MARL_TIER_FAST, &before[1]);
    CTL(marl_get_stats)(MARL_TIER_SLOW, &before[2]);

    pthread_t th[64];
    if (threads > 64) threads = 64;
    for (int i = 0; i < threads; i++) pthread_create(&th[i], NULL, worker, (void *)(intptr_t)i);
    for (int i = 0; i < threads; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < mail_count; i++) A(free)(mailbox[i].p);

    marl_tier_stats st[3];
    CTL(marl_get_stats)(MARL_TIER_FAST, &st[1]);
    CTL(marl_get_stats)(MARL_TIER_SLOW, &st[2]);
    for (int t = 1; t <= 2; t++) {
        CHECK(CTL(marl_check_heap)(t) == 0, "tier %d inconsistent at the end", t);
        CHECK(st[t].live_bytes == before[t].live_bytes, "tier %d leaks %llu bytes", t,
              (unsigned long long)(st[t].live_bytes - before[t].live_bytes));
        CHECK(st[t].alloc_count == st[t].free_count, "tier %d: %llu allocs but %llu frees", t,
              (unsigned long long)st[t].alloc_count, (unsigned long long)st[t].free_count);
        CHECK(st[t].alloc_count > 0, "tier %d was never used", t);
        CHECK(st[t].fallback_count == 0, "tier %d fell back %llu times", t, (unsigned long long)st[t].fallback_count);
    }
    CHECK(st[1].peak_bytes <= FAST_LIMIT, "fast peak %llu over the limit", (unsigned long long)st[1].peak_bytes);
    CHECK(st[1].overflow_count > 0, "the fast limit never overflowed");
    CTL(marl_trim)();
    printf("ok threads=%d iterations=%d fast_allocs=%llu slow_allocs=%llu overflows=%llu fast_peak=%llu\n", threads,
           iterations, (unsigned long long)st[1].alloc_count, (unsigned long long)st[2].alloc_count,
           (unsigned long long)st[1].overflow_count, (unsigned long long)st[1].peak_bytes);
    return 0;
}
