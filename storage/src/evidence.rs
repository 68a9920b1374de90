//! Evidence integrity of recordings: per-segment digests (SHA-256 and SM3), the recording's
//! digest chain, the server's Ed25519 signature over the chain head, and the signed manifest
//! of an export that `shouhu verify FILE MANIFEST` checks offline.
//!
//! The chain: `link₀ = SHA-256("shouhu-chain-v1" ‖ recording id)`, and for segment `n`
//! `linkₙ = SHA-256("shouhu-chain-v1" ‖ linkₙ₋₁ ‖ n ‖ sha256ₙ ‖ sm3ₙ ‖ startₙ ‖ endₙ)` (integers
//! big-endian, times in ms since the epoch). Altering a segment changes its digests; removing
//! one breaks the sequence; either changes every later link and the head, which the server
//! signed when the recording closed — whoever alters a file cannot recompute a signature
//! without the server's key. Pure functions: no I/O, no clock.
//!
//! An incomplete recording (a segment the blob store would not take, after the recorder's
//! retries) is never signed as a whole: its chain runs over the segments that were stored, and
//! its head is signed over [`incomplete_head_message`], which names every [`Gap`] (where the
//! footage is missing). A manifest of it carries `incomplete` and the gaps, so a verifier
//! reports them; dropping them from a manifest breaks both signatures.

use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sm3::Sm3;

const DOMAIN: &[u8] = b"shouhu-chain-v1";
const MANIFEST_DOMAIN: &[u8] = b"shouhu-manifest-v1";

/// SHA-256 and SM3 of some bytes.
pub fn digests(bytes: &[u8]) -> ([u8; 32], [u8; 32]) {
    (Sha256::digest(bytes).into(), Sm3::digest(bytes).into())
}

/// A segment as the chain covers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainedSegment {
    /// Position in the recording, from 0.
    pub seq: u32,
    /// SHA-256 of the segment file, hex.
    pub sha256: String,
    /// SM3 of the segment file, hex.
    pub sm3: String,
    /// Start, ms since the epoch (UTC).
    pub start_ms: i64,
    /// End, ms since the epoch (UTC).
    pub end_ms: i64,
    /// The chain link after this segment, hex.
    pub link: String,
}

/// The link before the first segment of a recording.
pub fn genesis(recording_id: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(DOMAIN);
    h.update(recording_id.as_bytes());
    h.finalize().into()
}

/// The link after a segment.
pub fn link(
    prev: &[u8; 32],
    seq: u32,
    sha256: &[u8; 32],
    sm3: &[u8; 32],
    start_ms: i64,
    end_ms: i64,
) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(DOMAIN);
    h.update(prev);
    h.update(seq.to_be_bytes());
    h.update(sha256);
    h.update(sm3);
    h.update(start_ms.to_be_bytes());
    h.update(end_ms.to_be_bytes());
    h.finalize().into()
}

/// The chain entry of segment `seq` whose file is `bytes`, after the link `prev`.
pub fn append(
    prev: &[u8; 32],
    seq: u32,
    bytes: &[u8],
    start_ms: i64,
    end_ms: i64,
) -> ChainedSegment {
    let (sha, sm3) = digests(bytes);
    ChainedSegment {
        seq,
        sha256: hex::encode(sha),
        sm3: hex::encode(sm3),
        start_ms,
        end_ms,
        link: hex::encode(link(prev, seq, &sha, &sm3, start_ms, end_ms)),
    }
}

impl ChainedSegment {
    /// The link after this segment.
    pub fn link_bytes(&self) -> Result<[u8; 32], EvidenceError> {
        hex32(&self.link, "link")
    }
}

