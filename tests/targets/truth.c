/* Ground truth for latency in C: functions of known cost (about 0.1, 1, 10 and 100 us of pure
 * computation, and outer10 with ten work1us calls inside) that the program times itself, call
 * by call, from the caller. Prints, per function, like tests/targets/truth/main.go:
 *   work1us calls: 2000
 *   work1us self-timed median_ns: 1012 mean_ns: 1040 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static volatile uint64_t sink;

__attribute__((noinline)) static uint64_t spin(long n) {
    uint64_t x = (uint64_t)n | 1;
    for (long i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        __asm__ volatile("" : "+r"(x));
    }
    return x;
}

__attribute__((noinline)) uint64_t work01us(long n) { return spin(n) + 1; }
__attribute__((noinline)) uint64_t work1us(long n) { return spin(n) + 1; }
__attribute__((noinline)) uint64_t work10us(long n) { return spin(n) + 1; }
__attribute__((noinline)) uint64_t work100us(long n) { return spin(n) + 1; }
__attribute__((noinline)) uint64_t outer10(long n) {
    uint64_t x = 0;
    for (int i = 0; i < 10; i++) x += work1us(n);
    return x;
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int by_value(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    long calls = argc > 2 ? atol(argv[2]) : 2000; /* truth -calls N */
    struct { const char *name; uint64_t (*fn)(long); long iters; } works[] = {
        {"work01us", work01us, 40}, {"work1us", work1us, 450}, {"work10us", work10us, 4500},
        {"work100us", work100us, 45000}, {"outer10", outer10, 450},
    };
    int64_t *times = malloc(sizeof(int64_t) * calls);
    for (unsigned w = 0; w < sizeof works / sizeof works[0]; w++) {
        long n = works[w].iters >= 45000 ? calls / 10 : calls;
        int64_t sum = 0;
        for (long i = 0; i < n; i++) {
            int64_t start = now_ns();
            sink += works[w].fn(works[w].iters);
            times[i] = now_ns() - start;
            sum += times[i];
        }
        qsort(times, n, sizeof times[0], by_value);
        printf("%s calls: %ld\n", works[w].name, n);
        printf("%s self-timed median_ns: %lld mean_ns: %lld\n", works[w].name, (long long)times[n / 2],
               (long long)(sum / n));
        if (works[w].fn == outer10) printf("work1us total calls: %ld\n", 10 * n + calls);
    }
    return 0;
}
