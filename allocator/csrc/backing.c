/* What memory backs an arena, and what fork() does to it.
 *
 *   anon    the anonymous reservation itself (ordinary memory)
 *   numa:N  the reservation bound to NUMA node N with mbind(MPOL_BIND) (raw system call, no libnuma)
 *   file:D  an unlinked file in directory D mapped MAP_SHARED over the reservation (Optane PM on an
 *           fsdax file system, or any file system for testing)
 *
 * A file backing is sparse at start-up (its size is the reserve) but never handed out sparse: before a
 * byte of it becomes part of a block, the range is preallocated with fallocate(2). A store into a hole of
 * a shared file mapping on a full file system kills the process with SIGBUS; fallocate instead fails with
 * ENOSPC, and the allocation then goes to the system allocator (counted in fallback_count and
 * nospace_count, warned once on stderr). Pages returned to the file system (MADV_REMOVE) are marked
 * (`backed` lowered above top, F_PUNCHED on free blocks) and preallocated again before reuse.
 *
 * DAX detection, for the `dax` field and the non-DAX warning: a file is DAX when a MAP_SYNC mapping of
 * it succeeds (the kernel accepts MAP_SYNC only for DAX files on ext4/xfs) or statx reports
 * STATX_ATTR_DAX (per-file DAX, Linux >= 5.8). The file system's type (statfs) is named in messages.
 */
#include "marl_internal.h" /* first: it defines _GNU_SOURCE */

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>


#ifndef MAP_SYNC
#define MAP_SYNC 0x80000
#endif
#ifndef MAP_SHARED_VALIDATE
#define MAP_SHARED_VALIDATE 0x03
#endif
#ifndef STATX_ATTR_DAX
#define STATX_ATTR_DAX 0x00200000
#endif

static void set_error(arena_t *a, const char *what, const char *detail) {
    size_t at = append(a->error, sizeof a->error, 0, what);
    if (detail) {
        at = append(a->error, sizeof a->error, at, ": ");
        append(a->error, sizeof a->error, at, detail);
    }
}

/* fallocate(2) mode 0 (allocate, zero-filled). Not posix_fallocate: glibc emulates that by writing
 * into the file where the file system has no fallocate, which proves nothing about later stores.
 * Returns 0 or the errno. */
static int preallocate(int fd, size_t offset, size_t len) {
    if (!len) return 0;
    while (fallocate(fd, 0, (off_t)offset, (off_t)len) != 0)
        if (errno != EINTR) return errno;
    return 0;
}

/* An unlinked file of `size` bytes (sparse) in the arena's directory; -errno on failure. */
static int make_file(arena_t *a, size_t size) {
    int fd = open(a->dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0) { /* no O_TMPFILE on this file system: create and unlink */
        char path[sizeof a->dir + 32];
        size_t at = append(path, sizeof path, 0, a->dir);
        append(path, sizeof path, at, "/.marl-alloc-XXXXXX");
        fd = mkostemp(path, O_CLOEXEC);
        if (fd >= 0) unlink(path);
    }
    if (fd < 0) return -errno;
    if (ftruncate(fd, (off_t)size) != 0) {
        int err = errno;
        close(fd);
        return -err;
    }
    return fd;
}

static void fs_type_name(int fd, char *out, size_t len) {
    struct statfs s;
    if (fstatfs(fd, &s) != 0) {
        append(out, len, 0, "unknown");
        return;
    }
    static const struct {
        unsigned long magic;
        const char *name;
    } known[] = {{0x01021994ul, "tmpfs"}, {0xEF53ul, "ext4"},          {0x58465342ul, "xfs"},
                 {0x9123683Eul, "btrfs"}, {0x858458f6ul, "ramfs"},     {0x6969ul, "nfs"},
                 {0x794c7630ul, "overlayfs"}, {0x65735546ul, "fuse"},  {0x2fc12fc1ul, "zfs"},
                 {0xF2F52010ul, "f2fs"}};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if ((unsigned long)s.f_type == known[i].magic) {
            append(out, len, 0, known[i].name);
            return;
        }
    size_t at = append(out, len, 0, "type 0x");
    char hex[17];
    unsigned long v = (unsigned long)s.f_type;
    int n = 0;
    do hex[n++] = "0123456789abcdef"[v & 15], v >>= 4;
    while (v && n < 16);
    for (int i = n - 1; i >= 0; i--) {
        char one[2] = {hex[i], 0};
        at = append(out, len, at, one);
    }
}

static int file_is_dax(int fd) {
    void *probe = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED_VALIDATE | MAP_SYNC, fd, 0);
    if (probe != MAP_FAILED) {
        munmap(probe, 4096);
        return 1;
    }
    struct statx stx;
    if (statx(fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS, &stx) == 0 && (stx.stx_attributes_mask & STATX_ATTR_DAX) &&
        (stx.stx_attributes & STATX_ATTR_DAX))
        return 1;
    return 0;
}

