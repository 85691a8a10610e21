//! `--hdr-log FILE`: each drained interval's latencies as HdrHistograms of nanoseconds, one per
//! function (tagged with its name), in HdrHistogram's interval log format (V2 compressed
//! histograms, as Java's `HistogramLogWriter` writes), so HdrHistogram's own tools read it.
//! Written as the run goes; the last, partial interval at the end.
use super::{file, Output};
use crate::histogram::ns_histogram;
use crate::measure::Measure;
use crate::plan::Measured;
use anyhow::Result;
use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::V2DeflateSerializer;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

/// The column legend Java's `HistogramLogWriter` writes after the header.
const LEGEND: &str = "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"";

pub struct HdrLog {
    file: BufWriter<File>,
    /// `--hdr-log FILE`, for messages.
    name: String,
    serializer: V2DeflateSerializer,
    /// One interval log tag per slot: the function name, with the characters a tag cannot
    /// hold (`,`, space, line breaks) replaced by `_`.
    tags: Vec<String>,
    /// End of the last interval written, in seconds since tracing began.
    written_until_s: f64,
}

impl HdrLog {
    pub fn create(path: &Path, slots: &[Measured]) -> Result<HdrLog> {
        Ok(HdrLog {
            file: BufWriter::new(file::create_output(path, "--hdr-log")?),
            name: format!("--hdr-log {}", path.display()),
            serializer: V2DeflateSerializer::new(),
            tags: slots.iter().map(|m| tag_of(&m.function)).collect(),
            written_until_s: 0.0,
        })
    }

    /// Writes one histogram per slot with calls in `[written_until_s, end_s]`, from the
    /// values drained for that span.
    fn write_span<T: Measure>(&mut self, end_s: f64, span: &[T]) -> Result<()> {
        self.try_write_span(end_s, span).map_err(|e| file::write_failed(&self.name, &e))
    }

    fn try_write_span<T: Measure>(&mut self, end_s: f64, span: &[T]) -> Result<()> {
        let start = Duration::from_secs_f64(self.written_until_s);
        let length = Duration::from_secs_f64((end_s - self.written_until_s).max(0.0));
        // A builder with no headers writes nothing itself: a writer for this batch of lines.
        let mut log = IntervalLogWriterBuilder::new().begin_log_with(&mut self.file, &mut self.serializer)?;
        for (values, tag) in span.iter().zip(&self.tags) {
            // Only latency has nanosecond buckets (argdist refuses --hdr-log).
            let Some(fine) = values.fine_ns() else { continue };
            if fine.iter().any(|&c| c > 0) {
                log.write_histogram(&ns_histogram(fine), start, length, Tag::new(tag))?;
            }
        }
        self.file.flush()?;
        self.written_until_s = end_s;
        Ok(())
    }
}

impl<T: Measure> Output<T> for HdrLog {
    fn start(&mut self) -> Result<()> {
        self.write_header().map_err(|e| file::write_failed(&self.name, &e))
    }

    fn interval(&mut self, elapsed_s: f64, values: &[T], _totals: &[T]) -> Result<()> {
        self.write_span(elapsed_s, values)
    }

    fn finish(&mut self, elapsed_s: f64, last: &[T], _totals: &[T]) -> Result<()> {
        self.write_span(elapsed_s, last)
    }
}

impl HdrLog {
    fn write_header(&mut self) -> Result<()> {
        let now = SystemTime::now();
        IntervalLogWriterBuilder::new()
            .add_comment("[Histogram log format version 1.3]")
            .add_comment("[probe latency: values in nanoseconds; one histogram per function and interval, tagged with the function]")
            .with_start_time(now)
            .with_base_time(now)
            .begin_log_with(&mut self.file, &mut self.serializer)?;
        writeln!(self.file, "{LEGEND}")?;
        Ok(())
    }
}

/// A function name as an interval log tag.
fn tag_of(function: &str) -> String {
    function.chars().map(|c| if matches!(c, ',' | ' ' | '\r' | '\n') { '_' } else { c }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_hold_no_separators() {
        assert_eq!(tag_of("geo::Scaler::scale(long, int)"), "geo::Scaler::scale(long__int)");
        assert_eq!(tag_of("a\r\nb"), "a__b");
        assert!(Tag::new(&tag_of("f(a, b)")).is_some());
    }
}
