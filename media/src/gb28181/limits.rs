//! The SIP budget of traffic that does not come from a device's registered source, sans-IO.
//!
//! A device's own token bucket (see [`super::platform`]) is charged only by messages from the
//! address and transport it registered from (or while it is not registered). Everything else —
//! a message naming a registered device from another address, a `REGISTER` moving a device,
//! an unknown device id — is charged here, to its source address: a token bucket of `burst`
//! messages refilled at `per_sec` a second per IPv4 address or IPv6 /64 (one host owns a whole
//! /64). A flood from elsewhere is throttled without touching any device's own budget.
//!
//! A device that is not registered yet has no source to trust: its messages are charged to a
//! bucket per (device id, source address) ([`Budget`] with the device's own burst and rate), so
//! a flood naming it from elsewhere cannot keep it from registering from its own address.
//!
//! At most [`MAX_SOURCES`] addresses (or pairs) are tracked; when the map is full, addresses whose bucket
//! has refilled are forgotten, and when none has, a new address is refused until some have (the
//! memory stays bounded under spoofed sources; registered devices are not charged here). Time
//! is passed in; nothing here reads a clock.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};

/// Most source addresses tracked.
pub const MAX_SOURCES: usize = 65_536;

/// The key a source address is charged under: an IPv4 address (IPv4-mapped IPv6 too), or the
/// /64 prefix of an IPv6 address.
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at_ms: u64,
}

/// Token buckets by source address (see the module documentation).
pub type SourceBudget = Budget<IpAddr>;

/// Token buckets by key, bounded (see the module documentation).
#[derive(Debug)]
pub struct Budget<K> {
    burst: f64,
    per_ms: f64,
    max: usize,
    buckets: HashMap<K, Bucket>,
}

impl SourceBudget {
    /// Charge one message from `ip` at `now_ms` (monotonic), under its [`source_key`]: `true`
    /// when the budget had room.
    pub fn charge(&mut self, ip: IpAddr, now_ms: u64) -> bool {
        self.charge_key(source_key(ip), now_ms)
    }
}

impl<K: Hash + Eq + Clone> Budget<K> {
    /// `burst` messages per source, refilled at `per_sec` a second; at most `max` sources.
    pub fn new(burst: u32, per_sec: u32, max: usize) -> Self {
        Self {
            burst: f64::from(burst.max(1)),
            per_ms: f64::from(per_sec) / 1000.0,
            max: max.max(1),
            buckets: HashMap::new(),
        }
    }

    /// How many sources are tracked.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no source is tracked.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    fn refilled(&self, b: Bucket, now_ms: u64) -> f64 {
        let dt = now_ms.saturating_sub(b.at_ms) as f64;
        (b.tokens + dt * self.per_ms).min(self.burst)
    }

    /// Forget a key's bucket.
    pub fn forget(&mut self, key: &K) {
        self.buckets.remove(key);
    }

    /// Charge one message under `key` at `now_ms` (monotonic): `true` when the budget had room.
    pub fn charge_key(&mut self, key: K, now_ms: u64) -> bool {
        if !self.buckets.contains_key(&key) && self.buckets.len() >= self.max {
            let (burst, per_ms) = (self.burst, self.per_ms);
            self.buckets.retain(|_, b| {
                let dt = now_ms.saturating_sub(b.at_ms) as f64;
                b.tokens + dt * per_ms < burst
            });
            if self.buckets.len() >= self.max {
                return false;
            }
        }
        let b = self.buckets.get(&key).copied().unwrap_or(Bucket {
            tokens: self.burst,
            at_ms: now_ms,
        });
        let tokens = self.refilled(b, now_ms);
        let ok = tokens >= 1.0;
        self.buckets.insert(
            key,
            Bucket {
                tokens: if ok { tokens - 1.0 } else { tokens },
                at_ms: now_ms,
            },
        );
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn burst_then_refill_per_source() {
        let mut b = SourceBudget::new(3, 2, 100);
        for _ in 0..3 {
            assert!(b.charge(ip("10.0.0.1"), 0));
        }
        assert!(!b.charge(ip("10.0.0.1"), 0));
        // Another source has its own budget.
        assert!(b.charge(ip("10.0.0.2"), 0));
        // 2 a second: one more after half a second.
        assert!(b.charge(ip("10.0.0.1"), 500));
        assert!(!b.charge(ip("10.0.0.1"), 500));
    }

    #[test]
    fn ipv6_by_64_and_mapped_ipv4() {
        let mut b = SourceBudget::new(2, 1, 100);
        assert!(b.charge(ip("2001:db8:1:2::1"), 0));
        assert!(b.charge(ip("2001:db8:1:2:ffff::9"), 0));
        assert!(!b.charge(ip("2001:db8:1:2:abcd::1"), 0), "same /64");
        assert!(b.charge(ip("2001:db8:1:3::1"), 0), "another /64");
        assert!(b.charge(ip("::ffff:10.0.0.7"), 0));
        assert!(b.charge(ip("10.0.0.7"), 0));
        assert!(
            !b.charge(ip("10.0.0.7"), 0),
            "mapped IPv4 is the IPv4 address"
        );
    }

    #[test]
    fn bounded_refilled_forgotten_else_new_refused() {
        let mut b = SourceBudget::new(2, 1, 2);
        assert!(b.charge(ip("10.0.0.1"), 0));
        assert!(b.charge(ip("10.0.0.2"), 0));
        // Full and nobody refilled: a new source is refused, the map stays bounded.
        assert!(!b.charge(ip("10.0.0.3"), 100));
        assert_eq!(b.len(), 2);
        // Known sources still work.
        assert!(b.charge(ip("10.0.0.1"), 100));
        // Once refilled, they are forgotten to make room.
        assert!(b.charge(ip("10.0.0.3"), 10_000));
        assert!(b.len() <= 2);
    }
}
