//! Output: SystemTap's `@hist_log` text table, the summary line, and JSON documents.
use crate::histogram::{Percentiles, Unit};
use probe_ebpf::{log2_bucket_label, log2_bucket_range, LatencyStats, ValueStats, LOG2_BUCKETS, ZERO_BUCKET};
use serde::Serialize;

/// Bar width of a `@hist_log` table.
const HIST_WIDTH: u64 = 50;
/// Empty rows kept on each side of the data, and the elision radius.
const MARGIN: usize = 2;

/// Renders `buckets` exactly as SystemTap's `print(@hist_log(...))` does, including the blank
/// line that ends the table. Returns an empty string when every bucket is zero.
pub fn hist_log(buckets: &[u64; LOG2_BUCKETS]) -> String {
    hist_log_titled(buckets, "value")
}

/// `hist_log` with the label column headed `title`, e.g. `value (us)` for a latency table: the
/// label column widens to fit it.
pub fn hist_log_titled(buckets: &[u64; LOG2_BUCKETS], title: &str) -> String {
    let Some(first) = buckets.iter().position(|&c| c > 0) else {
        return String::new();
    };
    let last = buckets.iter().rposition(|&c| c > 0).unwrap_or(first);
    let largest = buckets.iter().copied().max().unwrap_or(0);

    // Widen by up to MARGIN empty rows; the low side stops at the 0 row unless it is
    // already below it (negative values present).
    let mut low = first;
    for _ in 0..MARGIN {
        if low != ZERO_BUCKET && low > 0 {
            low -= 1;
        }
    }
    let high = (last + MARGIN).min(LOG2_BUCKETS - 1);

    let scale = if largest <= HIST_WIDTH { 1 } else { largest.div_ceil(HIST_WIDTH) };
    let count_width = digits(largest as i128);
    let label_width =
        digits(log2_bucket_label(low) as i128).max(digits(log2_bucket_label(high) as i128)).max(title.len());

    let mut out = format!("{:>label_width$} |{} count\n", title, "-".repeat(HIST_WIDTH as usize));
    let mut eliding = false;
    for i in low..=high {
        let near = i.saturating_sub(MARGIN).max(low)..=(i + MARGIN).min(high);
        if buckets[near].iter().all(|&c| c == 0) {
            eliding = true;
            continue;
        }
        if eliding {
            out.push_str(&format!("{:label_width$} ~\n", ""));
            eliding = false;
        }
        let count = buckets[i];
        let bars = count / scale;
        let pad = (HIST_WIDTH - bars + 1) as usize + count_width;
        out.push_str(&format!(
            "{:>label_width$} |{}{:>pad$}\n",
            log2_bucket_label(i),
            "@".repeat(bars as usize),
            count
        ));
    }
    out.push('\n');
    out
}

/// Characters needed to print `v` in decimal, a minus sign counting as one.
fn digits(v: i128) -> usize {
    v.to_string().len()
}

/// What was measured at a traced function, for labels and JSON.
#[derive(Clone, Debug)]
pub struct Measured {
    pub function: String,
    /// "arg0", "arg1", ..., "ret" or "latency".
    pub what: String,
    /// Unit of the table's values (latency only).
    pub unit: Option<Unit>,
}

/// A per-slot aggregate that can be printed as text or JSON.
pub trait Report {
    /// What tables are sorted by, largest first: total time (latency) or count (values).
    fn weight(&self) -> i128;
    fn text(&self, m: &Measured) -> String;
    fn json(&self, kind: &str, elapsed_s: f64, m: &Measured) -> String;
}

impl Report for ValueStats {
    fn weight(&self) -> i128 {
        self.count as i128
    }
    fn text(&self, m: &Measured) -> String {
        text_block(m, self)
    }
    fn json(&self, kind: &str, elapsed_s: f64, m: &Measured) -> String {
        serde_json::to_string(&json_table(kind, elapsed_s, m, self)).expect("JSON of plain data")
    }
}

