/* marl-gym tiering allocator: the control API exported next to the interposed malloc family.
 *
 * Load the library with LD_PRELOAD. Every thread has a current tier (MARL_TIER_DEFAULT, _FAST or
 * _SLOW). While a thread's tier is fast or slow, its allocations of at least the threshold size are
 * served from that tier's arena; everything else goes to the system allocator (glibc) untouched.
 * Python reaches these functions through cffi: allocator/__init__.py builds its cffi declarations from
 * this file (comments and #include/#ifndef lines dropped, integer #defines kept), so this header is the
 * only description of the API. Keep it in the subset of C that cffi parses.
 */
#ifndef MARL_ALLOC_H
#define MARL_ALLOC_H

#include <stddef.h>
#include <stdint.h>

#define MARL_ABI_VERSION 2 /* 2: nospace_count added */

#define MARL_TIER_DEFAULT 0 /* the process tier (MARL_ALLOC_PROCESS_TIER), normally the system allocator */
#define MARL_TIER_FAST 1
#define MARL_TIER_SLOW 2
#define MARL_TIER_SYSTEM 3 /* only as a result of marl_tier_of(): a pointer the allocator does not own */

typedef struct marl_tier_stats {
    uint64_t live_bytes;           /* usable bytes of live blocks (requests rounded up to 64 B) */
    uint64_t live_requested_bytes; /* bytes the callers asked for, of live blocks */
    uint64_t peak_bytes;           /* highest live_bytes since the last reset */
    uint64_t total_bytes;          /* usable bytes handed out since the last reset (cumulative) */
    uint64_t alloc_count;          /* blocks handed out since the last reset */
    uint64_t free_count;           /* blocks returned since the last reset */
    uint64_t live_count;           /* blocks live now */
    uint64_t overflow_count;       /* fast tier only: requests sent to the slow tier by the fast limit */
    uint64_t overflow_bytes;       /* ... and their usable bytes */
    uint64_t fallback_count;       /* requests this tier could not serve (reserve or file system full, no backing) */
    uint64_t fallback_bytes;       /* ... that went to the system allocator instead */
    uint64_t reserve_bytes;        /* size of the tier's address range */
    uint64_t limit_bytes;          /* capacity limit on live_bytes (0 = none; fast tier only) */
    uint64_t available;            /* 1 when the tier's backing was set up */
    uint64_t nospace_count;        /* file backings: requests refused because preallocating the file failed
                                      (file system full: ENOSPC); also counted in fallback_count */
} marl_tier_stats;

int marl_abi_version(void);
int marl_set_tier(int tier); /* this thread's tier; returns the previous one, -1 if tier is invalid */
int marl_get_tier(void);
int marl_set_process_tier(int tier); /* the tier that MARL_TIER_DEFAULT means, for every thread */
size_t marl_set_threshold(size_t bytes); /* returns the previous threshold; 0 is taken as 1 */
size_t marl_get_threshold(void);
uint64_t marl_set_fast_limit(uint64_t bytes); /* returns the previous limit; 0 = unlimited */
int marl_get_stats(int tier, marl_tier_stats *out);
void marl_reset_stats(void);       /* counters to 0 and peaks to the live bytes; live bytes stay true */
int marl_tier_of(const void *ptr); /* MARL_TIER_FAST, MARL_TIER_SLOW or MARL_TIER_SYSTEM */
size_t marl_block_size(const void *ptr); /* usable bytes of a block the allocator owns, else 0 */
int marl_config_json(char *buf, size_t len); /* the configuration as JSON; returns the length needed */
int marl_check_heap(int tier);      /* walk a tier's arena; 0 when consistent, else a negative code */
uint64_t marl_trim(void);           /* return free arena pages to the OS; returns the bytes released */

#endif
