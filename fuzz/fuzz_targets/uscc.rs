//! USCC validation never panics, and whatever it accepts has a consistent check character.
#![no_main]

#[path = "../../storage/src/uscc.rs"]
mod uscc;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if uscc::validate(s).is_ok() {
            assert_eq!(uscc::check_char(&s[..17]), s.chars().nth(17));
        }
        let _ = uscc::check_char(s);
    }
});
