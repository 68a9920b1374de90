//! Lock-free latency histogram for the stream hub's server-added latency (RTP in → SRTP out).
//!
//! Buckets are 50 µs wide up to 200 ms, plus one overflow bucket; recording is one atomic add.
//! [`LatencyHistogram::snapshot`] returns the counts, so a caller can difference two snapshots
//! to look at a window, and [`percentile`] reads a quantile off counts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Width of a bucket, µs.
pub const BUCKET_US: u64 = 50;
/// Buckets below the overflow bucket.
pub const BUCKETS: usize = 4_000;

/// A histogram of durations.
#[derive(Debug)]
pub struct LatencyHistogram {
    counts: Vec<AtomicU64>,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self {
            counts: (0..=BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl LatencyHistogram {
    /// Count one duration.
    pub fn record(&self, d: Duration) {
        let i = ((d.as_micros() as u64) / BUCKET_US).min(BUCKETS as u64) as usize;
        self.counts[i].fetch_add(1, Ordering::Relaxed);
    }

    /// The counts now; bucket `i` holds durations in `[i·50 µs, (i+1)·50 µs)`, the last one
    /// everything from 200 ms.
    pub fn snapshot(&self) -> Vec<u64> {
        self.counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }
}

/// The `q` quantile (0..=1) of `counts` as the upper edge of its bucket; `None` when empty.
pub fn percentile(counts: &[u64], q: f64) -> Option<Duration> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
    let mut seen = 0;
    for (i, c) in counts.iter().enumerate() {
        seen += c;
        if seen >= rank {
            return Some(Duration::from_micros((i as u64 + 1) * BUCKET_US));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_buckets() {
        let h = LatencyHistogram::default();
        for ms in 1..=100u64 {
            h.record(Duration::from_millis(ms));
        }
        let c = h.snapshot();
        assert_eq!(c.iter().sum::<u64>(), 100);
        assert_eq!(percentile(&c, 0.5), Some(Duration::from_micros(50_050)));
        assert_eq!(percentile(&c, 0.99), Some(Duration::from_micros(99_050)));
        assert_eq!(percentile(&[0, 0], 0.5), None);
    }

    #[test]
    fn long_durations_land_in_the_overflow_bucket() {
        let h = LatencyHistogram::default();
        h.record(Duration::from_secs(5));
        assert_eq!(h.snapshot()[BUCKETS], 1);
    }
}
