/* C latency target: nap() sleeps 100 us and is called 300 times; cfib(18) recurses.
 * Prints its call counts. */
#include <stdio.h>
#include <time.h>

static long nap_calls, fib_calls;

__attribute__((noinline, noipa)) void nap(void) {
    struct timespec ts = {0, 100000};
    nap_calls++;
    nanosleep(&ts, NULL);
}

__attribute__((noinline, noipa)) long cfib(long n) {
    fib_calls++;
    if (n < 2) return n;
    long r = cfib(n - 1) + cfib(n - 2);
    /* Opaque to the optimiser: keeps both calls real calls (no accumulator loop). */
    __asm__ volatile("" : "+r"(r));
    return r;
}

int main(void) {
    for (int i = 0; i < 300; i++) nap();
    long f = cfib(18);
    printf("nap calls: %ld\n", nap_calls);
    printf("cfib calls: %ld (fib %ld)\n", fib_calls, f);
    return 0;
}
