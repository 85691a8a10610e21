/* Benchmark workload for `cargo xtask bench`: calls work() N times (argv[1], default 1000000)
 * and reports its own loop's cost per call, timed with CLOCK_MONOTONIC. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* noipa: the compiler may not inline, clone or specialise it, so every iteration is a real
 * call to this symbol with its argument in RDI, which is what the probes attach to.
 * Built with -DFRAME -fno-omit-frame-pointer, work() keeps its argument in a stack slot and so
 * starts with `push %rbp` (an instruction the kernel emulates); otherwise with `lea`
 * (single-stepped). */
#ifdef FRAME
__attribute__((noinline, noipa)) long work(long x) {
    volatile long slot = x;
    return slot * 3 + 1;
}
#else
__attribute__((noinline, noipa)) long work(long x) {
    return x * 3 + 1;
}
#endif

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    long calls = argc > 1 ? atol(argv[1]) : 1000000;
    volatile long sink = 0; /* keeps the results, so the calls are not removed */

    double start = now_ns();
    for (long i = 0; i < calls; i++) sink += work(i);
    double elapsed = now_ns() - start;

    printf("calls: %ld\n", calls);
    printf("ns_per_call: %.1f\n", calls > 0 ? elapsed / (double)calls : 0.0);
    return 0;
}
