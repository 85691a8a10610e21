//! Markdown tables and their cells.
use super::stats::Measured;

/// A markdown table.
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table { header: header.iter().map(|h| h.to_string()).collect(), rows: Vec::new() }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let line = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
        let rule = vec!["---".to_string(); self.header.len()];
        let mut out = line(&self.header) + &line(&rule);
        for r in &self.rows {
            out += &line(r);
        }
        out
    }
}

/// "median [min-max]", plus how many repetitions failed; or n/a with the reason.
pub fn stat_cell(m: &Measured, fmt: impl Fn(f64) -> String) -> String {
    match m {
        Ok(s) => {
            let failed = if s.failed > 0 { format!(" ({} failed)", s.failed) } else { String::new() };
            format!("{} [{}-{}]{failed}", fmt(s.median), fmt(s.min), fmt(s.max))
        }
        Err(e) => na(e),
    }
}

pub fn value_cell(v: &Result<f64, String>, fmt: impl Fn(f64) -> String) -> String {
    v.as_ref().map(|v| fmt(*v)).unwrap_or_else(|e| na(e))
}

pub fn met_cell(m: &Measured, meets: impl Fn(f64) -> bool) -> String {
    m.as_ref().map(|s| yes_no(meets(s.median))).unwrap_or_else(|e| na(e))
}

pub fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.into()
}

/// "n/a (reason)", shortened and safe inside a markdown table cell.
pub fn na(reason: &str) -> String {
    let mut reason: String = reason.replace('|', "/").replace('\n', " ");
    if reason.chars().count() > 160 {
        reason = reason.chars().take(157).collect::<String>() + "...";
    }
    format!("n/a ({reason})")
}

pub fn fmt_ns(ns: f64) -> String {
    if ns.abs() >= 100.0 {
        format!("{ns:.0}")
    } else {
        format!("{ns:.1}")
    }
}

pub fn fmt_ms(ms: f64) -> String {
    if ms >= 100.0 {
        format!("{ms:.0}")
    } else {
        format!("{ms:.1}")
    }
}
