// A C++ method (mangled name, `this` as argument 0) called with every value -500..=499.
#include <cstdio>

namespace geo {
struct Scaler {
    long factor;
    __attribute__((noinline)) long scale(long v);
};
long Scaler::scale(long v) {
    asm volatile("");
    return v * factor;
}
}  // namespace geo

int main() {
    geo::Scaler s{3};
    volatile long sink = 0;
    long calls = 0;
    for (long v = -500; v < 500; v++) {
        sink += s.scale(v);
        calls++;
    }
    std::printf("scale calls: %ld\n", calls);
}
