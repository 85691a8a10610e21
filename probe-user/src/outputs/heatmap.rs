//! `--heatmap FILE.svg`: calls over time per log2 bucket, the picture that shows modes and
//! outliers. One panel per function: x is time (one column per drained interval, `-i` wide),
//! y the `@hist_log` buckets, colour the calls in the cell on a log scale (viridis: dark is 1
//! call, yellow the panel's maximum); empty cells stay blank. Drawn with plotters at the end.
use super::svg::{self, bucket_axis, bucket_label, row_end};
use super::{file, Output};
use crate::measure::Measure;
use crate::plan::Measured;
use anyhow::Result;
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use probe_ebpf::LOG2_BUCKETS;
use std::fs::File;
use std::path::Path;

/// Width of the colour bar, in pixels.
const BAR_WIDTH: u32 = 130;
/// Room for a panel's title: the plot's width inside its margins.
const CAPTION_WIDTH: u32 = svg::WIDTH - BAR_WIDTH - 20;

pub struct Heatmap {
    file: File,
    /// `--heatmap FILE`, for messages.
    name: String,
    slots: Vec<Measured>,
    columns: Vec<Column>,
}

/// One drained interval: its span in seconds since tracing began and its non-empty cells.
struct Column {
    start_s: f64,
    end_s: f64,
    cells: Vec<Cell>,
}

struct Cell {
    slot: usize,
    bucket: usize,
    count: u64,
}

impl Heatmap {
    pub fn create(path: &Path, slots: &[Measured]) -> Result<Heatmap> {
        let name = format!("--heatmap {}", path.display());
        Ok(Heatmap { file: file::create_svg(path, "--heatmap")?, name, slots: slots.to_vec(), columns: Vec::new() })
    }

    fn push_column(&mut self, end_s: f64, count: impl Fn(usize, usize) -> u64) {
        let start_s = self.columns.last().map_or(0.0, |c| c.end_s);
        let mut cells = Vec::new();
        for slot in 0..self.slots.len() {
            for bucket in 0..LOG2_BUCKETS {
                let count = count(slot, bucket);
                if count > 0 {
                    cells.push(Cell { slot, bucket, count });
                }
            }
        }
        self.columns.push(Column { start_s, end_s, cells });
    }

    /// Draws the panels of the busiest slots; `calls` is each slot's total.
    fn draw(&self, calls: &[u64]) -> Result<()> {
        let panels = svg::panel_slots(calls, "--heatmap");
        let end_s = self.columns.last().map_or(0.0, |c| c.end_s).max(1e-3);
        svg::write(&self.file, &self.name, panels.len(), |area, panel| self.draw_panel(area, panels[panel], end_s))
    }

    fn draw_panel(
        &self,
        area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
        slot: usize,
        end_s: f64,
    ) -> Result<()> {
        let cells: Vec<(&Column, &Cell)> =
            self.columns.iter().flat_map(|c| c.cells.iter().filter(|x| x.slot == slot).map(move |x| (c, x))).collect();
        let low = cells.iter().map(|(_, x)| x.bucket).min().unwrap_or(0) as i32;
        let high = cells.iter().map(|(_, x)| x.bucket).max().unwrap_or(0) as i32;
        let (low, high) = two_rows_at_least(low, high);
        let max = cells.iter().map(|(_, x)| x.count).max().unwrap_or(1);
        let m = &self.slots[slot];
        let (plot_area, bar_area) = area.split_horizontally(svg::WIDTH - BAR_WIDTH);
        let rest = format!("{}: calls per interval and bucket", m.what);
        let (title, title_size) = svg::title(&m.function, &rest, CAPTION_WIDTH);

        let mut chart = ChartBuilder::on(&plot_area)
            .caption(title, ("sans-serif", title_size))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..end_s, (low..high).into_segmented())?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("seconds since tracing began")
            .y_desc(bucket_axis(m))
            .y_labels((high - low + 1) as usize)
            .y_label_formatter(&bucket_label)
            .label_style(("sans-serif", svg::LABEL_SIZE))
            .axis_desc_style(("sans-serif", svg::LABEL_SIZE))
            .draw()?;
        // At least one pixel wide, so a short last interval still shows (and renders); a
        // sliver at the end grows to the left, never past the end of the x axis.
        let x_pixels = |s: f64| chart.backend_coord(&(s, SegmentValue::Exact(low))).0;
        let pixel_s = end_s / (x_pixels(end_s) - x_pixels(0.0)).max(1) as f64;
        chart.draw_series(cells.iter().map(|(column, cell)| {
            let row = cell.bucket as i32;
            let (x0, x1) = column_span(column.start_s, column.end_s, pixel_s, end_s);
            Rectangle::new([(x0, SegmentValue::Exact(row)), (x1, row_end(row, high))], colour(cell.count, max).filled())
        }))?;
        draw_colour_bar(&bar_area, max)
    }
}

