/* --by caller target: leaf() is called from alpha() (one call site) and beta() (two call
 * sites). Each caller counts the calls it makes and the program prints them. With --wait it
 * calls nothing until a line arrives on stdin (so a test can attach with -p first).
 * Usage: callers [rounds] [--wait] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long from_alpha, from_beta;

__attribute__((noinline, noipa)) long leaf(long v) {
    __asm__ volatile("");
    return v + 1;
}

__attribute__((noinline, noipa)) long alpha(long v) {
    from_alpha++;
    long r = leaf(v);
    __asm__ volatile("" : "+r"(r)); /* no tail call: alpha stays the caller */
    return r;
}

__attribute__((noinline, noipa)) long beta(long v) {
    from_beta++;
    long r = leaf(v);
    if (v % 2) {
        from_beta++;
        r += leaf(v); /* a second call site in the same function */
    }
    __asm__ volatile("" : "+r"(r));
    return r;
}

int main(int argc, char **argv) {
    long rounds = argc > 1 ? atol(argv[1]) : 1;
    if (argc > 2 && strcmp(argv[2], "--wait") == 0) {
        char line[16];
        if (!fgets(line, sizeof line, stdin)) return 1;
    }
    volatile long sink = 0;
    for (long r = 0; r < rounds; r++) {
        for (long i = 0; i < 300; i++) sink += alpha(i);
        for (long i = 0; i < 500; i++) sink += beta(i);
    }
    printf("alpha calls: %ld\n", from_alpha);
    printf("beta calls: %ld\n", from_beta);
    return 0;
}
