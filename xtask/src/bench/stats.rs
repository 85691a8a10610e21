//! Median and range over repetitions, some of which may have failed.
use super::measure::Sample;
use std::time::Duration;

/// Median and range of the repetitions that produced a value.
#[derive(Clone, Copy)]
pub struct Stat {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub failed: usize,
}

/// A statistic, or why there is none.
pub type Measured = Result<Stat, String>;

pub fn summarize(values: Vec<Result<f64, String>>) -> Measured {
    let failed = values.iter().filter(|v| v.is_err()).count();
    let mut ok: Vec<f64> = values.iter().filter_map(|v| v.as_ref().ok().copied()).collect();
    if ok.is_empty() {
        return Err(values.into_iter().find_map(Result::err).unwrap_or_else(|| "not run".into()));
    }
    ok.sort_by(f64::total_cmp);
    let mid = ok.len() / 2;
    let median = if ok.len() % 2 == 1 { ok[mid] } else { (ok[mid - 1] + ok[mid]) / 2.0 };
    Ok(Stat { median, min: ok[0], max: ok[ok.len() - 1], failed })
}

/// One metric over a row's samples; `what` is None when a sample lacks it.
pub fn metric(samples: &[Result<Sample, String>], what: impl Fn(&Sample) -> Option<f64>) -> Measured {
    summarize(
        samples
            .iter()
            .map(|s| match s {
                Ok(s) => what(s).ok_or_else(|| "not measured".to_string()),
                Err(e) => Err(e.clone()),
            })
            .collect(),
    )
}

pub fn ms(d: Option<Duration>) -> Option<f64> {
    d.map(|d| d.as_secs_f64() * 1e3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_successes() {
        let s = summarize(vec![Ok(3.0), Err("x".into()), Ok(1.0), Ok(2.0)]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.failed), (2.0, 1.0, 3.0, 1));
        assert_eq!(summarize(vec![Ok(1.0), Ok(4.0)]).unwrap().median, 2.5);
        assert!(summarize(vec![Err("why".into())]).is_err());
    }
}
