//! Field encryption at rest with SM4-GCM (GB/T 32907 block cipher in Galois/Counter Mode).
//!
//! Sensitive case fields (party ID numbers, phone numbers, amounts before a decision) are stored
//! as `v1:` + base64(nonce ‖ ciphertext ‖ tag). Each value gets a fresh random 96-bit nonce; the
//! column name is bound as associated data, so a ciphertext copied into another column does not
//! decrypt. The key (128 bits) comes from the configuration; this module never sees a file.

use aes_gcm::aead::consts::U12;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::AesGcm;
use base64::Engine as _;
use rand::RngCore;

use crate::{StorageError, StorageResult};

type Sm4Gcm = AesGcm<sm4::Sm4, U12>;

const PREFIX: &str = "v1:";

/// Encrypts and decrypts field values with one SM4 key.
#[derive(Clone)]
pub struct FieldCipher {
    cipher: Sm4Gcm,
}

impl std::fmt::Debug for FieldCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FieldCipher(SM4-GCM, <key redacted>)")
    }
}

impl FieldCipher {
    /// A cipher with a 16-byte SM4 key.
    pub fn new(key: &[u8; 16]) -> Self {
        Self {
            cipher: Sm4Gcm::new(key.into()),
        }
    }

    /// A cipher from 32 hex characters.
    pub fn from_hex(hex_key: &str) -> Result<Self, String> {
        let bytes = hex::decode(hex_key.trim())
            .map_err(|_| "the field key must be 32 hex characters".to_string())?;
        let key: [u8; 16] = bytes
            .try_into()
            .map_err(|_| "the field key must be 32 hex characters (128 bits)".to_string())?;
        Ok(Self::new(&key))
    }

    /// Encrypt `plain` for column `column`.
    pub fn seal(&self, column: &str, plain: &str) -> String {
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ct = self
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
            "{PREFIX}{}",
            base64::engine::general_purpose::STANDARD.encode(out)
        )
    }

    /// Decrypt a value sealed for `column`. A wrong key, a tampered value or a value of another
    /// column is an error, never garbage.
    pub fn open(&self, column: &str, sealed: &str) -> StorageResult<String> {
        let corrupt = || StorageError::Corrupt(format!("{column}: cannot decrypt"));
        let b64 = sealed.strip_prefix(PREFIX).ok_or_else(corrupt)?;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| corrupt())?;
        if raw.len() < 12 + 16 {
            return Err(corrupt());
        }
        let (nonce, ct) = raw.split_at(12);
        let plain = self
            .cipher
            .decrypt(
                nonce.into(),
                Payload {
                    msg: ct,
                    aad: column.as_bytes(),
                },
            )
            .map_err(|_| corrupt())?;
        String::from_utf8(plain).map_err(|_| corrupt())
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
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn round_trip_and_tamper_detection() {
        let c = FieldCipher::from_hex("00112233445566778899aabbccddeeff").unwrap();
        let s = c.seal("party_id", "310101199001011234");
        assert!(s.starts_with("v1:"));
        assert!(!s.contains("310101199001011234"));
        assert_eq!(c.open("party_id", &s).unwrap(), "310101199001011234");
        // Fresh nonce: the same value seals differently.
        assert_ne!(s, c.seal("party_id", "310101199001011234"));
        // Another column's ciphertext does not open here.
        assert!(c.open("party_phone", &s).is_err());
        // A flipped byte fails the tag.
        let mut raw = base64::engine::general_purpose::STANDARD
            .decode(&s[3..])
            .unwrap();
        raw[20] ^= 1;
        let bad = format!(
            "v1:{}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        );
        assert!(c.open("party_id", &bad).is_err());
        // Another key fails.
        let other = FieldCipher::from_hex("ffeeddccbbaa99887766554433221100").unwrap();
        assert!(other.open("party_id", &s).is_err());
        assert!(FieldCipher::from_hex("abc").is_err());
    }
}
