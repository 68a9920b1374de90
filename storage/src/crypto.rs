//! Field encryption at rest with SM4-GCM (GB/T 32907 block cipher in Galois/Counter Mode), and
//! keyed SM3 search indexes over sealed values.
//!
//! Personal data — a case party's ID number and phone, a proposed fine before its decision, an
//! officer's phone, an enterprise principal's phone — is stored as
//! `v2:<key id>:` + base64(nonce ‖ ciphertext ‖ tag). Each value gets a fresh random 96-bit nonce;
//! the column name is bound as associated data, so a ciphertext copied into another column does
//! not decrypt. The key id (8 hex digits of SM3 over the key) names the key that sealed the value,
//! so a value sealed under a previous key is opened with that key and found by the rotation
//! command. Values written before key ids (`v1:`) are opened by trying each configured key.
//!
//! A sealed value cannot be searched, so a phone is also stored as a **blind index**:
//! HMAC-SM3 under a key derived from the field key, over the column name and the normalised
//! number (its full digits, and in a second column its last four). An exact or last-four search
//! compares index values; the database never sees the number. While keys are being rotated a
//! search compares against the index under every configured key
//! ([`FieldCipher::index_candidates`]).
//!
//! The keys (128 bits each) come from the configuration; this module never sees a file.

use aes_gcm::aead::consts::U12;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::AesGcm;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sm3::{Digest, Sm3};

use crate::{StorageError, StorageResult};

type Sm4Gcm = AesGcm<sm4::Sm4, U12>;

const PREFIX_V1: &str = "v1:";
const PREFIX_V2: &str = "v2:";

/// One SM4 key with its id and the key of its blind indexes.
#[derive(Clone)]
struct FieldKey {
    id: String,
    cipher: Sm4Gcm,
    index_key: [u8; 32],
}

impl FieldKey {
    fn new(key: &[u8; 16]) -> Self {
        let id = hex::encode(
            &Sm3::new_with_prefix(b"shouhu field key id\x1f")
                .chain_update(key)
                .finalize()[..4],
        );
        let index_key: [u8; 32] = Sm3::new_with_prefix(b"shouhu field index key\x1f")
            .chain_update(key)
            .finalize()
            .into();
        Self {
            id,
            cipher: Sm4Gcm::new(key.into()),
            index_key,
        }
    }

    fn open_raw(&self, column: &str, raw: &[u8]) -> Option<Vec<u8>> {
        if raw.len() < 12 + 16 {
            return None;
        }
        let (nonce, ct) = raw.split_at(12);
        self.cipher
            .decrypt(
                nonce.into(),
                Payload {
                    msg: ct,
                    aad: column.as_bytes(),
                },
            )
            .ok()
    }

    fn index(&self, column: &str, value: &str) -> String {
        let mut mac = <Hmac<Sm3> as Mac>::new_from_slice(&self.index_key)
            .expect("HMAC accepts a key of any length");
        mac.update(column.as_bytes());
        mac.update(b"\x1f");
        mac.update(value.as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..16])
    }
}

fn parse_key(hex_key: &str) -> Result<[u8; 16], String> {
    let bytes = hex::decode(hex_key.trim())
        .map_err(|_| "a field key must be 32 hex characters".to_string())?;
    bytes
        .try_into()
        .map_err(|_| "a field key must be 32 hex characters (128 bits)".to_string())
}

/// Seals, opens and indexes field values: the current SM4 key seals; it and any previous keys
/// open.
#[derive(Clone)]
pub struct FieldCipher {
    current: FieldKey,
    previous: Vec<FieldKey>,
}

impl std::fmt::Debug for FieldCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "FieldCipher(SM4-GCM, key {}, {} previous, <keys redacted>)",
            self.current.id,
            self.previous.len()
        )
    }
}

/// Whether `sealed` names the current key.
fn is_current(cipher: &FieldCipher, sealed: &str) -> bool {
    sealed
        .strip_prefix(PREFIX_V2)
        .and_then(|r| r.split_once(':'))
        .is_some_and(|(id, _)| id == cipher.current.id)
}

impl FieldCipher {
    /// A cipher with a 16-byte SM4 key.
    pub fn new(key: &[u8; 16]) -> Self {
        Self {
            current: FieldKey::new(key),
            previous: Vec::new(),
        }
    }

    /// A cipher from 32 hex characters.
    pub fn from_hex(hex_key: &str) -> Result<Self, String> {
        Ok(Self::new(&parse_key(hex_key)?))
    }

