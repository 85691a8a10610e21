//! What the two pictures share: one panel per traced function with calls, log2 bucket labels
//! in the display unit, and the SVG document written at the end through plotters.
use crate::measure::Measured;
use anyhow::Result;
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use probe_ebpf::log2_bucket_label;
use std::fs::File;
use std::io::Write;

/// Width of a picture and height of one function's panel, in pixels.
pub const WIDTH: u32 = 960;
pub const PANEL_HEIGHT: u32 = 300;
/// Font size of axis labels and names, in pixels.
pub const LABEL_SIZE: u32 = 14;
/// More panels than this would be unreadable: the functions with the most calls are drawn.
pub const MAX_PANELS: usize = 12;

/// The slots to draw, busiest first when there are too many, else in command-line order.
/// `calls` is each slot's number of calls; slots without calls get no panel.
pub fn panel_slots(calls: &[u64], option: &str) -> Vec<usize> {
    let mut slots: Vec<usize> = (0..calls.len()).filter(|&s| calls[s] > 0).collect();
    if slots.len() > MAX_PANELS {
        eprintln!("probe: {option}: {} functions had calls; drawing the {MAX_PANELS} with the most", slots.len());
        slots.sort_by_key(|&s| std::cmp::Reverse(calls[s]));
        slots.truncate(MAX_PANELS);
        slots.sort();
    }
    slots
}

/// Draws `panels` panels stacked top to bottom with `draw(area, panel)` and writes the SVG.
pub fn write(
    mut file: &File,
    panels: usize,
    mut draw: impl FnMut(&DrawingArea<SVGBackend, plotters::coord::Shift>, usize) -> Result<()>,
) -> Result<()> {
    let mut svg = String::new();
    {
        let height = PANEL_HEIGHT * panels.max(1) as u32;
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE)?;
        for (panel, area) in root.split_evenly((panels.max(1), 1)).iter().enumerate().take(panels) {
            draw(area, panel)?;
        }
        root.present()?;
    }
    file.write_all(svg.as_bytes())?;
    Ok(())
}

/// The name of a bucket axis: `latency (us), log2 buckets` or `arg0, log2 buckets`.
pub fn bucket_axis(m: &Measured) -> String {
    match m.unit {
        Some(unit) => format!("latency ({}), log2 buckets", unit.suffix()),
        None => format!("{}, log2 buckets", m.what),
    }
}

/// A bucket axis label: SystemTap's row label (0, 2^k or -2^k), at the middle of its row.
pub fn bucket_label(v: &SegmentValue<i32>) -> String {
    match v {
        SegmentValue::CenterOf(i) => log2_bucket_label(*i as usize).to_string(),
        _ => String::new(),
    }
}

/// The far edge of bucket row `i` on an axis of rows `..=last`.
pub fn row_end(i: i32, last: i32) -> SegmentValue<i32> {
    if i == last {
        SegmentValue::Last
    } else {
        SegmentValue::Exact(i + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panels_skip_idle_functions_and_keep_the_busiest_in_order() {
        assert_eq!(panel_slots(&[5, 0, 7], "--plot"), [0, 2]);
        let calls: Vec<u64> = (0..20).collect(); // slot s has s calls
        assert_eq!(panel_slots(&calls, "--plot"), (8..20).collect::<Vec<_>>());
    }
}
