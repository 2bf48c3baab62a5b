/* marl-gym tiering allocator.
 *
 * An LD_PRELOAD interposer for the malloc family. Two managed tiers, fast and slow, each live in one
 * contiguous address range reserved at start-up (both ranges are adjacent, so "is this pointer ours?"
 * is a single range check). Inside a tier, blocks are carved by a boundary-tag allocator: a 64-byte
 * header before every 64-byte-aligned payload, segregated free lists by power-of-two size class,
 * coalescing on free and a bump pointer ("top") at the end of the used part. Each tier has one mutex;
 * the fast path for everything the allocator does not manage is a thread-local load, a compare and a
 * call to glibc's __libc_* entry points (no dlsym, hence no bootstrap problem: glibc's own malloc is
 * usable before any symbol lookup).
 *
 * Build variants:
 *   default                 exports malloc, free, ... (the interposer)
 *   -DMARL_PREFIX_ENTRIES   exports marl_malloc, marl_free, ... instead, for tests that run under
 *                           AddressSanitizer (which owns malloc itself); with -DMARL_ASAN_POISON the
 *                           arenas poison headers and free space so ASan sees out-of-block accesses.
 */
#define _GNU_SOURCE
#include "marl_alloc.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifdef MARL_ASAN_POISON
/* the functions, not the ASAN_* macros: this file itself is compiled without -fsanitize */
void __asan_poison_memory_region(void const volatile *addr, size_t size);
void __asan_unpoison_memory_region(void const volatile *addr, size_t size);
#define POISON(p, n) __asan_poison_memory_region((p), (n))
#define UNPOISON(p, n) __asan_unpoison_memory_region((p), (n))
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#define EXPORT __attribute__((visibility("default")))
#define LIKELY(x) __builtin_expect(!!(x), 1)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)

#ifdef MARL_PREFIX_ENTRIES
#define ENTRY(name) marl_##name
#else
#define ENTRY(name) name
#endif

#ifdef MARL_PREFIX_ENTRIES
/* test build: the "system" allocator is whatever malloc the program has (AddressSanitizer's) */
#define SYS_MALLOC malloc
#define SYS_CALLOC calloc
#define SYS_REALLOC realloc
#define SYS_FREE free
#define SYS_MEMALIGN memalign
#define SYS_VALLOC valloc
#define SYS_PVALLOC pvalloc
#define SYS_USABLE_LOOKUP RTLD_DEFAULT
#include <malloc.h>
#else
/* glibc's allocator, reachable without dlsym: no bootstrap problem (calloc before dlsym resolves) */
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);
extern void *__libc_memalign(size_t, size_t);
extern void *__libc_valloc(size_t);
extern void *__libc_pvalloc(size_t);
#define SYS_MALLOC __libc_malloc
#define SYS_CALLOC __libc_calloc
#define SYS_REALLOC __libc_realloc
#define SYS_FREE __libc_free
#define SYS_MEMALIGN __libc_memalign
#define SYS_VALLOC __libc_valloc
#define SYS_PVALLOC __libc_pvalloc
#define SYS_USABLE_LOOKUP RTLD_NEXT
#endif

/* ------------------------------------------------------------------------------------------ layout */
#define ALIGN 64u             /* payload alignment: PyTorch asks for 64 (posix_memalign) */
#define HDR 64u               /* header bytes before each payload */
#define MIN_BLOCK (HDR + ALIGN)
#define NBINS 64
#define MAGIC_USED 0x6d61726cu /* "marl" */
#define MAGIC_FREE 0x66726565u /* "free" */
#define F_INUSE 1u
#define TRIM_SLACK ((size_t)64 << 20) /* pages above top are returned once this many are idle */

typedef struct block {
    size_t size;      /* whole block including header, multiple of ALIGN */
    size_t prev_size; /* size of the block just below (0 for the first block) */
    size_t req;       /* bytes requested (in-use blocks) */
    uint32_t magic;
    uint32_t flags;
    struct block *next; /* free-list links (free blocks) */
    struct block *prev;
    char pad[HDR - 48];
} block_t;
_Static_assert(sizeof(block_t) == HDR, "block header must be HDR bytes");

enum backing_kind { BACK_ANON = 0, BACK_NUMA = 1, BACK_FILE = 2 };

typedef struct arena {
    pthread_mutex_t lock;
    int tier;
    int available;
    int kind;
    int numa_node;
    int fd;
    int fork_fd; /* snapshot of a file-backed tier for a child being forked */
    int dax;
    char dir[512];
    char error[160];
    char *base, *end; /* reserved range [base, end) */
    char *top;        /* first byte not in any block */
    size_t top_prev;  /* size of the block just below top (0 if none) */
    char *dirty;      /* bytes at or above this address are known to be zero (never handed out) */
    char *committed;  /* highest address that may hold pages (for trimming) */
    block_t *bins[NBINS];
    uint64_t binmap;
    marl_tier_stats st;
} arena_t;

static arena_t g_arena[3]; /* indexed by MARL_TIER_FAST / MARL_TIER_SLOW; [0] unused */
static char *g_lo, *g_hi;  /* union of both ranges */
static size_t g_threshold = 256;
static int g_process_tier = MARL_TIER_DEFAULT;
static uint64_t g_fast_limit;
static int g_initialised;
static int g_strict;
static int g_require_dax;
static __thread int tl_tier __attribute__((tls_model("initial-exec")));

/* --------------------------------------------------------------------------------------- messages */
static void say(const char *a, const char *b, const char *c) {
    /* No stdio in the allocator: it may allocate. */
    const char *parts[4] = {"marl-alloc: ", a, b, c};
    for (int i = 0; i < 4; i++)
        if (parts[i]) {
            ssize_t r = write(2, parts[i], strlen(parts[i]));
            (void)r;
        }
    ssize_t r = write(2, "\n", 1);
    (void)r;
}

