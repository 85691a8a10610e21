/* Calls lib_work (in libprobevalues.so) with every value -500..=499 once per round, and libc's
 * getppid 500 times per round. Prints its call counts. Usage: libmain [rounds] [--wait] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

long lib_work(long v);

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
    long calls = 0, ppid_calls = 0;
    for (long r = 0; r < rounds; r++) {
        for (long v = -500; v < 500; v++) {
            sink += lib_work(v);
            calls++;
        }
        for (int i = 0; i < 500; i++) {
            sink += getppid();
            ppid_calls++;
        }
    }
    printf("lib_work calls: %ld\n", calls);
    printf("getppid calls: %ld\n", ppid_calls);
    return 0;
}