/// What is wrong with a chain or a manifest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvidenceError {
    /// A segment is missing (a gap in the sequence numbers).
    #[error("segment {expected} is missing (the next one is {found})")]
    Missing {
        /// The sequence number expected.
        expected: u32,
        /// The one found.
        found: u32,
    },
    /// A segment's recorded link does not follow from the previous link and its digests.
    #[error("the chain breaks at segment {seq}: its digests or times do not match the link")]
    Broken {
        /// The segment.
        seq: u32,
    },
    /// A file's digest differs from the one recorded.
    #[error("{what}: the file's digest {actual} differs from the recorded {recorded}")]
    DigestMismatch {
        /// Which file.
        what: String,
        /// Recorded digest, hex.
        recorded: String,
        /// The file's, hex.
        actual: String,
    },
    /// The chain head is not the last segment's link.
    #[error("the chain head does not match the last segment")]
    Head,
    /// The signature does not verify with the trusted key.
    #[error("the signature does not verify with the server's public key")]
    Signature,
    /// A field that does not decode.
    #[error("malformed {0}")]
    Malformed(&'static str),
}

fn hex32(s: &str, what: &'static str) -> Result<[u8; 32], EvidenceError> {
    let v = hex::decode(s).map_err(|_| EvidenceError::Malformed(what))?;
    v.try_into().map_err(|_| EvidenceError::Malformed(what))
}

/// Check a chain of segments from the recording's genesis: consecutive sequence numbers from
/// `first_seq`, every link following from the one before. Returns the last link.
pub fn verify_chain(
    start: [u8; 32],
    first_seq: u32,
    segments: &[ChainedSegment],
) -> Result<[u8; 32], EvidenceError> {
    let mut prev = start;
    for (expected, s) in (first_seq..).zip(segments) {
        if s.seq != expected {
            return Err(EvidenceError::Missing {
                expected,
                found: s.seq,
            });
        }
        let next = link(
            &prev,
            s.seq,
            &hex32(&s.sha256, "sha256")?,
            &hex32(&s.sm3, "sm3")?,
            s.start_ms,
            s.end_ms,
        );
        if hex::encode(next) != s.link {
            return Err(EvidenceError::Broken { seq: s.seq });
        }
        prev = next;
    }
    Ok(prev)
}

/// The server's signing key (Ed25519, from a 32-byte seed in the configuration).
pub struct Signer {
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("public_key", &self.public_key_hex())
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// From a 32-byte seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Signer {
            pair: Ed25519KeyPair::from_seed_unchecked(seed).expect("any 32 bytes are a seed"),
        }
    }

    /// The public key, hex (what `shouhu verify` trusts).
    pub fn public_key_hex(&self) -> String {
        hex::encode(self.pair.public_key().as_ref())
    }

    /// Sign bytes.
    pub fn sign(&self, msg: &[u8]) -> String {
        hex::encode(self.pair.sign(msg).as_ref())
    }
}

/// Verify an Ed25519 signature (hex) of `msg` with a public key (hex).
pub fn verify_signature(
    public_key_hex: &str,
    msg: &[u8],
    sig_hex: &str,
) -> Result<(), EvidenceError> {
    let pk = hex::decode(public_key_hex).map_err(|_| EvidenceError::Malformed("public key"))?;
    let sig = hex::decode(sig_hex).map_err(|_| EvidenceError::Malformed("signature"))?;
    UnparsedPublicKey::new(&ED25519, pk)
        .verify(msg, &sig)
        .map_err(|_| EvidenceError::Signature)
}

/// A span of a recording without footage: a segment that could not be stored. The segments
/// indexed around it still form one chain (the gap takes no sequence number).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Gap {
    /// Segments indexed before the gap: it lies between segment `after_segments - 1` and
    /// segment `after_segments` (before segment 0 when 0).
    pub after_segments: u32,
    /// Start of the missing span, ms since the epoch (UTC).
    pub start_ms: i64,
    /// End of the missing span, ms since the epoch (UTC).
    pub end_ms: i64,
}

/// What the server signs when an incomplete recording closes: [`head_message`] followed by
/// `/incomplete/`, the number of gaps and each gap (segments before it, start, end; big-endian).
/// A signature over it never verifies as the signature of a complete recording.
pub fn incomplete_head_message(
    recording_id: &str,
    segments: u32,
    head: &[u8; 32],
    gaps: &[Gap],
) -> Vec<u8> {
    let mut m = head_message(recording_id, segments, head);
    m.extend_from_slice(b"/incomplete/");
    m.extend_from_slice(&(gaps.len() as u32).to_be_bytes());
    for g in gaps {
        m.extend_from_slice(&g.after_segments.to_be_bytes());
        m.extend_from_slice(&g.start_ms.to_be_bytes());
        m.extend_from_slice(&g.end_ms.to_be_bytes());
    }
    m
}

