/* Calls probe cannot measure the usual way, one mode each, so every reason a call is dropped
 * can be seen counted (tests/losses.rs). Each mode prints how many calls it made.
 *   held THREADS ROUNDS   every round, THREADS threads are inside held() at once (a barrier
 *                         inside it), so in-flight calls outnumber a small map   -> "held calls: N"
 *   edge N                seven() called N times with its stack's end right after the return
 *                         address: its 7th argument, on the stack, cannot be read -> "seven calls: N"
 *   blocked N             prints "ready", then calls blocked() N times, each returning once a
 *                         line arrives on stdin: the first call is in flight before a probe
 *                         attaches                                               -> "blocked calls: N" */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static pthread_barrier_t inside;
static long held_calls, seven_calls, blocked_calls;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

__attribute__((noinline, noipa)) long held(long v) {
    pthread_barrier_wait(&inside);
    pthread_mutex_lock(&lock);
    held_calls++;
    pthread_mutex_unlock(&lock);
    return v + 1;
}

static void *hold_rounds(void *arg) {
    for (long r = 0; r < (long)arg; r++) held(r);
    return NULL;
}

/* Uses its six register arguments only: the 7th, past the stack's end, is never touched. */
__attribute__((noinline, noipa)) long seven(long a, long b, long c, long d, long e, long f, long g) {
    (void)g;
    seven_calls++;
    return a + b + c + d + e + f;
}

/* Calls seven() on a stack whose last mapped byte is just below where its 7th argument would be:
 * the call pushes the return address into the stack's last 8 bytes. */
static long call_at_stack_end(char *end) {
    long r;
    __asm__ volatile("mov %%rsp, %%r12\n\t"
                     "mov %[end], %%rsp\n\t"
                     "call seven\n\t"
                     "mov %%r12, %%rsp\n\t"
                     : "=a"(r)
                     : [end] "r"(end), "D"(1L), "S"(2L), "d"(3L), "c"(4L), "0"(0L)
                     : "r8", "r9", "r10", "r11", "r12", "memory", "cc");
    return r;
}

__attribute__((noinline, noipa)) long blocked(void) {
    char line[64];
    blocked_calls++;
    return fgets(line, sizeof line, stdin) ? (long)strlen(line) : -1;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    long n = argc > 2 ? atol(argv[2]) : 1;
    if (!strcmp(mode, "held")) {
        long rounds = argc > 3 ? atol(argv[3]) : 1;
        pthread_t *threads = calloc(n, sizeof *threads);
        pthread_barrier_init(&inside, NULL, n);
        for (long t = 0; t < n; t++) pthread_create(&threads[t], NULL, hold_rounds, (void *)rounds);
        for (long t = 0; t < n; t++) pthread_join(threads[t], NULL);
        printf("held calls: %ld\n", held_calls);
    } else if (!strcmp(mode, "edge")) {
        long page = sysconf(_SC_PAGESIZE);
        /* Two pages, the second unmapped again: the stack ends where it begins. */
        char *stack = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (stack == MAP_FAILED || munmap(stack + page, page) != 0) return 1;
        for (long i = 0; i < n; i++) call_at_stack_end(stack + page);
        printf("seven calls: %ld\n", seven_calls);
    } else if (!strcmp(mode, "blocked")) {
        printf("ready\n");
        fflush(stdout);
        for (long i = 0; i < n; i++) blocked();
        printf("blocked calls: %ld\n", blocked_calls);
    } else {
        fprintf(stderr, "usage: losses held THREADS ROUNDS | edge N | blocked N\n");
        return 2;
    }
    return 0;
}
