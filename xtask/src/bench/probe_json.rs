//! probe's `--json` output, read with serde: the tables of `argdist`/`latency --json` and the
//! functions of `probe list --json` (field names as docs/reference.md gives them).
//! Only the fields the bench reads; serde skips the others.
use anyhow::{Context, Result};
use serde::Deserialize;

/// One table of `probe argdist|latency --json`.
#[derive(Deserialize, Debug)]
pub struct JsonTable {
    /// "interval" or "final".
    pub kind: String,
    pub function: String,
    pub count: u64,
    /// In the table's unit; a decimal string when it does not fit an i64.
    pub sum: Sum,
    /// latency only: what the probes' calibrated cost took out of these calls, in all.
    #[serde(default)]
    pub subtracted_ns: Option<f64>,
    /// latency only: null when count is 0.
    #[serde(default)]
    pub percentiles: Option<Percentiles>,
    /// latency only: how finely the corrected durations can be told (0: not calibrated).
    #[serde(default)]
    pub resolution_ns: Option<f64>,
}

#[derive(Deserialize, Debug)]
#[serde(untagged)]
pub enum Sum {
    Number(f64),
    Text(String),
}

#[derive(Deserialize, Debug)]
pub struct Percentiles {
    pub p50: Option<f64>,
}

/// One function of `probe list --json`.
#[derive(Deserialize, Debug)]
pub struct ListedFunction {
    /// RET instructions; null where the code does not decode.
    pub rets: Option<u64>,
    /// How the kernel handles its entry probe: "emulated", "single-stepped", "refused" or "-".
    #[serde(default)]
    pub entry: String,
    /// Emulated only because probe skipped instructions at the start that the kernel would
    /// single-step.
    #[serde(default)]
    pub entry_moved: bool,
}

impl JsonTable {
    pub fn is_final(&self) -> bool {
        self.kind == "final"
    }

    pub fn sum(&self) -> Result<f64> {
        match &self.sum {
            Sum::Number(n) => Ok(*n),
            Sum::Text(t) => t.parse().with_context(|| format!("sum `{t}`")),
        }
    }

    pub fn p50(&self) -> Result<f64> {
        self.percentiles.as_ref().and_then(|p| p.p50).context("no p50")
    }
}

/// Every JSON line of `lines` (probe's stdout; the other lines, stderr's or a command's, are not
/// JSON objects), parsed as `T`.
pub fn parse_lines<'a, T: serde::de::DeserializeOwned>(lines: impl IntoIterator<Item = &'a str>) -> Result<Vec<T>> {
    lines
        .into_iter()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).with_context(|| format!("probe's JSON `{l}`")))
        .collect()
}

/// The final tables of a run (one per traced function); other JSON lines (`--slower-than`'s
/// events and their summary) are not tables.
pub fn final_tables<'a>(lines: impl IntoIterator<Item = &'a str>) -> Result<Vec<JsonTable>> {
    let tables = lines.into_iter().filter(|l| !l.starts_with(r#"{"kind":"event"#));
    Ok(parse_lines::<JsonTable>(tables)?.into_iter().filter(JsonTable::is_final).collect())
}

/// The final table of `function`.
pub fn final_table<'a>(tables: &'a [JsonTable], function: &str) -> Result<&'a JsonTable> {
    tables.iter().find(|t| t.is_final() && t.function == function).with_context(|| format!("no table for {function}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_probe_tables_and_listings() {
        let out = "probe: tracing latency of main.Work in every process running /x (2 probes); Ctrl-C to end\n\
             {\"kind\":\"interval\",\"elapsed_s\":1.0,\"function\":\"main.Work\",\"measured\":\"ret\",\"unit\":\"us\",\
             \"count\":5,\"sum\":50,\"min\":9,\"max\":11,\"buckets\":[],\"abandoned\":0,\"too_deep\":0,\
             \"subtracted_ns\":100,\"percentiles\":{\"p50\":10.0,\"p90\":11.0,\"p99\":11.0,\"p99.9\":11.0}}\n\
             {\"kind\":\"final\",\"elapsed_s\":2.0,\"function\":\"main.Work\",\"measured\":\"ret\",\"unit\":\"us\",\
             \"count\":100000,\"sum\":\"99999999999999999999\",\"min\":9,\"max\":11,\"buckets\":[],\
             \"subtracted_ns\":2000,\"percentiles\":{\"p50\":11.5}}\n\
             {\"kind\":\"final\",\"elapsed_s\":2.0,\"function\":\"work\",\"measured\":\"arg0\",\"unit\":\"value\",\
             \"count\":0,\"sum\":0,\"min\":null,\"max\":null,\"unreadable\":0,\"buckets\":[]}";
        let tables = final_tables(out.lines()).unwrap();
        assert_eq!(tables.len(), 2);
        let work = final_table(&tables, "main.Work").unwrap();
        assert_eq!((work.count, work.sum().unwrap(), work.p50().unwrap()), (100000, 1e20, 11.5));
        assert_eq!(work.subtracted_ns, Some(2000.0));
        let argdist = final_table(&tables, "work").unwrap();
        assert_eq!((argdist.count, argdist.sum().unwrap()), (0, 0.0));
        assert!(argdist.p50().is_err());
        assert!(final_table(&tables, "other").is_err());

        let listed: Vec<ListedFunction> = parse_lines(
            "{\"name\":\"a\",\"address\":4096,\"size\":10,\"rets\":2,\"abi\":\"Go\",\"entry\":\"emulated\"}\n\
             {\"name\":\"b\",\"address\":4106,\"size\":10,\"rets\":null,\"abi\":\"Go\",\"entry\":\"refused\"}"
                .lines(),
        )
        .unwrap();
        assert_eq!(listed.iter().map(|f| f.rets).collect::<Vec<_>>(), [Some(2), None]);
    }
}
