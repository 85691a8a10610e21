//! What the two pictures share: one panel per traced function with calls, log2 bucket labels
//! in the display unit, and the SVG document written at the end through plotters.
use crate::plan::Measured;
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
/// Font sizes of a panel's title, in pixels: the usual one, and a smaller one for long names.
pub const TITLE_SIZES: [u32; 2] = [18, 14];
/// A title's width per character, in ems: DejaVu Sans (what renderers pick for sans-serif
/// here) lays out a long Go name and its title at 0.43 em a character (usvg); other fonts
/// are wider, so a little more, to be safe.
const TITLE_CHAR_EMS: f64 = 0.5;

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

/// Draws `panels` panels stacked top to bottom with `draw(area, panel)` and writes the SVG
/// into `file`, which `name` names in an error (`--plot FILE`).
pub fn write(
    mut file: &File,
    name: &str,
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
    file.write_all(svg.as_bytes()).map_err(|e| super::file::write_failed(name, &e))
}

/// A panel's title, `NAME REST`, and its font size, within `width` pixels (plotters centres a
/// title and cuts what overflows on both sides). The whole title at the usual size, else at a
/// smaller one; a name still too long loses the package path at its front
/// (`…/reverseproxy.(*Handler).ServeHTTP`), then characters after the `…`: its end (the
/// function itself) and `rest` always show.
pub fn title(name: &str, rest: &str, width: u32) -> (String, u32) {
    let room = |size: u32| (width as f64 / (size as f64 * TITLE_CHAR_EMS)) as usize;
    let fits = |text: &str, size: u32| text.chars().count() <= room(size);
    let full = format!("{name} {rest}");
    let trimmed: Vec<String> = name.match_indices('/').map(|(i, _)| format!("…{} {rest}", &name[i..])).collect();
    for candidates in [std::slice::from_ref(&full), &trimmed[..]] {
        for size in TITLE_SIZES {
            if let Some(text) = candidates.iter().find(|t| fits(t, size)) {
                return (text.clone(), size);
            }
        }
    }
    let size = TITLE_SIZES[TITLE_SIZES.len() - 1];
    let keep = room(size).saturating_sub(rest.chars().count() + 2).max(8);
    let tail: String = name.chars().skip(name.chars().count().saturating_sub(keep)).collect();
    (format!("…{tail} {rest}"), size)
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
    fn long_titles_get_smaller_then_lose_the_front_of_the_package_path() {
        let name = "github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy.(*Handler).ServeHTTP";
        let rest = "latency: calls per interval and bucket";
        assert_eq!(title("main.F", rest, 800), (format!("main.F {rest}"), 18));
        let medium = "example.com/gonames/scrape.(*targetScraper).scrape";
        assert_eq!(title(medium, rest, 810), (format!("{medium} {rest}"), 18));
        let long = "example.com/gonames/internal/servers/scrape.(*targetScraper).scrape";
        assert_eq!(title(long, rest, 810), (format!("{long} {rest}"), 14));
        assert_eq!(title(name, rest, 810), (format!("…/caddyhttp/reverseproxy.(*Handler).ServeHTTP {rest}"), 18));
        let (text, size) = title(name, rest, 500);
        assert!(text.starts_with('…') && text.ends_with(&format!("ServeHTTP {rest}")), "{text}");
        assert!(text.chars().count() as f64 * size as f64 * TITLE_CHAR_EMS <= 500.0, "{text}");
    }

    #[test]
    fn panels_skip_idle_functions_and_keep_the_busiest_in_order() {
        assert_eq!(panel_slots(&[5, 0, 7], "--plot"), [0, 2]);
        let calls: Vec<u64> = (0..20).collect(); // slot s has s calls
        assert_eq!(panel_slots(&calls, "--plot"), (8..20).collect::<Vec<_>>());
    }
}
