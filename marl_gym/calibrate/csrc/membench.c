/* marl-gym calibrate: memory and latency kernels, run on buffers the tiering allocator placed.
 *
 * Built on first use by marl_gym/calibrate/_build.py and loaded with cffi (ABI mode) in a process
 * started with the allocator preloaded. The caller allocates each buffer with mb_alloc() while its
 * thread's tier is set, so the buffer lives in that tier's backing (anon, numa:N, file:/dir); the
 * kernels only read and write it. Every kernel is timed here, in C, with CLOCK_MONOTONIC.
 *
 * Kinds of streaming kernel (mb_stream):
 *   MB_SEQ_READ      each thread reads its slice front to back (16-byte loads, 4 accumulators)
 *   MB_SEQ_WRITE     each thread writes its slice with ordinary (cached) stores
 *   MB_SEQ_WRITE_NT  each thread writes its slice with non-temporal stores (movntdq), sfence at the end
 *   MB_RAND_READ     each thread reads whole 64-byte lines at independent random addresses
 *   MB_RAND_WRITE    each thread writes whole 64-byte lines (ordinary stores) at random addresses
 * Latency: a dependent pointer chase through one pointer per 64-byte line (mb_build_chain, mb_chase),
 * in sequential order (prefetch-friendly) or a random cyclic order; loaded latency runs the chase while
 * other threads stream-read another buffer (mb_loaded_latency).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#include <emmintrin.h>
#define MB_HAVE_NT 1
#else
#define MB_HAVE_NT 0
#endif

#define MB_SEQ_READ 0
#define MB_SEQ_WRITE 1
#define MB_SEQ_WRITE_NT 2
#define MB_RAND_READ 3
#define MB_RAND_WRITE 4
#define MB_LINE 64
#define MB_MAX_THREADS 1024

#define MB_EXPORT __attribute__((visibility("default")))

typedef struct mb_result {
    double seconds;    /* wall time from the common start to the last thread's end */
    uint64_t bytes;    /* bytes moved by all threads together */
    uint64_t checksum; /* folded loads, so the compiler cannot drop the reads */
} mb_result;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static inline uint64_t xorshift(uint64_t *s) {
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* a uniform index in [0, n) without a division */
static inline uint64_t below(uint64_t r, uint64_t n) { return (uint64_t)(((unsigned __int128)r * n) >> 64); }

MB_EXPORT int mb_abi_version(void) { return 1; }
MB_EXPORT int mb_has_nontemporal(void) { return MB_HAVE_NT; }

MB_EXPORT void *mb_alloc(size_t bytes) {
    void *p = NULL;
    if (posix_memalign(&p, 4096, bytes) != 0) return NULL;
    return p;
}

MB_EXPORT void mb_free(void *p) { free(p); }

/* ------------------------------------------------------------------ streaming kernels */
typedef struct {
    int kind;
    char *base;
    size_t bytes; /* this thread's slice (sequential) or the whole buffer (random) */
    size_t work;  /* passes over the slice (sequential) or line accesses (random) */
    uint64_t seed;
    volatile int *go; /* 1: start; -1: give up (another thread could not be created) */
    double start, end;
    uint64_t checksum;
    uint64_t moved;
} stream_arg;

static uint64_t seq_read(const char *p, size_t bytes, size_t passes) {
#if MB_HAVE_NT
    __m128i a0 = _mm_setzero_si128(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t r = 0; r < passes; r++) {
        for (size_t off = 0; off + MB_LINE <= bytes; off += MB_LINE) {
            const __m128i *q = (const __m128i *)(p + off);
            a0 = _mm_xor_si128(a0, _mm_load_si128(q));
            a1 = _mm_xor_si128(a1, _mm_load_si128(q + 1));
            a2 = _mm_xor_si128(a2, _mm_load_si128(q + 2));
            a3 = _mm_xor_si128(a3, _mm_load_si128(q + 3));
        }
    }
    a0 = _mm_xor_si128(_mm_xor_si128(a0, a1), _mm_xor_si128(a2, a3));
    uint64_t out[2];
    _mm_storeu_si128((__m128i *)out, a0);
    return out[0] ^ out[1];
#else
    uint64_t a = 0, b = 0, c = 0, d = 0;
    for (size_t r = 0; r < passes; r++)
        for (size_t off = 0; off + MB_LINE <= bytes; off += MB_LINE) {
            const uint64_t *q = (const uint64_t *)(p + off);
            a ^= q[0];
            b ^= q[2];
            c ^= q[4];
            d ^= q[6];
        }
    return a ^ b ^ c ^ d;
#endif
}

static void seq_write(char *p, size_t bytes, size_t passes, int nontemporal, uint64_t value) {
#if MB_HAVE_NT
    __m128i v = _mm_set1_epi64x((long long)value);
    for (size_t r = 0; r < passes; r++) {
        if (nontemporal) {
            for (size_t off = 0; off + MB_LINE <= bytes; off += MB_LINE) {
                __m128i *q = (__m128i *)(p + off);
                _mm_stream_si128(q, v);
                _mm_stream_si128(q + 1, v);
                _mm_stream_si128(q + 2, v);
                _mm_stream_si128(q + 3, v);
            }
            _mm_sfence();
        } else {
            for (size_t off = 0; off + MB_LINE <= bytes; off += MB_LINE) {
                __m128i *q = (__m128i *)(p + off);
                _mm_store_si128(q, v);
                _mm_store_si128(q + 1, v);
                _mm_store_si128(q + 2, v);
                _mm_store_si128(q + 3, v);
            }
        }
    }
#else
    (void)nontemporal;
    for (size_t r = 0; r < passes; r++)
        for (size_t off = 0; off + 8 <= bytes; off += 8) *(volatile uint64_t *)(p + off) = value;
#endif
}

static uint64_t rand_lines(char *p, size_t bytes, size_t accesses, uint64_t seed, int write) {
    uint64_t lines = bytes / MB_LINE, s = seed | 1, acc = 0;
    if (lines == 0) return 0;
#if MB_HAVE_NT
    __m128i v = _mm_set1_epi64x((long long)seed), a = _mm_setzero_si128();
    for (size_t k = 0; k < accesses; k++) {
        __m128i *q = (__m128i *)(p + below(xorshift(&s), lines) * MB_LINE);
        if (write) {
            _mm_store_si128(q, v);
            _mm_store_si128(q + 1, v);
            _mm_store_si128(q + 2, v);
            _mm_store_si128(q + 3, v);
        } else {
            a = _mm_xor_si128(a, _mm_xor_si128(_mm_xor_si128(_mm_load_si128(q), _mm_load_si128(q + 1)),
                                               _mm_xor_si128(_mm_load_si128(q + 2), _mm_load_si128(q + 3))));
        }
    }
    uint64_t out[2];
    _mm_storeu_si128((__m128i *)out, a);
    acc = out[0] ^ out[1];
#else
    for (size_t k = 0; k < accesses; k++) {
        uint64_t *q = (uint64_t *)(p + below(xorshift(&s), lines) * MB_LINE);
        for (int j = 0; j < 8; j++) {
            if (write)
                ((volatile uint64_t *)q)[j] = seed;
            else
                acc ^= q[j];
        }
    }
#endif
    return acc;
}

static void *stream_thread(void *v) {
    stream_arg *a = (stream_arg *)v;
    while (__atomic_load_n(a->go, __ATOMIC_ACQUIRE) == 0) {
    }
    if (*a->go < 0) return NULL;
    a->start = now_s();
    switch (a->kind) {
    case MB_SEQ_READ:
        a->checksum = seq_read(a->base, a->bytes, a->work);
        a->moved = (a->bytes / MB_LINE) * MB_LINE * a->work;
        break;
    case MB_SEQ_WRITE:
    case MB_SEQ_WRITE_NT:
        seq_write(a->base, a->bytes, a->work, a->kind == MB_SEQ_WRITE_NT, a->seed);
        a->moved = (a->bytes / MB_LINE) * MB_LINE * a->work;
        break;
    case MB_RAND_READ:
    case MB_RAND_WRITE:
        a->checksum = rand_lines(a->base, a->bytes, a->work, a->seed, a->kind == MB_RAND_WRITE);
        a->moved = (uint64_t)a->work * MB_LINE;
        break;
    }
    a->end = now_s();
    return NULL;
}

/* Run one kernel with `threads` threads. Sequential kinds: the buffer is cut into one 64-byte-aligned
 * slice per thread and each thread makes `work` passes over its slice. Random kinds: every thread makes
 * `work` line accesses anywhere in the buffer. Returns 0, or -1 on bad arguments / thread errors. */
MB_EXPORT int mb_stream(int kind, void *buf, size_t bytes, int threads, size_t work, uint64_t seed,
                        mb_result *out) {
    if (!buf || !out || threads < 1 || threads > MB_MAX_THREADS || kind < MB_SEQ_READ || kind > MB_RAND_WRITE ||
        bytes < (size_t)threads * MB_LINE)
        return -1;
    stream_arg *args = calloc((size_t)threads, sizeof(stream_arg));
    pthread_t *tids = calloc((size_t)threads, sizeof(pthread_t));
    if (!args || !tids) {
        free(args);
        free(tids);
        return -1;
    }
    volatile int go = 0;
    size_t slice = (bytes / (size_t)threads) & ~(size_t)(MB_LINE - 1);
    int sequential = kind == MB_SEQ_READ || kind == MB_SEQ_WRITE || kind == MB_SEQ_WRITE_NT;
    int started = 0;
    for (int t = 0; t < threads; t++) {
        args[t].kind = kind;
        args[t].base = (char *)buf + (sequential ? (size_t)t * slice : 0);
        args[t].bytes = sequential ? slice : bytes;
        args[t].work = work;
        args[t].seed = seed + 0x9E3779B97F4A7C15ull * (uint64_t)(t + 1);
        args[t].go = &go;
    }
    for (int t = 1; t < threads; t++) {
        if (pthread_create(&tids[t], NULL, stream_thread, &args[t]) != 0) break;
        started++;
    }
    int rc = started == threads - 1 ? 0 : -1;
    __atomic_store_n(&go, rc == 0 ? 1 : -1, __ATOMIC_RELEASE);
    if (rc == 0) stream_thread(&args[0]);
    for (int t = 1; t <= started; t++) pthread_join(tids[t], NULL);
    if (rc != 0) {
        free(args);
        free(tids);
        return rc;
    }
    double start = args[0].start, end = args[0].end;
    uint64_t moved = 0, sum = 0;
    for (int t = 0; t < threads; t++) {
        if (args[t].start < start) start = args[t].start;
        if (args[t].end > end) end = args[t].end;
        moved += args[t].moved;
        sum ^= args[t].checksum;
    }
    out->seconds = end - start;
    out->bytes = moved;
    out->checksum = sum;
    free(args);
    free(tids);
    return rc;
}

/* Touch every page of a buffer with `threads` threads (first touch places the pages). */
MB_EXPORT int mb_fill(void *buf, size_t bytes, int threads) {
    mb_result r;
    return mb_stream(MB_SEQ_WRITE, buf, bytes, threads, 1, 0x5A5A5A5Aull, &r);
}

/* ------------------------------------------------------------------------ latency */
/* Link every 64-byte line of the buffer into one cycle of pointers: in address order (random = 0) or in
 * a random cyclic order (Sattolo's shuffle, random = 1). Returns 0, or -1 when memory is short. */
MB_EXPORT int mb_build_chain(void *buf, size_t bytes, int random, uint64_t seed) {
    uint64_t lines = bytes / MB_LINE;
    if (!buf || lines < 2) return -1;
    char *base = (char *)buf;
    if (!random) {
        for (uint64_t i = 0; i < lines; i++) *(void **)(base + i * MB_LINE) = base + ((i + 1) % lines) * MB_LINE;
        return 0;
    }
    if (lines > UINT32_MAX) return -1;
    uint32_t *order = malloc(lines * sizeof(uint32_t));
    if (!order) return -1;
    for (uint64_t i = 0; i < lines; i++) order[i] = (uint32_t)i;
    uint64_t s = seed | 1;
    for (uint64_t i = lines - 1; i > 0; i--) { /* Sattolo: a single cycle through every line */
        uint64_t j = below(xorshift(&s), i);
        uint32_t t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    for (uint64_t i = 0; i < lines; i++)
        *(void **)(base + (uint64_t)order[i] * MB_LINE) = base + (uint64_t)order[(i + 1) % lines] * MB_LINE;
    free(order);
    return 0;
}

static void *volatile mb_sink;

/* Follow `steps` pointers of a chain built by mb_build_chain; returns nanoseconds per step. */
MB_EXPORT double mb_chase(void *buf, size_t steps) {
    void **p = (void **)buf;
    for (size_t i = 0; i < 1000 && i < steps; i++) p = (void **)*p; /* warm the first lines */
    double t0 = now_s();
    for (size_t i = 0; i < steps; i++) p = (void **)*p;
    double t1 = now_s();
    mb_sink = p;
    return steps ? (t1 - t0) * 1e9 / (double)steps : 0.0;
}

/* Store latency: one 64-byte non-temporal (or ordinary, without MB_HAVE_NT) line store followed by a
 * store fence, `lines` times at consecutive lines; returns nanoseconds per line. */
MB_EXPORT double mb_store_latency(void *buf, size_t bytes, size_t lines) {
    size_t n = bytes / MB_LINE;
    if (!buf || n == 0) return 0.0;
    char *base = (char *)buf;
    double t0 = now_s();
    for (size_t i = 0; i < lines; i++) {
        char *q = base + (i % n) * MB_LINE;
#if MB_HAVE_NT
        __m128i v = _mm_set1_epi64x((long long)i);
        _mm_stream_si128((__m128i *)q, v);
        _mm_stream_si128((__m128i *)q + 1, v);
        _mm_stream_si128((__m128i *)q + 2, v);
        _mm_stream_si128((__m128i *)q + 3, v);
        _mm_sfence();
#else
        for (int j = 0; j < 8; j++) ((volatile uint64_t *)q)[j] = i;
        __sync_synchronize();
#endif
    }
    double t1 = now_s();
    return lines ? (t1 - t0) * 1e9 / (double)lines : 0.0;
}

typedef struct {
    const char *base;
    size_t bytes;
    volatile int *stop;
    uint64_t moved;
    double start, end;
    uint64_t checksum;
} load_arg;

static void *load_thread(void *v) {
    load_arg *a = (load_arg *)v;
    a->start = now_s();
    while (!*a->stop) {
        a->checksum ^= seq_read(a->base, a->bytes, 1);
        a->moved += (a->bytes / MB_LINE) * MB_LINE;
    }
    a->end = now_s();
    return NULL;
}

/* Loaded latency: chase `steps` pointers of the chain in `chain` while `load_threads` threads stream-read
 * their slices of `load` (`load_bytes` in all). Writes ns per step and the loaders' total GB/s. */
MB_EXPORT int mb_loaded_latency(void *chain, size_t steps, void *load, size_t load_bytes, int load_threads,
                                double *latency_ns, double *load_gbps) {
    if (!chain || !load || load_threads < 0 || load_threads > MB_MAX_THREADS || !latency_ns || !load_gbps)
        return -1;
    volatile int stop = 0;
    load_arg *args = calloc((size_t)(load_threads ? load_threads : 1), sizeof(load_arg));
    pthread_t *tids = calloc((size_t)(load_threads ? load_threads : 1), sizeof(pthread_t));
    if (!args || !tids) {
        free(args);
        free(tids);
        return -1;
    }
    size_t slice = load_threads ? (load_bytes / (size_t)load_threads) & ~(size_t)(MB_LINE - 1) : 0;
    int started = 0;
    for (int t = 0; t < load_threads; t++) {
        args[t].base = (const char *)load + (size_t)t * slice;
        args[t].bytes = slice;
        args[t].stop = &stop;
        if (pthread_create(&tids[t], NULL, load_thread, &args[t]) != 0) break;
        started++;
    }
    struct timespec pause = {0, 20 * 1000 * 1000}; /* let the loaders ramp up */
    if (started) nanosleep(&pause, NULL);
    *latency_ns = mb_chase(chain, steps);
    stop = 1;
    double moved = 0, span = 0;
    for (int t = 0; t < started; t++) {
        pthread_join(tids[t], NULL);
        moved += (double)args[t].moved;
        if (args[t].end - args[t].start > span) span = args[t].end - args[t].start;
    }
    *load_gbps = span > 0 ? moved / span / 1e9 : 0.0;
    free(args);
    free(tids);
    return started == load_threads ? 0 : -1;
}
