/* Symbols that must not be probed blindly: a "function" in a data section, a function
 * symbol whose size is 0 (hand-written assembly without .size), and a function whose first
 * instruction the kernel refuses (LOCK) followed by a loop head, so no later instruction is an
 * equivalent entry. plain_loop, an ordinary function, shares refused_loop's suffix, so a glob
 * can match both. Prints `plain_loop calls: N`. */
#include <stdio.h>

__asm__(".pushsection .data\n"
        ".globl data_not_code\n"
        ".type data_not_code, @function\n"
        "data_not_code: .quad 0\n"
        ".size data_not_code, 8\n"
        ".popsection\n"
        ".text\n"
        ".globl sizeless\n"
        ".type sizeless, @function\n"
        "sizeless: mov %rdi, %rax\n"
        "  ret\n"
        ".globl refused_loop\n"
        ".type refused_loop, @function\n"
        "refused_loop: lock incq (%rsi)\n"
        "1: dec %rdi\n"
        "  jnz 1b\n"
        "  ret\n"
        ".size refused_loop, . - refused_loop\n");

long sizeless(long v);
void refused_loop(long n, long *counter);

static long plain_calls;

__attribute__((noinline, noipa)) long plain_loop(long n) {
    plain_calls++;
    for (long i = 0; i < n; i++) __asm__ volatile("");
    return n;
}

int main(void) {
    long counter = 0;
    refused_loop(3, &counter);
    for (long i = 0; i < 100; i++) plain_loop(i);
    printf("plain_loop calls: %ld\n", plain_calls);
    return (int)sizeless(0) + (int)counter - 1;
}
