/* marl-gym tiering allocator: what the source files share (not part of the public API).
 *
 * The library is split by concern:
 *   heap.c     the arena: boundary-tag blocks, size-class bins, coalescing, in-place resize, heap check
 *   backing.c  what memory backs an arena (anonymous, a NUMA node, a preallocated file) and fork
 *   config.c   the environment variables, start-up (the constructor) and the configuration as JSON
 *   entries.c  the interposed malloc family and the routing of each request to a tier or to glibc
 *   control.c  the control API of marl_alloc.h (tiers, threshold, fast limit, statistics, trim)
 *   text.c     messages and JSON text without stdio (the allocator must not allocate to print)
 *
 * Build variants (every file sees the same macros):
 *   default                 exports malloc, free, ... (the interposer)
 *   -DMARL_PREFIX_ENTRIES   exports marl_malloc, marl_free, ... instead, for tests that run under
 *                           AddressSanitizer (which owns malloc itself); with -DMARL_ASAN_POISON the
 *                           arenas poison headers and free space so ASan sees out-of-block accesses.
 */
#ifndef MARL_INTERNAL_H
#define MARL_INTERNAL_H

#define _GNU_SOURCE
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "marl_alloc.h"

#ifdef MARL_ASAN_POISON
/* the functions, not the ASAN_* macros: these files themselves are compiled without -fsanitize */
void __asan_poison_memory_region(void const volatile *addr, size_t size);
void __asan_unpoison_memory_region(void const volatile *addr, size_t size);
#define POISON(p, n) __asan_poison_memory_region((p), (n))
#define UNPOISON(p, n) __asan_unpoison_memory_region((p), (n))
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#define EXPORT __attribute__((visibility("default")))
#define INTERNAL __attribute__((visibility("hidden")))
#define LIKELY(x) __builtin_expect(!!(x), 1)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)

/* ------------------------------------------------------------------------------------------ layout */
#define ALIGN 64u             /* payload alignment: PyTorch asks for 64 (posix_memalign) */
#define HDR 64u               /* header bytes before each payload */
#define MIN_BLOCK (HDR + ALIGN)
#define NBINS 64
#define MAGIC_USED 0x6d61726cu /* "marl" */
#define MAGIC_FREE 0x66726565u /* "free" */
#define F_INUSE 1u
#define F_PUNCHED 2u                   /* free block whose pages were given back (file: holes punched) */
#define TRIM_SLACK ((size_t)64 << 20)  /* pages above top are returned once this many are idle */
#define FILE_EXTENT ((size_t)2 << 20)  /* a file backing is preallocated in steps of at least this */
/* The largest request a tier considers. Like glibc (which refuses more than PTRDIFF_MAX), and small
 * enough that rounding it up to ALIGN and adding a header cannot wrap around. */
#define MAX_REQUEST ((size_t)PTRDIFF_MAX - 2 * MIN_BLOCK)

typedef struct block {
    size_t size;      /* whole block including header, multiple of ALIGN */
    size_t prev_size; /* size of the block just below (0 for the first block) */
    size_t req;       /* bytes requested (in-use blocks) */
    uint32_t magic;
    uint32_t flags;     /* F_INUSE, F_PUNCHED */
    struct block *next; /* free-list links (free blocks) */
    struct block *prev;
    char pad[HDR - 48];
} block_t;
_Static_assert(sizeof(block_t) == HDR, "block header must be HDR bytes");

enum backing_kind { BACK_ANON = 0, BACK_NUMA = 1, BACK_FILE = 2 };

/* Why an arena could not serve a request (arena_alloc_locked / arena_resize_locked). */
enum refusal { REFUSED_NONE = 0, REFUSED_LIMIT, REFUSED_RESERVE, REFUSED_NOSPACE };

typedef struct arena {
    pthread_mutex_t lock;
    int tier;
    int available;
    int kind;
    int numa_node;
    int fd;
    int dax;
    int warned_nospace; /* the "file system full" warning was printed */
    char dir[512];
    char spec[560];   /* the variable as given, e.g. "MARL_ALLOC_SLOW=file:/mnt/pmem" (for messages) */
    char fs_type[24]; /* file backings: the file system's name from statfs (for messages and the config) */
    char error[200];
    char *base, *end; /* reserved range [base, end) */
    char *top;        /* first byte not in any block */
    size_t top_prev;  /* size of the block just below top (0 if none) */
    char *dirty;      /* bytes at or above this address are known to be zero (never handed out) */
    char *committed;  /* highest address that may hold pages (for trimming) */
    char *backed;     /* file backings: [base, backed) is preallocated, except holes in F_PUNCHED blocks */
    /* fork of a file-backed tier: the child's copy of the used part, made while the locks are held */
    int fork_fd;       /* a preallocated file holding the copy, or -1 */
    char *fork_anon;   /* else an anonymous private copy (file system full), or NULL */
    size_t fork_bytes; /* bytes copied */
    block_t *bins[NBINS];
    uint64_t binmap;
    marl_tier_stats st;
} arena_t;