static void die(const char *what, const void *ptr) {
    char hex[2 + 16 + 1] = "0x";
    uintptr_t v = (uintptr_t)ptr;
    for (int i = 0; i < 16; i++) hex[2 + i] = "0123456789abcdef"[(v >> (60 - 4 * i)) & 15];
    hex[18] = 0;
    say(what, " at ", hex);
    abort();
}

/* ---------------------------------------------------------------------------------- arena helpers */
static inline size_t round_up(size_t n, size_t a) { return (n + a - 1) & ~(a - 1); }
static inline block_t *hdr_of(const void *p) { return (block_t *)((char *)p - HDR); }
static inline void *payload(block_t *b) { return (char *)b + HDR; }
static inline block_t *next_of(block_t *b) { return (block_t *)((char *)b + b->size); }
static inline int bin_index(size_t size) { return 63 - __builtin_clzl(size); }

static inline int owner_of(const void *p) {
    const char *c = (const char *)p;
    if (LIKELY(c < g_lo || c >= g_hi)) return 0;
    return c < g_arena[MARL_TIER_FAST].end ? MARL_TIER_FAST : MARL_TIER_SLOW;
}

static void bin_insert(arena_t *a, block_t *b) {
    int i = bin_index(b->size);
    b->magic = MAGIC_FREE;
    b->flags = 0;
    b->prev = NULL;
    b->next = a->bins[i];
    if (b->next) b->next->prev = b;
    a->bins[i] = b;
    a->binmap |= (uint64_t)1 << i;
}

static void bin_remove(arena_t *a, block_t *b) {
    int i = bin_index(b->size);
    if (b->prev)
        b->prev->next = b->next;
    else
        a->bins[i] = b->next;
    if (b->next) b->next->prev = b->prev;
    if (!a->bins[i]) a->binmap &= ~((uint64_t)1 << i);
}

/* Tell the block above b (or top) that b is now b->size bytes. */
static inline void link_above(arena_t *a, block_t *b) {
    char *above = (char *)b + b->size;
    if (above == a->top)
        a->top_prev = b->size;
    else
        ((block_t *)above)->prev_size = b->size;
}

/* Make a free block [p, p+size) with the given prev_size, coalescing with free neighbours and top. */
static void release_range(arena_t *a, block_t *b) {
    /* merge with the block above */
    char *above = (char *)b + b->size;
    if (above != a->top) {
        block_t *n = (block_t *)above;
        if (!(n->flags & F_INUSE)) {
            bin_remove(a, n);
            b->size += n->size;
        }
    }
    /* merge with the block below */
    if (b->prev_size) {
        block_t *p = (block_t *)((char *)b - b->prev_size);
        if (!(p->flags & F_INUSE)) {
            bin_remove(a, p);
            p->size += b->size;
            b = p;
        }
    }
    if ((char *)b + b->size == a->top) {
        a->top = (char *)b;
        a->top_prev = b->prev_size;
        POISON(b, a->committed - (char *)b);
        if ((size_t)(a->committed - a->top) > TRIM_SLACK) {
            char *from = (char *)round_up((uintptr_t)a->top + TRIM_SLACK / 2, 4096);
            if (from < a->committed) {
                int advice = a->kind == BACK_FILE ? MADV_REMOVE : MADV_DONTNEED;
                if (madvise(from, a->committed - from, advice) == 0) {
                    a->committed = from;
                    if (a->dirty > from) a->dirty = from;
                }
            }
        }
        return;
    }
    b->flags = 0;
    bin_insert(a, b);
    link_above(a, b);
    POISON(payload(b), b->size - HDR);
}

/* Split an in-use block b so that it is `need` bytes; the rest becomes free. */
static void trim_tail(arena_t *a, block_t *b, size_t need) {
    if (b->size - need < MIN_BLOCK) return;
    block_t *rest = (block_t *)((char *)b + need);
    UNPOISON(rest, HDR);
    rest->size = b->size - need;
    rest->prev_size = need;
    rest->flags = 0;
    b->size = need;
    link_above(a, rest);
    release_range(a, rest);
}

/* A free block of at least `need` bytes from the bins, or NULL. */
static block_t *take_from_bins(arena_t *a, size_t need) {
    int i = bin_index(need);
    for (block_t *b = a->bins[i]; b; b = b->next)
        if (b->size >= need) {
            bin_remove(a, b);
            return b;
        }
    uint64_t higher = i + 1 < 64 ? a->binmap & ~(((uint64_t)2 << i) - 1) : 0;
    if (!higher) return NULL;
    block_t *b = a->bins[__builtin_ctzl(higher)];
    bin_remove(a, b);
    return b;
}

/* `need` bytes from the top, or NULL when the reserve is full. */
static block_t *take_from_top(arena_t *a, size_t need) {
    if ((size_t)(a->end - a->top) < need) return NULL;
    block_t *b = (block_t *)a->top;
    UNPOISON(b, HDR);
    b->size = need;
    b->prev_size = a->top_prev;
    b->flags = 0;
    a->top += need;
    a->top_prev = need;
    if (a->top > a->committed) a->committed = a->top;
    return b;
}

