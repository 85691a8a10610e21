/* C functions whose parameters are of several classes (System V): for `--arg NAME` and
 * `--arg N` as declared. Each round calls each function once for every v in -500..=499; the
 * tests recompute the values. Prints its call counts. Usage: cparams [rounds] */
#include <stdio.h>
#include <stdlib.h>

struct pair { long a, b; };          /* 16 bytes of integers: two registers */
struct big { long x, y, z; };        /* above 16 bytes: on the stack */

/* code: edi (an int: negative values must read negative); path: rsi; ratio: xmm0 (takes no
 * integer register); p: rdx and rcx; tag: r8; b: the stack; last: r9. */
__attribute__((noinline, noipa)) int handle(int code, const char *path, double ratio, struct pair p,
                                            unsigned char tag, struct big b, long last) {
    __asm__ volatile("");
    return code - (int)tag + (int)(p.a + b.z + last) + (int)ratio + (path != 0);
}

/* Returned in memory: its hidden pointer takes rdi, so seed is in rsi and s in dx. */
__attribute__((noinline, noipa)) struct big make(long seed, short s) {
    struct big out = {seed, s, seed + s};
    __asm__ volatile("");
    return out;
}

/* Seven integers: g is on the stack. */
__attribute__((noinline, noipa)) long seven(long a, long b, long c, long d, long e, long f, int g) {
    __asm__ volatile("");
    return a + b + c + d + e + f + g;
}

/* Always called with factor 3: GCC makes scaled.constprop.0 without it, while its DWARF still
 * lists factor. */
static __attribute__((noinline)) long scaled(long x, long factor) {
    __asm__ volatile("");
    return x * factor;
}

int main(int argc, char **argv) {
    long rounds = argc > 1 ? atol(argv[1]) : 1;
    volatile long sink = 0;
    long calls = 0;
    for (long r = 0; r < rounds; r++) {
        for (long v = -500; v < 500; v++) {
            struct pair p = {v, -v};
            struct big b = {v, 2 * v, 3 * v};
            sink += handle((int)v * 3, "/x", (double)v / 2, p, (unsigned char)v, b, 7 * v);
            sink += make(v, (short)(v * 60)).z;
            sink += seven(v, 1, 2, 3, 4, 5, (int)v * -11);
            sink += scaled(v, 3);
            calls++;
        }
    }
    printf("sink: %ld\n", (long)sink);
    printf("handle calls: %ld\nmake calls: %ld\nseven calls: %ld\n", calls, calls, calls);
    return 0;
}
