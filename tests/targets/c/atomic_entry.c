/* A function whose first instruction is `lock addq` (an atomic counter), which the kernel
 * refuses to probe: probe must move the entry probe to the next, equivalent instruction.
 * Prints "bump calls: N". */
#include <stdio.h>
#include <stdlib.h>

static long counter;

__attribute__((noinline)) long bump(long x) {
    __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED);
    return x * 3 + 1;
}

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 1000, sum = 0;
    for (long i = 0; i < n; i++) sum += bump(i);
    printf("bump calls: %ld\n", counter);
    return sum == 42;
}
