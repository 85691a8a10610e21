//! Where drained tables go: probe's own tables (terminal.rs), a metrics endpoint, interval
//! logs, pictures.
//!
//! Every output is built before anything is attached, so a bad path or a busy port fails with
//! nothing attached; it is started inside the runtime once tracing begins, sees the values of
//! every drained interval, and the totals of the whole run at the end.
use crate::measure::Measure;
use crate::options::RunOptions;
use crate::plan::Measured;
use anyhow::Result;
use std::time::Duration;

pub mod events;
pub mod file;
mod hdr_log;
mod heatmap;
pub mod metrics;
mod plot;
pub mod serve;
pub mod stacks;
mod svg;
pub mod terminal;

/// Requests for totals fresh from the maps: each carries where to say they are ready.
pub type RefreshRequests = tokio::sync::mpsc::UnboundedReceiver<tokio::sync::oneshot::Sender<()>>;

/// How often outputs that follow time are fed when `-i` is not given.
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(1);

pub trait Output<T> {
    /// Called once inside the tokio runtime, after attaching (e.g. to spawn a server task).
    fn start(&mut self) -> Result<()> {
        Ok(())
    }
    /// The values of one drained interval that ended `elapsed_s` after tracing began, and the
    /// run's totals up to then.
    fn interval(&mut self, _elapsed_s: f64, _values: &[T], _totals: &[T]) -> Result<()> {
        Ok(())
    }
    /// Once, at the end: the values since the last interval (the last, partial one) and the
    /// totals of the whole run.
    fn finish(&mut self, _elapsed_s: f64, _last: &[T], _totals: &[T]) -> Result<()> {
        Ok(())
    }
    /// The run's totals up to now, drained when something (a scrape) asked for them between
    /// intervals.
    fn refresh(&mut self, _totals: &[T]) -> Result<()> {
        Ok(())
    }
    /// Where this output asks for fresh totals (answered by draining the maps, then
    /// `refresh`); taken once by the tracing loop.
    fn take_refresh_requests(&mut self) -> Option<RefreshRequests> {
        None
    }
    /// Whether probe keeps running after the target exits (until Ctrl-C, SIGTERM or -d), so
    /// the final totals stay readable, as a metrics endpoint's must.
    fn outlives_target(&self) -> bool {
        false
    }
}

/// Builds the outputs the command line asks for, probe's own tables first. `binary` and `pid`
/// (None: every process running the binary) say what is traced, for labels; `extra` labels
/// (the container of `--container`) go on every metric series.
pub fn build<T: Measure>(
    args: &RunOptions,
    slots: &[Measured],
    binary: &str,
    pid: Option<i32>,
    extra: &[(String, String)],
) -> Result<Vec<Box<dyn Output<T>>>> {
    let mut outputs: Vec<Box<dyn Output<T>>> = vec![Box::new(terminal::Terminal::create(args, slots)?)];
    if let Some(addr) = &args.serve {
        outputs.push(Box::new(serve::Serve::<T>::bind(addr, slots, binary, pid, extra)?));
    }
    if let Some(path) = &args.hdr_log {
        outputs.push(Box::new(hdr_log::HdrLog::create(path, slots)?));
    }
    if let Some(path) = &args.heatmap {
        outputs.push(Box::new(heatmap::Heatmap::create(path, slots)?));
    }
    if let Some(path) = &args.plot {
        outputs.push(Box::new(plot::Plot::create(path, slots)?));
    }
    if let Some(path) = &args.folded {
        outputs.push(Box::new(stacks::Folded::create(path, slots)?));
    }
    if let Some(path) = &args.flamegraph {
        outputs.push(Box::new(stacks::Flamegraph::create(path, slots)?));
    }
    if let Some(path) = &args.pprof {
        outputs.push(Box::new(stacks::Pprof::create(path, slots)?));
    }
    Ok(outputs)
}
