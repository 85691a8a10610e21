/* A C function (System V ABI) called with every value -500..=499 once per round.
 * work(a, b) returns a + b, so --arg 0 sees v, --arg 1 sees 2v and --ret sees 3v.
 * Prints its call count. Usage: cvalues [rounds] [--wait] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

__attribute__((noinline, noipa)) long work(long a, long b) {
    __asm__ volatile("");
    return a + b;
}

int main(int argc, char **argv) {
    long rounds = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--wait") == 0) {
            char line[16];
            if (!fgets(line, sizeof line, stdin)) return 1;
        } else {
            rounds = atol(argv[i]);
        }
    }
    volatile long sink = 0;
    long calls = 0;
    for (long r = 0; r < rounds; r++) {
        for (long v = -500; v < 500; v++) {
            sink += work(v, 2 * v);
            calls++;
        }
    }
    printf("work calls: %ld\n", calls);
    printf("uid: %d\n", (int)getuid());
    return 0;
}
