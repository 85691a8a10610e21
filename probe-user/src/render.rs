//! SystemTap's `@hist_log` text table, exactly as `print(@hist_log(...))` prints it; every
//! kind of measurement (measure/) puts it under its own summary line.
use probe_ebpf::{log2_bucket_label, log2_bucket_range_of, log2_buckets_in_order, LOG2_BUCKETS, ZERO_BUCKET};

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
    let rows: Vec<(i128, u64)> = (0..LOG2_BUCKETS).map(|i| (log2_bucket_label(i) as i128, buckets[i])).collect();
    render_rows(&rows, ZERO_BUCKET, title)
}

/// `hist_log` of unsigned 64-bit values: bucket 0 holds those from 2^63 up
/// (`probe_ebpf::log2_bucket_unsigned`), so it is shown last, as the row of 2^63.
pub fn hist_log_unsigned(buckets: &[u64; LOG2_BUCKETS]) -> String {
    // From the 0 row up: an unsigned row's label is its low end.
    let rows: Vec<(i128, u64)> =
        log2_buckets_in_order(true).map(|i| (log2_bucket_range_of(i, true).0, buckets[i])).collect();
    render_rows(&rows, 0, "value")
}

/// The table of `rows` (label, count) in value order; `zero` is the row of 0.
fn render_rows(rows: &[(i128, u64)], zero: usize, title: &str) -> String {
    let Some(first) = rows.iter().position(|r| r.1 > 0) else {
        return String::new();
    };
    let last = rows.iter().rposition(|r| r.1 > 0).unwrap_or(first);
    let largest = rows.iter().map(|r| r.1).max().unwrap_or(0);

    // Widen by up to MARGIN empty rows; the low side stops at the 0 row unless it is
    // already below it (negative values present).
    let mut low = first;
    for _ in 0..MARGIN {
        if low != zero && low > 0 {
            low -= 1;
        }
    }
    let high = (last + MARGIN).min(rows.len() - 1);

    let scale = if largest <= HIST_WIDTH { 1 } else { largest.div_ceil(HIST_WIDTH) };
    let count_width = digits(largest as i128);
    let label_width = digits(rows[low].0).max(digits(rows[high].0)).max(title.len());

    let mut out = format!("{:>label_width$} |{} count\n", title, "-".repeat(HIST_WIDTH as usize));
    let mut eliding = false;
    for i in low..=high {
        let near = i.saturating_sub(MARGIN).max(low)..=(i + MARGIN).min(high);
        if rows[near].iter().all(|r| r.1 == 0) {
            eliding = true;
            continue;
        }
        if eliding {
            out.push_str(&format!("{:label_width$} ~\n", ""));
            eliding = false;
        }
        let (label, count) = rows[i];
        let bars = count / scale;
        let pad = (HIST_WIDTH - bars + 1) as usize + count_width;
        out.push_str(&format!("{:>label_width$} |{}{:>pad$}\n", label, "@".repeat(bars as usize), count));
    }
    out.push('\n');
    out
}

/// Characters needed to print `v` in decimal, a minus sign counting as one.
fn digits(v: i128) -> usize {
    v.to_string().len()
}

/// "a, b, c and 7 more".
pub fn name_a_few(names: &[&str], few: usize) -> String {
    let mut text = names[..names.len().min(few)].join(", ");
    if names.len() > few {
        text.push_str(&format!(" and {} more", names.len() - few));
    }
    text
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
    fn unsigned_values_from_2_pow_63_are_the_last_row() {
        let mut b = [0u64; LOG2_BUCKETS];
        b[probe_ebpf::log2_bucket_unsigned(u64::MAX)] = 2;
        b[probe_ebpf::log2_bucket_unsigned(5)] = 1;
        let table = hist_log_unsigned(&b);
        let rows: Vec<&str> = table.lines().collect();
        assert_eq!(rows[0].trim_start(), format!("value |{} count", "-".repeat(50)));
        assert!(rows[1].trim_start().starts_with("1 |"), "{table}");
        assert!(rows.iter().any(|r| r.trim_start().starts_with("4 |@ ")), "{table}");
        assert!(rows.iter().any(|r| r.trim_start().starts_with("9223372036854775808 |@@ ")), "{table}");
        assert!(!rows[1..].iter().any(|r| r.trim_start().starts_with('-')), "no negative rows: {table}");
    }

    #[test]
    fn empty_histogram_prints_nothing() {
        assert_eq!(hist_log(&[0; LOG2_BUCKETS]), "");
    }
}
