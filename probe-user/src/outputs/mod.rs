//! Where drained tables go besides the terminal (metrics endpoint, interval logs, pictures).
//!
//! Every output is built before anything is attached, so a bad path or a busy port fails with
//! nothing attached; it is started inside the runtime once tracing begins, sees the values of
//! every drained interval, and the totals of the whole run at the end.
use crate::cli::OutputArgs;
use crate::render::Measured;
use anyhow::Result;
use std::time::Duration;

mod distribution;
mod file;
mod hdr_log;
mod heatmap;
mod plot;
mod svg;
pub use distribution::Distribution;

/// How often outputs that follow time are fed when `-i` is not given.
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(1);

pub trait Output<T> {
    /// Called once inside the tokio runtime, after attaching (e.g. to spawn a server task).
    fn start(&mut self) -> Result<()> {
        Ok(())
    }
    /// The values of one drained interval that ended `elapsed_s` after tracing began.
    fn interval(&mut self, _elapsed_s: f64, _values: &[T]) -> Result<()> {
        Ok(())
    }
    /// The totals of the whole run, once, at the end.
    fn finish(&mut self, _elapsed_s: f64, _totals: &[T]) -> Result<()> {
        Ok(())
    }
}

/// Builds the outputs the command line asks for.
pub fn build<T: Distribution>(args: &OutputArgs, slots: &[Measured]) -> Result<Vec<Box<dyn Output<T>>>> {
    let mut outputs: Vec<Box<dyn Output<T>>> = Vec::new();
    if let Some(path) = &args.hdr_log {
        outputs.push(Box::new(hdr_log::HdrLog::create(path, slots)?));
    }
    if let Some(path) = &args.heatmap {
        outputs.push(Box::new(heatmap::Heatmap::create(path, slots)?));
    }
    if let Some(path) = &args.plot {
        outputs.push(Box::new(plot::Plot::create(path, slots)?));
    }
    Ok(outputs)
}
