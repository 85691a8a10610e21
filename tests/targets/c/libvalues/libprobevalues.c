/* A shared library function: lib_work(v) is called by libmain with every value -500..=499. */
__attribute__((noinline, noipa)) long lib_work(long v) {
    __asm__ volatile("");
    return v * 2;
}