/// A y axis of one bucket row has no height in plotters (its range is empty): add the empty
/// row below (or above the lowest bucket), as `@hist_log` shows empty rows around its data.
fn two_rows_at_least(low: i32, high: i32) -> (i32, i32) {
    match (low == high, low > 0) {
        (false, _) => (low, high),
        (true, true) => (low - 1, high),
        (true, false) => (low, high + 1),
    }
}

/// The x span of a column: at least `pixel_s` wide, inside `0..=end_s`.
fn column_span(start_s: f64, end_s: f64, pixel_s: f64, axis_end_s: f64) -> (f64, f64) {
    let x1 = end_s.max(start_s + pixel_s).min(axis_end_s);
    let x0 = start_s.min(x1 - pixel_s).max(0.0);
    (x0, x1)
}

/// The colour of a cell with `count` calls when the panel's busiest cell has `max`.
fn colour(count: u64, max: u64) -> RGBColor {
    let t = if max <= 1 { 1.0 } else { (count as f64).ln() / (max as f64).ln() };
    ViridisRGB::get_color(t.clamp(0.0, 1.0))
}

/// The colour scale, 1 to `max` calls on a log axis, drawn as one horizontal line per pixel
/// row (not rectangles: the only filled rectangles in the picture are cells).
fn draw_colour_bar(area: &DrawingArea<SVGBackend, plotters::coord::Shift>, max: u64) -> Result<()> {
    let top = (max as f64).max(2.0);
    let mut bar = ChartBuilder::on(area)
        .margin_top(40)
        .margin_bottom(50)
        .margin_right(10)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..1f64, (1f64..top).log_scale())?;
    bar.configure_mesh()
        .disable_mesh()
        .disable_x_axis()
        .y_desc("calls per cell")
        .y_labels(6)
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style(("sans-serif", svg::LABEL_SIZE))
        .axis_desc_style(("sans-serif", svg::LABEL_SIZE))
        .draw()?;
    let rows = bar.plotting_area().dim_in_pixel().1.max(1);
    bar.draw_series((0..rows).map(|row| {
        let t = (row as f64 + 0.5) / rows as f64;
        PathElement::new(vec![(0.0, top.powf(t)), (1.0, top.powf(t))], ViridisRGB::get_color(t).stroke_width(2))
    }))?;
    Ok(())
}

impl<T: Measure> Output<T> for Heatmap {
    fn interval(&mut self, elapsed_s: f64, values: &[T], _totals: &[T]) -> Result<()> {
        self.push_column(elapsed_s, |slot, bucket| values[slot].log2_buckets()[bucket]);
        Ok(())
    }

