/* The interposed malloc family, and the routing of each request to a tier or to the system allocator.
 *
 * The pass-through. Every entry but posix_memalign (see there) first tests, with what is at hand,
 * whether the request is the system allocator's, and if so ends in a tail call to glibc before any
 * register is saved or frame built:
 * malloc, calloc, realloc, memalign compare the size with the threshold (the thread's tier is read only
 * at or above it), free and realloc compare the pointer with the arenas' range (one compare for glibc's
 * blocks, which lie below it; two for the rare block above it). Everything else is out of line
 * (*_routed). glibc is reached through its exported __libc_* entry points (no dlsym, hence no bootstrap
 * problem: glibc's own malloc is usable before any symbol lookup). Per malloc+free pair of a small size
 * this costs 6 instructions over glibc alone (callgrind); a preload that only forwards costs 2.
 *
 * Measured and rejected: a dispatch pointer (each entry one `jmp *ptr` that leads straight to glibc
 * until some thread sets a tier, then to the routing versions) reaches the forwarder's +2 instructions
 * while nothing routes, but saves no time there (the compare and its untaken branch are almost free),
 * and once routing is on adds a second taken jump per call: +8 instructions and 12-16 % more time per
 * small malloc+free than this layout (measured in one process, interleaved, fastest of 3000 chunks).
 *
 * Requests larger than MAX_REQUEST (about PTRDIFF_MAX, as in glibc) never reach an arena: they fail with
 * NULL and errno ENOMEM, and realloc leaves the block as it was.
 */
#include "marl_internal.h" /* first: it defines _GNU_SOURCE */

#include <dlfcn.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

__thread int tl_tier __attribute__((tls_model("initial-exec"), visibility("hidden")));

#ifdef MARL_PREFIX_ENTRIES
#define ENTRY(name) marl_##name
/* test build: the "system" allocator is whatever malloc the program has (AddressSanitizer's) */
#include <malloc.h>
#include <stdlib.h>
#define SYS_MALLOC malloc
#define SYS_CALLOC calloc
#define SYS_REALLOC realloc
#define SYS_FREE free
#define SYS_MEMALIGN memalign
#define SYS_USABLE_LOOKUP RTLD_DEFAULT
#define SYS_VALLOC valloc
#define SYS_PVALLOC pvalloc
#else
#define ENTRY(name) name
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
#define SYS_USABLE_LOOKUP RTLD_NEXT
#define SYS_VALLOC __libc_valloc
#define SYS_PVALLOC __libc_pvalloc
#endif

/* ------------------------------------------------------------------------------------------ routing */
/* The tier for a request of n bytes, 0 for the system allocator. The size test comes first: below the
 * threshold (most requests) it is one compare, without reading the thread's tier. */
static inline int route(size_t n) {
    if (LIKELY(n < g_threshold)) return 0;
    int t = tl_tier;
    return LIKELY(t == MARL_TIER_DEFAULT) ? g_process_tier : t;
}

/* The slow paths stay out of line (noinline): inlined, they make the compiler save registers before
 * the pass-through test, which then costs several instructions more than a bare tail call. */
#define OUT_OF_LINE __attribute__((noinline))

static void *system_alloc(size_t n, size_t align) {
    return align > 16 ? SYS_MEMALIGN(align, n) : SYS_MALLOC(n);
}

static void count_refusal(arena_t *a, enum refusal why, size_t usable) {
    a->st.fallback_count++;
    a->st.fallback_bytes += usable;
    if (why == REFUSED_NOSPACE) a->st.nospace_count++;
}

/* Allocate n bytes in tier t (FAST or SLOW); overflow and fallback are handled here. The fast limit is
 * checked and the block taken in one critical section, against the block's real size. */
