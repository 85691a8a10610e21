//! The probes' costs the programs subtract, and what latency's calibration slots recorded, on
//! handles of their own: a thread that keeps measuring the probes' cost reads and writes them
//! while the session drains the trace.
use super::{duplicate, Pod};
use anyhow::{Context, Result};
use aya::maps::{Array, Map, MapData, PerCpuArray};
use probe_ebpf::{bank_index, LatencyStats};

/// `PROBE_COSTS`.
pub struct ProbeCosts {
    map: Array<MapData, u64>,
}

impl ProbeCosts {
    pub(super) fn new(costs: &MapData) -> Result<ProbeCosts> {
        Ok(ProbeCosts { map: Array::try_from(Map::Array(duplicate(costs)?)).context("the probe costs map")? })
    }

    pub fn set(&mut self, index: u32, ns: u64) -> Result<()> {
        self.map.set(index, ns, 0).context("writing the probe costs")
    }
}

/// What latency's calibration slots recorded.
pub struct CalibrationRecords {
    map: PerCpuArray<MapData, Pod<LatencyStats>>,
}

impl CalibrationRecords {
    /// Another handle on latency's stats map `stats` (a duplicated descriptor).
    pub(super) fn new(stats: &MapData) -> Result<CalibrationRecords> {
        let map = PerCpuArray::try_from(Map::PerCpuArray(duplicate(stats)?)).context("latency's stats map")?;
        Ok(CalibrationRecords { map })
    }

    /// What `slot` recorded so far on every CPU and in both banks: a calibration slot is never
    /// drained, so the total only grows, whichever bank the programs write.
    pub fn total(&self, slot: u32) -> Result<LatencyStats> {
        let mut total = LatencyStats::EMPTY;
        for bank in 0..2 {
            let per_cpu = self.map.get(&bank_index(bank, slot), 0).context("reading the calibration records")?;
            per_cpu.iter().for_each(|cpu| total.merge(&cpu.0));
        }
        Ok(total)
    }
}
