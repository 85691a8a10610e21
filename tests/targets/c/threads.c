/* Many-thread target for the keyed maps (--by tid, --by caller): THREADS threads each call
 * tleaf() ROUNDS times CALLS times, from one of eight callers (caller0..caller7, picked by the
 * thread's number), pausing 1 ms between rounds so calls run across many -i drains. Every
 * thread is started before any calls (a barrier), so all keys are live at once.
 * Prints `tleaf calls: N` and `callerK calls: N` for each caller.
 * Usage: threads [threads] [rounds] [calls per round] */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define CALLERS 8

static long rounds = 100, per_round = 20;
static long from[CALLERS];
static pthread_barrier_t start;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

__attribute__((noinline, noipa)) long tleaf(long v) {
    __asm__ volatile("");
    return v + 1;
}

/* One caller per number: eight distinct return addresses in eight functions. */
#define CALLER(k)                                                    \
    __attribute__((noinline, noipa)) long caller##k(long v) {        \
        long r = tleaf(v);                                           \
        __asm__ volatile("" : "+r"(r)); /* no tail call */           \
        return r;                                                    \
    }
CALLER(0) CALLER(1) CALLER(2) CALLER(3) CALLER(4) CALLER(5) CALLER(6) CALLER(7)

static long (*const callers[CALLERS])(long) = {caller0, caller1, caller2, caller3,
                                               caller4, caller5, caller6, caller7};

static void *run(void *arg) {
    long k = (long)arg % CALLERS, made = 0;
    volatile long sink = 0;
    struct timespec pause = {0, 1000000};
    pthread_barrier_wait(&start);
    for (long r = 0; r < rounds; r++) {
        for (long i = 0; i < per_round; i++, made++) sink += callers[k](i);
        nanosleep(&pause, NULL);
    }
    pthread_mutex_lock(&lock);
    from[k] += made;
    pthread_mutex_unlock(&lock);
    return NULL;
}

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 200;
    if (argc > 2) rounds = atol(argv[2]);
    if (argc > 3) per_round = atol(argv[3]);
    pthread_t *threads = calloc(n, sizeof *threads);
    pthread_barrier_init(&start, NULL, n);
    for (long t = 0; t < n; t++) {
        if (pthread_create(&threads[t], NULL, run, (void *)t) != 0) {
            perror("pthread_create");
            return 1;
        }
    }
    for (long t = 0; t < n; t++) pthread_join(threads[t], NULL);
    long total = 0;
    for (int k = 0; k < CALLERS; k++) total += from[k];
    printf("tleaf calls: %ld\n", total);
    for (int k = 0; k < CALLERS; k++) printf("caller%d calls: %ld\n", k, from[k]);
    return 0;
}
