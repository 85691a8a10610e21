/* Symbols that must not be probed blindly: a "function" in a data section and a function
 * symbol whose size is 0 (hand-written assembly without .size). */
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
        "  ret\n");

long sizeless(long v);

int main(void) {
    return (int)sizeless(0);
}
