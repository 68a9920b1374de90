//! Search normalisation and gram extraction never panic; a query's grams are all in the index
//! grams of the same text (so a document always finds itself).
#![no_main]

#[path = "../../storage/src/search.rs"]
mod search;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let n = search::normalize(s);
        let index = search::index_grams([s]);
        for g in search::query_grams(&n) {
            assert!(index.contains(&g), "{g:?} missing for {s:?}");
        }
        let _ = search::like_pattern(s);
    }
});
