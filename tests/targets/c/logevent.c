/* argdist --count on a C string read at the first call: log_event("open") is called N times
 * (200 by default), and nothing touches the literal's page of .rodata before the first call, so
 * when the first probe fires that page is not yet mapped into the process. A probe that cannot
 * fault a page in reads the first call's name as unreadable. Prints its own count. */
#include <stdio.h>
#include <stdlib.h>

static long calls;

__attribute__((noinline, noipa)) void log_event(const char *name) {
    calls++;
    /* Reads the name, as a logger would. */
    __asm__ volatile("" ::"r"(name[0]) : "memory");
}

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 200;
    for (long i = 0; i < n; i++) log_event("open");
    printf("log_event calls: %ld\n", calls);
    return 0;
}
