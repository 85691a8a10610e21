//! `--by stack`'s files, written once at the end from the run's totals: folded stacks
//! (`--folded`, Brendan Gregg's `a;b;c N`, for flamegraph.pl and inferno), a flame graph
//! (`--flamegraph`, drawn by the inferno crate) and a pprof profile (`--pprof`, gzipped
//! protobuf, for `go tool pprof`). Each stack ends with the traced function itself, so the
//! stacks of several functions share one picture.
use super::{file, Output};
use crate::measure::{Measure, StackRow};
use crate::plan::Measured;
use anyhow::Result;
use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::Path;

/// Where a stack output goes: a file created before anything is attached, or stdout (`-`).
enum Sink {
    File(File),
    Stdout,
}

impl Sink {
    fn create(path: &Path, option: &str) -> Result<Sink> {
        if path.as_os_str() == "-" {
            return Ok(Sink::Stdout);
        }
        Ok(Sink::File(file::create_output(path, option)?))
    }

    fn write_all(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        let written = match self {
            Sink::File(f) => f.write_all(bytes).and_then(|_| f.flush()),
            Sink::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(bytes).and_then(|_| out.flush())
            }
        };
        written.map_err(|e| file::write_failed(name, &e))
    }
}

/// The stacks of every slot, outermost frame first and the traced function last.
fn stacks_of<T: Measure>(slots: &[Measured], totals: &[T]) -> Vec<(Vec<String>, StackRow)> {
    let mut out = Vec::new();
    for (m, t) in slots.iter().zip(totals) {
        for row in t.stacks() {
            let mut path: Vec<String> = row.frames.iter().rev().cloned().collect();
            path.push(m.function.clone());
            out.push((path, row));
        }
    }
    out
}

/// Folded lines, `outer;...;caller;function calls`, one per stack, sorted (as the tools sort).
pub fn folded_lines<T: Measure>(slots: &[Measured], totals: &[T]) -> Vec<String> {
    // A `;` inside a name (rare: some C++ templates) would split its frame.
    let mut lines: Vec<String> = stacks_of(slots, totals)
        .into_iter()
        .map(|(path, row)| {
            let names: Vec<String> = path.iter().map(|f| f.replace(';', ":")).collect();
            format!("{} {}", names.join(";"), row.calls)
        })
        .collect();
    lines.sort();
    lines
}

/// `--folded FILE|-`.
pub struct Folded {
    sink: Sink,
    name: String,
    slots: Vec<Measured>,
}

impl Folded {
    pub fn create(path: &Path, slots: &[Measured]) -> Result<Folded> {
        let name = format!("--folded {}", path.display());
        Ok(Folded { sink: Sink::create(path, "--folded")?, name, slots: slots.to_vec() })
    }
}

impl<T: Measure> Output<T> for Folded {
    fn finish(&mut self, _elapsed_s: f64, _last: &[T], totals: &[T]) -> Result<()> {
        let mut text = String::new();
        for line in folded_lines(&self.slots, totals) {
            text.push_str(&line);
            text.push('\n');
        }
        self.sink.write_all(&self.name, text.as_bytes())
    }
}

/// `--flamegraph FILE.svg`: the folded stacks drawn by inferno, widths in calls.
pub struct Flamegraph {
    file: File,
    name: String,
    slots: Vec<Measured>,
}

impl Flamegraph {
    pub fn create(path: &Path, slots: &[Measured]) -> Result<Flamegraph> {
        let name = format!("--flamegraph {}", path.display());
        Ok(Flamegraph { file: file::create_svg(path, "--flamegraph")?, name, slots: slots.to_vec() })
    }
}

impl<T: Measure> Output<T> for Flamegraph {
    fn finish(&mut self, _elapsed_s: f64, _last: &[T], totals: &[T]) -> Result<()> {
        let lines = folded_lines(&self.slots, totals);
        let mut options = inferno::flamegraph::Options::default();
        let names: Vec<&str> = self.slots.iter().map(|m| m.function.as_str()).collect();
        options.title = format!("Calls of {} by stack", crate::render::name_a_few(&names, 3));
        options.count_name = "calls".into();
        let mut svg = Vec::new();
        if lines.is_empty() {
            // inferno refuses an empty input: a picture that says so instead.
            svg.extend_from_slice(
                b"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"400\" height=\"40\">\
                  <text x=\"10\" y=\"25\">no calls</text></svg>\n",
            );
        } else {
            inferno::flamegraph::from_lines(&mut options, lines.iter().map(|s| s.as_str()), &mut svg)
                .map_err(|e| file::write_failed(&self.name, &e))?;
        }
        self.file.write_all(&svg).and_then(|_| self.file.flush()).map_err(|e| file::write_failed(&self.name, &e))
    }
}

/// `--pprof FILE`: a gzipped pprof profile (profile.proto), sample types `calls` (count) and
/// `T::STACK_SUM` (latency: time in nanoseconds; argdist: the values' sum).
pub struct Pprof {
    file: File,
    name: String,
    slots: Vec<Measured>,
    started_ns: i64,
}

impl Pprof {
    pub fn create(path: &Path, slots: &[Measured]) -> Result<Pprof> {
        let name = format!("--pprof {}", path.display());
        let started_ns =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64);
        Ok(Pprof { file: file::create_output(path, "--pprof")?, name, slots: slots.to_vec(), started_ns })
    }
}

