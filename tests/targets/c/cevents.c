/* Target of `probe latency --slower-than` and `--events`.
 *   cevents         10,000 calls of work(id, n), exactly 7 of which (ids in slow_ids) sleep 2 ms;
 *                   prints "slow call: id=ID n=N ret=R tid=T" for each, and "late call: ..." for
 *                   any other call that took 1 ms or more by its own clock (descheduled on a busy
 *                   machine), then "work calls: 10000".
 *   cevents burst N N calls of tick(i) as fast as possible: "tick calls: N". */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const long slow_ids[] = {3, 777, 2024, 4242, 5000, 8191, 9998};
static long work_calls, tick_calls;

static int is_slow(long id) {
    for (unsigned i = 0; i < sizeof slow_ids / sizeof slow_ids[0]; i++)
        if (slow_ids[i] == id) return 1;
    return 0;
}

__attribute__((noinline, noipa)) long work(long id, int n) {
    work_calls++;
    if (is_slow(id)) {
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
    return id * 3 - n;
}

__attribute__((noinline, noipa)) long tick(long i) {
    tick_calls++;
    return i + 1;
}

int main(int argc, char **argv) {
    if (argc > 2 && strcmp(argv[1], "burst") == 0) {
        long n = atol(argv[2]), sum = 0;
        for (long i = 0; i < n; i++) sum += tick(i);
        printf("tick calls: %ld (sum %ld)\n", tick_calls, sum);
        return 0;
    }
    for (long id = 0; id < 10000; id++) {
        int n = (int)(id % 5) - 2;
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        long ret = work(id, n);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        long ns = (t1.tv_sec - t0.tv_sec) * 1000000000L + (t1.tv_nsec - t0.tv_nsec);
        if (is_slow(id)) printf("slow call: id=%ld n=%d ret=%ld tid=%d\n", id, n, ret, gettid());
        else if (ns >= 1000000) printf("late call: id=%ld n=%d ret=%ld tid=%d\n", id, n, ret, gettid());
    }
    printf("work calls: %ld\n", work_calls);
    return 0;
}
