//! MANSCDP XML bodies from a device: charset decoding and the bounded, lenient XML reader never
//! panic and stay within their nesting bound, whatever the bytes.
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

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = sip::message::decode_body(data, Some("Application/MANSCDP+xml"));
    let _ = gb28181::manscdp::parse(&text);
    if let Ok(tree) = gb28181::manscdp::parse_tree(&text) {
        fn depth(e: &gb28181::manscdp::Element) -> usize {
            1 + e.children.iter().map(depth).max().unwrap_or(0)
        }
        assert!(depth(&tree) <= gb28181::manscdp::MAX_DEPTH + 1);
    }
});
