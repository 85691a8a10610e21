//! `--plot FILE.svg`: the final `@hist_log` histogram as a bar chart, one bar per non-empty
//! log2 bucket (empty ones leave a gap), one panel per function. Drawn with plotters at the end of the run.
use super::svg::{self, bucket_axis, bucket_label, row_end};
use super::{file, Output};
use crate::measure::Measure;
use crate::plan::Measured;
use anyhow::Result;
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use std::fs::File;
use std::path::Path;

pub struct Plot {
    file: File,
    /// `--plot FILE`, for messages.
    name: String,
    slots: Vec<Measured>,
}

impl Plot {
    pub fn create(path: &Path, slots: &[Measured]) -> Result<Plot> {
        let name = format!("--plot {}", path.display());
        Ok(Plot { file: file::create_svg(path, "--plot")?, name, slots: slots.to_vec() })
    }

    fn draw_panel(
        &self,
        area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
        m: &Measured,
        buckets: &[u64],
    ) -> Result<()> {
        let filled: Vec<(i32, u64)> =
            buckets.iter().enumerate().filter(|(_, &c)| c > 0).map(|(i, &c)| (i as i32, c)).collect();
        let low = filled.first().map_or(0, |b| b.0);
        let high = filled.last().map_or(0, |b| b.0);
        let max = filled.iter().map(|b| b.1).max().unwrap_or(1);
        let calls: u64 = filled.iter().map(|b| b.1).sum();
        let top = max + max / 20 + 1;
        let (title, title_size) = svg::title(&m.function, &format!("{}: {calls} calls", m.what), svg::WIDTH - 20);

        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", title_size))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(80)
            .build_cartesian_2d((low..high).into_segmented(), 0u64..top)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(TRANSPARENT)
            .x_desc(bucket_axis(m))
            .y_desc("calls")
            .x_labels((high - low + 1) as usize)
            .x_label_formatter(&bucket_label)
            .label_style(("sans-serif", svg::LABEL_SIZE))
            .axis_desc_style(("sans-serif", svg::LABEL_SIZE))
            .draw()?;
        // At least one pixel tall, so a bucket of a few calls next to a large one still shows.
        let y_pixels = |calls: u64| chart.backend_coord(&(SegmentValue::Exact(low), calls)).1;
        let pixel_calls = top.div_ceil((y_pixels(0) - y_pixels(top)).max(1) as u64);
        chart.draw_series(filled.iter().map(|&(bucket, calls)| {
            let mut bar = Rectangle::new(
                [(SegmentValue::Exact(bucket), 0), (row_end(bucket, high), calls.max(pixel_calls))],
                BLUE.mix(0.8).filled(),
            );
            bar.set_margin(0, 0, 4, 4);
            bar
        }))?;
        Ok(())
    }
}

impl<T: Measure> Output<T> for Plot {
    fn finish(&mut self, _elapsed_s: f64, _last: &[T], totals: &[T]) -> Result<()> {
        let calls: Vec<u64> = totals.iter().map(|t| t.log2_buckets().iter().sum()).collect();
        let panels = svg::panel_slots(&calls, "--plot");
        svg::write(&self.file, &self.name, panels.len(), |area, panel| {
            let slot = panels[panel];
            self.draw_panel(area, &self.slots[slot], totals[slot].log2_buckets())
        })
    }
}