/// The message a closed recording's head is signed over: [`head_message`] when it has no gaps,
/// else [`incomplete_head_message`].
pub fn signed_head_message(
    recording_id: &str,
    segments: u32,
    head: &[u8; 32],
    gaps: &[Gap],
) -> Vec<u8> {
    if gaps.is_empty() {
        head_message(recording_id, segments, head)
    } else {
        incomplete_head_message(recording_id, segments, head, gaps)
    }
}

/// What the server signs when a complete recording closes: its id, segment count and chain head.
pub fn head_message(recording_id: &str, segments: u32, head: &[u8; 32]) -> Vec<u8> {
    let mut m = DOMAIN.to_vec();
    m.extend_from_slice(b"/head/");
    m.extend_from_slice(recording_id.as_bytes());
    m.push(0);
    m.extend_from_slice(&segments.to_be_bytes());
    m.extend_from_slice(head);
    m
}

/// The signed manifest of an export: the export's digests, the segments it was cut from with
/// their chain links, and the server's signature over all of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// `shouhu-manifest-v1`.
    pub format: String,
    /// The recording.
    pub recording_id: String,
    /// Exported range, ms since the epoch.
    pub from_ms: i64,
    /// Exported range end.
    pub to_ms: i64,
    /// SHA-256 of the exported file, hex.
    pub export_sha256: String,
    /// SM3 of the exported file, hex.
    pub export_sm3: String,
    /// Size of the exported file, bytes.
    pub export_bytes: u64,
    /// The link before the first listed segment, hex (the genesis when it is segment 0).
    pub chain_start: String,
    /// The segments the export was cut from, consecutive.
    pub segments: Vec<ChainedSegment>,
    /// The recording's chain head and segment count when it closed, and the server's
    /// signature over them ([`signed_head_message`]); absent while the recording is open.
    pub head: Option<SignedHead>,
    /// The recording is incomplete: footage is missing where `gaps` say (absent when complete).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub incomplete: bool,
    /// Every gap of the recording (not only the exported range's), in order; the head's
    /// signature covers them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gaps: Vec<Gap>,
    /// The server's public key, hex (informative: verification uses the trusted key).
    pub public_key: String,
    /// Signature over [`Manifest::signed_bytes`], hex.
    pub signature: String,
}

/// A closed recording's signed chain head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedHead {
    /// Segments in the recording.
    pub segments: u32,
    /// The last link, hex.
    pub head: String,
    /// Signature over [`signed_head_message`] (with the manifest's gaps), hex.
    pub signature: String,
}

