//! Latency recording: an HDR histogram shared by the senders.

use std::time::Duration;

use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde::Serialize;

/// Percentiles of a latency distribution, in the unit the field name says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

/// Records request latencies from many tasks at once.
#[derive(Debug)]
pub struct Recorder {
    micros: Mutex<Histogram<u64>>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    pub fn new() -> Recorder {
        // 1 µs .. 10 min with 3 significant digits: constant memory whatever the run length.
        let h = Histogram::new_with_bounds(1, 600_000_000, 3).expect("static histogram bounds");
        Recorder {
            micros: Mutex::new(h),
        }
    }

    pub fn record(&self, latency: Duration) {
        let us = (latency.as_micros() as u64).clamp(1, 600_000_000);
        let _ = self.micros.lock().record(us);
    }

    /// These quantiles (0..=1) in milliseconds; zeros when nothing was recorded.
    pub fn quantiles_ms(&self, quantiles: &[f64]) -> Vec<f64> {
        let h = self.micros.lock();
        quantiles
            .iter()
            .map(|q| {
                if h.is_empty() {
                    0.0
                } else {
                    h.value_at_quantile(*q) as f64 / 1000.0
                }
            })
            .collect()
    }

    /// Percentiles in milliseconds.
    pub fn summary_ms(&self) -> LatencySummary {
        let h = self.micros.lock();
        if h.is_empty() {
            return LatencySummary::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        LatencySummary {
            count: h.len(),
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            max: ms(h.max()),
        }
    }
}

/// Percentiles of a list of delays in seconds (exact: sorts a copy).
pub fn summarize_seconds(values: &[f64]) -> LatencySummary {
    if values.is_empty() {
        return LatencySummary::default();
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| {
        let idx = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1;
        v[idx]
    };
    LatencySummary {
        count: v.len() as u64,
        p50: at(0.50),
        p90: at(0.90),
        p99: at(0.99),
        max: v[v.len() - 1],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_known_distributions() {
        let values: Vec<f64> = (1..=100).map(|i| i as f64).collect();
        let s = summarize_seconds(&values);
        assert_eq!(
            (s.count, s.p50, s.p90, s.p99, s.max),
            (100, 50.0, 90.0, 99.0, 100.0)
        );
        assert_eq!(summarize_seconds(&[]), LatencySummary::default());

        let r = Recorder::new();
        for ms in 1..=100u64 {
            r.record(Duration::from_millis(ms));
        }
        let s = r.summary_ms();
        assert_eq!(s.count, 100);
        assert!((s.p99 - 99.0).abs() < 0.1, "{s:?}");
        assert!((s.p50 - 50.0).abs() < 0.1, "{s:?}");
    }
}
