//! Login attempts per client address, bounded two ways before any password is hashed:
//!
//! - **failures**: a token bucket of `auth.login_burst` failed attempts, refilled at
//!   `auth.login_per_minute`; an address with no failure left is answered `429
//!   too_many_attempts` with the seconds to wait. Successful logins cost nothing, so a command
//!   centre's operators behind one address sign in at shift change however many they are.
//! - **at once**: at most `auth.login_concurrent_per_address` attempts of one address are being
//!   checked at a time; a parallel flood's excess is answered `429` at once.
//!
//! Clock-free: callers pass the time. Memory is bounded: at most [`MAX_ADDRESSES`] addresses are
//! tracked; when full, idle addresses whose bucket has refilled are forgotten first, then the
//! least recently seen idle one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Addresses tracked at most.
pub const MAX_ADDRESSES: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Failures left, in thousandths (refill is fractional).
    milli: u64,
    /// When `milli` was last brought up to date.
    at_ms: i64,
    /// Attempts being checked now.
    in_flight: u32,
}

#[derive(Debug)]
struct Inner {
    burst: u64,
    per_minute: u64,
    concurrent: u32,
    buckets: Mutex<HashMap<String, Bucket>>,
}

/// The per-address budget of login attempts. Cheap to clone.
#[derive(Debug, Clone)]
pub struct LoginThrottle(Arc<Inner>);

/// An attempt being checked; it stops counting as in flight when dropped. Call
/// [`Attempt::failed`] when the attempt failed.
#[derive(Debug)]
pub struct Attempt {
    inner: Arc<Inner>,
    addr: String,
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Bucket>> {
        self.buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn refill(&self, b: &mut Bucket, now_ms: i64) {
        let elapsed = u64::try_from(now_ms.saturating_sub(b.at_ms)).unwrap_or(0);
        // per_minute tokens per 60,000 ms = per_minute thousandths per 60 ms.
        let gained = elapsed.saturating_mul(self.per_minute) / 60;
        b.milli = b.milli.saturating_add(gained).min(self.burst * 1000);
        b.at_ms = now_ms.max(b.at_ms);
    }
}

impl LoginThrottle {
    /// `burst` failures, refilled at `per_minute`; `concurrent` attempts at once per address.
    pub fn new(burst: u32, per_minute: u32, concurrent: u32) -> Self {
        LoginThrottle(Arc::new(Inner {
            burst: u64::from(burst.max(1)),
            per_minute: u64::from(per_minute.max(1)),
            concurrent: concurrent.max(1),
            buckets: Mutex::new(HashMap::new()),
        }))
    }

    /// Begin an attempt from `addr` at `now_ms`: `Err(ms to wait)` when the address has no
    /// failure left or too many attempts in flight.
    pub fn begin(&self, addr: &str, now_ms: i64) -> Result<Attempt, u64> {
        let inner = &self.0;
        let mut m = inner.lock();
        if m.len() >= MAX_ADDRESSES && !m.contains_key(addr) {
            let full = inner.burst * 1000;
            m.retain(|_, b| {
                let mut b2 = *b;
                inner.refill(&mut b2, now_ms);
                b2.in_flight > 0 || b2.milli < full
            });
            if m.len() >= MAX_ADDRESSES {
                let oldest = m
                    .iter()
                    .filter(|(_, b)| b.in_flight == 0)
                    .min_by_key(|(_, b)| b.at_ms)
                    .map(|(k, _)| k.clone());
                match oldest {
                    Some(k) => {
                        m.remove(&k);
                    }
                    // Every tracked address has an attempt in flight: wait for one.
                    None => return Err(1000),
                }
            }
        }
        let b = m.entry(addr.to_string()).or_insert(Bucket {
            milli: inner.burst * 1000,
            at_ms: now_ms,
            in_flight: 0,
        });
        inner.refill(b, now_ms);
        if b.milli < 1000 {
            // Time until one whole failure: (1000 - milli) thousandths at per_minute per 60 ms.
            return Err((1000 - b.milli) * 60 / inner.per_minute + 1);
        }
        if b.in_flight >= inner.concurrent {
            return Err(1000);
        }
        b.in_flight += 1;
        Ok(Attempt {
            inner: self.0.clone(),
            addr: addr.to_string(),
        })
    }

    /// Addresses tracked now.
    pub fn tracked(&self) -> usize {
        self.0.lock().len()
    }
}

impl Attempt {
    /// The attempt failed: it costs the address one failure.
    pub fn failed(self) {
        if let Some(b) = self.inner.lock().get_mut(&self.addr) {
            b.milli = b.milli.saturating_sub(1000);
        }
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if let Some(b) = self.inner.lock().get_mut(&self.addr) {
            b.in_flight = b.in_flight.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_budgeted_and_refilled() {
        let t = LoginThrottle::new(3, 6, 10); // one failure back every 10 s
        for _ in 0..3 {
            t.begin("10.0.0.1", 0).unwrap().failed();
        }
        let wait = t.begin("10.0.0.1", 0).unwrap_err();
        assert!((9_990..=10_001).contains(&wait), "{wait}");
        // Another address has its own budget.
        t.begin("10.0.0.2", 0).unwrap().failed();
        assert!(t.begin("10.0.0.1", 9_000).is_err());
        t.begin("10.0.0.1", 10_000).unwrap().failed();
        assert!(t.begin("10.0.0.1", 10_001).is_err());
        // A long pause refills only up to the burst.
        for _ in 0..3 {
            t.begin("10.0.0.1", 3_600_000).unwrap().failed();
        }
        assert!(t.begin("10.0.0.1", 3_600_000).is_err());
    }

    #[test]
    fn successes_cost_nothing() {
        let t = LoginThrottle::new(2, 1, 10);
        for _ in 0..100 {
            drop(t.begin("a", 0).unwrap());
        }
        t.begin("a", 0).unwrap().failed();
        t.begin("a", 0).unwrap().failed();
        assert!(t.begin("a", 0).is_err());
    }

    #[test]
    fn attempts_at_once_are_bounded_per_address() {
        let t = LoginThrottle::new(100, 1, 3);
        let held: Vec<_> = (0..3).map(|_| t.begin("a", 0).unwrap()).collect();
        assert_eq!(t.begin("a", 0).unwrap_err(), 1000);
        assert!(t.begin("b", 0).is_ok(), "another address is not held up");
        drop(held);
        assert!(t.begin("a", 0).is_ok());
    }

    #[test]
    fn memory_is_bounded_under_a_flood_of_addresses() {
        let t = LoginThrottle::new(1, 1, 1);
        for i in 0..(MAX_ADDRESSES + 500) {
            if let Ok(a) = t.begin(&format!("addr-{i}"), i as i64) {
                a.failed();
            }
        }
        assert!(t.tracked() <= MAX_ADDRESSES);
        // The newest address is tracked and throttled.
        let last = MAX_ADDRESSES + 499;
        assert!(t.begin(&format!("addr-{last}"), last as i64).is_err());
    }
}
