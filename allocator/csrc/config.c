/* Configuration: the MARL_ALLOC_* environment variables, start-up, and the configuration as JSON.
 *
 * Every variable is parsed strictly, in every mode. A malformed value (a size that is not digits with an
 * optional K/M/G/T suffix, a negative number, an exponent, trailing text, a value past the variable's
 * range, an unknown tier, backing or flag word) is a typo the user must hear about, not something to
 * guess around: the library prints one line naming the variable, the value and what it expects, and
 * ends the process with _exit(MARL_EXIT_CONFIG) before main() runs. An empty value counts as unset.
 *
 * MARL_ALLOC_STRICT decides what happens when a well-formed configuration cannot be set up (address
 * space refused, an mbind or a backing file that fails): strict, the same kind of message and exit;
 * otherwise a warning, and the tier's requests go to the system allocator, counted as fallback.
 */
#include "marl_internal.h" /* first: it defines _GNU_SOURCE */

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define MARL_EXIT_CONFIG 78 /* EX_CONFIG in sysexits.h: configuration error */
#define MAX_RESERVE ((uint64_t)1 << 46) /* 64 TiB per tier: both fit in a 47-bit user address space */

INTERNAL arena_t g_arena[3];
/* No range yet (before the constructor, or none could be reserved): every pointer lies below it, so free
 * passes it to glibc after one compare, as it does for glibc's blocks below a reserved range. */
INTERNAL char *g_lo = (char *)UINTPTR_MAX, *g_hi = (char *)UINTPTR_MAX;
INTERNAL size_t g_threshold = 256;
INTERNAL int g_process_tier = MARL_TIER_DEFAULT;
INTERNAL uint64_t g_fast_limit;
INTERNAL int g_initialised;
INTERNAL int g_strict;
INTERNAL int g_require_dax;

static const char SIZE_SYNTAX[] = "a whole number of bytes: digits with an optional binary suffix K, M, G or T "
                                  "(e.g. 4096, 64K, 2G)";

/* ------------------------------------------------------------------------------------- parsing */
/* "123", "64K", "64KiB", "2g", "512B": digits, an optional K/M/G/T (binary) with an optional "i", an
 * optional "B". Nothing else: no sign, no spaces, no decimal point, no exponent. 0 or -1. */
static int parse_size(const char *s, uint64_t *out) {
    uint64_t v = 0;
    const char *c = s;
    if (*c < '0' || *c > '9') return -1;
    while (*c >= '0' && *c <= '9') {
        if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, (uint64_t)(*c - '0'), &v)) return -1;
        c++;
    }
    int shift = 0;
    switch (*c) {
    case 'k': case 'K': shift = 10; break;
    case 'm': case 'M': shift = 20; break;
    case 'g': case 'G': shift = 30; break;
    case 't': case 'T': shift = 40; break;
    default: break;
    }
    if (shift) {
        c++;
        if (*c == 'i' || *c == 'I') c++;
    }
    if (*c == 'b' || *c == 'B') c++;
    if (*c) return -1;
    if (shift && v > (UINT64_MAX >> shift)) return -1;
    *out = v << shift;
    return 0;
}

static int same_word(const char *a, const char *b) { return strcasecmp(a, b) == 0; }

