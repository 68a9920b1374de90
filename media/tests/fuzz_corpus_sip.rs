//! Replays the `sip` and `manscdp` fuzz corpora (seeds, plus `fuzz/corpus/*` when a fuzz run left
//! one) through the same checks as the fuzz targets, as ordinary tests.

use shouhu_media::gb28181::manscdp;
use shouhu_media::gb28181::platform::{Peer, Platform, PlatformConfig, Transport};
use shouhu_media::gb28181::{Now, Secret};
use shouhu_media::sip::message::{decode_body, parse_datagram, Framed, StreamFramer};

fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz");
    let mut out = Vec::new();
    for dir in [format!("corpus-seed/{target}"), format!("corpus/{target}")] {
        let Ok(rd) = std::fs::read_dir(format!("{root}/{dir}")) else {
            continue;
        };
        for e in rd.flatten() {
            out.push((
                e.path().display().to_string(),
                std::fs::read(e.path()).unwrap(),
            ));
        }
    }
    out
}

fn check(name: &str, data: &[u8], p: &mut Platform) {
    let peer = Peer {
        transport: Transport::Udp,
        addr: "10.0.0.9:5060".parse().unwrap(),
    };
    let now = Now {
        mono_ms: 1_000,
        utc_ms: 1_795_000_000_000,
    };
    match parse_datagram(data) {
        Ok(m) => {
            let back = parse_datagram(&m.to_bytes()).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!((&back.start, &back.body), (&m.start, &m.body), "{name}");
            p.on_message(peer, m, now);
        }
        Err(e) => p.on_parse_error(peer, e, now),
    }
    let _ = p.take_outputs();
}

#[test]
fn sip_corpus_replays() {
    let inputs = inputs("sip");
    assert!(inputs.len() >= 8, "the seed corpus is missing");
    let mut parsed = 0;
    for (name, data) in &inputs {
        let mut p = Platform::new(PlatformConfig::default(), [3; 32]);
        p.set_device("34020000001320000001", Secret::Password("12345678".into()));
        check(name, data, &mut p);
        parsed += usize::from(parse_datagram(data).is_ok());
        let mut f = StreamFramer::new();
        let (a, b) = data.split_at(data.len() / 2);
        for part in [a, b] {
            f.push(part);
            while let Ok(Some(fr)) = f.next() {
                if let Framed::Message(m) = fr {
                    check(name, &m.to_bytes(), &mut p);
                }
            }
        }
    }
    assert!(parsed >= 8, "every seed is a valid message");
}

#[test]
fn manscdp_corpus_replays() {
    let inputs = inputs("manscdp");
    assert!(inputs.len() >= 5, "the seed corpus is missing");
    let mut ok = 0;
    for (_, data) in &inputs {
        let text = decode_body(data, Some("Application/MANSCDP+xml"));
        ok += usize::from(manscdp::parse(&text).is_ok());
    }
    assert!(ok >= 5, "the seeds parse");
}