/* Allocate under the arena lock. Sets *zero_to: payload bytes at or above it are known to be zero. */
static void *arena_alloc_locked(arena_t *a, size_t req, size_t align, char **zero_to) {
    if (req > (size_t)(a->end - a->base)) return NULL;
    size_t need = round_up(req ? req : 1, ALIGN) + HDR;
    if (need < MIN_BLOCK) need = MIN_BLOCK;
    size_t want = align > ALIGN ? need + align + MIN_BLOCK : need;
    block_t *b = take_from_bins(a, want);
    if (!b) b = take_from_top(a, want);
    if (!b) return NULL;
    char *dirty_before = a->dirty;
    char *span_end = (char *)b + b->size; /* every header written below lies in [b, span_end) */
    if (span_end > a->dirty) a->dirty = span_end;
    b->flags = F_INUSE;
    b->magic = MAGIC_USED;
    if (align > ALIGN) {
        uintptr_t p = round_up((uintptr_t)payload(b), align);
        while (p - (uintptr_t)payload(b) != 0 && p - (uintptr_t)payload(b) < MIN_BLOCK) p += align;
        size_t gap = p - (uintptr_t)payload(b);
        if (gap) {
            block_t *front = b;
            block_t *nb = (block_t *)(p - HDR);
            UNPOISON(nb, HDR);
            nb->size = front->size - gap;
            nb->prev_size = gap;
            nb->flags = F_INUSE;
            nb->magic = MAGIC_USED;
            link_above(a, nb);
            front->size = gap;
            front->flags = 0;
            /* the front piece becomes free; it cannot reach top, and nb above it is in use */
            release_range(a, front);
            b = nb;
        }
    }
    trim_tail(a, b, need);
    b->req = req;
    void *p = payload(b);
    POISON(b, b->size); /* header and the slack after req stay off limits */
    UNPOISON(p, req);
    *zero_to = dirty_before;
    size_t usable = b->size - HDR;
    a->st.live_bytes += usable;
    a->st.live_requested_bytes += req;
    a->st.live_count++;
    a->st.alloc_count++;
    a->st.total_bytes += usable;
    if (a->st.live_bytes > a->st.peak_bytes) a->st.peak_bytes = a->st.live_bytes;
    return p;
}

static void check_block(arena_t *a, block_t *b, const void *p) {
    if (UNLIKELY((char *)b < a->base || (char *)p >= a->top || b->magic != MAGIC_USED || !(b->flags & F_INUSE))) {
        if (b->magic == MAGIC_FREE) die("double free or use of a freed block", p);
        die("invalid pointer into a tier arena (not a block start)", p);
    }
}

static void arena_free_locked(arena_t *a, block_t *b) {
    size_t usable = b->size - HDR;
    a->st.live_bytes -= usable;
    a->st.live_requested_bytes -= b->req;
    a->st.live_count--;
    a->st.free_count++;
    b->flags = 0;
    b->magic = MAGIC_FREE;
    release_range(a, b);
}

/* Resize in place if possible (under the lock); returns 1 on success. */
static int arena_resize_locked(arena_t *a, block_t *b, size_t req) {
    size_t need = round_up(req ? req : 1, ALIGN) + HDR;
    if (need < MIN_BLOCK) need = MIN_BLOCK;
    size_t old_usable = b->size - HDR;
    if (need > b->size) {
        char *above = (char *)b + b->size;
        if (above == a->top) {
            if ((size_t)(a->end - a->top) < need - b->size) return 0;
            UNPOISON(a->top, need - b->size);
            a->top = (char *)b + need;
            if (a->top > a->committed) a->committed = a->top;
            if (a->top > a->dirty) a->dirty = a->top;
            b->size = need;
            a->top_prev = need;
        } else {
            block_t *n = (block_t *)above;
            if ((n->flags & F_INUSE) || b->size + n->size < need) return 0;
            bin_remove(a, n);
            UNPOISON(n, n->size);
            b->size += n->size;
            link_above(a, b);
        }
    }
    trim_tail(a, b, need);
    UNPOISON(payload(b), req);
    if (req < b->size - HDR) POISON((char *)payload(b) + req, b->size - HDR - req);
    size_t usable = b->size - HDR;
    a->st.live_bytes += usable - old_usable; /* wraps correctly when shrinking */
    a->st.live_requested_bytes += req - b->req;
    if (usable > old_usable) a->st.total_bytes += usable - old_usable;
    if (a->st.live_bytes > a->st.peak_bytes) a->st.peak_bytes = a->st.live_bytes;
    b->req = req;
    return 1;
}

/* -------------------------------------------------------------------------------- tier front end */
static inline int route(size_t n) {
    int t = tl_tier;
    if (LIKELY(t == MARL_TIER_DEFAULT)) t = g_process_tier;
    if (LIKELY(t == MARL_TIER_DEFAULT) || n < g_threshold) return 0;
    return t;
}

static void *system_alloc(size_t n, size_t align) {
    return align > 16 ? SYS_MEMALIGN(align, n) : SYS_MALLOC(n);
}

/* Allocate n bytes in tier t (FAST or SLOW); overflow and fallback are handled here. */
static void *tier_alloc(int t, size_t n, size_t align, int zero) {
    char *zero_to = NULL;
    void *p = NULL;
    arena_t *a;
    if (t == MARL_TIER_FAST) {
        a = &g_arena[MARL_TIER_FAST];
        size_t usable = round_up(n ? n : 1, ALIGN);
        pthread_mutex_lock(&a->lock);
        if (a->available && (!g_fast_limit || a->st.live_bytes + usable <= g_fast_limit)) {
            p = arena_alloc_locked(a, n, align, &zero_to);
            if (!p) {
                a->st.fallback_count++;
                a->st.fallback_bytes += usable;
            }
        } else if (a->available) {
            a->st.overflow_count++;
            a->st.overflow_bytes += usable;
            t = MARL_TIER_SLOW;
        } else {
            a->st.fallback_count++;
            a->st.fallback_bytes += usable;
        }
        pthread_mutex_unlock(&a->lock);
    }
    if (t == MARL_TIER_SLOW) {
        a = &g_arena[MARL_TIER_SLOW];
        pthread_mutex_lock(&a->lock);
        if (a->available) p = arena_alloc_locked(a, n, align, &zero_to);
        if (!p) {
            a->st.fallback_count++;
            a->st.fallback_bytes += round_up(n ? n : 1, ALIGN);
        }
        pthread_mutex_unlock(&a->lock);
    }
    if (!p) {
        p = system_alloc(n, align);
        if (p && zero) memset(p, 0, n);
        return p;
    }
    if (zero) {
        char *end = (char *)p + n < zero_to ? (char *)p + n : zero_to;
        if (end > (char *)p) memset(p, 0, end - (char *)p);
    }
    return p;
}