    /// The same cipher, also opening values sealed under `previous` keys (32 hex characters
    /// each). A previous key equal to the current one is ignored.
    pub fn with_previous_hex<'k>(
        mut self,
        previous: impl IntoIterator<Item = &'k str>,
    ) -> Result<Self, String> {
        for k in previous {
            let k = FieldKey::new(&parse_key(k)?);
            if k.id != self.current.id && !self.previous.iter().any(|p| p.id == k.id) {
                self.previous.push(k);
            }
        }
        Ok(self)
    }

    /// The id of the key that seals new values (8 hex digits; not secret).
    pub fn key_id(&self) -> &str {
        &self.current.id
    }

    fn keys(&self) -> impl Iterator<Item = &FieldKey> {
        std::iter::once(&self.current).chain(&self.previous)
    }

    /// Encrypt `plain` for column `column` under the current key.
    pub fn seal(&self, column: &str, plain: &str) -> String {
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ct = self
            .current
            .cipher
            .encrypt(
                (&nonce).into(),
                Payload {
                    msg: plain.as_bytes(),
                    aad: column.as_bytes(),
                },
            )
            .expect("SM4-GCM encryption of a bounded field cannot fail");
        let mut out = Vec::with_capacity(12 + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        format!(
            "{PREFIX_V2}{}:{}",
            self.current.id,
            base64::engine::general_purpose::STANDARD.encode(out)
        )
    }

    /// Decrypt a value sealed for `column`. A wrong key, a tampered value or a value of another
    /// column is an error, never garbage; a value sealed under a key no longer configured says
    /// so.
    pub fn open(&self, column: &str, sealed: &str) -> StorageResult<String> {
        let corrupt = || StorageError::Corrupt(format!("{column}: cannot decrypt"));
        let b64 = |s: &str| {
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|_| corrupt())
        };
        let plain = if let Some(rest) = sealed.strip_prefix(PREFIX_V2) {
            let (id, body) = rest.split_once(':').ok_or_else(corrupt)?;
            let key = self.keys().find(|k| k.id == id).ok_or_else(|| {
                StorageError::Corrupt(format!(
                    "{column}: sealed under field key {id}, which is not configured (auth.field_key or auth.previous_field_keys)"
                ))
            })?;
            key.open_raw(column, &b64(body)?).ok_or_else(corrupt)?
        } else if let Some(body) = sealed.strip_prefix(PREFIX_V1) {
            let raw = b64(body)?;
            self.keys()
                .find_map(|k| k.open_raw(column, &raw))
                .ok_or_else(corrupt)?
        } else {
            return Err(corrupt());
        };
        String::from_utf8(plain).map_err(|_| corrupt())
    }

    /// Whether `sealed` was sealed under a key other than the current one (or before key ids),
    /// so that key rotation must seal it again.
    pub fn needs_reseal(&self, sealed: &str) -> bool {
        !is_current(self, sealed)
    }

    /// Seal an optional value (empty strings stay empty: nothing to hide).
    pub fn seal_opt(&self, column: &str, plain: &str) -> Option<String> {
        (!plain.is_empty()).then(|| self.seal(column, plain))
    }

    /// Open an optional value.
    pub fn open_opt(&self, column: &str, sealed: Option<&str>) -> StorageResult<String> {
        sealed
            .map(|s| self.open(column, s))
            .transpose()
            .map(Option::unwrap_or_default)
    }

    /// The blind index of `value` in `column` under the current key (32 hex digits).
    pub fn index(&self, column: &str, value: &str) -> String {
        self.current.index(column, value)
    }

    /// The blind index of `value` under every configured key, current first: what a search
    /// compares while rows sealed under a previous key are not yet rewritten.
    pub fn index_candidates(&self, column: &str, value: &str) -> Vec<String> {
        self.keys().map(|k| k.index(column, value)).collect()
    }
}

/// The digits of a phone number as its blind index sees them: separators dropped, and a
/// mainland country code (`+86`, `0086`) before an 11-digit mobile number removed, so the
/// forms people write find each other.
pub fn phone_digits(phone: &str) -> String {
    let d: String = phone.chars().filter(char::is_ascii_digit).collect();
    if d.len() == 15 && d.starts_with("0086") {
        d[4..].to_string()
    } else if d.len() == 13 && d.starts_with("86") && d.as_bytes()[2] == b'1' {
        d[2..].to_string()
    } else {
        d
    }
}