impl<T: Measure> Output<T> for Pprof {
    fn finish(&mut self, elapsed_s: f64, _last: &[T], totals: &[T]) -> Result<()> {
        let stacks = stacks_of(&self.slots, totals);
        let profile = encode_profile(&stacks, T::STACK_SUM, self.started_ns, (elapsed_s * 1e9) as i64);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&profile).map_err(|e| file::write_failed(&self.name, &e))?;
        let bytes = gz.finish().map_err(|e| file::write_failed(&self.name, &e))?;
        self.file.write_all(&bytes).and_then(|_| self.file.flush()).map_err(|e| file::write_failed(&self.name, &e))
    }
}

/// A profile.proto `Profile`: one function and one location per distinct frame name, one
/// sample per stack (its locations the traced function first, as pprof wants them), with
/// the values (calls, sum).
pub fn encode_profile(
    stacks: &[(Vec<String>, StackRow)],
    sum: (&str, &str),
    time_nanos: i64,
    duration_nanos: i64,
) -> Vec<u8> {
    let mut strings: Vec<String> = vec![String::new()];
    let mut string_ids: HashMap<String, i64> = HashMap::new();
    let mut intern = |s: &str, strings: &mut Vec<String>| -> i64 {
        if let Some(&id) = string_ids.get(s) {
            return id;
        }
        strings.push(s.to_string());
        let id = strings.len() as i64 - 1;
        string_ids.insert(s.to_string(), id);
        id
    };
    let mut out = Vec::new();
    for (kind, unit) in [("calls", "count"), sum] {
        let mut vt = Vec::new();
        field_varint(&mut vt, 1, intern(kind, &mut strings) as u64);
        field_varint(&mut vt, 2, intern(unit, &mut strings) as u64);
        field_bytes(&mut out, 1, &vt);
    }
    // Functions (and their locations) by name, numbered from 1.
    let mut function_ids: HashMap<String, u64> = HashMap::new();
    let mut functions: Vec<(u64, i64)> = Vec::new();
    for (path, row) in stacks {
        let mut ids = Vec::new();
        for name in path.iter().rev() {
            let id = match function_ids.get(name) {
                Some(&id) => id,
                None => {
                    let id = functions.len() as u64 + 1;
                    functions.push((id, intern(name, &mut strings)));
                    function_ids.insert(name.clone(), id);
                    id
                }
            };
            ids.push(id);
        }
        let mut sample = Vec::new();
        let mut packed = Vec::new();
        ids.iter().for_each(|&id| varint(&mut packed, id));
        field_bytes(&mut sample, 1, &packed);
        let mut values = Vec::new();
        varint(&mut values, row.calls);
        varint(&mut values, row.sum.clamp(i64::MIN as i128, i64::MAX as i128) as i64 as u64);
        field_bytes(&mut sample, 2, &values);
        field_bytes(&mut out, 2, &sample);
    }
    for &(id, name) in &functions {
        let mut line = Vec::new();
        field_varint(&mut line, 1, id);
        let mut location = Vec::new();
        field_varint(&mut location, 1, id);
        field_bytes(&mut location, 4, &line);
        field_bytes(&mut out, 4, &location);
        let mut function = Vec::new();
        field_varint(&mut function, 1, id);
        field_varint(&mut function, 2, name as u64);
        field_varint(&mut function, 3, name as u64);
        field_bytes(&mut out, 5, &function);
    }
    let default_type = intern(sum.0, &mut strings);
    let calls = intern("calls", &mut strings);
    for s in &strings {
        field_bytes(&mut out, 6, s.as_bytes());
    }
    field_varint(&mut out, 9, time_nanos as u64);
    field_varint(&mut out, 10, duration_nanos as u64);
    // The sum for latency (time, as CPU profiles), calls for argdist (a call per allocation).
    let default = if sum.1 == "nanoseconds" { default_type } else { calls };
    field_varint(&mut out, 14, default as u64);
    out
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn field_varint(out: &mut Vec<u8>, field: u32, v: u64) {
    varint(out, u64::from(field) << 3);
    varint(out, v);
}

fn field_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    varint(out, u64::from(field) << 3 | 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_are_base_128_little_endian() {
        let mut out = Vec::new();
        varint(&mut out, 300);
        assert_eq!(out, [0xac, 0x02]);
        let mut out = Vec::new();
        field_bytes(&mut out, 6, b"ab");
        assert_eq!(out, [0x32, 2, b'a', b'b']);
    }

    #[test]
    fn a_profile_names_each_frame_once() {
        let row = |calls| StackRow { frames: Vec::new(), calls, sum: 10 };
        let stacks = vec![
            (vec!["main.main".to_string(), "main.a".to_string(), "main.leaf".to_string()], row(3)),
            (vec!["main.main".to_string(), "main.leaf".to_string()], row(1)),
        ];
        let profile = encode_profile(&stacks, ("time", "nanoseconds"), 0, 0);
        let text = String::from_utf8_lossy(&profile);
        assert_eq!(text.matches("main.leaf").count(), 1);
        assert_eq!(text.matches("main.main").count(), 1);
    }
}
