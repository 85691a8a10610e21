/* Paths into arguments (`--arg 'cfg->limits.max'`): apply(cfg) is called with configs whose
 * nested struct, pointer to a struct and string differ, a known number of times each, and with a
 * config whose `owner` pointer is NULL (those calls must be counted as unreadable) and with a NULL
 * config itself. Prints its counts. */
#include <stdio.h>
#include <string.h>

struct limits {
    short min;
    int max;
    unsigned long long bytes;
};

struct owner {
    int uid;
    const char *name;
};

struct config {
    long id;
    struct limits limits;
    struct owner *owner;
    double ratio;
    char label[16];
};

static long calls, null_owner, null_config;

__attribute__((noinline, noipa)) long apply(const struct config *cfg) {
    calls++;
    __asm__ volatile("");
    if (!cfg) {
        null_config++;
        return 0;
    }
    if (!cfg->owner) null_owner++;
    return cfg->limits.max;
}

int main(void) {
    struct owner alice = {1000, "alice"}, bob = {1001, "bob"};
    struct config configs[] = {
        {1, {-1, 10, 1ull << 40}, &alice, 0.5, "a"},
        {2, {-2, 20, 7}, &bob, 0.25, "b"},
        {3, {-3, 30, 9}, NULL, 1.0, "c"},
    };
    int times[] = {30, 20, 5};
    volatile long sink = 0;
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < times[c]; i++) sink += apply(&configs[c]);
    for (int i = 0; i < 4; i++) sink += apply(NULL);
    printf("apply calls: %ld\n", calls);
    printf("apply null owner: %ld\n", null_owner);
    printf("apply null config: %ld\n", null_config);
    return 0;
}