/// A phone number sealed for storage with its two blind indexes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SealedPhone {
    /// The sealed number (`""` when there is none).
    pub sealed: String,
    /// The blind index of its digits (`None` when there is no number).
    pub index: Option<String>,
    /// The blind index of its last four digits.
    pub last4_index: Option<String>,
}

impl FieldCipher {
    /// Seal `phone` for `column` (e.g. `officers.phone`) with its full and last-four indexes.
    /// The number is sealed as written; the indexes see [`phone_digits`].
    pub fn seal_phone(&self, column: &str, phone: &str) -> SealedPhone {
        if phone.is_empty() {
            return SealedPhone {
                sealed: String::new(),
                index: None,
                last4_index: None,
            };
        }
        let d = phone_digits(phone);
        let last4 = &d[d.len().saturating_sub(4)..];
        SealedPhone {
            sealed: self.seal(column, phone),
            index: Some(self.index(&format!("{column}#full"), &d)),
            last4_index: Some(self.index(&format!("{column}#last4"), last4)),
        }
    }

    /// Open a phone sealed by [`Self::seal_phone`] (`""` stays `""`).
    pub fn open_phone(&self, column: &str, sealed: &str) -> StorageResult<String> {
        if sealed.is_empty() {
            Ok(String::new())
        } else {
            self.open(column, sealed)
        }
    }

    /// What a phone search for `query` compares, if the query is a phone search at all: the
    /// full-number indexes when it has 7–20 digits, the last-four indexes when it has exactly
    /// four, under every configured key. `None` for anything else (letters, other lengths).
    pub fn phone_search(&self, column: &str, query: &str) -> Option<PhoneSearch> {
        let q = query.trim();
        if q.is_empty()
            || !q
                .chars()
                .all(|c| c.is_ascii_digit() || matches!(c, '-' | '+' | ' ' | '(' | ')'))
        {
            return None;
        }
        let d = phone_digits(q);
        match d.len() {
            4 => Some(PhoneSearch::LastFour(
                self.index_candidates(&format!("{column}#last4"), &d),
            )),
            7..=20 => Some(PhoneSearch::Full(
                self.index_candidates(&format!("{column}#full"), &d),
            )),
            _ => None,
        }
    }
}

