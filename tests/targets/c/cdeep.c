/* C recursion deeper than the kernel's 64 pending uretprobe returns per thread: deep(100)
 * recurses 100 levels (101 calls), `-rounds` times (default 3). Prints its call count. */
#include <stdio.h>
#include <stdlib.h>

static long deep_calls;

__attribute__((noinline, noipa)) long deep(long n) {
    deep_calls++;
    if (n == 0) return 0;
    long r = deep(n - 1) + 1;
    /* Opaque to the optimiser: keeps the recursion a real call, not a loop. */
    __asm__ volatile("" : "+r"(r));
    return r;
}

int main(int argc, char **argv) {
    long rounds = argc > 1 ? atol(argv[1]) : 3;
    long sum = 0;
    for (long i = 0; i < rounds; i++) sum += deep(100);
    printf("deep calls: %ld (sum %ld)\n", deep_calls, sum);
    return 0;
}
