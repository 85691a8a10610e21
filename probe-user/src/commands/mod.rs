//! One module per CLI command.
pub mod argdist;
pub mod doctor;
pub mod latency;
pub mod list;
pub mod manual;
