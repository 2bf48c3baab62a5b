/* Edge cases of the tiering allocator's arithmetic and accounting, single-threaded and deterministic.
 * Built twice by tests/test_allocator_c.py: against the prefixed allocator under AddressSanitizer and
 * UndefinedBehaviorSanitizer, and as a plain program run under the real LD_PRELOAD.
 *
 *   huge        requests near SIZE_MAX (malloc, calloc, realloc, reallocarray, the aligned family) in
 *               both tiers fail with NULL/ENOMEM (EINVAL or ENOMEM for posix_memalign) and leave every
 *               block and counter as it was; realloc in particular must not wrap its size round-up
 *   tail        a free block that fits a request but leaves an unsplittable tail must not take the fast
 *               tier past its limit, neither on malloc nor on realloc growing into a free neighbour
 *   pass        the pass-through tests in front of calloc, realloc and the aligned family (a size below
 *               the threshold and a block that is not a tier's go straight to the system allocator) decide
 *               as the full routing does: a calloc product that wraps below or above the threshold, realloc
 *               of NULL, to 0, of a tier block to a small size, bad alignments on both sides of it
 *
 * usage: edges huge|tail|pass  prints "ok ..." and exits 0, or prints FAIL and aborts
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "marl_test_api.h"

static marl_tier_stats stats_of(int tier) {
    marl_tier_stats s;
    CHECK(CTL(marl_get_stats)(tier, &s) == 0, "get_stats(%d) failed", tier);
    return s;
}

static void fill(unsigned char *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(seed + i * 13u);
}

static void expect_intact(const unsigned char *p, size_t n, unsigned seed, const char *when) {
    for (size_t i = 0; i < n; i++)
        CHECK(p[i] == (unsigned char)(seed + i * 13u), "%s: byte %zu of the block changed", when, i);
}

static const size_t huge_sizes[] = {
    SIZE_MAX,          SIZE_MAX - 1,     SIZE_MAX - 63,    SIZE_MAX - 64,       SIZE_MAX - 127,
    SIZE_MAX - 128,    SIZE_MAX - 4095,  SIZE_MAX / 2 + 1, (size_t)PTRDIFF_MAX, (size_t)PTRDIFF_MAX - 64,
    (size_t)1 << 62,
};
#define NHUGE (sizeof huge_sizes / sizeof huge_sizes[0])

static void huge_in_tier(int tier) {
    CTL(marl_set_tier)(tier);
    const size_t n0 = 100000;
    unsigned char *p = A(malloc)(n0);
    CHECK(p && CTL(marl_tier_of)(p) == tier, "setup block not in tier %d", tier);
    fill(p, n0, 7);
    size_t block = CTL(marl_block_size)(p);
    marl_tier_stats before = stats_of(tier);
    for (size_t i = 0; i < NHUGE; i++) {
        size_t n = huge_sizes[i];
        errno = 0;
        void *q = A(realloc)(p, n);
        CHECK(q == NULL, "tier %d: realloc(p, %zu) returned %p, not NULL", tier, n, q);
        CHECK(errno == ENOMEM, "tier %d: realloc(p, %zu): errno %d, not ENOMEM", tier, n, errno);
        CHECK(CTL(marl_block_size)(p) == block, "tier %d: realloc(p, %zu) changed the block size %zu -> %zu", tier,
              n, block, CTL(marl_block_size)(p));
        expect_intact(p, n0, 7, "after a refused realloc");
        errno = 0;
        q = A(reallocarray)(p, 1, n);
        CHECK(q == NULL && errno == ENOMEM, "tier %d: reallocarray(p, 1, %zu) = %p errno %d", tier, n, q, errno);
        errno = 0;
        q = A(malloc)(n);
        CHECK(q == NULL && errno == ENOMEM, "tier %d: malloc(%zu) = %p errno %d", tier, n, q, errno);
        errno = 0;
        q = A(calloc)(1, n);
        CHECK(q == NULL && errno == ENOMEM, "tier %d: calloc(1, %zu) = %p errno %d", tier, n, q, errno);
        errno = 0;
        q = A(memalign)(4096, n);
        CHECK(q == NULL && errno == ENOMEM, "tier %d: memalign(4096, %zu) = %p errno %d", tier, n, q, errno);
        errno = 0;
        q = A(aligned_alloc)(256, n);
        CHECK(q == NULL, "tier %d: aligned_alloc(256, %zu) = %p", tier, n, q);
        errno = 0;
        q = A(valloc)(n);
        CHECK(q == NULL && errno == ENOMEM, "tier %d: valloc(%zu) = %p errno %d", tier, n, q, errno);
        q = A(pvalloc)(n);
        CHECK(q == NULL, "tier %d: pvalloc(%zu) = %p", tier, n, q);
        void *r = (void *)1;
        int rc = A(posix_memalign)(&r, 128, n);
        CHECK(rc == ENOMEM && r == (void *)1, "tier %d: posix_memalign(128, %zu) = %d", tier, n, rc);
        CHECK(CTL(marl_check_heap)(tier) == 0, "tier %d heap inconsistent after %zu", tier, n);
    }
    /* a huge alignment with a small size cannot make the arena's arithmetic wrap either (the tier
     * refuses it and passes it on; AddressSanitizer's own memalign fails a CHECK at 1 << 63) */
