//! Unified Social Credit Code (USCC, 统一社会信用代码, GB 32100-2015) validation.
//!
//! 18 characters from a 31-symbol alphabet; the last one is a check character over the first 17.

/// The USCC alphabet; a character's value is its index.
pub const ALPHABET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
const WEIGHTS: [u32; 17] = [
    1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
];

/// Why a string is not a valid USCC.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsccError {
    /// Not 18 characters long.
    #[error("must be 18 characters, got {0}")]
    Length(usize),
    /// A character outside the alphabet (I, O, S, V, Z and lowercase are not used).
    #[error("character {ch:?} at position {pos} is not allowed")]
    Character {
        /// 1-based position.
        pos: usize,
        /// The offending character.
        ch: char,
    },
    /// The check character does not match.
    #[error("check character should be {expected}, got {got}")]
    CheckDigit {
        /// What the first 17 characters require.
        expected: char,
        /// What the code has.
        got: char,
    },
}

fn value(c: u8) -> Option<u32> {
    ALPHABET.iter().position(|&a| a == c).map(|v| v as u32)
}

/// The check character for the first 17 characters of a code (`None` if one is outside the
/// alphabet or there are not 17).
pub fn check_char(first17: &str) -> Option<char> {
    let b = first17.as_bytes();
    if b.len() != 17 {
        return None;
    }
    let mut sum = 0u32;
    for (i, &c) in b.iter().enumerate() {
        sum += value(c)? * WEIGHTS[i];
    }
    let idx = (31 - sum % 31) % 31;
    Some(ALPHABET[idx as usize] as char)
}

/// Validate a USCC (after trimming; letters must be uppercase as issued).
pub fn validate(code: &str) -> Result<(), UsccError> {
    let chars: Vec<char> = code.chars().collect();
    if chars.len() != 18 {
        return Err(UsccError::Length(chars.len()));
    }
    for (i, &ch) in chars.iter().enumerate() {
        if !ch.is_ascii() || value(ch as u8).is_none() {
            return Err(UsccError::Character { pos: i + 1, ch });
        }
    }
    let expected = check_char(&code[..17]).expect("17 valid characters");
    let got = chars[17];
    if expected != got {
        return Err(UsccError::CheckDigit { expected, got });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_published_codes() {
        // Codes printed on public business licences.
        for c in [
            "91310000132200821H",
            "91110000100010433L",
            "91440300708461136T",
        ] {
            assert_eq!(validate(c), Ok(()), "{c}");
        }
    }

    #[test]
    fn rejects_bad_codes_with_reason() {
        assert_eq!(validate("9131000013220082"), Err(UsccError::Length(16)));
        assert!(matches!(
            validate("91310000132200821I"),
            Err(UsccError::Character { pos: 18, ch: 'I' })
        ));
        assert!(matches!(
            validate("91310000132200821A"),
            Err(UsccError::CheckDigit {
                expected: 'H',
                got: 'A'
            })
        ));
        assert!(matches!(
            validate("91310000132200821\u{4e2d}"),
            Err(UsccError::Character { .. })
        ));
    }

    #[test]
    fn check_char_round_trips() {
        let c = check_char("91310115MA1K3A2B0").unwrap();
        let full = format!("91310115MA1K3A2B0{c}");
        assert_eq!(validate(&full), Ok(()));
    }
}