impl Manifest {
    /// The bytes the signature covers: the manifest as JSON with an empty signature.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut m = self.clone();
        m.signature.clear();
        let mut out = MANIFEST_DOMAIN.to_vec();
        out.extend(serde_json::to_vec(&m).expect("a manifest serialises"));
        out
    }

    /// Sign with the server's key (sets `public_key` and `signature`).
    pub fn sign(mut self, signer: &Signer) -> Self {
        self.public_key = signer.public_key_hex();
        self.signature = signer.sign(&self.signed_bytes());
        self
    }

    /// Check the manifest and the exported file against it, trusting `public_key_hex`: the
    /// file's digests and size, the segments' chain, the head's signature when the recording
    /// was closed (and that the listed segments lead to it when they run to its end), and the
    /// manifest's own signature. An incomplete recording verifies (what is there is authentic):
    /// the caller reports [`Manifest::gaps`].
    pub fn verify(&self, file: &[u8], public_key_hex: &str) -> Result<(), EvidenceError> {
        if self.format != "shouhu-manifest-v1" {
            return Err(EvidenceError::Malformed("format"));
        }
        verify_signature(public_key_hex, &self.signed_bytes(), &self.signature)?;
        if self.incomplete == self.gaps.is_empty() {
            return Err(EvidenceError::Malformed("incomplete"));
        }
        let (sha, sm3) = digests(file);
        for (what, recorded, actual) in [
            ("export (SHA-256)", &self.export_sha256, hex::encode(sha)),
            ("export (SM3)", &self.export_sm3, hex::encode(sm3)),
        ] {
            if *recorded != actual {
                return Err(EvidenceError::DigestMismatch {
                    what: what.into(),
                    recorded: recorded.clone(),
                    actual,
                });
            }
        }
        if file.len() as u64 != self.export_bytes {
            return Err(EvidenceError::DigestMismatch {
                what: "export (size)".into(),
                recorded: self.export_bytes.to_string(),
                actual: file.len().to_string(),
            });
        }
        let first = self.segments.first().map(|s| s.seq).unwrap_or(0);
        let start = hex32(&self.chain_start, "chain_start")?;
        if first == 0 && start != genesis(&self.recording_id) {
            return Err(EvidenceError::Broken { seq: 0 });
        }
        let last = verify_chain(start, first, &self.segments)?;
        if let Some(h) = &self.head {
            let head = hex32(&h.head, "head")?;
            verify_signature(
                public_key_hex,
                &signed_head_message(&self.recording_id, h.segments, &head, &self.gaps),
                &h.signature,
            )?;
            let runs_to_end = self.segments.last().map(|s| s.seq + 1) == Some(h.segments);
            if runs_to_end && last != head {
                return Err(EvidenceError::Head);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain_of(id: &str, files: &[&[u8]]) -> Vec<ChainedSegment> {
        let mut prev = genesis(id);
        let mut out = Vec::new();
        for (i, f) in files.iter().enumerate() {
            let s = append(
                &prev,
                i as u32,
                f,
                i as i64 * 60_000,
                (i as i64 + 1) * 60_000,
            );
            prev = s.link_bytes().unwrap();
            out.push(s);
        }
        out
    }

    fn manifest(signer: &Signer, export: &[u8], segs: &[ChainedSegment]) -> Manifest {
        let (sha, sm3) = digests(export);
        let head = hex32(&segs.last().unwrap().link, "head").unwrap();
        Manifest {
            format: "shouhu-manifest-v1".into(),
            recording_id: "rec-1".into(),
            from_ms: 0,
            to_ms: 180_000,
            export_sha256: hex::encode(sha),
            export_sm3: hex::encode(sm3),
            export_bytes: export.len() as u64,
            chain_start: hex::encode(genesis("rec-1")),
            segments: segs.to_vec(),
            head: Some(SignedHead {
                segments: segs.len() as u32,
                head: hex::encode(head),
                signature: signer.sign(&head_message("rec-1", segs.len() as u32, &head)),
            }),
            incomplete: false,
            gaps: Vec::new(),
            public_key: String::new(),
            signature: String::new(),
        }
        .sign(signer)
    }

    #[test]
    fn the_chain_detects_a_changed_and_a_removed_segment() {
        let segs = chain_of("rec-1", &[b"one", b"two", b"three"]);
        assert!(verify_chain(genesis("rec-1"), 0, &segs).is_ok());
        // Altered: the file's digest differs from the recorded one, and a digest swapped in
        // the index no longer yields the link.
        let mut altered = segs.clone();
        altered[1].sha256 = hex::encode(digests(b"TWO").0);
        assert_eq!(
            verify_chain(genesis("rec-1"), 0, &altered),
            Err(EvidenceError::Broken { seq: 1 })
        );
        let mut removed = segs.clone();
        removed.remove(1);
        assert_eq!(
            verify_chain(genesis("rec-1"), 0, &removed),
            Err(EvidenceError::Missing {
                expected: 1,
                found: 2
            })
        );
        // Renumbering after a removal breaks the links instead.
        removed[1].seq = 1;
        assert_eq!(
            verify_chain(genesis("rec-1"), 0, &removed),
            Err(EvidenceError::Broken { seq: 1 })
        );
        // Another recording's genesis does not start this chain.
        assert!(verify_chain(genesis("rec-2"), 0, &segs).is_err());
    }

    #[test]
    fn a_manifest_verifies_and_any_change_fails() {
        let server = Signer::from_seed(&[7; 32]);
        let other = Signer::from_seed(&[8; 32]);
        let export = b"the exported mp4".to_vec();
        let segs = chain_of("rec-1", &[b"one", b"two", b"three"]);
        let m = manifest(&server, &export, &segs);
        let pk = server.public_key_hex();
        assert_eq!(m.verify(&export, &pk), Ok(()));

        // A changed export.
        let mut changed = export.clone();
        changed[0] ^= 1;
        assert!(matches!(
            m.verify(&changed, &pk),
            Err(EvidenceError::DigestMismatch { .. })
        ));
        // A changed manifest (a time moved), not re-signed.
        let mut edited = m.clone();
        edited.to_ms += 1;
        assert_eq!(edited.verify(&export, &pk), Err(EvidenceError::Signature));
        // The same edit re-signed with another key: the trusted key refuses it.
        let resigned = edited.clone().sign(&other);
        assert_eq!(resigned.verify(&export, &pk), Err(EvidenceError::Signature));
        // A manifest for a changed file, re-chained and re-signed by another key.
        let forged = manifest(&other, &changed, &segs);
        assert_eq!(forged.verify(&changed, &pk), Err(EvidenceError::Signature));
        // A head that does not match the segments, signed by the server.
        let mut wrong_head = m.clone();
        let bogus = [1u8; 32];
        wrong_head.head = Some(SignedHead {
            segments: 3,
            head: hex::encode(bogus),
            signature: server.sign(&head_message("rec-1", 3, &bogus)),
        });
        let wrong_head = wrong_head.sign(&server);
        assert_eq!(wrong_head.verify(&export, &pk), Err(EvidenceError::Head));
        // Garbage in the fields is an error, not a panic.
        let mut junk = m.clone();
        junk.chain_start = "zz".into();
        let junk = junk.sign(&server);
        assert_eq!(
            junk.verify(&export, &pk),
            Err(EvidenceError::Malformed("chain_start"))
        );
        assert!(m.verify(&export, "not hex").is_err());
    }

    /// An incomplete recording's manifest verifies with its gaps and says so; without them (or
    /// with the head signed as if complete) it does not.
    #[test]
    fn an_incomplete_recording_is_never_signed_as_whole() {
        let server = Signer::from_seed(&[7; 32]);
        let pk = server.public_key_hex();
        let export = b"the exported mp4".to_vec();
        let segs = chain_of("rec-1", &[b"one", b"two", b"three"]);
        let gaps = vec![Gap {
            after_segments: 2,
            start_ms: 120_000,
            end_ms: 150_000,
        }];
        let head = segs.last().unwrap().link_bytes().unwrap();
        let mut m = manifest(&server, &export, &segs);
        m.incomplete = true;
        m.gaps = gaps.clone();
        m.head = Some(SignedHead {
            segments: 3,
            head: hex::encode(head),
            signature: server.sign(&signed_head_message("rec-1", 3, &head, &gaps)),
        });
        let m = m.sign(&server);
        assert_eq!(m.verify(&export, &pk), Ok(()));
        assert!(m.incomplete);
        // The gaps dropped and the manifest re-signed (as a server bug or a forger with the key
        // of a manifest but not of the head would): the head's signature does not cover it.
        let mut whole = m.clone();
        whole.incomplete = false;
        whole.gaps.clear();
        let whole = whole.sign(&server);
        assert_eq!(whole.verify(&export, &pk), Err(EvidenceError::Signature));
        // Not re-signed: the manifest's own signature fails.
        let mut stripped = m.clone();
        stripped.gaps.clear();
        stripped.incomplete = false;
        assert_eq!(stripped.verify(&export, &pk), Err(EvidenceError::Signature));
        // A flag without gaps is malformed.
        let mut odd = m.clone();
        odd.gaps.clear();
        let odd = odd.sign(&server);
        assert_eq!(
            odd.verify(&export, &pk),
            Err(EvidenceError::Malformed("incomplete"))
        );
        // The messages differ, so no signature serves both.
        assert_ne!(
            head_message("rec-1", 3, &head),
            signed_head_message("rec-1", 3, &head, &gaps)
        );
        assert_eq!(
            head_message("rec-1", 3, &head),
            signed_head_message("rec-1", 3, &head, &[])
        );
    }
}