    fn finish(&mut self, elapsed_s: f64, last: &[T], totals: &[T]) -> Result<()> {
        self.push_column(elapsed_s, |slot, bucket| last[slot].log2_buckets()[bucket]);
        let calls: Vec<u64> = totals.iter().map(|t| t.log2_buckets().iter().sum()).collect();
        self.draw(&calls)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_last_column_thinner_than_a_pixel_stays_inside_the_axis() {
        assert_eq!(column_span(1.0, 1.0001, 0.01, 1.0001), (1.0001 - 0.01, 1.0001));
        assert_eq!(column_span(0.5, 1.0, 0.01, 1.0), (0.5, 1.0));
        assert_eq!(column_span(0.0, 0.001, 0.01, 0.001), (0.0, 0.001));
    }

    /// Draws a real SVG whose last interval lasts 0.1 ms of a 1 s run and reads back every
    /// cell: none reaches past the x axis line.
    #[test]
    fn svg_cells_end_at_the_x_axis() {
        let path = std::env::temp_dir().join(format!("probe-heatmap-unit-{}.svg", std::process::id()));
        let m = Measured {
            function: "f".into(),
            what: "latency".into(),
            unit: Some(crate::shared::Unit::Us),
            top_values: 0,
            ..Default::default()
        };
        let mut heatmap = Heatmap::create(&path, &[m]).unwrap();
        for end in [0.5, 0.9999, 1.0] {
            heatmap.push_column(end, |_, bucket| u64::from(bucket == 70 || bucket == 72));
        }
        heatmap.draw(&[3]).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let attr = |tag: &str, name: &str| -> f64 {
            let at = tag.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
            tag[at..].split('"').next().unwrap().parse().unwrap()
        };
        // The x axis: the longest horizontal line.
        let axis_end = svg
            .lines()
            .filter_map(|l| l.split("points=\"").nth(1))
            .filter_map(|p| {
                let xy: Vec<(f64, f64)> = p
                    .split_whitespace()
                    .filter_map(|xy| xy.split_once(','))
                    .map(|(x, y)| (x.parse().unwrap(), y.parse().unwrap()))
                    .collect();
                (xy.len() == 2 && xy[0].1 == xy[1].1).then(|| (xy[1].0 - xy[0].0, xy[1].0))
            })
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .unwrap()
            .1;
        let cells: Vec<(f64, f64)> = svg
            .lines()
            .filter(|l| l.starts_with("<rect") && !l.contains("#FFFFFF"))
            .map(|l| (attr(l, "x"), attr(l, "x") + attr(l, "width")))
            .collect();
        assert_eq!(cells.len(), 6, "{svg}");
        for (x0, x1) in cells {
            assert!(x0 < x1 && x1 <= axis_end, "cell {x0}..{x1} past the axis end {axis_end}");
        }
    }

    /// All calls in one bucket (a fixed 2 ms sleep): the cells still have a height.
    #[test]
    fn one_bucket_cells_have_a_height() {
        let path = std::env::temp_dir().join(format!("probe-heatmap-one-row-{}.svg", std::process::id()));
        let m = Measured {
            function: "f".into(),
            what: "latency".into(),
            unit: Some(crate::shared::Unit::Us),
            top_values: 0,
            ..Default::default()
        };
        let mut heatmap = Heatmap::create(&path, &[m]).unwrap();
        heatmap.push_column(0.5, |_, bucket| u64::from(bucket == 75) * 100);
        heatmap.draw(&[100]).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let cells: Vec<&str> = svg.lines().filter(|l| l.starts_with("<rect") && !l.contains("#FFFFFF")).collect();
        assert_eq!(cells.len(), 1, "{svg}");
        let height: f64 = cells[0].split(" height=\"").nth(1).unwrap().split('"').next().unwrap().parse().unwrap();
        assert!(height >= 50.0, "{}", cells[0]);
        assert_eq!(two_rows_at_least(0, 0), (0, 1));
        assert_eq!(two_rows_at_least(3, 5), (3, 5));
    }

    #[test]
    fn colour_runs_from_dark_at_one_call_to_yellow_at_the_busiest_cell() {
        assert_eq!(colour(1, 10_000), RGBColor(68, 1, 84));
        assert_eq!(colour(10_000, 10_000), RGBColor(254, 232, 37));
        assert_eq!(colour(1, 1), RGBColor(254, 232, 37));
        // Log scale: 100 of 10000 is half way.
        assert_eq!(colour(100, 10_000), ViridisRGB::get_color(0.5));
    }
}
