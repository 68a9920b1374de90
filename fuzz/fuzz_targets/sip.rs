//! SIP bytes from a device: the datagram parser and the TCP stream framer never panic, a parsed
//! message serialises and parses back to itself, and the GB/T 28181 platform answers anything
//! (registered device or not) without panicking.
#![no_main]

#[path = "../../storage/src/model.rs"]
#[allow(dead_code)]
mod model;

#[path = "../../media/src/sip/mod.rs"]
#[allow(dead_code)]
mod sip;

#[path = "../../media/src/gb28181/mod.rs"]
#[allow(dead_code)]
mod gb28181;

use gb28181::platform::{Peer, Platform, PlatformConfig, Transport};
use gb28181::{Now, Secret};
use libfuzzer_sys::fuzz_target;
use sip::message::{parse_datagram, Framed, StreamFramer};

fn check(data: &[u8], platform: &mut Platform) {
    let peer = Peer {
        transport: Transport::Udp,
        addr: "10.0.0.9:5060".parse().unwrap(),
    };
    let now = Now { mono_ms: 1_000, utc_ms: 1_795_000_000_000 };
    match parse_datagram(data) {
        Ok(m) => {
            let back = parse_datagram(&m.to_bytes()).expect("a serialised message parses");
            assert_eq!(back.start, m.start);
            assert_eq!(back.body, m.body);
            let strip = |h: &[(String, String)]| -> Vec<(String, String)> {
                h.iter().filter(|(n, _)| n != "Content-Length").cloned().collect()
            };
            assert_eq!(strip(&back.headers), strip(&m.headers));
            platform.on_message(peer, m, now);
        }
        Err(e) => platform.on_parse_error(peer, e, now),
    }
    let _ = platform.take_outputs();
}

fuzz_target!(|data: &[u8]| {
    let mut p = Platform::new(PlatformConfig::default(), [3; 32], [4; 32]);
    p.set_device("34020000001320000001", Secret::Password("12345678".into()));
    check(data, &mut p);
    // The same bytes as a TCP stream, in two pieces.
    let mut f = StreamFramer::new();
    let (a, b) = data.split_at(data.len() / 2);
    for part in [a, b] {
        f.push(part);
        loop {
            match f.next() {
                Ok(Some(Framed::Message(m))) => check(&m.to_bytes(), &mut p),
                Ok(Some(Framed::Bad(_))) => {}
                Ok(None) | Err(_) => break,
            }
        }
    }
    p.on_tick(Now { mono_ms: 10_000_000, utc_ms: 1_795_010_000_000 });
});
