/* Shared by the C tests: reach the allocator either directly (prefixed build, under ASan) or through
 * the interposed malloc family with the control functions looked up at run time (LD_PRELOAD). */
#ifndef MARL_TEST_API_H
#define MARL_TEST_API_H
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

#include "../../allocator/csrc/marl_alloc.h"

#ifdef MARL_PREFIX_ENTRIES
void *marl_malloc(size_t);
void *marl_calloc(size_t, size_t);
void *marl_realloc(void *, size_t);
void *marl_reallocarray(void *, size_t, size_t);
void marl_free(void *);
int marl_posix_memalign(void **, size_t, size_t);
void *marl_aligned_alloc(size_t, size_t);
void *marl_memalign(size_t, size_t);
void *marl_valloc(size_t);
void *marl_pvalloc(size_t);
size_t marl_malloc_usable_size(void *);
#define A(name) marl_##name
#define CTL(name) name
static inline void api_init(void) {}
#else
#include <malloc.h>
#define A(name) name
static struct {
    int (*marl_set_tier)(int);
    size_t (*marl_set_threshold)(size_t);
    size_t (*marl_get_threshold)(void);
    uint64_t (*marl_set_fast_limit)(uint64_t);
    int (*marl_get_stats)(int, marl_tier_stats *);
    void (*marl_reset_stats)(void);
    int (*marl_tier_of)(const void *);
    size_t (*marl_block_size)(const void *);
    int (*marl_check_heap)(int);
    uint64_t (*marl_trim)(void);
} api;
#define CTL(name) api.name
#define LOOK(name)                                                                             \
    do {                                                                                       \
        *(void **)&api.name = dlsym(RTLD_DEFAULT, #name);                                      \
        if (!api.name) {                                                                       \
            fprintf(stderr, "%s not found: is the allocator preloaded (LD_PRELOAD)?\n", #name); \
            exit(3);                                                                           \
        }                                                                                      \
    } while (0)
static inline void api_init(void) {
    LOOK(marl_set_tier);
    LOOK(marl_set_threshold);
    LOOK(marl_get_threshold);
    LOOK(marl_set_fast_limit);
    LOOK(marl_get_stats);
    LOOK(marl_reset_stats);
    LOOK(marl_tier_of);
    LOOK(marl_block_size);
    LOOK(marl_check_heap);
    LOOK(marl_trim);
}
#endif

#define FAIL(...)                                                     \
    do {                                                              \
        fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);          \
        fprintf(stderr, __VA_ARGS__);                                 \
        fprintf(stderr, "\n");                                        \
        abort();                                                      \
    } while (0)
#define CHECK(cond, ...)          \
    do {                          \
        if (!(cond)) FAIL(__VA_ARGS__); \
    } while (0)
#endif