#ifdef MARL_PREFIX_ENTRIES
    const int max_shift = 40;
#else
    const int max_shift = 63;
#endif
    for (int shift = 40; shift <= max_shift; shift += 23) {
        void *r = NULL;
        int rc = A(posix_memalign)(&r, (size_t)1 << shift, 100);
        CHECK(rc == 0 || rc == ENOMEM || rc == EINVAL, "posix_memalign(1<<%d) = %d", shift, rc);
        if (rc == 0) {
            CHECK((uintptr_t)r % ((size_t)1 << shift) == 0, "posix_memalign(1<<%d) misaligned", shift);
            A(free)(r);
        }
    }
    marl_tier_stats after = stats_of(tier);
    CHECK(after.live_bytes == before.live_bytes && after.live_count == before.live_count,
          "tier %d: live bytes %llu -> %llu after refused requests", tier, (unsigned long long)before.live_bytes,
          (unsigned long long)after.live_bytes);
    /* and the block still works */
    unsigned char *q = A(realloc)(p, 2 * n0);
    CHECK(q, "realloc to a sane size failed");
    expect_intact(q, n0, 7, "after a sane realloc");
    A(free)(q);
    CHECK(CTL(marl_check_heap)(tier) == 0, "tier %d heap inconsistent at the end", tier);
    CTL(marl_set_tier)(MARL_TIER_DEFAULT);
}

static void huge(void) {
    CTL(marl_set_threshold)(64);
    huge_in_tier(MARL_TIER_FAST);
    huge_in_tier(MARL_TIER_SLOW);
    CTL(marl_set_fast_limit)(1 << 20); /* with a limit the fast tier's room arithmetic is involved too */
    huge_in_tier(MARL_TIER_FAST);
    CTL(marl_set_fast_limit)(0);
    printf("ok huge sizes=%zu\n", (size_t)NHUGE);
}

/* Headers are 64 bytes and payloads are rounded up to 64: a request of 64*k bytes takes 64*(k+1). */
#define BLOCK_OF(req) ((req) + 64)

