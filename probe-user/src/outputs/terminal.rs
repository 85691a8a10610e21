//! probe's own tables, on stdout or in the `-o` file: text (`@hist_log` under a summary line,
//! heaviest first) or one JSON document per table. With `-i`, each interval's table as it ends,
//! and the last (shorter) one at the end, so the interval tables add up to the final one.
use super::Output;
use crate::measure::{Measure, Measured};
use crate::options::RunOptions;
use anyhow::Result;
use std::io::Write;

pub struct Terminal {
    slots: Vec<Measured>,
    json: bool,
    /// --all: text includes the functions never called.
    all: bool,
    /// --top N: text shows only the N heaviest tables.
    top: Option<usize>,
    /// -i was given: print each interval's table.
    print_intervals: bool,
    /// stdout, or the `-o` file.
    stream: Box<dyn Write>,
}

impl Terminal {
    /// Creates the `-o` file now (before anything is attached), or writes to stdout.
    pub fn create(options: &RunOptions, slots: &[Measured]) -> Result<Terminal> {
        let stream: Box<dyn Write> = match &options.output {
            Some(path) => Box::new(super::file::create_output(path, "-o")?),
            None => Box::new(std::io::stdout()),
        };
        Ok(Terminal {
            slots: slots.to_vec(),
            json: options.json,
            all: options.all,
            top: options.top,
            print_intervals: options.interval.is_some(),
            stream,
        })
    }

    fn print<T: Measure>(&mut self, kind: &str, elapsed_s: f64, values: &[T]) {
        let mut out = String::new();
        if !self.json && kind == "interval" {
            out.push_str(&format!("{} (+{elapsed_s:.1}s)\n", wall_clock()));
        }
        if self.json {
            for (m, s) in self.slots.iter().zip(values) {
                out.push_str(&s.json(kind, elapsed_s, m));
                out.push('\n');
            }
        } else {
            out.push_str(&self.text(values));
        }
        let _ = self.stream.write_all(out.as_bytes());
        let _ = self.stream.flush();
    }

    /// The text tables, heaviest first. With several functions, those never called are left
    /// out (unless --all) and named in one line, and --top cuts the rest.
    fn text<T: Measure>(&self, values: &[T]) -> String {
        if self.slots.len() <= 1 {
            return self.slots.iter().zip(values).map(|(m, v)| v.text(m)).collect();
        }
        let mut order: Vec<usize> = (0..values.len().min(self.slots.len())).collect();
        // Stable: equal weights keep the order the functions were given or found in.
        order.sort_by_key(|&i| std::cmp::Reverse(values[i].weight()));
        let (shown, never): (Vec<usize>, Vec<usize>) =
            order.into_iter().partition(|&i| self.all || !values[i].is_empty());
        let cut = self.top.unwrap_or(usize::MAX).min(shown.len());
        let mut out: String = shown[..cut].iter().map(|&i| values[i].text(&self.slots[i])).collect();
        if cut < shown.len() {
            out.push_str(&format!(
                "({} more function{} not shown: --top {cut})\n",
                shown.len() - cut,
                if shown.len() - cut == 1 { "" } else { "s" }
            ));
        }
        if !never.is_empty() {
            let names: Vec<&str> = never.iter().map(|&i| self.slots[i].function.as_str()).collect();
            out.push_str(&format!(
                "({} of {} functions never called, not shown: {}; --all shows them)\n",
                never.len(),
                self.slots.len(),
                name_a_few(&names, 3)
            ));
        }
        out
    }
}

impl<T: Measure> Output<T> for Terminal {
    fn interval(&mut self, elapsed_s: f64, values: &[T], _totals: &[T]) -> Result<()> {
        if self.print_intervals {
            self.print("interval", elapsed_s, values);
        }
        Ok(())
    }

    fn finish(&mut self, elapsed_s: f64, last: &[T], totals: &[T]) -> Result<()> {
        if self.print_intervals {
            self.print("interval", elapsed_s, last);
        }
        self.print("final", elapsed_s, totals);
        Ok(())
    }
}

/// "a, b, c and 7 more".
pub fn name_a_few(names: &[&str], few: usize) -> String {
    let mut text = names[..names.len().min(few)].join(", ");
    if names.len() > few {
        text.push_str(&format!(" and {} more", names.len() - few));
    }
    text
}

/// Local time as HH:MM:SS.
fn wall_clock() -> String {
    let now = unsafe { libc::time(std::ptr::null_mut()) };
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    unsafe { libc::localtime_r(&now, &mut tm) };
    format!("{:02}:{:02}:{:02}", tm.tm_hour, tm.tm_min, tm.tm_sec)
}
