/* Fork under the preloaded allocator: while two threads keep allocating and freeing in both tiers
 * (holding the arena locks at random moments), the main thread forks repeatedly. Each child must not
 * deadlock, must see the parent's blocks intact, may write into them without the parent noticing
 * (file-backed tiers are shared mappings: the child needs its own copy), and can allocate and free in
 * both tiers. Run with LD_PRELOAD set; exits 0 when every child succeeded.
 *
 * usage: forktest [forks]
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "marl_test_api.h"

#define BLOCK (256 * 1024)

static atomic_int stop;

static void *churn(void *arg) {
    int tier = (int)(intptr_t)arg;
    CTL(marl_set_tier)(tier);
    uint64_t r = 88172645463325252ull + (uint64_t)tier;
    void *keep[32] = {0};
    while (!atomic_load(&stop)) {
        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        int i = (int)(r % 32);
        if (keep[i]) {
            A(free)(keep[i]);
            keep[i] = NULL;
        } else {
            keep[i] = A(malloc)(4096 + r % 200000);
            memset(keep[i], 0x5a, 4096);
        }
    }
    for (int i = 0; i < 32; i++) A(free)(keep[i]);
    return NULL;
}

static int child_work(unsigned char *fast, unsigned char *slow) {
    for (size_t i = 0; i < BLOCK; i++)
        if (fast[i] != (unsigned char)(i * 3) || slow[i] != (unsigned char)(i * 5)) {
            fprintf(stderr, "child: inherited block corrupted at %zu\n", i);
            return 10;
        }
    memset(slow, 0xee, BLOCK); /* must not show in the parent */
    memset(fast, 0xee, BLOCK);
    for (int t = MARL_TIER_FAST; t <= MARL_TIER_SLOW; t++) {
        CTL(marl_set_tier)(t);
        for (int k = 0; k < 50; k++) {
            unsigned char *p = A(malloc)(8192 + 512 * k);
            if (CTL(marl_tier_of)(p) != t) {
                fprintf(stderr, "child: allocation in tier %d landed in %d\n", t, CTL(marl_tier_of)(p));
                return 11;
            }
            memset(p, k, 8192);
            A(free)(p);
        }
        if (CTL(marl_check_heap)(t) != 0) return 12;
    }
    A(free)(fast); /* blocks inherited from the parent can be freed in the child */
    A(free)(slow);
    return 0;
}

int main(int argc, char **argv) {
    api_init();
    alarm(60);
    int forks = argc > 1 ? atoi(argv[1]) : 20;
    CTL(marl_set_threshold)(4096);
    CTL(marl_set_tier)(MARL_TIER_FAST);
    unsigned char *fast = A(malloc)(BLOCK);
    CTL(marl_set_tier)(MARL_TIER_SLOW);
    unsigned char *slow = A(malloc)(BLOCK);
    CTL(marl_set_tier)(MARL_TIER_DEFAULT);
    CHECK(CTL(marl_tier_of)(fast) == MARL_TIER_FAST && CTL(marl_tier_of)(slow) == MARL_TIER_SLOW,
          "setup blocks in the wrong tiers");
    for (size_t i = 0; i < BLOCK; i++) fast[i] = (unsigned char)(i * 3), slow[i] = (unsigned char)(i * 5);

    pthread_t th[2];
    pthread_create(&th[0], NULL, churn, (void *)(intptr_t)MARL_TIER_FAST);
    pthread_create(&th[1], NULL, churn, (void *)(intptr_t)MARL_TIER_SLOW);
    for (int f = 0; f < forks; f++) {
        pid_t pid = fork();
        CHECK(pid >= 0, "fork failed");
        if (pid == 0) _exit(child_work(fast, slow));
        int status = 0;
        CHECK(waitpid(pid, &status, 0) == pid, "waitpid failed");
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child %d failed: status 0x%x", f, status);
        for (size_t i = 0; i < BLOCK; i++)
            CHECK(fast[i] == (unsigned char)(i * 3) && slow[i] == (unsigned char)(i * 5),
                  "parent's block changed by child %d at %zu", f, i);
    }
    atomic_store(&stop, 1);
    pthread_join(th[0], NULL);
    pthread_join(th[1], NULL);
    A(free)(fast);
    A(free)(slow);
    for (int t = MARL_TIER_FAST; t <= MARL_TIER_SLOW; t++) CHECK(CTL(marl_check_heap)(t) == 0, "heap %d", t);
    printf("ok forks=%d\n", forks);
    return 0;
}
