/* The arena of one tier: a contiguous reserved range carved by a boundary-tag allocator.
 *
 * A 64-byte header sits before every 64-byte-aligned payload; free blocks sit in segregated lists by
 * power-of-two size class (bins, with a bitmap of non-empty bins); neighbours coalesce on free; the
 * unused end of the range is a bump pointer ("top"). Two free blocks are never adjacent and no free block
 * touches top (arena_check_locked verifies both). Every function here runs under the arena's lock.
 *
 * Capacity limits are checked against the block a request really gets: a block taken from a bin keeps an
 * unsplittable tail (less than MIN_BLOCK bytes), so its usable size can exceed the request rounded up;
 * the caller passes the room it has left and a block that would not fit is given back.
 */
#include "marl_internal.h" /* first: it defines _GNU_SOURCE */

#include <string.h>
#include <unistd.h>


static void bin_insert(arena_t *a, block_t *b, uint32_t flags) {
    int i = bin_index(b->size);
    b->magic = MAGIC_FREE;
    b->flags = flags;
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

/* Give back the pages in [from, committed) above top. */
static void release_above_top(arena_t *a, char *from) {
    if (from >= a->committed || backing_release(a, from, a->committed) != 0) return;
    a->committed = from;
    if (a->dirty > from) a->dirty = from;
    if (a->backed > from) a->backed = from; /* file: preallocate again when top grows back */
}

/* Make b (header written, F_INUSE clear) free: coalesce with free neighbours and top. `punched`: b has
 * holes (F_PUNCHED); a coalesced block has holes when any of its parts had. */
static void release_range(arena_t *a, block_t *b, uint32_t punched) {
    char *above = (char *)b + b->size;
    if (above != a->top) {
        block_t *n = (block_t *)above;
        if (!(n->flags & F_INUSE)) {
            punched |= n->flags & F_PUNCHED;
            bin_remove(a, n);
            b->size += n->size;
        }
    }
    if (b->prev_size) {
        block_t *p = (block_t *)((char *)b - b->prev_size);
        if (!(p->flags & F_INUSE)) {
            punched |= p->flags & F_PUNCHED;
            bin_remove(a, p);
            p->size += b->size;
            b = p;
        }
    }
    if ((char *)b + b->size == a->top) {
        a->top = (char *)b;
        a->top_prev = b->prev_size;
        /* holes now lie above top, where [top, backed) is taken as preallocated: lower the mark */
        if (punched && a->backed > a->top) a->backed = a->top;
        POISON(b, a->committed - (char *)b);
        if ((size_t)(a->committed - a->top) > TRIM_SLACK)
            release_above_top(a, (char *)round_up((uintptr_t)a->top + TRIM_SLACK / 2, 4096));
        return;
    }
    bin_insert(a, b, punched);
    link_above(a, b);
    POISON(payload(b), b->size - HDR);
}

/* Shrink an in-use block b to `need` bytes: a tail at top goes back to top whatever its size; elsewhere
 * a tail of at least MIN_BLOCK becomes a free block and a smaller one stays in b (unsplittable). */
static void trim_tail(arena_t *a, block_t *b, size_t need) {
    size_t extra = b->size - need;
    if (!extra) return;
    char *end = (char *)b + b->size;
    if (end == a->top) {
        b->size = need;
        a->top = end - extra;
        a->top_prev = need;
        POISON(a->top, extra);
        return;
    }
    if (extra < MIN_BLOCK) return;
    block_t *rest = (block_t *)((char *)b + need);
    UNPOISON(rest, HDR);
    rest->size = extra;
    rest->prev_size = need;
    rest->flags = 0;
    b->size = need;
    link_above(a, rest);
    release_range(a, rest, 0);
}

/* A free block of at least `want` bytes out of the bins (preallocated again if it had holes), or NULL. */
static block_t *take_from_bins(arena_t *a, size_t want, enum refusal *why) {
    int i = bin_index(want);
    block_t *b = NULL;
    for (block_t *c = a->bins[i]; c; c = c->next)
        if (c->size >= want) {
            b = c;
            break;
        }
    if (!b) {
        uint64_t higher = i + 1 < 64 ? a->binmap & ~(((uint64_t)2 << i) - 1) : 0;
        if (!higher) return NULL;
        b = a->bins[__builtin_ctzl(higher)];
    }
    if (b->flags & F_PUNCHED) {
        if (a->kind == BACK_FILE && backing_fill(a, (char *)b, (char *)b + b->size) != 0) {
            *why = REFUSED_NOSPACE;
            return NULL;
        }
        b->flags &= ~F_PUNCHED;
    }
    bin_remove(a, b);
    return b;
}

/* `want` bytes from top, or NULL when the reserve is full or the backing file cannot grow. */
static block_t *take_from_top(arena_t *a, size_t want, enum refusal *why) {
    if ((size_t)(a->end - a->top) < want) {
        *why = REFUSED_RESERVE;
        return NULL;
    }
    if (a->kind == BACK_FILE && a->top + want > a->backed && backing_extend(a, a->top + want) != 0) {
        *why = REFUSED_NOSPACE;
        return NULL;
    }
    block_t *b = (block_t *)a->top;
    UNPOISON(b, HDR);
    b->size = want;
    b->prev_size = a->top_prev;
    b->flags = 0;
    a->top += want;
    a->top_prev = want;
    if (a->top > a->committed) a->committed = a->top;
    return b;
}

/* Turn a taken block into an in-use block of `need` bytes whose payload is `align`-aligned. */
static block_t *carve(arena_t *a, block_t *b, size_t need, size_t align) {
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
            release_range(a, front, 0);
            b = nb;
        }
    }
    trim_tail(a, b, need);
    return b;
}

