/* The control API of marl_alloc.h: each thread's tier, the process tier, the threshold, the fast
 * limit, the statistics, ownership queries, the heap check and trimming. */
#include "marl_internal.h" /* first: it defines _GNU_SOURCE */

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
    return __atomic_exchange_n(&g_process_tier, tier, __ATOMIC_RELAXED);
}

EXPORT size_t marl_set_threshold(size_t bytes) {
    return __atomic_exchange_n(&g_threshold, bytes ? bytes : 1, __ATOMIC_RELAXED);
}

EXPORT size_t marl_get_threshold(void) { return __atomic_load_n(&g_threshold, __ATOMIC_RELAXED); }

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
        a->st.nospace_count = 0;
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
    pthread_mutex_lock(&a->lock);
    int rc = arena_check_locked(a);
    pthread_mutex_unlock(&a->lock);
    return rc;
}

EXPORT uint64_t marl_trim(void) {
    uint64_t released = 0;
    for (int t = MARL_TIER_FAST; t <= MARL_TIER_SLOW; t++) {
        arena_t *a = &g_arena[t];
        if (!a->available) continue;
        pthread_mutex_lock(&a->lock);
        released += arena_trim_locked(a);
        pthread_mutex_unlock(&a->lock);
    }
    return released;
}