static OUT_OF_LINE void *tier_alloc(int t, size_t n, size_t align, int zero) {
    if (UNLIKELY(n > MAX_REQUEST)) return NULL;
    char *zero_to = NULL;
    void *p = NULL;
    enum refusal why = REFUSED_NONE;
    size_t usable = round_up(n ? n : 1, ALIGN);
    arena_t *a;
    if (t == MARL_TIER_FAST) {
        a = &g_arena[MARL_TIER_FAST];
        pthread_mutex_lock(&a->lock);
        if (a->available) {
            p = arena_alloc_locked(a, n, align, fast_room_locked(a), &zero_to, &why);
            if (!p && why == REFUSED_LIMIT) {
                a->st.overflow_count++;
                a->st.overflow_bytes += usable;
                t = MARL_TIER_SLOW;
            } else if (!p) {
                count_refusal(a, why, usable);
            }
        } else {
            count_refusal(a, REFUSED_RESERVE, usable);
        }
        pthread_mutex_unlock(&a->lock);
    }
    if (t == MARL_TIER_SLOW) {
        a = &g_arena[MARL_TIER_SLOW];
        pthread_mutex_lock(&a->lock);
        if (a->available) p = arena_alloc_locked(a, n, align, UINT64_MAX, &zero_to, &why);
        if (!p) count_refusal(a, a->available ? why : REFUSED_RESERVE, usable);
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

static OUT_OF_LINE void tier_free(int t, void *p) {
    arena_t *a = &g_arena[t];
    block_t *b = hdr_of(p);
    pthread_mutex_lock(&a->lock);
    check_block(a, b, p);
    arena_free_locked(a, b);
    pthread_mutex_unlock(&a->lock);
}

/* Usable and requested bytes of a live tier block. */
static OUT_OF_LINE size_t usable_of(int t, const void *p, size_t *req) {
    arena_t *a = &g_arena[t];
    block_t *b = hdr_of(p);
    pthread_mutex_lock(&a->lock);
    check_block(a, b, p);
    size_t n = b->size - HDR;
    if (req) *req = b->req;
    pthread_mutex_unlock(&a->lock);
    return n;
}

/* Resize a tier block in place when the thread's tier is the block's tier; the fast limit is checked
 * under the same lock as the resize. 1 when done. */
static int tier_resize(int t, void *p, size_t n) {
    arena_t *a = &g_arena[t];
    enum refusal why;
    pthread_mutex_lock(&a->lock);
    check_block(a, hdr_of(p), p);
    uint64_t room = t == MARL_TIER_FAST ? fast_room_locked(a) : UINT64_MAX;
    int ok = arena_resize_locked(a, hdr_of(p), n, room, &why);
    pthread_mutex_unlock(&a->lock);
    return ok;
}

static size_t (*real_usable_size)(void *);

size_t system_usable_size(void *p) {
    if (!real_usable_size) {
        real_usable_size = (size_t(*)(void *))dlsym(SYS_USABLE_LOOKUP, "malloc_usable_size");
        if (!real_usable_size) die("cannot find the system malloc_usable_size", p);
    }
    return real_usable_size(p);
}

/* ------------------------------------------------------------------------------ interposed entries */
static OUT_OF_LINE void *tier_malloc(int t, size_t n) {
    void *p = tier_alloc(t, n, 0, 0);
    if (!p) errno = ENOMEM;
    return p;
}

EXPORT void *ENTRY(malloc)(size_t n) {
    int t = route(n);
    if (LIKELY(!t)) return SYS_MALLOC(n);
    return tier_malloc(t, n);
}

EXPORT void ENTRY(free)(void *p) {
    int o = owner_of(p);
    if (LIKELY(!o)) {
        SYS_FREE(p);
        return;
    }
    tier_free(o, p);
}

/* calloc and realloc: the pass-through test comes first and ends in a tail call to glibc; everything
 * else is out of line, so the pass-through saves no registers and builds no stack frame. */
static OUT_OF_LINE void *calloc_routed(size_t nmemb, size_t size) {
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

EXPORT void *ENTRY(calloc)(size_t nmemb, size_t size) {
    /* The product may wrap around (unsigned: defined). Then either it is below the threshold and glibc's
     * calloc, which checks the multiplication itself, fails with ENOMEM, or calloc_routed checks it. */
    if (LIKELY(nmemb * size < g_threshold)) return SYS_CALLOC(nmemb, size);
    return calloc_routed(nmemb, size);
}

static OUT_OF_LINE void *realloc_routed(void *p, size_t n) {
    if (!p) return ENTRY(malloc)(n);
    if (n == 0) { /* glibc: free and return NULL */
        ENTRY(free)(p);
        return NULL;
    }
    int o = owner_of(p);
    int t = route(n);
    if (LIKELY(!o && !t)) return SYS_REALLOC(p, n);
    if (UNLIKELY(n > MAX_REQUEST)) { /* like glibc: NULL, ENOMEM, the block as it was */
        errno = ENOMEM;
        return NULL;
    }
    if (o && o == t && tier_resize(o, p, n)) return p;
    /* move: allocate where a new block of n bytes goes now, copy, free in the owner */
    size_t req = 0;
    size_t old = o ? usable_of(o, p, &req) : system_usable_size(p);
    void *q = t ? tier_alloc(t, n, 0, 0) : SYS_MALLOC(n);
    if (!q) {
        errno = ENOMEM;
        return NULL;
    }
    if (o && req < old) old = req; /* only the requested bytes are meaningful (and unpoisoned) */
    memcpy(q, p, old < n ? old : n);
    if (o)
        tier_free(o, p);
    else
        SYS_FREE(p);
    return q;
}

EXPORT void *ENTRY(realloc)(void *p, size_t n) {
    /* A glibc block (or NULL) and a size below the threshold stay with glibc, whose realloc also does
     * what realloc(NULL, n) (malloc) and realloc(p, 0) (free, NULL) must here. */
    if (LIKELY(n < g_threshold && !owner_of(p))) return SYS_REALLOC(p, n);
    return realloc_routed(p, n);
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

/* posix_memalign stays in one piece: it cannot end in a tail call (it stores the block), and glibc's own
 * posix_memalign, which could, costs 31 instructions more than __libc_memalign (callgrind). */
EXPORT int ENTRY(posix_memalign)(void **out, size_t align, size_t n) {
    if (!valid_align(align) || align % sizeof(void *)) return EINVAL;
    int t = route(n);
    void *p = t ? tier_alloc(t, n, align, 0) : SYS_MEMALIGN(align, n);
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}

static OUT_OF_LINE void *memalign_routed(size_t align, size_t n) {
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

/* A bad alignment goes out of line and is rounded up there, as glibc does (AddressSanitizer's memalign,
 * the system allocator of the test build, refuses it instead). */
EXPORT void *ENTRY(memalign)(size_t align, size_t n) {
    if (LIKELY(n < g_threshold && valid_align(align))) return SYS_MEMALIGN(align, n);
    return memalign_routed(align, n);
}

EXPORT void *ENTRY(aligned_alloc)(size_t align, size_t n) {
    if (!valid_align(align)) {
        errno = EINVAL;
        return NULL;
    }
    if (LIKELY(n < g_threshold)) return SYS_MEMALIGN(align, n);
    return memalign_routed(align, n);
}

EXPORT void *ENTRY(valloc)(size_t n) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    int t = route(n);
    if (!t) return SYS_VALLOC(n);
    return memalign_routed(page, n);
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
    return memalign_routed(page, rounded);
}

EXPORT size_t ENTRY(malloc_usable_size)(void *p) {
    if (!p) return 0;
    int o = owner_of(p);
    if (LIKELY(!o)) return system_usable_size(p);
    return usable_of(o, p, NULL);
}
