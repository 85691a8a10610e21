/* Ground truth for latency in C: functions of known cost (about 0.1, 1, 10 and 100 us of pure
 * computation, outer10 with ten work1us calls inside, and functions entering with `mov` and `lea`
 * that the kernel single-steps) that the program times itself, call
 * by call, from the caller. Prints, per function, like tests/targets/go/truth/main.go:
 *   work1us calls: 2000
 *   work1us self-timed median_ns: 1012 mean_ns: 1040
 * With -twin, each call is preceded by one of the function's untraced twin (the same work under
 * another name), timed the same way and printed as `work1us twin median_ns: ...`: a traced run
 * then carries its own truth, measured at the same moments as the traced calls. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static volatile uint64_t sink;

__attribute__((noinline)) static uint64_t spin(long n) {
    uint64_t x = (uint64_t)n | 1;
    for (long i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        __asm__ volatile("" : "+r"(x));
    }
    return x;
}

__attribute__((noinline)) uint64_t work01us(long n) { return spin(n) + 1; }
__attribute__((noinline)) uint64_t work1us(long n) { return spin(n) + 1; }
__attribute__((noinline)) uint64_t work10us(long n) { return spin(n) + 1; }
__attribute__((noinline)) uint64_t work100us(long n) { return spin(n) + 1; }
__attribute__((noinline)) uint64_t outer10(long n) {
    uint64_t x = 0;
    for (int i = 0; i < 10; i++) x += work1us(n);
    return x;
}

/* The twins: the same work under names nobody traces (+2, so identical-code folding cannot
 * make a twin the traced function itself). */
__attribute__((noinline)) uint64_t twin_work01us(long n) { return spin(n) + 2; }
__attribute__((noinline)) uint64_t twin_work1us(long n) { return spin(n) + 2; }
__attribute__((noinline)) uint64_t twin_work10us(long n) { return spin(n) + 2; }
__attribute__((noinline)) uint64_t twin_work100us(long n) { return spin(n) + 2; }
__attribute__((noinline)) uint64_t twin_outer10(long n) {
    uint64_t x = 0;
    for (int i = 0; i < 10; i++) x += twin_work1us(n);
    return x;
}

/* Functions whose first instruction the kernel single-steps and probe cannot move past: a
 * `mov` or `lea` followed at once by a loop head (a jump target). About 1 and 10 us; each has a
 * twin. n+1 rounds of a dependent rotate-xor (about 0.55 ns each here). */
#define SPIN_ASM(name, first)                                                                    \
    __asm__(".text\n.globl " #name "\n.type " #name ",@function\n" #name ":\n  " first "\n"   \
            "  mov %rdi, %rax\n"                                                                 \
            "1: rol $13, %rax\n  xor %rcx, %rax\n  dec %rcx\n  jnz 1b\n  ret\n"                   \
            ".size " #name ", .-" #name "\n");                                                    \
    uint64_t name(long n)
SPIN_ASM(mov1us, "mov %rdi, %rcx; inc %rcx");
SPIN_ASM(mov10us, "mov %rdi, %rcx; inc %rcx");
SPIN_ASM(lea1us, "lea 1(%rdi), %rcx");
SPIN_ASM(lea10us, "lea 1(%rdi), %rcx");
SPIN_ASM(twin_mov1us, "mov %rdi, %rcx; inc %rcx");
SPIN_ASM(twin_mov10us, "mov %rdi, %rcx; inc %rcx");
SPIN_ASM(twin_lea1us, "lea 1(%rdi), %rcx");
SPIN_ASM(twin_lea10us, "lea 1(%rdi), %rcx");

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int by_value(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int64_t timed(uint64_t (*fn)(long), long iters) {
    int64_t start = now_ns();
    sink += fn(iters);
    return now_ns() - start;
}

/* Prints `NAME LABEL median_ns: N mean_ns: M` of times (sorting them). */
static void print_stats(const char *name, const char *label, int64_t *times, long n) {
    int64_t sum = 0;
    for (long i = 0; i < n; i++) sum += times[i];
    qsort(times, n, sizeof times[0], by_value);
    printf("%s %s median_ns: %lld mean_ns: %lld\n", name, label, (long long)times[n / 2], (long long)(sum / n));
}

int main(int argc, char **argv) {
    long calls = 2000;
    int twin = 0;
    for (int i = 1; i < argc; i++) { /* truth [-calls N] [-twin] */
        if (!strcmp(argv[i], "-calls") && i + 1 < argc) calls = atol(argv[++i]);
        else if (!strcmp(argv[i], "-twin")) twin = 1;
    }
    struct { const char *name; uint64_t (*fn)(long), (*twin)(long); long iters; } works[] = {
        {"work01us", work01us, twin_work01us, 40}, {"work1us", work1us, twin_work1us, 450},
        {"work10us", work10us, twin_work10us, 4500}, {"work100us", work100us, twin_work100us, 45000},
        {"outer10", outer10, twin_outer10, 450},
        {"mov1us", mov1us, twin_mov1us, 1800}, {"mov10us", mov10us, twin_mov10us, 18000},
        {"lea1us", lea1us, twin_lea1us, 1800}, {"lea10us", lea10us, twin_lea10us, 18000},
    };
    int64_t *times = malloc(sizeof(int64_t) * calls), *twins = malloc(sizeof(int64_t) * calls);
    for (unsigned w = 0; w < sizeof works / sizeof works[0]; w++) {
        long n = works[w].iters >= 45000 ? calls / 10 : calls;
        for (long i = 0; i < n; i++) {
            if (twin) twins[i] = timed(works[w].twin, works[w].iters);
            times[i] = timed(works[w].fn, works[w].iters);
        }
        printf("%s calls: %ld\n", works[w].name, n);
        print_stats(works[w].name, "self-timed", times, n);
        if (twin) print_stats(works[w].name, "twin", twins, n);
        if (works[w].fn == outer10) printf("work1us total calls: %ld\n", 10 * n + calls);
    }
    return 0;
}
