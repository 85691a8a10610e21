/* Values read as their declared types (tests/types.rs). Prints its call counts.
 *   neg(i) returns -1..-5 (an int, in the low half of RAX), 10 calls
 *   big(v) takes unsigned longs: 3 calls with ULONG_MAX, 2 with 7
 *   named(a..f, name): a const char * in the 7th parameter, on the stack: "alpha" 3, "beta" 2
 *   argv_count(argv): a char **, 4 calls
 *   label(s): strings whose bytes are not UTF-8: "\xff" 3 calls, "\xfe" 2 */
#include <limits.h>
#include <stdio.h>

static long neg_calls, big_calls, named_calls, argv_calls, label_calls;

__attribute__((noinline, noipa)) int neg(int i) {
    neg_calls++;
    return -(i % 5) - 1;
}

__attribute__((noinline, noipa)) unsigned long big(unsigned long v) {
    big_calls++;
    return v / 2;
}

__attribute__((noinline, noipa)) long named(long a, long b, long c, long d, long e, long f, const char *name) {
    named_calls++;
    return a + b + c + d + e + f + name[0];
}

__attribute__((noinline, noipa)) long argv_count(char **argv) {
    long n = 0;
    argv_calls++;
    while (argv[n]) n++;
    return n;
}

__attribute__((noinline, noipa)) long label(const char *s) {
    label_calls++;
    return s[0];
}

int main(int argc, char **argv) {
    (void)argc;
    /* On the stack, which the process has touched: a string literal's page may not be read in
     * yet at the first call, and a probe cannot fault it in. */
    char alpha[] = "alpha", beta[] = "beta", ff[] = "\xff", fe[] = "\xfe";
    volatile long sink = 0;
    for (int i = 0; i < 10; i++) sink += neg(i);
    for (int i = 0; i < 5; i++) sink += (long)big(i < 3 ? ULONG_MAX : 7);
    for (int i = 0; i < 5; i++) sink += named(1, 2, 3, 4, 5, 6, i < 3 ? alpha : beta);
    for (int i = 0; i < 4; i++) sink += argv_count(argv);
    for (int i = 0; i < 5; i++) sink += label(i < 3 ? ff : fe);
    printf("neg calls: %ld\nbig calls: %ld\nnamed calls: %ld\nargv_count calls: %ld\nlabel calls: %ld\n", neg_calls,
           big_calls, named_calls, argv_calls, label_calls);
    return 0;
}