static void tier_free(int t, void *p) {
    arena_t *a = &g_arena[t];
    block_t *b = hdr_of(p);
    pthread_mutex_lock(&a->lock);
    check_block(a, b, p);
    arena_free_locked(a, b);
    pthread_mutex_unlock(&a->lock);
}

static size_t usable_of(int t, const void *p) {
    arena_t *a = &g_arena[t];
    block_t *b = hdr_of(p);
    pthread_mutex_lock(&a->lock);
    check_block(a, b, p);
    size_t n = b->size - HDR;
    pthread_mutex_unlock(&a->lock);
    return n;
}

static size_t (*real_usable_size)(void *);

static size_t system_usable_size(void *p) {
    if (!real_usable_size) {
        real_usable_size = (size_t(*)(void *))dlsym(SYS_USABLE_LOOKUP, "malloc_usable_size");
        if (!real_usable_size) die("cannot find the system malloc_usable_size", p);
    }
    return real_usable_size(p);
}

/* ------------------------------------------------------------------------------ interposed entries */
EXPORT void *ENTRY(malloc)(size_t n) {
    int t = route(n);
    if (LIKELY(!t)) return SYS_MALLOC(n);
    void *p = tier_alloc(t, n, 0, 0);
    if (!p) errno = ENOMEM;
    return p;
}

EXPORT void ENTRY(free)(void *p) {
    int o = owner_of(p);
    if (LIKELY(!o)) {
        SYS_FREE(p);
        return;
    }
    tier_free(o, p);
}

EXPORT void *ENTRY(calloc)(size_t nmemb, size_t size) {
    size_t n;
    if (UNLIKELY(__builtin_mul_overflow(nmemb, size, &n))) {
        errno = ENOMEM;
        return NULL;
    }
    int t = route(n);
    if (LIKELY(!t)) return SYS_CALLOC(nmemb, size);
    void *p = tier_alloc(t, n, 0, 1);
    if (!p) errno = ENOMEM;
    return p;
}

EXPORT void *ENTRY(realloc)(void *p, size_t n) {
    if (!p) return ENTRY(malloc)(n);
    if (n == 0) { /* glibc: free and return NULL */
        ENTRY(free)(p);
        return NULL;
    }
    int o = owner_of(p);
    int t = route(n);
    if (LIKELY(!o && !t)) return SYS_REALLOC(p, n);
    if (o && o == t) {
        arena_t *a = &g_arena[o];
        int fits = 1;
        if (o == MARL_TIER_FAST && g_fast_limit) {
            pthread_mutex_lock(&a->lock);
            fits = a->st.live_bytes - (hdr_of(p)->size - HDR) + round_up(n, ALIGN) <= g_fast_limit;
            pthread_mutex_unlock(&a->lock);
        }
        if (fits) {
            pthread_mutex_lock(&a->lock);
            check_block(a, hdr_of(p), p);
            int ok = arena_resize_locked(a, hdr_of(p), n);
            pthread_mutex_unlock(&a->lock);
            if (ok) return p;
        }
    }
    /* move: allocate where a new block of n bytes goes now, copy, free in the owner */
    size_t old = o ? usable_of(o, p) : system_usable_size(p);
    void *q = t ? tier_alloc(t, n, 0, 0) : SYS_MALLOC(n);
    if (!q) {
        errno = ENOMEM;
        return NULL;
    }
    if (o) {
        size_t req = hdr_of(p)->req; /* only the requested bytes are meaningful (and unpoisoned) */
        if (req < old) old = req;
    }
    memcpy(q, p, old < n ? old : n);
    if (o)
        tier_free(o, p);
    else
        SYS_FREE(p);
    return q;
}

EXPORT void *ENTRY(reallocarray)(void *p, size_t nmemb, size_t size) {
    size_t n;
    if (__builtin_mul_overflow(nmemb, size, &n)) {
        errno = ENOMEM;
        return NULL;
    }
    return ENTRY(realloc)(p, n);
}

static inline int valid_align(size_t align) { return align && !(align & (align - 1)); }

EXPORT int ENTRY(posix_memalign)(void **out, size_t align, size_t n) {
    if (!valid_align(align) || align % sizeof(void *)) return EINVAL;
    int t = route(n);
    void *p = t ? tier_alloc(t, n, align, 0) : SYS_MEMALIGN(align, n);
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}

EXPORT void *ENTRY(memalign)(size_t align, size_t n) {
    if (!valid_align(align)) { /* glibc rounds a bad alignment up to a power of two */
        size_t a = 16;
        while (a < align && a) a <<= 1;
        if (!a) {
            errno = EINVAL;
            return NULL;
        }
        align = a;
    }
    int t = route(n);
    void *p = t ? tier_alloc(t, n, align, 0) : SYS_MEMALIGN(align, n);
    if (!p) errno = ENOMEM;
    return p;
}

EXPORT void *ENTRY(aligned_alloc)(size_t align, size_t n) {
    if (!valid_align(align)) {
        errno = EINVAL;
        return NULL;
    }
    return ENTRY(memalign)(align, n);
}

EXPORT void *ENTRY(valloc)(size_t n) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    int t = route(n);
    if (!t) return SYS_VALLOC(n);
    return ENTRY(memalign)(page, n);
}

