//! Per-source-address budget of unauthenticated JT/T 808 frames, sans-IO.
//!
//! Every frame a connection sends before it authenticates (registrations and authentications
//! included) is charged to its source IP address: a token bucket of `burst` frames refilled at
//! `per_sec` a second. A connection whose frames the budget refuses is closed before anything
//! is looked up. The budget is generous because many 4G terminals share one carrier NAT address
//! and all re-authenticate after a restart; it bounds what one address can make the server do,
//! not who may connect. Time is passed in (`now_ms`); nothing here reads a clock.
//!
//! Addresses are keyed by [`source_key`]: an IPv4 address (IPv4-mapped IPv6 included) as it
//! is, an IPv6 address by its /64 (one subscriber's prefix; its 2^64 addresses are one source).

use std::collections::HashMap;
use std::net::IpAddr;

/// The key a source address is budgeted and counted under: IPv4 (or IPv4-mapped IPv6) as it
/// is, IPv6 by its /64 prefix.
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let o = v6.octets();
            let mut k = [0u8; 16];
            k[..8].copy_from_slice(&o[..8]);
            IpAddr::V6(std::net::Ipv6Addr::from(k))
        }
    }
}

/// Most addresses tracked; beyond it, addresses whose bucket has refilled are forgotten.
pub const MAX_SOURCES: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at_ms: i64,
}

/// Token buckets by source address.
#[derive(Debug)]
pub struct SourceBudget {
    burst: f64,
    per_ms: f64,
    buckets: HashMap<IpAddr, Bucket>,
}

impl SourceBudget {
    /// A budget of `burst` frames per address, refilled at `per_sec` frames a second.
    pub fn new(burst: u32, per_sec: u32) -> Self {
        Self {
            burst: f64::from(burst.max(1)),
            per_ms: f64::from(per_sec) / 1000.0,
            buckets: HashMap::new(),
        }
    }

    fn refilled(&self, b: Bucket, now_ms: i64) -> f64 {
        let dt = (now_ms - b.at_ms).max(0) as f64;
        (b.tokens + dt * self.per_ms).min(self.burst)
    }

    /// Charge `frames` to `ip` at `now_ms`: `true` when the budget had room (and is reduced),
    /// `false` when the frames must not be acted on.
    pub fn charge(&mut self, ip: IpAddr, frames: u64, now_ms: i64) -> bool {
        if frames == 0 {
            return true;
        }
        let ip = source_key(ip);
        if self.buckets.len() >= MAX_SOURCES && !self.buckets.contains_key(&ip) {
            self.forget_full(now_ms);
        }
        let b = self.buckets.get(&ip).copied().unwrap_or(Bucket {
            tokens: self.burst,
            at_ms: now_ms,
        });
        let tokens = self.refilled(b, now_ms);
        let need = frames as f64;
        let (ok, left) = if tokens >= need {
            (true, tokens - need)
        } else {
            (false, tokens)
        };
        self.buckets.insert(
            ip,
            Bucket {
                tokens: left,
                at_ms: now_ms,
            },
        );
        ok
    }

    fn forget_full(&mut self, now_ms: i64) {
        let (burst, per_ms) = (self.burst, self.per_ms);
        self.buckets.retain(|_, b| {
            let dt = (now_ms - b.at_ms).max(0) as f64;
            b.tokens + dt * per_ms < burst
        });
        if self.buckets.len() >= MAX_SOURCES {
            // Still full of busy addresses: start over rather than grow without bound.
            self.buckets.clear();
        }
    }

    /// Addresses tracked now.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no address is tracked.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_gets_its_burst_then_the_refill_rate() {
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.1".parse().unwrap();
        let mut s = SourceBudget::new(10, 2);
        assert!(s.charge(a, 10, 0));
        assert!(!s.charge(a, 1, 0), "burst used up");
        assert!(s.charge(b, 1, 0), "another address has its own budget");
        assert!(!s.charge(a, 1, 400));
        assert!(s.charge(a, 1, 500), "2 a second");
        assert!(!s.charge(a, 1, 500));
        assert!(s.charge(a, 10, 60_000), "refilled, capped at the burst");
        assert!(!s.charge(a, 1, 60_000));
    }

    #[test]
    fn ipv6_sources_share_their_64_and_mapped_ipv4_is_ipv4() {
        let mut s = SourceBudget::new(2, 0);
        assert!(s.charge("2001:db8:1:2::1".parse().unwrap(), 1, 0));
        assert!(s.charge("2001:db8:1:2:ffff::9".parse().unwrap(), 1, 0));
        assert!(
            !s.charge("2001:db8:1:2::3".parse().unwrap(), 1, 0),
            "same /64"
        );
        assert!(
            s.charge("2001:db8:1:3::1".parse().unwrap(), 1, 0),
            "another /64"
        );
        assert!(s.charge("::ffff:10.0.0.1".parse().unwrap(), 2, 0));
        assert!(
            !s.charge("10.0.0.1".parse().unwrap(), 1, 0),
            "the same IPv4 source"
        );
        assert_eq!(
            source_key("2001:db8:1:2:3:4:5:6".parse().unwrap()),
            "2001:db8:1:2::".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn refilled_addresses_are_forgotten_when_the_table_is_full() {
        let mut s = SourceBudget::new(4, 1);
        for i in 0..MAX_SOURCES as u32 {
            s.charge(IpAddr::from(i.to_be_bytes()), 1, 0);
        }
        assert_eq!(s.len(), MAX_SOURCES);
        assert!(s.charge("10.0.0.1".parse().unwrap(), 1, 10_000));
        assert_eq!(s.len(), 1);
    }
}
