//! What the kernel programs and the `probe` loader must agree on, in one place, one module per
//! concern: the names in the object, the bucket math, the aggregates, the attach cookies,
//! latency's in-flight entries, the keyed maps, the reasons a call is dropped and the filter.
//!
//! This lib is plain `no_std` Rust with no dependencies. The eBPF object (src/main.rs) and
//! probe-user both compile it, so the two sides can never disagree.
#![no_std]

mod buckets;
mod cookies;
mod entries;
mod events;
mod fields;
mod filter;
mod keyed;
mod losses;
mod names;
mod stats;

pub use buckets::*;
pub use cookies::*;
pub use entries::*;
pub use events::*;
pub use fields::*;
pub use filter::*;
pub use keyed::*;
pub use losses::*;
pub use names::*;
pub use stats::*;
