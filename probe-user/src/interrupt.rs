//! Ctrl-C and SIGTERM while probes are being attached, before the trace loop listens: a flag
//! that long attaches check between probes, so they stop at once rather than run to the end.
//! It goes through signal-hook-registry, which tokio's signal streams share, so the trace loop
//! still sees every later signal.
use anyhow::{Context, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

static REQUESTED: AtomicBool = AtomicBool::new(false);
static INSTALL: Once = Once::new();

/// From now on SIGINT and SIGTERM set the flag instead of killing the process.
pub fn install() -> Result<()> {
    let mut result = Ok(());
    INSTALL.call_once(|| {
        for signal in [libc::SIGINT, libc::SIGTERM] {
            // The action only stores to an atomic: async-signal-safe.
            let registered =
                unsafe { signal_hook_registry::register(signal, || REQUESTED.store(true, Ordering::SeqCst)) };
            if let Err(e) = registered {
                result = Err(e).context("installing the Ctrl-C handler");
            }
        }
    });
    result
}

/// Whether Ctrl-C or SIGTERM arrived since `install`. Always false before it.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}
