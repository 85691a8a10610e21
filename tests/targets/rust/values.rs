// A Rust function (mangled name) called with every value -500..=499; prints its call count.
#[inline(never)]
pub fn scale(v: i64) -> i64 {
    std::hint::black_box(v) * 2
}

fn main() {
    let mut sink = 0i64;
    let mut calls = 0u64;
    for v in -500..500i64 {
        sink = sink.wrapping_add(scale(std::hint::black_box(v)));
        calls += 1;
    }
    println!("scale calls: {calls} (sum {sink})");
}
