//! The calls of a traced function's inlined copies, beside any kind's table: the compiler
//! copied the function's body into some of its callers, so those calls never reach the
//! function's own probes. The plan counts them at one instruction per copy (`plan::inlined`);
//! what else a call has (its arguments, its duration) cannot be had there, and the one line
//! under the table says so, with the number of calls counted and of copies that could not be.
use super::{Aggregate, Histogram, Measure, Measured, Programs};
use crate::resolve::callers::Callers;
use crate::session::KindMaps;
use anyhow::Result;
use probe_ebpf::{Losses, FINE_BUCKETS, LOG2_BUCKETS};

/// A kind's aggregate and the calls counted at its function's inlined copies.
#[derive(Clone, Debug)]
pub struct WithInlined<T> {
    pub table: T,
    pub inlined_calls: u64,
}

impl<T: Measure> Aggregate for WithInlined<T> {
    const EMPTY: Self = WithInlined { table: T::EMPTY, inlined_calls: 0 };
    const PROGRAMS: Programs = T::PROGRAMS;
    fn take_bank(maps: &mut KindMaps, bank: u32, slots: u32) -> Result<Vec<Self>> {
        let tables = T::take_bank(maps, bank, slots)?;
        let inlined = maps.take_inlined_bank(bank, slots)?;
        Ok(tables.into_iter().zip(inlined).map(|(table, inlined_calls)| WithInlined { table, inlined_calls }).collect())
    }
    fn merge(&mut self, other: &Self) {
        self.table.merge(&other.table);
        self.inlined_calls += other.inlined_calls;
    }
    fn is_empty(&self) -> bool {
        self.table.is_empty() && self.inlined_calls == 0
    }
}

impl<T: Measure> Measure for WithInlined<T> {
    fn name_callers(&mut self, callers: &mut Callers) {
        self.table.name_callers(callers)
    }

    fn weight(&self) -> i128 {
        self.table.weight()
    }
    fn calls(&self) -> u64 {
        self.table.calls()
    }
    fn text(&self, m: &Measured) -> String {
        let mut text = self.table.text(m);
        if let Some(sites) = &m.inlined {
            // Inside the block, before the blank line that ends a table.
            let at = if text.ends_with("\n\n") { text.len() - 1 } else { text.len() };
            text.insert_str(at, &sites.line(&m.function, self.inlined_calls));
        }
        text
    }
    /// Each object of the table gets `inlined`: `{"sites": N, "calls": C, "uncounted_sites": U}`.
    fn json(&self, kind: &str, elapsed_s: f64, m: &Measured) -> String {
        let json = self.table.json(kind, elapsed_s, m);
        let Some(sites) = &m.inlined else { return json };
        let inlined = serde_json::json!({
            "sites": sites.counted,
            "calls": self.inlined_calls,
            "uncounted_sites": sites.uncounted,
        });
        let lines: Vec<String> = json
            .lines()
            .map(|line| {
                let mut object: serde_json::Value = serde_json::from_str(line).expect("a table is a JSON object");
                if let Some(fields) = object.as_object_mut() {
                    fields.insert("inlined".into(), inlined.clone());
                }
                object.to_string()
            })
            .collect();
        lines.join("\n")
    }

    fn log2_buckets(&self) -> &[u64; LOG2_BUCKETS] {
        self.table.log2_buckets()
    }
    fn fine_ns(&self) -> Option<&[u64; FINE_BUCKETS]> {
        self.table.fine_ns()
    }

    const HISTOGRAM: (&'static str, &'static str) = T::HISTOGRAM;
    const STACK_SUM: (&'static str, &'static str) = T::STACK_SUM;
    fn stacks(&self) -> Vec<super::StackRow> {
        self.table.stacks()
    }
    fn stack_sum(&self) -> i128 {
        self.table.stack_sum()
    }
    const COUNTERS: &'static [(&'static str, &'static str)] = T::COUNTERS;
    fn histogram(&self) -> Histogram {
        self.table.histogram()
    }
    fn counters(&self) -> Vec<u64> {
        self.table.counters()
    }
    fn slot_labels(m: &Measured) -> Vec<(String, String)> {
        T::slot_labels(m)
    }
    fn losses(&self) -> &Losses {
        self.table.losses()
    }
    const KEYED_COUNTER: Option<(&'static str, &'static str, &'static str)> = T::KEYED_COUNTER;
    fn keyed_counts(&self) -> Vec<(String, u64)> {
        self.table.keyed_counts()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::InlinedSites;
    use probe_ebpf::ValueStats;

    fn small(sites: InlinedSites) -> Measured {
        Measured {
            function: "main.small".into(),
            what: "arg0".into(),
            unit: None,
            top_values: 0,
            inlined: Some(sites),
            ..Default::default()
        }
    }

    #[test]
    fn one_line_says_what_was_counted_and_what_not() {
        let lacking = "counted; their arguments cannot be read".to_string();
        let sites = InlinedSites { counted: 1, uncounted: 0, why: None, lacking: lacking.clone() };
        assert_eq!(
            sites.line("main.small", 1000),
            "main.small: 1000 more calls at 1 inlined site (counted; their arguments cannot be read)\n"
        );
        let why = Some("its code loops back to its first instruction".to_string());
        let some = InlinedSites { counted: 2, uncounted: 1, why: why.clone(), lacking };
        assert_eq!(
            some.line("f", 7),
            "f: 7 more calls at 2 inlined sites (counted; their arguments cannot be read); and at 1 more inlined \
             site whose calls cannot be counted (its code loops back to its first instruction)\n"
        );
        let none = InlinedSites { counted: 0, uncounted: 3, why, lacking: String::new() };
        assert_eq!(
            none.line("f", 0),
            "f: inlined at 3 sites whose calls cannot be counted (its code loops back to its first instruction)\n"
        );
    }

    #[test]
    fn the_table_and_json_carry_the_inlined_calls() {
        let mut table = ValueStats::EMPTY;
        (0..1000).for_each(|v| table.record(v));
        let sites = InlinedSites { counted: 1, uncounted: 0, why: None, lacking: "counted".into() };
        let m = small(sites);
        let both = WithInlined { table, inlined_calls: 1000 };
        // Inside the table's block: before the blank line that ends it.
        assert!(
            both.text(&m).ends_with("\nmain.small: 1000 more calls at 1 inlined site (counted)\n\n"),
            "{}",
            both.text(&m)
        );
        let json: serde_json::Value = serde_json::from_str(&both.json("final", 1.0, &m)).unwrap();
        assert_eq!(json["count"], 1000);
        assert_eq!(json["inlined"], serde_json::json!({"sites": 1, "calls": 1000, "uncounted_sites": 0}));
        // Without inlined copies, nothing is added.
        let plain = Measured { inlined: None, ..m };
        assert!(!both.json("final", 1.0, &plain).contains("inlined"));
    }
}
