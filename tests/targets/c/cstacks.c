// Calls leaf along two known paths and prints how many times each ran, so a test can check
// probe's stacks against them: a -> b -> leaf (300 calls) and c -> leaf (100). Built with and
// without frame pointers; noinline and noipa keep every call a real call.
#include <stdio.h>
#include <stdlib.h>

#define KEEP __attribute__((noinline, noipa))

volatile long sink;

KEEP long leaf(long x) { return x * 2 + 1; }
KEEP long b(long x) { return leaf(x) + 1; }
KEEP long a(long x) { return b(x) + 1; }
KEEP long c(long x) { return leaf(x) + 2; }

int main(int argc, char **argv) {
    long scale = argc > 1 ? atol(argv[1]) : 1;
    for (long i = 0; i < 300 * scale; i++) sink += a(i);
    for (long i = 0; i < 100 * scale; i++) sink += c(i);
    printf("a->b->leaf calls: %ld\n", 300 * scale);
    printf("c->leaf calls: %ld\n", 100 * scale);
    return 0;
}