EXPORT void *ENTRY(pvalloc)(size_t n) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t rounded = n ? round_up(n, page) : page;
    if (rounded < n) {
        errno = ENOMEM;
        return NULL;
    }
    int t = route(rounded);
    if (!t) return SYS_PVALLOC(n);
    return ENTRY(memalign)(page, rounded);
}

EXPORT size_t ENTRY(malloc_usable_size)(void *p) {
    if (!p) return 0;
    int o = owner_of(p);
    if (LIKELY(!o)) return system_usable_size(p);
    return usable_of(o, p);
}

/* ----------------------------------------------------------------------------------- control API */
EXPORT int marl_abi_version(void) { return MARL_ABI_VERSION; }

static int valid_tier(int t) { return t == MARL_TIER_DEFAULT || t == MARL_TIER_FAST || t == MARL_TIER_SLOW; }

EXPORT int marl_set_tier(int tier) {
    if (!valid_tier(tier)) return -1;
    int old = tl_tier;
    tl_tier = tier;
    return old;
}

EXPORT int marl_get_tier(void) { return tl_tier; }

EXPORT int marl_set_process_tier(int tier) {
    if (!valid_tier(tier)) return -1;
    int old = g_process_tier;
    __atomic_store_n(&g_process_tier, tier, __ATOMIC_RELAXED);
    return old;
}

EXPORT size_t marl_set_threshold(size_t bytes) {
    size_t old = g_threshold;
    __atomic_store_n(&g_threshold, bytes ? bytes : 1, __ATOMIC_RELAXED);
    return old;
}

EXPORT size_t marl_get_threshold(void) { return g_threshold; }

EXPORT uint64_t marl_set_fast_limit(uint64_t bytes) {
    arena_t *a = &g_arena[MARL_TIER_FAST];
    pthread_mutex_lock(&a->lock);
    uint64_t old = g_fast_limit;
    g_fast_limit = bytes;
    pthread_mutex_unlock(&a->lock);
    return old;
}

EXPORT int marl_get_stats(int tier, marl_tier_stats *out) {
    if (tier != MARL_TIER_FAST && tier != MARL_TIER_SLOW) return -1;
    arena_t *a = &g_arena[tier];
    pthread_mutex_lock(&a->lock);
    *out = a->st;
    out->limit_bytes = tier == MARL_TIER_FAST ? g_fast_limit : 0;
    out->available = (uint64_t)a->available;
    out->reserve_bytes = (uint64_t)(a->end - a->base);
    pthread_mutex_unlock(&a->lock);
    return 0;
}

EXPORT void marl_reset_stats(void) {
    for (int t = MARL_TIER_FAST; t <= MARL_TIER_SLOW; t++) {
        arena_t *a = &g_arena[t];
        pthread_mutex_lock(&a->lock);
        a->st.peak_bytes = a->st.live_bytes;
        a->st.total_bytes = a->st.alloc_count = a->st.free_count = 0;
        a->st.overflow_count = a->st.overflow_bytes = 0;
        a->st.fallback_count = a->st.fallback_bytes = 0;
        pthread_mutex_unlock(&a->lock);
    }
}

EXPORT int marl_tier_of(const void *ptr) {
    int o = owner_of(ptr);
    return o ? o : MARL_TIER_SYSTEM;
}

EXPORT size_t marl_block_size(const void *ptr) {
    int o = owner_of(ptr);
    if (!o) return 0;
    arena_t *a = &g_arena[o];
    block_t *b = hdr_of(ptr);
    pthread_mutex_lock(&a->lock);
    size_t n = 0;
    if ((char *)b >= a->base && (char *)ptr < a->top && b->magic == MAGIC_USED && (b->flags & F_INUSE))
        n = b->size - HDR;
    pthread_mutex_unlock(&a->lock);
    return n;
}

EXPORT int marl_check_heap(int tier) {
    if (tier != MARL_TIER_FAST && tier != MARL_TIER_SLOW) return -1;
    arena_t *a = &g_arena[tier];
    int rc = 0;
    pthread_mutex_lock(&a->lock);
    size_t prev = 0, live = 0, nfree = 0;
    uint64_t live_count = 0;
    int prev_free = 0;
    for (char *c = a->base; c < a->top;) {
        block_t *b = (block_t *)c;
        UNPOISON(b, HDR);
        int is_free = !(b->flags & F_INUSE);
        if (b->size < MIN_BLOCK || b->size % ALIGN || c + b->size > a->top) { rc = -2; break; }
        if (b->prev_size != prev) { rc = -3; break; }
        if (is_free && b->magic != MAGIC_FREE) { rc = -4; break; }
        if (!is_free && b->magic != MAGIC_USED) { rc = -5; break; }
        if (is_free && prev_free) { rc = -6; break; } /* two free neighbours: missed coalescing */
        if (is_free) {
            nfree++;
            POISON(b, HDR);
        } else {
            live += b->size - HDR;
            live_count++;
        }
        prev_free = is_free;
        prev = b->size;
        c += b->size;
    }
    if (!rc && prev != a->top_prev) rc = -7;
    if (!rc && prev_free) rc = -8; /* a free block touching top should have joined it */
    if (!rc && (live != a->st.live_bytes || live_count != a->st.live_count)) rc = -9;
    if (!rc) {
        size_t listed = 0;
        for (int i = 0; i < NBINS; i++) {
            if (!!a->bins[i] != !!(a->binmap & ((uint64_t)1 << i))) rc = -10;
            for (block_t *b = a->bins[i]; b; b = b->next) {
                if (bin_index(b->size) != i || (b->flags & F_INUSE)) rc = -11;
                listed++;
            }
        }
        if (!rc && listed != nfree) rc = -12;
    }
    pthread_mutex_unlock(&a->lock);
    return rc;
}