impl Report for LatencyStats {
    fn weight(&self) -> i128 {
        // The exact total in ns (the display unit's sum truncates every call).
        self.sum_ns as i128
    }
    fn text(&self, m: &Measured) -> String {
        let unit = m.unit.unwrap_or(Unit::Us);
        let v = &self.value;
        let mut out = match self.sum_ns.checked_div(v.count) {
            None => format!("{}: count:0", m.function),
            Some(avg_ns) => {
                let p = Percentiles::of(self);
                format!(
                    "{}: min:{} avg:{} max:{} count:{} p50:{} p90:{} p99:{} p99.9:{}",
                    m.function,
                    unit.format(self.min_ns),
                    unit.format(avg_ns),
                    unit.format(self.max_ns),
                    v.count,
                    unit.format(p.p50),
                    unit.format(p.p90),
                    unit.format(p.p99),
                    unit.format(p.p999),
                )
            }
        };
        if self.abandoned > 0 {
            out.push_str(&format!(" abandoned:{}", self.abandoned));
        }
        if self.overflow > 0 {
            out.push_str(&format!(" too_deep:{}", self.overflow));
        }
        if v.count > 0 && self.subtracted_ns > 0 {
            let per_call = self.subtracted_ns / v.count;
            out.push_str(&format!(" (probe cost {} subtracted per call)", unit.format(per_call)));
        }
        out.push('\n');
        out.push_str(&hist_log_titled(&v.buckets, &format!("value ({})", unit.suffix())));
        out
    }

    fn json(&self, kind: &str, elapsed_s: f64, m: &Measured) -> String {
        let unit = m.unit.unwrap_or(Unit::Us);
        let mut table = serde_json::to_value(json_table(kind, elapsed_s, m, &self.value)).expect("JSON");
        let p = (self.value.count > 0).then(|| Percentiles::of(self));
        let obj = table.as_object_mut().expect("object");
        obj.remove("unreadable");
        obj.insert("unit".into(), unit.suffix().into());
        obj.insert("abandoned".into(), self.abandoned.into());
        obj.insert("too_deep".into(), self.overflow.into());
        // What the probes' calibrated cost took out of these calls, in all (0 with --raw).
        obj.insert("subtracted_ns".into(), self.subtracted_ns.into());
        obj.insert(
            "percentiles".into(),
            serde_json::json!({
                "p50": p.as_ref().map(|p| unit.from_ns(p.p50)),
                "p90": p.as_ref().map(|p| unit.from_ns(p.p90)),
                "p99": p.as_ref().map(|p| unit.from_ns(p.p99)),
                "p99.9": p.as_ref().map(|p| unit.from_ns(p.p999)),
            }),
        );
        table.to_string()
    }
}

/// `FUNC argN: min:-499 avg:8 max:497 count:1000` (avg truncated toward zero, like `@avg`).
pub fn summary_line(m: &Measured, s: &ValueStats) -> String {
    if s.count == 0 {
        return format!("{} {}: count:0", m.function, m.what);
    }
    let avg = s.sum() / s.count as i128;
    format!("{} {}: min:{} avg:{} max:{} count:{}", m.function, m.what, s.min, avg, s.max, s.count)
}

/// The text block for one table: summary, `@hist_log` table, and a note on unreadable values.
pub fn text_block(m: &Measured, s: &ValueStats) -> String {
    let mut out = summary_line(m, s);
    out.push('\n');
    if s.unreadable > 0 {
        out.push_str(&format!(
            "warning: {} hits of {} could not read {} (stack slot not readable)\n",
            s.unreadable, m.function, m.what
        ));
    }
    out.push_str(&hist_log(&s.buckets));
    out
}

/// One JSON document per table. Field names are part of the CLI contract (README).
#[derive(Serialize)]
pub struct JsonTable<'a> {
    /// "interval" or "final".
    pub kind: &'a str,
    /// Seconds since tracing started, at the end of this table's span.
    pub elapsed_s: f64,
    pub function: &'a str,
    pub measured: &'a str,
    pub unit: &'a str,
    pub count: u64,
    /// Decimal string when it does not fit an i64 (it is a 128-bit sum).
    pub sum: serde_json::Value,
    pub min: Option<i64>,
    pub max: Option<i64>,
    pub unreadable: u64,
    pub buckets: Vec<JsonBucket>,
}

#[derive(Serialize)]
pub struct JsonBucket {
    pub low: i64,
    pub high: i64,
    pub count: u64,
}