/* The variable's value, or NULL when it is unset or empty. */
static const char *env(const char *name) {
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

/* Print "NAME=value is not valid: expected ...; ..." and end the process. */
static __attribute__((noreturn)) void bad_value(const char *name, const char *value, const char *expected) {
    char shown[96], msg[768];
    size_t n = 0;
    for (; value[n] && n + 4 < sizeof shown; n++) /* control characters as '?', long values cut */
        shown[n] = (unsigned char)value[n] < 32 || value[n] == 127 ? '?' : value[n];
    shown[n] = 0;
    if (value[n]) append(shown, sizeof shown, n, "...");
    size_t at = append(msg, sizeof msg, 0, name);
    at = append(msg, sizeof msg, at, "=");
    at = append(msg, sizeof msg, at, shown);
    at = append(msg, sizeof msg, at, " is not valid: expected ");
    at = append(msg, sizeof msg, at, expected);
    append(msg, sizeof msg, at, "; a malformed MARL_ALLOC_* value is always fatal: exiting with status 78");
    say(msg, NULL, NULL, NULL);
    _exit(MARL_EXIT_CONFIG);
}

static int env_bool(const char *name, int unset) {
    const char *v = env(name);
    if (!v) return unset;
    if (same_word(v, "1") || same_word(v, "true") || same_word(v, "yes")) return 1;
    if (same_word(v, "0") || same_word(v, "false") || same_word(v, "no")) return 0;
    bad_value(name, v, "1, true or yes to turn it on, 0, false or no to turn it off (any case)");
}

static uint64_t env_size(const char *name, uint64_t unset, uint64_t lo, uint64_t hi, const char *expected) {
    const char *v = env(name);
    if (!v) return unset;
    uint64_t n;
    if (parse_size(v, &n) != 0 || n < lo || n > hi) bad_value(name, v, expected);
    return n;
}

static int parse_tier_name(const char *s) {
    if (same_word(s, "default") || same_word(s, "system")) return MARL_TIER_DEFAULT;
    if (same_word(s, "fast")) return MARL_TIER_FAST;
    if (same_word(s, "slow")) return MARL_TIER_SLOW;
    return -1;
}

static void parse_backing(arena_t *a, const char *name) {
    static const char expected[] = "anon, numa:N (N a NUMA node number from 0 to 1023) or file:/directory";
    const char *spec = env(name);
    size_t at = append(a->spec, sizeof a->spec, 0, name);
    at = append(a->spec, sizeof a->spec, at, "=");
    append(a->spec, sizeof a->spec, at, spec ? spec : "anon");
    a->kind = BACK_ANON;
    if (!spec || !strcmp(spec, "anon")) return;
    if (!strncmp(spec, "numa:", 5)) {
        uint64_t node;
        const char *c = spec + 5;
        for (const char *d = c; *d; d++) /* digits only: parse_size would accept a suffix */
            if (*d < '0' || *d > '9') bad_value(name, spec, expected);
        if (parse_size(c, &node) != 0 || node > 1023) bad_value(name, spec, expected);
        a->kind = BACK_NUMA;
        a->numa_node = (int)node;
        return;
    }
    if (!strncmp(spec, "file:", 5) || !strncmp(spec, "dax:", 4)) {
        const char *dir = spec + (spec[0] == 'f' ? 5 : 4);
        if (!*dir) bad_value(name, spec, "a directory after file: (file:/mnt/pmem)");
        if (strlen(dir) >= sizeof a->dir - 32) bad_value(name, spec, "a directory path shorter than 480 bytes");
        a->kind = BACK_FILE;
        append(a->dir, sizeof a->dir, 0, dir);
        return;
    }
    bad_value(name, spec, expected);
}

/* A configuration that parsed but cannot be set up: fatal when strict, else a warning saying what the
 * allocator does instead. */
static void cannot_set_up(const char *what, const char *detail, const char *instead) {
    if (g_strict) {
        say(what, detail, "; exiting with status 78 because MARL_ALLOC_STRICT is on", NULL);
        _exit(MARL_EXIT_CONFIG);
    }
    say(what, detail, "; ", instead);
}

/* ------------------------------------------------------------------------------------- start-up */
__attribute__((constructor(101))) static void marl_init(void) {
    if (g_initialised) return;
    /* 1. parse everything: a malformed value ends the process here, before anything is set up */
    g_strict = env_bool("MARL_ALLOC_STRICT", 0);
    g_require_dax = env_bool("MARL_ALLOC_REQUIRE_DAX", 0);
    int verbose = env_bool("MARL_ALLOC_VERBOSE", 0);
    uint64_t threshold = env_size("MARL_ALLOC_THRESHOLD", 256, 0, MAX_REQUEST, SIZE_SYNTAX);
    g_threshold = threshold ? threshold : 1;
    g_fast_limit = env_size("MARL_ALLOC_FAST_LIMIT", 0, 0, UINT64_MAX,
                            "a whole number of bytes: digits with an optional binary suffix K, M, G or T (e.g. "
                            "512M); 0 means no limit");
    static const char reserve_expected[] = "a size from 1M to 64T: digits with an optional binary suffix K, M, G or "
                                           "T (e.g. 64G)";
    uint64_t reserve[3] = {0, 0, 0};
    reserve[MARL_TIER_FAST] = env_size("MARL_ALLOC_FAST_RESERVE", (uint64_t)64 << 30, 1u << 20, MAX_RESERVE,
                                       reserve_expected);
    reserve[MARL_TIER_SLOW] = env_size("MARL_ALLOC_SLOW_RESERVE", (uint64_t)64 << 30, 1u << 20, MAX_RESERVE,
                                       reserve_expected);
    const char *backing_env[3] = {NULL, "MARL_ALLOC_FAST", "MARL_ALLOC_SLOW"};
    for (int t = MARL_TIER_FAST; t <= MARL_TIER_SLOW; t++) {
        arena_t *a = &g_arena[t];
        pthread_mutex_init(&a->lock, NULL);
        a->tier = t;
        a->fd = a->fork_fd = -1;
        parse_backing(a, backing_env[t]);
    }
    int process_tier = MARL_TIER_DEFAULT;
    const char *s = env("MARL_ALLOC_PROCESS_TIER");
    if (s && (process_tier = parse_tier_name(s)) < 0)
        bad_value("MARL_ALLOC_PROCESS_TIER", s, "default (or system), fast or slow");

    /* 2. reserve both ranges as one, 2 MiB-aligned so that huge pages can back the arenas */
    size_t huge = (size_t)2 << 20;
    for (int t = MARL_TIER_FAST; t <= MARL_TIER_SLOW; t++) reserve[t] = round_up(reserve[t], huge);
    size_t total = reserve[1] + reserve[2];
    char *raw = mmap(NULL, total + huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (raw == MAP_FAILED) {
        cannot_set_up("cannot reserve address space for the tiers: ", error_text(errno),
                      "every allocation goes to the system allocator (lower MARL_ALLOC_FAST_RESERVE and "
                      "MARL_ALLOC_SLOW_RESERVE)");
        g_process_tier = process_tier;
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
        if (backing_setup(a) == 0) {
            a->available = 1;
        } else {
            char what[700];
            size_t n = append(what, sizeof what, 0, a->spec);
            append(what, sizeof what, n, " unavailable: ");
            cannot_set_up(what, a->error, "its requests go to the system allocator (counted as fallback)");
        }
    }
    g_process_tier = process_tier;
    pthread_atfork(backing_atfork_prepare, backing_atfork_parent, backing_atfork_child);
    system_usable_size(NULL); /* resolve the system malloc_usable_size now, not inside a hook later */
    g_initialised = 1;
    if (verbose) {
        char buf[3072];
        marl_config_json(buf, sizeof buf);
        say("config ", buf, NULL, NULL);
    }
}

/* ------------------------------------------------------------------------------ configuration JSON */
static const char *kind_name(int k) { return k == BACK_NUMA ? "numa" : k == BACK_FILE ? "file" : "anon"; }
static const char *tier_name(int t) {
    return t == MARL_TIER_FAST ? "fast" : t == MARL_TIER_SLOW ? "slow" : "default";
}

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
    at = append(buf, len, at, ", \"require_dax\": ");
    at = append(buf, len, at, g_require_dax ? "true" : "false");
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
        at = a->kind == BACK_FILE ? append_json_str(buf, len, at, a->dir) : append(buf, len, at, "null");
        at = append(buf, len, at, ", \"dax\": ");
        at = append(buf, len, at, a->kind == BACK_FILE ? (a->dax ? "true" : "false") : "null");
        at = append(buf, len, at, ", \"fs_type\": ");
        at = a->kind == BACK_FILE && a->fs_type[0] ? append_json_str(buf, len, at, a->fs_type)
                                                    : append(buf, len, at, "null");
        at = append(buf, len, at, ", \"error\": ");
        at = a->error[0] ? append_json_str(buf, len, at, a->error) : append(buf, len, at, "null");
        at = append(buf, len, at, "}");
    }
    at = append(buf, len, at, "}");
    return (int)at + 1;
}