EXPORT uint64_t marl_trim(void) {
    uint64_t released = 0;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    for (int t = MARL_TIER_FAST; t <= MARL_TIER_SLOW; t++) {
        arena_t *a = &g_arena[t];
        if (!a->available) continue;
        int advice = a->kind == BACK_FILE ? MADV_REMOVE : MADV_DONTNEED;
        pthread_mutex_lock(&a->lock);
        char *from = (char *)round_up((uintptr_t)a->top, page);
        if (from < a->committed && madvise(from, a->committed - from, advice) == 0) {
            released += a->committed - from;
            a->committed = from;
            if (a->dirty > from) a->dirty = from;
        }
        /* interior free blocks: their whole pages (past the header) */
        for (int i = 0; i < NBINS; i++)
            for (block_t *b = a->bins[i]; b; b = b->next) {
                char *lo = (char *)round_up((uintptr_t)b + HDR, page);
                char *hi = (char *)(((uintptr_t)b + b->size) & ~(uintptr_t)(page - 1));
                if (hi > lo && madvise(lo, hi - lo, advice) == 0) released += hi - lo;
            }
        pthread_mutex_unlock(&a->lock);
    }
    return released;
}

/* ---------------------------------------------------------------------------------- configuration */
static size_t append(char *buf, size_t len, size_t at, const char *s) {
    size_t n = strlen(s);
    for (size_t i = 0; i < n; i++)
        if (at + i + 1 < len) buf[at + i] = s[i];
    if (len) buf[at + n < len ? at + n : len - 1] = 0;
    return at + n;
}

static void u64_text(uint64_t v, char *out) {
    char tmp[24];
    int i = 0;
    do tmp[i++] = (char)('0' + v % 10), v /= 10;
    while (v);
    for (int j = 0; j < i; j++) out[j] = tmp[i - 1 - j];
    out[i] = 0;
}

static size_t append_u64(char *buf, size_t len, size_t at, uint64_t v) {
    char t[24];
    u64_text(v, t);
    return append(buf, len, at, t);
}

static size_t append_json_str(char *buf, size_t len, size_t at, const char *s) {
    at = append(buf, len, at, "\"");
    char one[3] = {0, 0, 0};
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') {
            one[0] = '\\', one[1] = *s;
        } else if ((unsigned char)*s < 32) {
            one[0] = '?', one[1] = 0;
        } else {
            one[0] = *s, one[1] = 0;
        }
        at = append(buf, len, at, one);
    }
    return append(buf, len, at, "\"");
}

static const char *kind_name(int k) { return k == BACK_NUMA ? "numa" : k == BACK_FILE ? "file" : "anon"; }
static const char *tier_name(int t) { return t == MARL_TIER_FAST ? "fast" : t == MARL_TIER_SLOW ? "slow" : "default"; }

EXPORT int marl_config_json(char *buf, size_t len) {
    size_t at = 0;
    at = append(buf, len, at, "{\"abi_version\": ");
    at = append_u64(buf, len, at, MARL_ABI_VERSION);
    at = append(buf, len, at, ", \"initialised\": ");
    at = append(buf, len, at, g_initialised ? "true" : "false");
    at = append(buf, len, at, ", \"threshold_bytes\": ");
    at = append_u64(buf, len, at, g_threshold);
    at = append(buf, len, at, ", \"process_tier\": ");
    at = append_json_str(buf, len, at, tier_name(g_process_tier));
    at = append(buf, len, at, ", \"fast_limit_bytes\": ");
    at = append_u64(buf, len, at, g_fast_limit);
    at = append(buf, len, at, ", \"strict\": ");
    at = append(buf, len, at, g_strict ? "true" : "false");
    for (int t = MARL_TIER_FAST; t <= MARL_TIER_SLOW; t++) {
        arena_t *a = &g_arena[t];
        at = append(buf, len, at, t == MARL_TIER_FAST ? ", \"fast\": {" : ", \"slow\": {");
        at = append(buf, len, at, "\"backing\": ");
        at = append_json_str(buf, len, at, kind_name(a->kind));
        at = append(buf, len, at, ", \"available\": ");
        at = append(buf, len, at, a->available ? "true" : "false");
        at = append(buf, len, at, ", \"reserve_bytes\": ");
        at = append_u64(buf, len, at, (uint64_t)(a->end - a->base));
        at = append(buf, len, at, ", \"base\": ");
        at = append_u64(buf, len, at, (uint64_t)(uintptr_t)a->base);
        at = append(buf, len, at, ", \"numa_node\": ");
        if (a->kind == BACK_NUMA)
            at = append_u64(buf, len, at, (uint64_t)a->numa_node);
        else
            at = append(buf, len, at, "null");
        at = append(buf, len, at, ", \"path\": ");
        if (a->kind == BACK_FILE)
            at = append_json_str(buf, len, at, a->dir);
        else
            at = append(buf, len, at, "null");
        at = append(buf, len, at, ", \"dax\": ");
        at = append(buf, len, at, a->kind == BACK_FILE ? (a->dax ? "true" : "false") : "null");
        at = append(buf, len, at, ", \"error\": ");
        if (a->error[0])
            at = append_json_str(buf, len, at, a->error);
        else
            at = append(buf, len, at, "null");
        at = append(buf, len, at, "}");
    }
    at = append(buf, len, at, "}");
    return (int)at + 1;
}

