//! Lock-free latency histogram for the stream hub's server-added latency (RTP in → SRTP out).
//!
//! Buckets are 50 µs wide up to 200 ms, plus one overflow bucket; recording is one atomic add.
//! [`LatencyHistogram::snapshot`] returns the counts, so a caller can difference two snapshots
//! to look at a window, and [`percentile`] reads a quantile off counts.
//!
//! [`RtpDrops`] counts the RTP the hub refused, by reason; every count also goes to the metric
//! `shouhu_rtp_dropped_total{reason}` (`foreign_source`: from an address other than the device's
//! registered one, a datagram or a TCP connection; `unknown_ssrc`: on the shared port with an
//! SSRC no stream claims).

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

/// Why the hub refused RTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// From an address other than the one the device registered from (a datagram, or a TCP
    /// media connection, which is closed).
    ForeignSource,
    /// On the shared port, with an SSRC no stream asked for and no stream waiting at its address.
    UnknownSsrc,
}

impl DropReason {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            DropReason::ForeignSource => "foreign_source",
            DropReason::UnknownSsrc => "unknown_ssrc",
        }
    }
}

/// RTP refused since start, by reason.
#[derive(Debug, Default)]
pub struct RtpDrops {
    foreign_source: AtomicU64,
    unknown_ssrc: AtomicU64,
}

impl RtpDrops {
    /// Count one refusal (here and in `shouhu_rtp_dropped_total{reason}`).
    pub fn count(&self, reason: DropReason) {
        let c = match reason {
            DropReason::ForeignSource => &self.foreign_source,
            DropReason::UnknownSsrc => &self.unknown_ssrc,
        };
        c.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("shouhu_rtp_dropped_total", "reason" => reason.label()).increment(1);
    }

    /// Refusals of one reason so far.
    pub fn get(&self, reason: DropReason) -> u64 {
        match reason {
            DropReason::ForeignSource => self.foreign_source.load(Ordering::Relaxed),
            DropReason::UnknownSsrc => self.unknown_ssrc.load(Ordering::Relaxed),
        }
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
    fn drops_are_counted_by_reason() {
        let d = RtpDrops::default();
        d.count(DropReason::ForeignSource);
        d.count(DropReason::ForeignSource);
        d.count(DropReason::UnknownSsrc);
        assert_eq!(d.get(DropReason::ForeignSource), 2);
        assert_eq!(d.get(DropReason::UnknownSsrc), 1);
        assert_eq!(DropReason::ForeignSource.label(), "foreign_source");
    }

    #[test]
    fn long_durations_land_in_the_overflow_bucket() {
        let h = LatencyHistogram::default();
        h.record(Duration::from_secs(5));
        assert_eq!(h.snapshot()[BUCKETS], 1);
    }
}
