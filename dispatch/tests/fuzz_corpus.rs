//! Replays the dispatch WebSocket fuzz corpus through the parser as an ordinary test.

use shouhu_dispatch::wire::{parse_client_message, ClientMessage, MAX_POSITIONS};

#[test]
fn corpus_replays_without_panics() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz");
    let mut n = 0;
    let mut accepted = 0;
    for dir in ["corpus-seed/dispatch_ws", "corpus/dispatch_ws"] {
        let Ok(rd) = std::fs::read_dir(format!("{root}/{dir}")) else {
            continue;
        };
        for e in rd.flatten() {
            let data = std::fs::read(e.path()).unwrap();
            n += 1;
            let Ok(text) = std::str::from_utf8(&data) else {
                continue;
            };
            match parse_client_message(text) {
                Ok(ClientMessage::Subscribe(s)) => {
                    accepted += 1;
                    if let Some(b) = s.bbox {
                        assert!(b[0] <= b[2] && b[1] <= b[3]);
                    }
                }
                Ok(ClientMessage::Positions { positions }) => {
                    accepted += 1;
                    assert!(positions.len() <= MAX_POSITIONS);
                }
                Ok(ClientMessage::Ping) => accepted += 1,
                Err(e) => assert!(!e.to_string().is_empty()),
            }
        }
    }
    assert!(n >= 6, "the seed corpus is missing");
    assert!(
        accepted >= 3 && accepted < n,
        "seeds hold valid and invalid messages"
    );
}