/* Parse "123", "64K", "1.5G"-less integers with an optional K/M/G/T (binary) suffix. */
static int parse_size(const char *s, uint64_t *out) {
    if (!s || !*s) return -1;
    uint64_t v = 0;
    const char *c = s;
    if (*c < '0' || *c > '9') return -1;
    while (*c >= '0' && *c <= '9') {
        if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, (uint64_t)(*c - '0'), &v)) return -1;
        c++;
    }
    int shift = 0;
    switch (*c) {
    case 'k': case 'K': shift = 10; c++; break;
    case 'm': case 'M': shift = 20; c++; break;
    case 'g': case 'G': shift = 30; c++; break;
    case 't': case 'T': shift = 40; c++; break;
    case 0: break;
    default: return -1;
    }
    if (*c == 'i' || *c == 'I') c++;
    if (*c == 'b' || *c == 'B') c++;
    if (*c) return -1;
    if (shift && v > (UINT64_MAX >> shift)) return -1;
    *out = v << shift;
    return 0;
}

static void set_error(arena_t *a, const char *what, const char *detail) {
    size_t at = append(a->error, sizeof a->error, 0, what);
    if (detail) {
        at = append(a->error, sizeof a->error, at, ": ");
        append(a->error, sizeof a->error, at, detail);
    }
}

static int parse_backing(arena_t *a, const char *spec) {
    a->kind = BACK_ANON;
    if (!spec || !*spec || !strcmp(spec, "anon")) return 0;
    if (!strncmp(spec, "numa:", 5)) {
        uint64_t node;
        if (parse_size(spec + 5, &node) || node > 1023) {
            set_error(a, "bad NUMA node in backing spec", spec);
            return -1;
        }
        a->kind = BACK_NUMA;
        a->numa_node = (int)node;
        return 0;
    }
    if (!strncmp(spec, "file:", 5) || !strncmp(spec, "dax:", 4)) {
        const char *dir = spec + (spec[0] == 'f' ? 5 : 4);
        if (!*dir || strlen(dir) >= sizeof a->dir - 32) {
            set_error(a, "bad directory in backing spec", spec);
            return -1;
        }
        a->kind = BACK_FILE;
        append(a->dir, sizeof a->dir, 0, dir);
        return 0;
    }
    set_error(a, "unknown backing (expected anon, numa:N or file:/dir)", spec);
    return -1;
}

static int make_backing_file(arena_t *a, size_t size) {
    int fd = open(a->dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0) { /* no O_TMPFILE on this file system: create and unlink */
        char path[sizeof a->dir + 32];
        size_t at = append(path, sizeof path, 0, a->dir);
        append(path, sizeof path, at, "/.marl-alloc-XXXXXX");
        fd = mkostemp(path, O_CLOEXEC);
        if (fd >= 0) unlink(path);
    }
    if (fd < 0) {
        set_error(a, "cannot create a backing file in", a->dir);
        return -1;
    }
    if (ftruncate(fd, (off_t)size) != 0) {
        set_error(a, "cannot size the backing file in", a->dir);
        close(fd);
        return -1;
    }
    return fd;
}

#ifndef MAP_SYNC
#define MAP_SYNC 0x80000
#endif
#ifndef MAP_SHARED_VALIDATE
#define MAP_SHARED_VALIDATE 0x03
#endif

/* Map the backing over [base, end) of the reservation. */
static int setup_backing(arena_t *a) {
    size_t size = (size_t)(a->end - a->base);
    if (a->kind == BACK_NUMA) {
        unsigned long mask[1024 / (8 * sizeof(unsigned long))] = {0};
        mask[a->numa_node / (8 * sizeof(unsigned long))] |= 1ul << (a->numa_node % (8 * sizeof(unsigned long)));
        /* MPOL_BIND = 2; maxnode is the number of bits the kernel may read, plus one */
        long rc = syscall(SYS_mbind, a->base, size, 2, mask, (unsigned long)(sizeof mask * 8 + 1), 0u);
        if (rc != 0) {
            set_error(a, "mbind to the NUMA node failed", strerror(errno));
            return -1;
        }
    } else if (a->kind == BACK_FILE) {
        int fd = make_backing_file(a, size);
        if (fd < 0) return -1;
        void *probe = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED_VALIDATE | MAP_SYNC, fd, 0);
        a->dax = probe != MAP_FAILED;
        if (a->dax) munmap(probe, 4096);
        if (!a->dax && g_require_dax) {
            set_error(a, "MAP_SYNC probe failed: not a DAX file system", a->dir);
            close(fd);
            return -1;
        }
        void *m = mmap(a->base, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);
        if (m == MAP_FAILED) {
            set_error(a, "cannot map the backing file", strerror(errno));
            close(fd);
            /* put the anonymous reservation back so the range stays ours */
            mmap(a->base, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
            return -1;
        }
        a->fd = fd;
    }
    return 0;
}

/* Fork with a file-backed tier: the mapping is shared, so parent and child would keep writing into the
 * same pages. Before the fork (arena locks held, so the arena is consistent and nobody writes into it)
 * the parent snapshots the used part into a fresh file; the child maps that file over the range; the
 * parent drops the snapshot. The cost is a copy of the tier's used bytes per fork. */
