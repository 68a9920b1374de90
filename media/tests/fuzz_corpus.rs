//! Replays the JT/T 808 fuzz corpus (seeds, plus `fuzz/corpus/jt808` when a fuzz run left one)
//! through the same checks as the fuzz target, as an ordinary test.

use shouhu_media::jt808::frame::{encode, Deframer};
use shouhu_media::jt808::message::Message;
use shouhu_media::jt808::session::{Action, Session};

fn inputs() -> Vec<(String, Vec<u8>)> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz");
    let mut out = Vec::new();
    for dir in ["corpus-seed/jt808", "corpus/jt808"] {
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

#[test]
fn corpus_replays_without_panics() {
    let inputs = inputs();
    assert!(inputs.len() >= 9, "the seed corpus is missing");
    for (name, data) in inputs {
        let mut s = Session::new();
        let (a, b) = data.split_at(data.len() / 2);
        let mut closed = false;
        for part in [a, b] {
            let actions = s.on_bytes(part, 0);
            assert!(
                !closed || actions.is_empty(),
                "{name}: a closed session acted"
            );
            closed |= actions.iter().any(|x| matches!(x, Action::Close(_)));
        }
        let mut d = Deframer::new();
        d.push(&data);
        while let Some(f) = d.next_frame() {
            if let Ok(f) = f {
                let _ = Message::decode(&f);
            }
        }
        if data.len() <= 1024 {
            let mut d = Deframer::new();
            d.push(&encode(&data));
            assert_eq!(d.next_frame().unwrap().unwrap(), data, "{name}");
        }
    }
}

#[test]
fn seed_frames_decode_as_their_names_say() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/corpus-seed/jt808");
    let frames = |name: &str| {
        let mut d = Deframer::new();
        d.push(&std::fs::read(format!("{root}/{name}")).unwrap());
        std::iter::from_fn(move || d.next_frame()).collect::<Vec<_>>()
    };
    let f = frames("location_2019");
    let (h, m) = Message::decode(f[0].as_ref().unwrap()).unwrap();
    assert_eq!(h.phone, "13800138000");
    let Message::Location(r) = m else {
        panic!("not a location")
    };
    assert_eq!(
        (r.lat_e6, r.lon_e6, r.alarm, r.speed_dkmh),
        (31_230_400, 121_473_700, 1, 365)
    );
    let f = frames("batch_backfill");
    assert!(
        matches!(Message::decode(f[0].as_ref().unwrap()).unwrap().1, Message::LocationBatch { backfill: true, ref reports } if reports.len() == 2)
    );
    let f = frames("bad_checksum");
    assert!(f[0].is_err());
    let f = frames("garbage_between");
    assert_eq!(f.iter().filter(|x| x.is_ok()).count(), 2);
    let f = frames("register_2013");
    let Message::Register(r) = Message::decode(f[0].as_ref().unwrap()).unwrap().1 else {
        panic!()
    };
    assert_eq!(r.plate, "沪A12345");
    let f = frames("escaped_bytes");
    assert!(f[0].is_ok());
    // An additional item that declares 158 bytes with 10 left: the fix stays, the item goes.
    let f = frames("location_truncated_item");
    let Message::Location(r) = Message::decode(f[0].as_ref().unwrap()).unwrap().1 else {
        panic!("not a location")
    };
    assert_eq!(
        (r.lat_e6, r.lon_e6, r.mileage_dkm, r.dropped_items),
        (31_230_416, 121_473_701, Some(12_345), 1)
    );
}
