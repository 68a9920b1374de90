//! Reused buffers for recording's large, short-lived allocations: the fMP4 fragments (about a
//! quarter of a megabyte per stream per second). Allocated fresh each time they cost page faults
//! and zeroed pages from the kernel once the allocator has returned the last ones; recycled here
//! they stay mapped. The segmenter takes one for each fragment, the digest thread gives it back
//! once the fragment is written and hashed.

use std::sync::Mutex;

/// Buffers kept at most.
const KEEP: usize = 512;
/// Larger buffers are not kept.
const MAX_CAPACITY: usize = 8 << 20;

static POOL: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// An empty buffer with room for `capacity` bytes: a recycled one if one is large enough.
pub fn take(capacity: usize) -> Vec<u8> {
    if capacity <= MAX_CAPACITY {
        let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = pool.iter().rposition(|b| b.capacity() >= capacity) {
            return pool.swap_remove(i);
        }
    }
    // Rounded up so that the buffer fits the next, slightly larger fragment too.
    Vec::with_capacity(capacity.next_multiple_of(64 << 10))
}

/// Return a buffer for reuse.
pub fn give(mut b: Vec<u8>) {
    if b.capacity() < (64 << 10) || b.capacity() > MAX_CAPACITY {
        return;
    }
    b.clear();
    let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    if pool.len() < KEEP {
        pool.push(b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_empty_and_large_enough() {
        let mut b = take(100_000);
        assert!(b.capacity() >= 100_000);
        b.extend_from_slice(&[7; 1000]);
        give(b);
        let again = take(90_000);
        assert!(again.is_empty());
        assert!(again.capacity() >= 90_000);
        let big = take(MAX_CAPACITY + 1);
        assert!(big.capacity() > MAX_CAPACITY);
    }
}