static void tail(void) {
    CTL(marl_set_threshold)(64);
    CTL(marl_set_tier)(MARL_TIER_FAST);
    CTL(marl_set_fast_limit)(0);
    /* malloc: a free block of 1088 bytes (1024 usable) serves a 960-byte request with a 64-byte tail
     * that cannot be split off (a block needs at least 128 bytes) */
    unsigned char *a = A(malloc)(1024), *guard = A(malloc)(1024);
    CHECK(CTL(marl_tier_of)(a) == MARL_TIER_FAST && CTL(marl_tier_of)(guard) == MARL_TIER_FAST, "setup");
    A(free)(a);
    uint64_t limit = stats_of(MARL_TIER_FAST).live_bytes + 960; /* exactly room for the rounded request */
    CTL(marl_set_fast_limit)(limit);
    CTL(marl_reset_stats)();
    unsigned char *b = A(malloc)(960);
    CHECK(b, "malloc(960) failed");
    marl_tier_stats s = stats_of(MARL_TIER_FAST);
    CHECK(s.live_bytes <= limit && s.peak_bytes <= limit,
          "malloc: fast live %llu (peak %llu) past the limit %llu (block of %zu usable bytes for 960 requested)",
          (unsigned long long)s.live_bytes, (unsigned long long)s.peak_bytes, (unsigned long long)limit,
          CTL(marl_block_size)(b));
    fill(b, 960, 3);
    CHECK(CTL(marl_check_heap)(MARL_TIER_FAST) == 0, "heap after malloc");
    A(free)(b);
    A(free)(guard);

    /* realloc in place: x grows into its free neighbour y; taking all of y leaves a 64-byte tail */
    CTL(marl_set_fast_limit)(0);
    unsigned char *x = A(malloc)(960), *y = A(malloc)(960), *z = A(malloc)(960);
    CHECK(x + BLOCK_OF(960) == y && y + BLOCK_OF(960) == z, "setup: blocks not adjacent");
    fill(x, 960, 5);
    A(free)(y);
    limit = stats_of(MARL_TIER_FAST).live_bytes + (1920 - 960); /* room for the growth, rounded */
    CTL(marl_set_fast_limit)(limit);
    CTL(marl_reset_stats)();
    unsigned char *x2 = A(realloc)(x, 1920);
    CHECK(x2, "realloc(x, 1920) failed");
    s = stats_of(MARL_TIER_FAST);
    CHECK(s.live_bytes <= limit && s.peak_bytes <= limit,
          "realloc: fast live %llu (peak %llu) past the limit %llu (block of %zu usable bytes for 1920 requested)",
          (unsigned long long)s.live_bytes, (unsigned long long)s.peak_bytes, (unsigned long long)limit,
          CTL(marl_block_size)(x2));
    expect_intact(x2, 960, 5, "after realloc");
    CHECK(CTL(marl_check_heap)(MARL_TIER_FAST) == 0 && CTL(marl_check_heap)(MARL_TIER_SLOW) == 0, "heap");
    int where = CTL(marl_tier_of)(x2);
    A(free)(x2);
    A(free)(z);
    CTL(marl_set_fast_limit)(0);
    CTL(marl_set_tier)(MARL_TIER_DEFAULT);
    printf("ok tail realloc_moved_to_tier=%d\n", where);
}

static void *aligned_block(void *p, size_t align, int tier, const char *what) {
    CHECK(p, "%s failed", what);
    CHECK((uintptr_t)p % align == 0, "%s: %p not aligned to %zu", what, p, align);
    CHECK(CTL(marl_tier_of)(p) == tier, "%s: in tier %d, not %d", what, CTL(marl_tier_of)(p), tier);
    memset(p, 0x5a, 100);
    return p;
}