/* Undo carve: the block goes back (coalescing restores the free block or top it came from). */
static void give_back(arena_t *a, block_t *b) {
    b->flags = 0;
    b->magic = MAGIC_FREE;
    release_range(a, b, 0);
}

void *arena_alloc_locked(arena_t *a, size_t req, size_t align, uint64_t room, char **zero_to,
                         enum refusal *why) {
    size_t need = block_need(req);
    size_t span = (size_t)(a->end - a->base);
    if (!need || need > span || align > span) { /* also keeps need + align below from wrapping */
        *why = REFUSED_RESERVE;
        return NULL;
    }
    if (need - HDR > room) {
        *why = REFUSED_LIMIT;
        return NULL;
    }
    size_t want = align > ALIGN ? need + align + MIN_BLOCK : need;
    char *dirty_before = a->dirty;
    int from_top = 0;
    block_t *b = take_from_bins(a, want, why);
    if (!b) {
        from_top = 1;
        b = take_from_top(a, want, why);
        if (!b) return NULL;
    }
    b = carve(a, b, need, align);
    if (b->size - HDR > room) { /* an unsplittable tail: top gives exactly `need`, try there */
        give_back(a, b);
        b = from_top ? NULL : take_from_top(a, want, why);
        if (b) {
            b = carve(a, b, need, align);
            if (b->size - HDR > room) {
                give_back(a, b);
                b = NULL;
            }
        }
        if (!b) {
            *why = REFUSED_LIMIT;
            return NULL;
        }
    }
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
    *why = REFUSED_NONE;
    return p;
}

void check_block(arena_t *a, block_t *b, const void *p) {
    if (UNLIKELY((char *)b < a->base || (char *)p >= a->top || b->magic != MAGIC_USED || !(b->flags & F_INUSE))) {
        if (b->magic == MAGIC_FREE) die("double free or use of a freed block", p);
        die("invalid pointer into a tier arena (not a block start)", p);
    }
}

void arena_free_locked(arena_t *a, block_t *b) {
    size_t usable = b->size - HDR;
    a->st.live_bytes -= usable;
    a->st.live_requested_bytes -= b->req;
    a->st.live_count--;
    a->st.free_count++;
    b->flags = 0;
    b->magic = MAGIC_FREE;
    release_range(a, b, 0);
}

