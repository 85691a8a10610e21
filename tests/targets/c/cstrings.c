/* --count on C strings: handle(path) is called with a few paths a known number of times each,
 * among them an empty one and one longer than the 64 bytes a key holds. Prints its counts. */
#include <stdio.h>
#include <string.h>

static long calls;

__attribute__((noinline, noipa)) long handle(const char *path) {
    calls++;
    __asm__ volatile("");
    return (long)strlen(path);
}

int main(void) {
    char longer[101];
    memset(longer, 'x', 100);
    longer[0] = '/';
    longer[100] = 0;
    struct { const char *path; int times; } paths[] = {{"/api/users", 30}, {"/metrics", 20}, {"", 5}, {longer, 7}};
    volatile long sink = 0;
    for (int p = 0; p < 4; p++)
        for (int i = 0; i < paths[p].times; i++) sink += handle(paths[p].path);
    printf("handle calls: %ld\n", calls);
    return 0;
}