/* ------------------------------------------------------------------------------- shared state */
extern INTERNAL arena_t g_arena[3]; /* indexed by MARL_TIER_FAST / MARL_TIER_SLOW; [0] unused */
extern INTERNAL char *g_lo, *g_hi;  /* union of both ranges */
extern INTERNAL size_t g_threshold;
extern INTERNAL int g_process_tier;
extern INTERNAL uint64_t g_fast_limit; /* written under the fast arena's lock */
extern INTERNAL int g_initialised;
extern INTERNAL int g_strict;
extern INTERNAL int g_require_dax;
extern __thread int tl_tier __attribute__((tls_model("initial-exec"), visibility("hidden")));

/* ---------------------------------------------------------------------------------- small helpers */
static inline size_t round_up(size_t n, size_t a) { return (n + a - 1) & ~(a - 1); }
static inline block_t *hdr_of(const void *p) { return (block_t *)((char *)p - HDR); }
static inline void *payload(block_t *b) { return (char *)b + HDR; }
static inline int bin_index(size_t size) { return 63 - __builtin_clzl(size); }

/* The block size (header included) for a request; 0 when the request is too large for any tier. */
static inline size_t block_need(size_t req) {
    if (UNLIKELY(req > MAX_REQUEST)) return 0;
    size_t need = round_up(req ? req : 1, ALIGN) + HDR;
    return need < MIN_BLOCK ? MIN_BLOCK : need;
}

/* Which tier owns p: MARL_TIER_FAST, MARL_TIER_SLOW, or 0 (the system allocator's, or NULL). */
static inline int owner_of(const void *p) {
    const char *c = (const char *)p;
    if (LIKELY(c < g_lo || c >= g_hi)) return 0;
    return c < g_arena[MARL_TIER_FAST].end ? MARL_TIER_FAST : MARL_TIER_SLOW;
}

/* Room left under the fast limit (under the fast arena's lock); UINT64_MAX when there is no limit. */
static inline uint64_t fast_room_locked(const arena_t *a) {
    if (!g_fast_limit) return UINT64_MAX;
    return g_fast_limit > a->st.live_bytes ? g_fast_limit - a->st.live_bytes : 0;
}

/* ------------------------------------------------------------------------------------------ heap.c */
/* Allocate under the arena lock; the block's usable bytes may not exceed `room`. Sets *zero_to (payload
 * bytes at or above it are known to be zero) and, on failure, *why. */
INTERNAL void *arena_alloc_locked(arena_t *a, size_t req, size_t align, uint64_t room, char **zero_to,
                                  enum refusal *why);
INTERNAL void arena_free_locked(arena_t *a, block_t *b);
/* Resize in place if the block can grow by at most `room` usable bytes; 1 on success, else 0, *why. */
INTERNAL int arena_resize_locked(arena_t *a, block_t *b, size_t req, uint64_t room, enum refusal *why);
INTERNAL void check_block(arena_t *a, block_t *b, const void *p); /* dies unless p is a live block */
INTERNAL int arena_check_locked(arena_t *a);                      /* 0 when consistent */
INTERNAL uint64_t arena_trim_locked(arena_t *a);                  /* bytes given back */
/* Copy every live block, and the header of every free block, to dst at the same offsets from base. Free
 * payloads are skipped: they hold nothing, and reading a punched hole may fault (tmpfs allocates). */
INTERNAL void arena_copy_live_locked(arena_t *a, char *dst);

/* --------------------------------------------------------------------------------------- backing.c */
INTERNAL int backing_setup(arena_t *a); /* 0, or -1 with a->error set */
/* File backings: make [base, upto) preallocated; 0, or -1 when the file system refused (full). */
INTERNAL int backing_extend(arena_t *a, char *upto);
INTERNAL int backing_fill(arena_t *a, char *lo, char *hi); /* preallocate a punched range again */
INTERNAL int backing_release(arena_t *a, char *lo, char *hi); /* give pages back; 0 when done */
INTERNAL void backing_nospace(arena_t *a, int err);          /* count it, warn once */
INTERNAL void backing_atfork_prepare(void);
INTERNAL void backing_atfork_parent(void);
INTERNAL void backing_atfork_child(void);

/* ------------------------------------------------------------------------------------------ text.c */
INTERNAL void say(const char *a, const char *b, const char *c, const char *d);
INTERNAL __attribute__((noreturn)) void die(const char *what, const void *ptr);
INTERNAL size_t append(char *buf, size_t len, size_t at, const char *s);
INTERNAL size_t append_u64(char *buf, size_t len, size_t at, uint64_t v);
INTERNAL size_t append_json_str(char *buf, size_t len, size_t at, const char *s);
INTERNAL const char *error_text(int err); /* strerror without allocating or translating */

/* --------------------------------------------------------------------------------------- entries.c */
INTERNAL size_t system_usable_size(void *p);

#endif
