//! Reassembly of split messages (the sub-packet bit): parts of one message share the message id
//! and the phone number and carry (total, index); their serial numbers are consecutive. A
//! message is complete when every index from 1 to total has arrived; incomplete ones are dropped
//! after a time-out (`now_ms` is passed in, never read).

use std::collections::HashMap;

use super::header::Header;

/// Longest time between the first and the last part of one message.
pub const PART_TIMEOUT_MS: i64 = 60_000;
/// Most messages under reassembly per connection (bounds memory against a hostile terminal).
pub const MAX_PENDING: usize = 16;
/// Most parts of one message.
pub const MAX_PARTS: u16 = 256;

#[derive(Debug)]
struct Pending {
    total: u16,
    parts: HashMap<u16, Vec<u8>>,
    first_ms: i64,
}

/// Reassembles the split messages of one connection.
#[derive(Debug, Default)]
pub struct Reassembler {
    pending: HashMap<(u16, u16), Pending>,
}

impl Reassembler {
    /// A new reassembler.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add one part (its parsed header and body). Returns the whole body when this part completes
    /// its message. The key of a message is its id and the serial of its first part
    /// (`serial - index + 1`).
    pub fn push(&mut self, h: &Header, body: &[u8], now_ms: i64) -> Option<Vec<u8>> {
        let (total, index) = h.packet?;
        if total > MAX_PARTS || index == 0 || index > total {
            return None;
        }
        self.pending
            .retain(|_, p| now_ms - p.first_ms <= PART_TIMEOUT_MS);
        let key = (h.msg_id, h.serial.wrapping_sub(index - 1));
        if !self.pending.contains_key(&key) && self.pending.len() >= MAX_PENDING {
            return None;
        }
        let p = self.pending.entry(key).or_insert_with(|| Pending {
            total,
            parts: HashMap::new(),
            first_ms: now_ms,
        });
        if p.total != total {
            self.pending.remove(&key);
            return None;
        }
        p.parts.insert(index, body.to_vec());
        if p.parts.len() < usize::from(total) {
            return None;
        }
        let mut p = self.pending.remove(&key)?;
        let mut whole = Vec::new();
        for i in 1..=total {
            whole.extend(p.parts.remove(&i)?);
        }
        Some(whole)
    }

    /// Messages still waiting for parts.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::super::header::Version;
    use super::*;

    fn part(serial: u16, total: u16, index: u16) -> Header {
        Header {
            msg_id: 0x0704,
            version: Version::V2013,
            phone: "1".into(),
            serial,
            packet: Some((total, index)),
            body_len: 1,
        }
    }

    #[test]
    fn joins_parts_in_any_order() {
        let mut r = Reassembler::new();
        assert_eq!(r.push(&part(12, 3, 3), b"c", 0), None);
        assert_eq!(r.push(&part(10, 3, 1), b"a", 1), None);
        assert_eq!(r.push(&part(11, 3, 2), b"b", 2), Some(b"abc".to_vec()));
        assert_eq!(r.pending(), 0);
    }

    #[test]
    fn stale_and_hostile_parts_are_dropped() {
        let mut r = Reassembler::new();
        assert_eq!(r.push(&part(10, 2, 1), b"a", 0), None);
        assert_eq!(
            r.push(&part(11, 2, 2), b"b", PART_TIMEOUT_MS + 1),
            None,
            "the first part timed out"
        );
        for i in 0..100u16 {
            r.push(&part(1000 + i * 10, 5, 1), b"x", PART_TIMEOUT_MS + 2);
        }
        assert!(r.pending() <= MAX_PENDING);
        assert_eq!(r.push(&part(5, 3, 4), b"x", 0), None);
        assert_eq!(r.push(&part(5, 1000, 1), b"x", 0), None);
    }
}
