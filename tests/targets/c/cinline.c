/* Calls small() 2n times (n = 1000 by default): n times where gcc -O2 inlines it (a direct
 * call of a small static inline function), and n times through a function pointer, which
 * needs its out-of-line copy. merged() the same, but its inlined copy leaves no instruction
 * of its own: gcc turns x * 3 + 1 in the loop into an induction variable. Prints its own
 * counts, so a test can check what probe saw. */
#include <stdio.h>
#include <stdlib.h>

static volatile long sink;

/* A body gcc keeps as instructions of its own. */
static inline long small(long x) {
    return x * x + 1;
}

static inline long merged(long x) {
    return x * 3 + 1;
}

/* Volatile, so the compiler cannot see which function they call. */
static long (*volatile small_through)(long) = small;
static long (*volatile merged_through)(long) = merged;

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 1000;
    for (long i = 0; i < n; i++) sink += small(i);
    for (long i = 0; i < n; i++) sink += small_through(i);
    for (long i = 0; i < n; i++) sink += merged(i);
    for (long i = 0; i < n; i++) sink += merged_through(i);
    printf("small calls: %ld (inlined %ld, real %ld)\n", 2 * n, n, n);
    printf("merged calls: %ld (inlined %ld, real %ld)\n", 2 * n, n, n);
    return 0;
}