int arena_resize_locked(arena_t *a, block_t *b, size_t req, uint64_t room, enum refusal *why) {
    size_t need = block_need(req);
    if (!need) {
        *why = REFUSED_RESERVE;
        return 0;
    }
    /* first the size the block will have, so that the limit is checked before anything changes */
    size_t old = b->size, final;
    char *above = (char *)b + old;
    block_t *n = NULL;
    if (need <= old) {
        final = (above == a->top || old - need >= MIN_BLOCK) ? need : old;
    } else if (above == a->top) {
        if ((size_t)(a->end - a->top) < need - old) {
            *why = REFUSED_RESERVE;
            return 0;
        }
        final = need;
    } else {
        n = (block_t *)above;
        if ((n->flags & F_INUSE) || n->size < need - old) {
            *why = REFUSED_RESERVE;
            return 0;
        }
        final = old + n->size - need >= MIN_BLOCK ? need : old + n->size;
    }
    if (final > old && final - old > room) {
        *why = REFUSED_LIMIT;
        return 0;
    }
    if (need > old && !n) { /* grow into top */
        char *new_top = (char *)b + need;
        if (a->kind == BACK_FILE && new_top > a->backed && backing_extend(a, new_top) != 0) {
            *why = REFUSED_NOSPACE;
            return 0;
        }
        UNPOISON(a->top, new_top - a->top);
        a->top = new_top;
        if (a->top > a->committed) a->committed = a->top;
        if (a->top > a->dirty) a->dirty = a->top;
        b->size = need;
        a->top_prev = need;
    } else if (need > old) { /* absorb the free block above */
        if ((n->flags & F_PUNCHED) && a->kind == BACK_FILE &&
            backing_fill(a, (char *)n, (char *)n + n->size) != 0) {
            *why = REFUSED_NOSPACE;
            return 0;
        }
        bin_remove(a, n);
        UNPOISON(n, n->size);
        b->size += n->size;
        link_above(a, b);
    }
    trim_tail(a, b, need);
    if (b->size != final) die("resize: block size differs from the size checked against the limit", payload(b));
    UNPOISON(payload(b), req);
    if (req < b->size - HDR) POISON((char *)payload(b) + req, b->size - HDR - req);
    size_t usable = b->size - HDR, old_usable = old - HDR;
    a->st.live_bytes += usable - old_usable; /* wraps correctly when shrinking */
    a->st.live_requested_bytes += req - b->req;
    if (usable > old_usable) a->st.total_bytes += usable - old_usable;
    if (a->st.live_bytes > a->st.peak_bytes) a->st.peak_bytes = a->st.live_bytes;
    b->req = req;
    *why = REFUSED_NONE;
    return 1;
}

int arena_check_locked(arena_t *a) {
    size_t prev = 0, live = 0, nfree = 0;
    uint64_t live_count = 0;
    int prev_free = 0;
    for (char *c = a->base; c < a->top;) {
        block_t *b = (block_t *)c;
        UNPOISON(b, HDR);
        int is_free = !(b->flags & F_INUSE);
        if (b->size < MIN_BLOCK || b->size % ALIGN || c + b->size > a->top) return -2;
        if (b->prev_size != prev) return -3;
        if (is_free && b->magic != MAGIC_FREE) return -4;
        if (!is_free && b->magic != MAGIC_USED) return -5;
        if (is_free && prev_free) return -6; /* two free neighbours: missed coalescing */
        if (!is_free && b->flags != F_INUSE) return -13; /* holes in a live block */
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
    if (prev != a->top_prev) return -7;
    if (prev_free) return -8; /* a free block touching top should have joined it */
    if (live != a->st.live_bytes || live_count != a->st.live_count) return -9;
    size_t listed = 0;
    for (int i = 0; i < NBINS; i++) {
        if (!!a->bins[i] != !!(a->binmap & ((uint64_t)1 << i))) return -10;
        for (block_t *b = a->bins[i]; b; b = b->next) {
            if (bin_index(b->size) != i || (b->flags & F_INUSE)) return -11;
            listed++;
        }
    }
    if (listed != nfree) return -12;
    if (a->kind == BACK_FILE && a->available && a->backed < a->top) return -14; /* top not preallocated */
    return 0;
}

void arena_copy_live_locked(arena_t *a, char *dst) {
    for (char *c = a->base; c < a->top;) {
        block_t *b = (block_t *)c;
        UNPOISON(b, HDR);
        size_t n = (b->flags & F_INUSE) ? b->size : HDR; /* a free block's payload may be punched out */
        UNPOISON(c, n);
        memcpy(dst + (c - a->base), c, n);
        c += b->size;
    }
}

uint64_t arena_trim_locked(arena_t *a) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    uint64_t released = 0;
    char *from = (char *)round_up((uintptr_t)a->top, page);
    char *was = a->committed;
    release_above_top(a, from);
    if (a->committed < was) released += was - a->committed;
    /* interior free blocks: their whole pages (past the header) */
    for (int i = 0; i < NBINS; i++)
        for (block_t *b = a->bins[i]; b; b = b->next) {
            char *lo = (char *)round_up((uintptr_t)b + HDR, page);
            char *hi = (char *)(((uintptr_t)b + b->size) & ~(uintptr_t)(page - 1));
            if (hi > lo && backing_release(a, lo, hi) == 0) {
                released += hi - lo;
                if (a->kind == BACK_FILE) b->flags |= F_PUNCHED; /* preallocate again before reuse */
            }
        }
    return released;
}
