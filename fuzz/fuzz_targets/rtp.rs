//! RTP and RFC 4571 bytes from a device: packet parsing, TCP de-framing and the reorder buffer
//! never panic; a parsed payload lies inside the packet; the reorder buffer never releases a
//! sequence number twice in a row.
#![no_main]

#[path = "../../media/src/rtp.rs"]
#[allow(dead_code)]
mod rtp;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = rtp::Packet::parse(data) {
        assert!(p.payload.len() + 12 <= data.len());
    }
    let mut f = rtp::Rfc4571::new();
    f.push(data);
    let mut r = rtp::Reorder::new();
    let mut last: Option<u16> = None;
    while let Ok(Some(pkt)) = f.next() {
        if let Ok(p) = rtp::Packet::parse(&pkt) {
            for o in r.push(p.seq, p.marker, p.payload) {
                if let rtp::Ordered::Packet { seq, .. } = o {
                    assert_ne!(Some(seq), last);
                    last = Some(seq);
                }
            }
        }
    }
    // The same bytes as 16-byte "packets" with their first two bytes as sequence numbers.
    for c in data.chunks(16) {
        if c.len() >= 2 {
            let _ = r.push(u16::from_be_bytes([c[0], c[1]]), c.len() % 2 == 0, &c[2..]);
        }
    }
});