static void snapshot_for_child(arena_t *a) {
    a->fork_fd = -1;
    if (!a->available || a->kind != BACK_FILE) return;
    size_t size = (size_t)(a->end - a->base);
    size_t used = round_up((size_t)(a->committed - a->base), 4096);
    int fd = make_backing_file(a, size);
    if (fd < 0) return;
    if (used) {
        void *tmp = mmap(NULL, used, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (tmp == MAP_FAILED) {
            close(fd);
            return;
        }
        UNPOISON(a->base, used);
        memcpy(tmp, a->base, used);
        munmap(tmp, used);
    }
    a->fork_fd = fd;
}

static void child_take_snapshot(arena_t *a) {
    if (!a->available || a->kind != BACK_FILE) return;
    if (a->fork_fd < 0) die("fork: could not snapshot the file-backed tier for the child", a->base);
    size_t size = (size_t)(a->end - a->base);
    if (mmap(a->base, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, a->fork_fd, 0) == MAP_FAILED)
        die("fork: cannot map the child's copy of the file-backed tier", a->base);
    close(a->fd);
    a->fd = a->fork_fd;
    a->fork_fd = -1;
}

static void atfork_prepare(void) {
    pthread_mutex_lock(&g_arena[MARL_TIER_FAST].lock);
    pthread_mutex_lock(&g_arena[MARL_TIER_SLOW].lock);
    snapshot_for_child(&g_arena[MARL_TIER_FAST]);
    snapshot_for_child(&g_arena[MARL_TIER_SLOW]);
}

static void atfork_parent(void) {
    for (int t = MARL_TIER_FAST; t <= MARL_TIER_SLOW; t++)
        if (g_arena[t].fork_fd >= 0) {
            close(g_arena[t].fork_fd);
            g_arena[t].fork_fd = -1;
        }
    pthread_mutex_unlock(&g_arena[MARL_TIER_SLOW].lock);
    pthread_mutex_unlock(&g_arena[MARL_TIER_FAST].lock);
}

static void atfork_child(void) {
    child_take_snapshot(&g_arena[MARL_TIER_FAST]);
    child_take_snapshot(&g_arena[MARL_TIER_SLOW]);
    /* the child has one thread: re-initialise rather than unlock */
    pthread_mutex_init(&g_arena[MARL_TIER_FAST].lock, NULL);
    pthread_mutex_init(&g_arena[MARL_TIER_SLOW].lock, NULL);
}

static int env_flag(const char *name) {
    const char *v = getenv(name);
    return v && *v && strcmp(v, "0") != 0;
}

static int parse_tier_name(const char *s) {
    if (!s || !*s || !strcmp(s, "default") || !strcmp(s, "system")) return MARL_TIER_DEFAULT;
    if (!strcmp(s, "fast")) return MARL_TIER_FAST;
    if (!strcmp(s, "slow")) return MARL_TIER_SLOW;
    return -1;
}

static void bad_env(const char *name, const char *value) {
    say("ignoring bad value of ", name, value ? value : "");
    if (g_strict) abort();
}

__attribute__((constructor(101))) static void marl_init(void) {
    if (g_initialised) return;
    g_strict = env_flag("MARL_ALLOC_STRICT");
    g_require_dax = env_flag("MARL_ALLOC_REQUIRE_DAX");
    uint64_t v;
    const char *s;
    if ((s = getenv("MARL_ALLOC_THRESHOLD"))) {
        if (parse_size(s, &v) == 0)
            g_threshold = v ? v : 1;
        else
            bad_env("MARL_ALLOC_THRESHOLD=", s);
    }
    if ((s = getenv("MARL_ALLOC_FAST_LIMIT"))) {
        if (parse_size(s, &v) == 0)
            g_fast_limit = v;
        else
            bad_env("MARL_ALLOC_FAST_LIMIT=", s);
    }
    uint64_t reserve[3] = {0, (uint64_t)64 << 30, (uint64_t)64 << 30};
    const char *reserve_env[3] = {NULL, "MARL_ALLOC_FAST_RESERVE", "MARL_ALLOC_SLOW_RESERVE"};
    const char *backing_env[3] = {NULL, "MARL_ALLOC_FAST", "MARL_ALLOC_SLOW"};
    for (int t = MARL_TIER_FAST; t <= MARL_TIER_SLOW; t++) {
        if ((s = getenv(reserve_env[t]))) {
            if (parse_size(s, &v) == 0 && v >= (1u << 20))
                reserve[t] = round_up(v, (size_t)2 << 20);
            else
                bad_env(reserve_env[t], s);
        }
    }
    size_t total = reserve[1] + reserve[2];
    /* 2 MiB-aligned so that huge pages can back the arenas */
    size_t huge = (size_t)2 << 20;
    char *raw = mmap(NULL, total + huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    for (int t = MARL_TIER_FAST; t <= MARL_TIER_SLOW; t++) {
        arena_t *a = &g_arena[t];
        pthread_mutex_init(&a->lock, NULL);
        a->tier = t;
        a->fd = a->fork_fd = -1;
    }
    if (raw == MAP_FAILED) {
        say("cannot reserve address space for the tiers: ", strerror(errno), "; every allocation goes to the system");
        if (g_strict) abort();
        g_initialised = 1;
        return;
    }
    char *lo = (char *)round_up((uintptr_t)raw, huge);
    if (lo > raw) munmap(raw, lo - raw);
    if (lo + total < raw + total + huge) munmap(lo + total, raw + total + huge - (lo + total));
    g_lo = lo;
    g_hi = lo + total;
    char *at = lo;
    for (int t = MARL_TIER_FAST; t <= MARL_TIER_SLOW; t++) {
        arena_t *a = &g_arena[t];
        a->base = a->top = a->dirty = a->committed = at;
        a->end = at + reserve[t];
        at = a->end;
        if (parse_backing(a, getenv(backing_env[t])) == 0 && setup_backing(a) == 0)
            a->available = 1;
        if (!a->available) {
            say(backing_env[t], " unavailable: ", a->error);
            if (g_strict) abort();
        }
    }
    if ((s = getenv("MARL_ALLOC_PROCESS_TIER"))) {
        int t = parse_tier_name(s);
        if (t >= 0)
            g_process_tier = t;
        else
            bad_env("MARL_ALLOC_PROCESS_TIER=", s);
    }
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
    system_usable_size(NULL); /* resolve the system malloc_usable_size now, not inside a hook later */
    g_initialised = 1;
    if (env_flag("MARL_ALLOC_VERBOSE")) {
        char buf[2048];
        marl_config_json(buf, sizeof buf);
        say("config ", buf, NULL);
    }
}
