//! Replays the `sip`, `manscdp`, `ps` and `rtp` fuzz corpora (seeds, plus `fuzz/corpus/*` when a fuzz run left
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
        let mut p = Platform::new(PlatformConfig::default(), [3; 32], [4; 32]);
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

#[test]
fn ps_corpus_replays() {
    use shouhu_media::ps::PsDemuxer;
    let inputs = inputs("ps");
    assert!(inputs.len() >= 3, "the seed corpus is missing");
    let mut video = 0;
    for (name, data) in &inputs {
        let mut d = PsDemuxer::new();
        for c in data.chunks(1400) {
            for f in d.push(c) {
                assert!(
                    f.data.starts_with(&[0, 0, 1])
                        || f.data.starts_with(&[0, 0, 0, 1])
                        || !f.codec.is_video(),
                    "{name}"
                );
                video += usize::from(f.codec.is_video());
            }
        }
        let _ = d.end_of_frame();
    }
    assert!(video > 0, "the seeds hold video");
}

#[test]
fn rtp_corpus_replays() {
    use shouhu_media::rtp::{Ordered, Packet, Reorder, Rfc4571};
    let inputs = inputs("rtp");
    assert!(inputs.len() >= 2, "the seed corpus is missing");
    for (name, data) in &inputs {
        let _ = Packet::parse(data);
        let mut f = Rfc4571::new();
        f.push(data);
        let mut r = Reorder::new();
        let mut seqs = Vec::new();
        while let Ok(Some(p)) = f.next() {
            let Ok(p) = Packet::parse(&p) else {
                assert!(
                    !name.contains("corpus-seed"),
                    "{name}: a seed packet does not parse"
                );
                continue;
            };
            for o in r.push(p.seq, p.marker, p.payload) {
                if let Ordered::Packet { seq, .. } = o {
                    seqs.push(seq);
                }
            }
        }
        if name.ends_with("rfc4571_reordered") {
            assert_eq!(seqs, [100, 101, 102, 103]);
        }
    }
}