/// The blind-index values a phone search compares (see [`FieldCipher::phone_search`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PhoneSearch {
    /// Compare the full-number index column with any of these.
    Full(Vec<String>),
    /// Compare the last-four index column with any of these.
    LastFour(Vec<String>),
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "00112233445566778899aabbccddeeff";
    const K2: &str = "ffeeddccbbaa99887766554433221100";

    /// GB/T 32907-2016 appendix A.1: the standard's example key and plaintext.
    #[test]
    fn sm4_block_matches_the_standard() {
        use aes_gcm::aes::cipher::{BlockEncrypt, KeyInit as _};
        let key = hex::decode("0123456789abcdeffedcba9876543210").unwrap();
        let c = sm4::Sm4::new_from_slice(&key).unwrap();
        let mut block = aes_gcm::aes::Block::clone_from_slice(&key);
        c.encrypt_block(&mut block);
        assert_eq!(hex::encode(block), "681edf34d206965e86b3e94f536e4246");
    }

    /// GB/T 32905-2016 appendix A.1: SM3("abc"), the digest under the key id and index key.
    #[test]
    fn sm3_matches_the_standard() {
        assert_eq!(
            hex::encode(Sm3::digest(b"abc")),
            "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
        );
    }

    #[test]
    fn round_trip_and_tamper_detection() {
        let c = FieldCipher::from_hex(K1).unwrap();
        let s = c.seal("party_id", "310101199001011234");
        assert!(s.starts_with(&format!("v2:{}:", c.key_id())));
        assert!(!s.contains("310101199001011234"));
        assert_eq!(c.open("party_id", &s).unwrap(), "310101199001011234");
        // Fresh nonce: the same value seals differently.
        assert_ne!(s, c.seal("party_id", "310101199001011234"));
        // Another column's ciphertext does not open here.
        assert!(c.open("party_phone", &s).is_err());
        // A flipped byte fails the tag.
        let (head, body) = s.rsplit_once(':').unwrap();
        let mut raw = base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap();
        raw[20] ^= 1;
        let bad = format!(
            "{head}:{}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        );
        assert!(c.open("party_id", &bad).is_err());
        // Another key fails, naming the key it would need.
        let other = FieldCipher::from_hex(K2).unwrap();
        let e = other.open("party_id", &s).unwrap_err().to_string();
        assert!(
            e.contains(c.key_id()) && e.contains("not configured"),
            "{e}"
        );
        assert!(FieldCipher::from_hex("abc").is_err());
        assert!(c.open("party_id", "13800138000").is_err());
        assert!(c.open("party_id", "v2:nocolon").is_err());
    }

    /// A value of the format before key ids (`v1:`), as the earlier code wrote it.
    fn seal_v1(key: &str, column: &str, plain: &str) -> String {
        let k = FieldKey::new(&parse_key(key).unwrap());
        let nonce = [7u8; 12];
        let ct = k
            .cipher
            .encrypt(
                (&nonce).into(),
                Payload {
                    msg: plain.as_bytes(),
                    aad: column.as_bytes(),
                },
            )
            .unwrap();
        let mut raw = nonce.to_vec();
        raw.extend(ct);
        format!(
            "v1:{}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }

    #[test]
    fn rotation_opens_old_values_and_marks_them_for_resealing() {
        let old = FieldCipher::from_hex(K1).unwrap();
        let new_only = FieldCipher::from_hex(K2).unwrap();
        let rotated = FieldCipher::from_hex(K2)
            .unwrap()
            .with_previous_hex([K1, K2, K1])
            .unwrap();
        assert_eq!(
            rotated.previous.len(),
            1,
            "duplicates and the current key ignored"
        );
        assert_ne!(old.key_id(), rotated.key_id());

        let sealed_old = old.seal("officers.phone", "13800138000");
        let legacy = seal_v1(K1, "officers.phone", "13800138000");
        for s in [&sealed_old, &legacy] {
            assert!(new_only.open("officers.phone", s).is_err());
            assert_eq!(rotated.open("officers.phone", s).unwrap(), "13800138000");
            assert!(rotated.needs_reseal(s));
        }
        let resealed = rotated.seal("officers.phone", "13800138000");
        assert!(!rotated.needs_reseal(&resealed));
        assert!(old.open("officers.phone", &resealed).is_err());
        // During rotation a search compares both keys' indexes.
        let c = rotated.index_candidates("t", "13800138000");
        assert_eq!(
            c,
            vec![
                new_only.index("t", "13800138000"),
                old.index("t", "13800138000")
            ]
        );
    }

    #[test]
    fn blind_indexes_depend_on_key_column_and_value() {
        let a = FieldCipher::from_hex(K1).unwrap();
        let b = FieldCipher::from_hex(K2).unwrap();
        let i = a.index("officers.phone#full", "13800138000");
        assert_eq!(i.len(), 32);
        assert_eq!(i, a.index("officers.phone#full", "13800138000"));
        assert_ne!(i, b.index("officers.phone#full", "13800138000"));
        assert_ne!(
            i,
            a.index("enterprises.principal_phone#full", "13800138000")
        );
        assert_ne!(i, a.index("officers.phone#full", "13800138001"));
        assert!(!i.contains("138"));
    }

    #[test]
    fn phones_seal_with_both_indexes_and_written_forms_find_each_other() {
        let c = FieldCipher::from_hex(K1).unwrap();
        let p = c.seal_phone("officers.phone", "+86 138-0013-8000");
        assert_eq!(
            c.open_phone("officers.phone", &p.sealed).unwrap(),
            "+86 138-0013-8000"
        );
        for q in [
            "13800138000",
            "138 0013 8000",
            "008613800138000",
            "+8613800138000",
        ] {
            assert_eq!(
                c.phone_search("officers.phone", q),
                Some(PhoneSearch::Full(vec![p.index.clone().unwrap()])),
                "{q}"
            );
        }
        assert_eq!(
            c.phone_search("officers.phone", "8000"),
            Some(PhoneSearch::LastFour(vec![p.last4_index.clone().unwrap()]))
        );
        for q in ["", "abc", "138", "00138", "8000x", "1".repeat(21).as_str()] {
            assert_eq!(c.phone_search("officers.phone", q), None, "{q}");
        }
        let none = c.seal_phone("officers.phone", "");
        assert_eq!(
            (none.sealed.as_str(), none.index, none.last4_index),
            ("", None, None)
        );
        assert_eq!(c.open_phone("officers.phone", "").unwrap(), "");
        // A landline keeps its area code.
        assert_eq!(phone_digits("021-6123 4567"), "02161234567");
    }
}