static void pass(void) {
    const size_t small = 100, large = 8192, sys = MARL_TIER_SYSTEM, fast = MARL_TIER_FAST;
    CTL(marl_set_threshold)(4096);
    CTL(marl_set_tier)(MARL_TIER_FAST);
    marl_tier_stats s0 = stats_of(MARL_TIER_FAST);

    /* calloc: products that wrap to 0, to 2048 (below the threshold) and to 8192 (above it) */
    const size_t wraps[][2] = {{(size_t)1 << 63, 2}, {((size_t)1 << 62) + 512, 4}, {((size_t)1 << 62) + 2048, 4}};
    for (int i = 0; i < 3; i++) {
        errno = 0;
        void *q = A(calloc)(wraps[i][0], wraps[i][1]);
        CHECK(q == NULL && errno == ENOMEM, "calloc(%zu, %zu) = %p errno %d", wraps[i][0], wraps[i][1], q, errno);
    }
    marl_tier_stats s1 = stats_of(MARL_TIER_FAST);
    CHECK(s1.alloc_count == s0.alloc_count && s1.fallback_count == s0.fallback_count, "a wrapped calloc reached a tier");
    unsigned char *c = A(calloc)(16, small / 16 + 1), *cl = A(calloc)(64, large / 64);
    CHECK(c && CTL(marl_tier_of)(c) == (int)sys && cl && CTL(marl_tier_of)(cl) == (int)fast, "calloc tiers");
    for (size_t i = 0; i < large; i++) CHECK(cl[i] == 0 && (i > small || c[i] == 0), "calloc not zero at %zu", i);
    A(free)(c);
    A(free)(cl);

    /* realloc: NULL, to 0, a tier block to a small size (out of the tier, data kept), a small block to a
     * large size (into the tier) */
    unsigned char *r = A(realloc)(NULL, small);
    CHECK(r && CTL(marl_tier_of)(r) == (int)sys, "realloc(NULL, small) not a system block");
    CHECK(A(realloc)(r, 0) == NULL, "realloc(system block, 0) did not return NULL");
    r = A(realloc)(NULL, large);
    CHECK(r && CTL(marl_tier_of)(r) == (int)fast, "realloc(NULL, large) not a fast block");
    fill(r, large, 9);
    r = A(realloc)(r, small);
    CHECK(r && CTL(marl_tier_of)(r) == (int)sys, "realloc(fast block, small) did not move to the system");
    expect_intact(r, small, 9, "realloc out of the tier");
    r = A(realloc)(r, large);
    CHECK(r && CTL(marl_tier_of)(r) == (int)fast, "realloc(system block, large) did not move to the fast tier");
    expect_intact(r, small, 9, "realloc into the tier");
    CHECK(A(realloc)(r, 0) == NULL, "realloc(fast block, 0) did not return NULL");
    CHECK(stats_of(MARL_TIER_FAST).live_bytes == s0.live_bytes, "realloc(fast block, 0) did not free it");

    /* posix_memalign and aligned_alloc refuse an alignment that is not a power of two (posix_memalign
     * also one that is not a multiple of sizeof(void *)) on both sides of the threshold */
    const size_t sizes[2] = {small, large};
    for (int i = 0; i < 2; i++) {
        void *q = (void *)1;
        int rc = A(posix_memalign)(&q, 24, sizes[i]);
        CHECK(rc == EINVAL && q == (void *)1, "posix_memalign(24, %zu) = %d", sizes[i], rc);
        rc = A(posix_memalign)(&q, 4, sizes[i]);
        CHECK(rc == EINVAL && q == (void *)1, "posix_memalign(4, %zu) = %d", sizes[i], rc);
        errno = 0;
        q = A(aligned_alloc)(24, sizes[i]);
        CHECK(q == NULL && errno == EINVAL, "aligned_alloc(24, %zu) = %p errno %d", sizes[i], q, errno);
        int tier = i ? (int)fast : (int)sys;
        CHECK(A(posix_memalign)(&q, 256, sizes[i]) == 0, "posix_memalign(256, %zu) failed", sizes[i]);
        A(free)(aligned_block(q, 256, tier, "posix_memalign(256)"));
        A(free)(aligned_block(A(aligned_alloc)(512, sizes[i]), 512, tier, "aligned_alloc(512)"));
        A(free)(aligned_block(A(memalign)(1024, sizes[i]), 1024, tier, "memalign(1024)"));
        /* memalign rounds a bad alignment up to a power of two, as glibc does */
        A(free)(aligned_block(A(memalign)(24, sizes[i]), 32, tier, "memalign(24)"));
    }
    CHECK(stats_of(MARL_TIER_FAST).live_bytes == s0.live_bytes, "fast blocks left behind");
    CHECK(CTL(marl_check_heap)(MARL_TIER_FAST) == 0, "heap inconsistent at the end");
    CTL(marl_set_tier)(MARL_TIER_DEFAULT);
    printf("ok pass\n");
}

int main(int argc, char **argv) {
    api_init();
    alarm(60);
    if (argc > 1 && !strcmp(argv[1], "huge")) huge();
    else if (argc > 1 && !strcmp(argv[1], "tail")) tail();
    else if (argc > 1 && !strcmp(argv[1], "pass")) pass();
    else {
        fprintf(stderr, "usage: edges huge|tail|pass\n");
        return 2;
    }
    return 0;
}
