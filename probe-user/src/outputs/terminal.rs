//! probe's own tables, on stdout or in the `-o` file: text (`@hist_log` under a summary line,
//! heaviest first) or one JSON document per table. With `-i`, each interval's table as it ends,
//! and the last (shorter) one at the end, so the interval tables add up to the final one.
use super::Output;
use crate::measure::Measure;
use crate::options::RunOptions;
use crate::plan::Measured;
use crate::render::name_a_few;
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
    /// `-o FILE` for messages; None for stdout.
    file: Option<String>,
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
            file: options.output.as_ref().map(|p| format!("-o {}", p.display())),
        })
    }

    /// Writes one table (or one interval's). A write that fails ends the run with one line
    /// naming the file and why (a full disk): the tables would be missing or cut short. Only
    /// stdout closed by its reader (`probe ... | head`) is not an error.
    fn print<T: Measure>(&mut self, kind: &str, elapsed_s: f64, values: &[T]) -> Result<()> {
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
        match self.stream.write_all(out.as_bytes()).and_then(|_| self.stream.flush()) {
            Ok(()) => Ok(()),
            Err(e) if self.file.is_none() && e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            Err(e) => Err(super::file::write_failed(self.file.as_deref().unwrap_or("stdout"), &e)),
        }
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
            self.print("interval", elapsed_s, values)?;
        }
        Ok(())
    }

    fn finish(&mut self, elapsed_s: f64, last: &[T], totals: &[T]) -> Result<()> {
        if self.print_intervals {
            self.print("interval", elapsed_s, last)?;
        }
        self.print("final", elapsed_s, totals)
    }
}

/// Local time as HH:MM:SS.
fn wall_clock() -> String {
    let now = unsafe { libc::time(std::ptr::null_mut()) };
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    unsafe { libc::localtime_r(&now, &mut tm) };
    format!("{:02}:{:02}:{:02}", tm.tm_hour, tm.tm_min, tm.tm_sec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::fake::{calls, slots, Calls};
    use std::cell::RefCell;
    use std::rc::Rc;

    /// What the terminal wrote, readable after it is done.
    #[derive(Clone, Default)]
    struct Written(Rc<RefCell<Vec<u8>>>);

    impl Write for Written {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.borrow_mut().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn terminal(names: &[&str], json: bool, all: bool, top: Option<usize>) -> (Terminal, Written) {
        let written = Written::default();
        let stream = Box::new(written.clone());
        let slots = slots(names);
        (Terminal { slots, json, all, top, print_intervals: false, stream, file: None }, written)
    }

    fn text(written: &Written) -> String {
        String::from_utf8(written.0.borrow().clone()).unwrap()
    }

    #[test]
    fn tables_come_heaviest_first_and_ties_keep_their_order() {
        let (t, _) = terminal(&["a", "b", "c", "d"], false, false, None);
        assert_eq!(t.text(&calls(&[2, 5, 2, 9])), "d calls: 9\nb calls: 5\na calls: 2\nc calls: 2\n");
    }

    #[test]
    fn functions_never_called_are_named_in_one_line_unless_all() {
        let (t, _) = terminal(&["a", "b", "c"], false, false, None);
        assert_eq!(
            t.text(&calls(&[1, 0, 0])),
            "a calls: 1\n(2 of 3 functions never called, not shown: b, c; --all shows them)\n"
        );
        let (t, _) = terminal(&["a", "b", "c"], false, true, None);
        assert_eq!(t.text(&calls(&[1, 0, 0])), "a calls: 1\nb calls: 0\nc calls: 0\n");
    }

    #[test]
    fn top_cuts_the_lightest_and_says_so() {
        let (t, _) = terminal(&["a", "b", "c"], false, false, Some(1));
        assert_eq!(t.text(&calls(&[1, 3, 2])), "b calls: 3\n(2 more functions not shown: --top 1)\n");
    }

    #[test]
    fn json_keeps_slot_order_and_the_final_table_holds_the_totals() {
        let (mut t, written) = terminal(&["a", "b"], true, false, None);
        Output::<Calls>::interval(&mut t, 1.0, &calls(&[1, 1]), &calls(&[1, 1])).unwrap();
        assert_eq!(text(&written), "", "no -i: intervals are not printed");
        Output::<Calls>::finish(&mut t, 2.0, &calls(&[0, 4]), &calls(&[1, 5])).unwrap();
        assert_eq!(
            text(&written),
            "{\"type\":\"final\",\"function\":\"a\",\"calls\":1}\n{\"type\":\"final\",\"function\":\"b\",\"calls\":5}\n"
        );
    }
}
