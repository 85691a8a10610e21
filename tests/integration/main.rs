//! probe's integration tests: one executable, one module per feature. Each test loads real
//! programs into the kernel, attaches real uprobes to real target programs (the table in
//! xtask/helpers/src/targets.rs, built before the first test runs) and checks exact numbers.
//! Run them one at a time (`--test-threads=1`, as `cargo xtask test` does): tests assert that
//! no probe program stays loaded after each run. `cargo xtask test -- argdist::` runs a module.
mod support;

// What probe measures.
mod argdist;
mod by;
mod count;
mod events;
mod fields;
mod filter;
mod latency;
mod parameters;
mod types;
// Where it attaches, and what that costs.
mod cost;
mod inlined;
mod kernel;
mod many_functions;
mod resolve;
// Every call accounted for.
mod losses;
mod pages;
// What it writes.
mod manual;
mod outputs;
mod serve;
mod stacks;
// What a user meets: mistakes, first use, old systems, abuse.
mod bad_input;
mod containers;
mod old_userland;
mod stress;
mod usability;