static int setup_file(arena_t *a) {
    size_t size = (size_t)(a->end - a->base);
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    /* under a file size limit (ulimit -f) a file past it raises SIGXFSZ, which ends the process */
    struct rlimit fsize;
    if (getrlimit(RLIMIT_FSIZE, &fsize) == 0 && fsize.rlim_cur != RLIM_INFINITY && fsize.rlim_cur < size) {
        set_error(a, "the file size limit (ulimit -f) is below the tier's reserve (the file's size); lower "
                     "MARL_ALLOC_FAST_RESERVE / MARL_ALLOC_SLOW_RESERVE or raise the limit",
                  NULL);
        return -1;
    }
    int fd = make_file(a, size);
    if (fd < 0) {
        set_error(a, "cannot create a backing file", error_text(-fd));
        return -1;
    }
    fs_type_name(fd, a->fs_type, sizeof a->fs_type);
    a->dax = file_is_dax(fd);
    if (!a->dax && g_require_dax) {
        set_error(a, "not a DAX file system (MAP_SYNC refused, no STATX_ATTR_DAX), file system", a->fs_type);
        close(fd);
        return -1;
    }
    /* the first page now: a file system that cannot preallocate at all is refused at start-up */
    int err = preallocate(fd, 0, page);
    if (err) {
        set_error(a,
                  err == EOPNOTSUPP ? "the file system cannot preallocate (fallocate), which a file tier needs so "
                                      "that a full disk fails an allocation instead of raising SIGBUS"
                                    : "cannot preallocate the backing file",
                  error_text(err));
        close(fd);
        return -1;
    }
    void *m = mmap(a->base, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);
    if (m == MAP_FAILED) {
        set_error(a, "cannot map the backing file", error_text(errno));
        close(fd);
        /* put the anonymous reservation back so the range stays ours */
        mmap(a->base, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
        return -1;
    }
    a->fd = fd;
    a->backed = a->committed = a->base + page;
    if (!a->dax)
        say(a->spec, ": not a DAX file system (", a->fs_type,
            "; MAP_SYNC refused, no STATX_ATTR_DAX): the tier lives in the page cache, not in persistent "
            "memory; MARL_ALLOC_REQUIRE_DAX=1 makes this an error");
    return 0;
}

int backing_setup(arena_t *a) {
    if (a->kind == BACK_NUMA) {
        size_t size = (size_t)(a->end - a->base);
        unsigned long mask[1024 / (8 * sizeof(unsigned long))] = {0};
        mask[a->numa_node / (8 * sizeof(unsigned long))] |= 1ul << (a->numa_node % (8 * sizeof(unsigned long)));
        /* MPOL_BIND = 2; maxnode is the number of bits the kernel may read, plus one */
        long rc = syscall(SYS_mbind, a->base, size, 2, mask, (unsigned long)(sizeof mask * 8 + 1), 0u);
        if (rc != 0) {
            set_error(a, "mbind to the NUMA node failed", error_text(errno));
            return -1;
        }
        return 0;
    }
    if (a->kind == BACK_FILE) return setup_file(a);
    return 0;
}

void backing_nospace(arena_t *a, int err) {
    if (a->warned_nospace) return;
    a->warned_nospace = 1;
    say(a->spec, ": cannot preallocate the backing file (", error_text(err),
        "): requests that do not fit go to the system allocator, counted in fallback_count and nospace_count "
        "(this warning is printed once)");
}

int backing_extend(arena_t *a, char *upto) {
    if (upto <= a->backed) return 0;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    char *need = (char *)round_up((uintptr_t)upto, page);
    char *to = (char *)round_up((uintptr_t)upto, FILE_EXTENT);
    if (to > a->end) to = a->end;
    int err = preallocate(a->fd, (size_t)(a->backed - a->base), (size_t)(to - a->backed));
    if (err && to > need) { /* a whole extent does not fit: just what this request needs */
        to = need;
        err = preallocate(a->fd, (size_t)(a->backed - a->base), (size_t)(to - a->backed));
    }
    if (err) {
        backing_nospace(a, err);
        return -1;
    }
    a->backed = to;
    if (a->committed < to) a->committed = to; /* preallocated pages hold memory: trim may return them */
    return 0;
}

int backing_fill(arena_t *a, char *lo, char *hi) {
    int err = preallocate(a->fd, (size_t)(lo - a->base), (size_t)(hi - lo));
    if (err) backing_nospace(a, err);
    return err ? -1 : 0;
}

int backing_release(arena_t *a, char *lo, char *hi) {
    int advice = a->kind == BACK_FILE ? MADV_REMOVE : MADV_DONTNEED;
    return madvise(lo, (size_t)(hi - lo), advice) == 0 ? 0 : -1;
}

/* ---------------------------------------------------------------------------------------- fork
 * A file-backed arena is a shared mapping: after fork, parent and child would write into the same
 * pages. So while fork() holds both arena locks (nobody changes an arena), the parent copies the used
 * part of each file-backed arena, and the child maps that copy over its range:
 *   - into a fresh preallocated file in the same directory (the child's tier stays file-backed), or
 *   - when that file cannot be preallocated (file system full), into anonymous private memory: the
 *     child's tier then is ordinary memory, which it is told on stderr.
 * Only live blocks and the headers of free blocks are copied: a free block's pages may have been given
 * back (a hole; on tmpfs even a read of a hole allocates a page), and they hold nothing. So nothing here
 * touches an unallocated page of a shared mapping, and a full file system never raises SIGBUS in the
 * parent. Only when even the anonymous copy fails (out of memory) does the child, and only
 * the child, stop. The cost is a copy of the tier's used bytes per fork. */
static void snapshot_for_child(arena_t *a) {
    a->fork_fd = -1;
    a->fork_anon = NULL;
    a->fork_bytes = 0;
    if (!a->available || a->kind != BACK_FILE) return;
    size_t used = round_up((size_t)(a->top - a->base), (size_t)sysconf(_SC_PAGESIZE));
    int fd = make_file(a, (size_t)(a->end - a->base));
    if (fd >= 0 && used) {
        void *tmp = MAP_FAILED;
        if (preallocate(fd, 0, used) == 0) tmp = mmap(NULL, used, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (tmp != MAP_FAILED) {
            arena_copy_live_locked(a, tmp);
            munmap(tmp, used);
        } else {
            close(fd);
            fd = -1;
        }
    }
    a->fork_bytes = used;
    if (fd >= 0) {
        a->fork_fd = fd;
        return;
    }
    if (!used) return; /* the child maps fresh anonymous memory */
    void *copy = mmap(NULL, used, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (copy == MAP_FAILED) {
        a->fork_bytes = (size_t)-1; /* the child cannot get a copy */
        return;
    }
    arena_copy_live_locked(a, copy);
    a->fork_anon = copy;
}

static void child_adopt_snapshot(arena_t *a) {
    if (!a->available || a->kind != BACK_FILE) return;
    size_t size = (size_t)(a->end - a->base), used = a->fork_bytes;
    if (used == (size_t)-1) die("fork: no memory for the child's copy of the file-backed tier", a->base);
    if (a->fork_fd >= 0) {
        if (mmap(a->base, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, a->fork_fd, 0) == MAP_FAILED)
            die("fork: cannot map the child's copy of the file-backed tier", a->base);
        close(a->fd);
        a->fd = a->fork_fd;
        a->fork_fd = -1;
        a->backed = a->committed = a->base + used;
        if (a->dirty > a->committed) a->dirty = a->committed; /* the new file is zero above the copy */
        return;
    }
    /* anonymous copy: move it into place, fresh anonymous memory above it */
    if (used && mremap(a->fork_anon, used, used, MREMAP_MAYMOVE | MREMAP_FIXED, a->base) == MAP_FAILED)
        die("fork: cannot move the child's copy of the file-backed tier into place", a->base);
    if (mmap(a->base + used, size - used, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED,
             -1, 0) == MAP_FAILED)
        die("fork: cannot map anonymous memory for the child's tier", a->base);
    close(a->fd);
    a->fd = -1;
    a->fork_anon = NULL;
    a->kind = BACK_ANON;
    a->backed = NULL;
    a->committed = a->base + used;
    if (a->dirty > a->committed) a->dirty = a->committed;
    set_error(a, "after fork the file system was full: this process's copy of the tier is anonymous memory", NULL);
    say(a->spec, ": fork: the file system is full, so the child's copy of this tier is anonymous memory "
                 "(not file-backed)",
        NULL, NULL);
}

void backing_atfork_prepare(void) {
    pthread_mutex_lock(&g_arena[MARL_TIER_FAST].lock);
    pthread_mutex_lock(&g_arena[MARL_TIER_SLOW].lock);
    snapshot_for_child(&g_arena[MARL_TIER_FAST]);
    snapshot_for_child(&g_arena[MARL_TIER_SLOW]);
}

void backing_atfork_parent(void) {
    for (int t = MARL_TIER_FAST; t <= MARL_TIER_SLOW; t++) {
        arena_t *a = &g_arena[t];
        if (a->fork_fd >= 0) close(a->fork_fd);
        if (a->fork_anon) munmap(a->fork_anon, a->fork_bytes);
        a->fork_fd = -1;
        a->fork_anon = NULL;
        a->fork_bytes = 0;
    }
    pthread_mutex_unlock(&g_arena[MARL_TIER_SLOW].lock);
    pthread_mutex_unlock(&g_arena[MARL_TIER_FAST].lock);
}

void backing_atfork_child(void) {
    child_adopt_snapshot(&g_arena[MARL_TIER_FAST]);
    child_adopt_snapshot(&g_arena[MARL_TIER_SLOW]);
    /* the child has one thread: re-initialise rather than unlock */
    pthread_mutex_init(&g_arena[MARL_TIER_FAST].lock, NULL);
    pthread_mutex_init(&g_arena[MARL_TIER_SLOW].lock, NULL);
}