pub fn json_table<'a>(kind: &'a str, elapsed_s: f64, m: &'a Measured, s: &ValueStats) -> JsonTable<'a> {
    let sum = s.sum();
    JsonTable {
        kind,
        elapsed_s,
        function: &m.function,
        measured: &m.what,
        unit: "value",
        count: s.count,
        sum: match i64::try_from(sum) {
            Ok(v) => v.into(),
            Err(_) => sum.to_string().into(),
        },
        min: (s.count > 0).then_some(s.min),
        max: (s.count > 0).then_some(s.max),
        unreadable: s.unreadable,
        buckets: s
            .buckets
            .iter()
            .enumerate()
            .filter(|(_, &c)| c > 0)
            .map(|(i, &count)| {
                let (low, high) = log2_bucket_range(i);
                JsonBucket { low, high, count }
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buckets_from(rows: &[(i64, u64)]) -> [u64; LOG2_BUCKETS] {
        let mut b = [0u64; LOG2_BUCKETS];
        for &(label, count) in rows {
            b[probe_ebpf::log2_bucket(label)] = count;
        }
        b
    }

    /// The seed's first table: `Duration (us)` of main.UsingSubstring.
    #[test]
    fn reproduces_seed_latency_table() {
        let b = buckets_from(&[
            (0, 10),
            (1, 1443040),
            (2, 173089),
            (4, 6982),
            (8, 4321),
            (16, 631),
            (32, 197),
            (64, 74),
            (128, 13),
            (256, 4),
            (512, 1),
        ]);
        let expected = "\
value |-------------------------------------------------- count
    0 |                                                        10
    1 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@  1443040
    2 |@@@@@                                               173089
    4 |                                                      6982
    8 |                                                      4321
   16 |                                                       631
   32 |                                                       197
   64 |                                                        74
  128 |                                                        13
  256 |                                                         4
  512 |                                                         1
 1024 |                                                         0
 2048 |                                                         0

";
        assert_eq!(hist_log(&b), expected);
    }

    /// The seed's second table: the signed `Variables` histogram of main.ToString.
    #[test]
    fn reproduces_seed_signed_table() {
        let b = buckets_from(&[
            (-256, 249),
            (-128, 121),
            (-64, 60),
            (-32, 36),
            (-16, 12),
            (-8, 8),
            (-4, 5),
            (-2, 3),
            (-1, 2),
            (0, 2),
            (1, 2),
            (2, 3),
            (4, 7),
            (8, 4),
            (16, 20),
            (32, 33),
            (64, 44),
            (128, 110),
            (256, 279),
        ]);
        let expected = "\
value |-------------------------------------------------- count
-1024 |                                                     0
 -512 |                                                     0
 -256 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@          249
 -128 |@@@@@@@@@@@@@@@@@@@@                               121
  -64 |@@@@@@@@@@                                          60
  -32 |@@@@@@                                              36
  -16 |@@                                                  12
   -8 |@                                                    8
   -4 |                                                     5
   -2 |                                                     3
   -1 |                                                     2
    0 |                                                     2
    1 |                                                     2
    2 |                                                     3
    4 |@                                                    7
    8 |                                                     4
   16 |@@@                                                 20
   32 |@@@@@                                               33
   64 |@@@@@@@                                             44
  128 |@@@@@@@@@@@@@@@@@@                                 110
  256 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@     279
  512 |                                                     0
 1024 |                                                     0

";
        assert_eq!(hist_log(&b), expected);
    }

    #[test]
    fn elides_long_zero_runs_with_one_tilde() {
        let b = buckets_from(&[(1, 3), (1 << 20, 1)]);
        let text = hist_log(&b);
        let tildes: Vec<&str> = text.lines().filter(|l| l.trim() == "~").collect();
        assert_eq!(tildes, ["        ~"], "{text}");
        assert!(text.contains("      4 |"), "{text}");
        assert!(!text.contains("      8 |"), "{text}");
        assert!(text.contains(" 262144 |"), "{text}");
        assert!(text.contains("4194304 |"), "{text}");
    }

    #[test]
    fn empty_histogram_prints_nothing() {
        assert_eq!(hist_log(&[0; LOG2_BUCKETS]), "");
    }

    #[test]
    fn latency_summary_has_three_significant_digits_and_the_table_its_unit() {
        let mut s = LatencyStats::EMPTY;
        for ns in [5_210, 5_480, 7_730, 1_564_000] {
            s.record(ns, 1_000);
        }
        let m = Measured { function: "f".into(), what: "latency".into(), unit: Some(Unit::Us) };
        let text = s.text(&m);
        let mut lines = text.lines();
        let summary = lines.next().unwrap();
        assert!(summary.starts_with("f: min:5.21us avg:396us max:1564us count:4 p50:"), "{summary}");
        let header = lines.next().unwrap();
        assert!(header.starts_with("value (us) |---"), "{header}");
        assert_eq!(lines.next().unwrap(), "         1 |                                                   0");
        assert!(text.contains("         4 |@@@                                                3\n"), "{text}");
    }

    #[test]
    fn summary_truncates_average_toward_zero() {
        let mut s = ValueStats::EMPTY;
        for v in -500..=499 {
            s.record(v);
        }
        let m = Measured { function: "main.ToString".into(), what: "arg0".into(), unit: None };
        assert_eq!(summary_line(&m, &s), "main.ToString arg0: min:-500 avg:0 max:499 count:1000");
    }
}
