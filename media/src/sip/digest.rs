//! HTTP digest authentication for SIP (RFC 3261 §22.4, RFC 2617, RFC 7616 / RFC 8760 for
//! SHA-256), sans-IO and clock-free.
//!
//! * [`Credentials::parse`] reads an `Authorization: Digest …` header.
//! * [`NonceIssuer`] makes stateless nonces: the issue time in seconds and an HMAC-SHA-256 over it
//!   and the realm, so any node with the secret can check a nonce's origin and age without a
//!   table. Replay of a whole request inside the nonce lifetime is stopped by the caller, which
//!   lets each nonce be used once (the platform's memory, or the shared database table).
//! * [`verify`] recomputes the response from the password (or a stored HA1). The `uri` hashed is
//!   the one the header carries, not the Request-URI: SIPp and some devices put the remote target
//!   there.

use hmac::{Hmac, Mac};
use md5::Md5;
use sha2::{Digest as _, Sha256};

/// Digest algorithms supported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// `MD5` (what nearly every GB/T 28181 device speaks).
    Md5,
    /// `SHA-256` (RFC 8760).
    Sha256,
}

impl Algorithm {
    /// The token in headers.
    pub fn token(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    /// Parse the header token (case-insensitive); `None` for unsupported algorithms.
    pub fn from_token(t: &str) -> Option<Self> {
        if t.eq_ignore_ascii_case("MD5") {
            Some(Algorithm::Md5)
        } else if t.eq_ignore_ascii_case("SHA-256") {
            Some(Algorithm::Sha256)
        } else {
            None
        }
    }

    /// Lower-case hex digest of `data`.
    pub fn hex(self, data: &str) -> String {
        match self {
            Algorithm::Md5 => hex::encode(Md5::digest(data.as_bytes())),
            Algorithm::Sha256 => hex::encode(Sha256::digest(data.as_bytes())),
        }
    }
}

/// Parsed `Authorization: Digest` parameters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Credentials {
    /// `username`
    pub username: String,
    /// `realm`
    pub realm: String,
    /// `nonce`
    pub nonce: String,
    /// `uri` as the client hashed it.
    pub uri: String,
    /// `response`
    pub response: String,
    /// `algorithm` (absent means MD5).
    pub algorithm: Option<String>,
    /// `qop` (`auth` when present).
    pub qop: Option<String>,
    /// `nc`, hex.
    pub nc: Option<String>,
    /// `cnonce`
    pub cnonce: Option<String>,
    /// `opaque`
    pub opaque: Option<String>,
}

/// Why an `Authorization` header is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// Not `Digest …`.
    #[error("authorization scheme is not Digest")]
    NotDigest,
    /// A parameter is missing.
    #[error("digest parameter {0} is missing")]
    Missing(&'static str),
    /// A parameter is malformed.
    #[error("digest parameters cannot be read: {0}")]
    Syntax(String),
    /// Algorithm not supported or not enabled.
    #[error("digest algorithm {0} is not accepted")]
    Algorithm(String),
    /// `qop` other than `auth`.
    #[error("digest qop {0} is not supported")]
    Qop(String),
}

/// Split `k=v, k="v", …` into pairs; keys lower-cased, quoted values unescaped.
pub fn parse_params(s: &str) -> Result<Vec<(String, String)>, DigestError> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    loop {
        while i < b.len() && (b[i] == b',' || b[i].is_ascii_whitespace()) {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let ks = i;
        while i < b.len() && b[i] != b'=' && b[i] != b',' && !b[i].is_ascii_whitespace() {
            i += 1;
        }
        let key = s[ks..i].to_ascii_lowercase();
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= b.len() || b[i] != b'=' {
            return Err(DigestError::Syntax(format!(
                "parameter {key:?} has no value"
            )));
        }
        i += 1;
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let value = if i < b.len() && b[i] == b'"' {
            i += 1;
            let mut v = String::new();
            let mut closed = false;
            while i < b.len() {
                match b[i] {
                    b'\\' if i + 1 < b.len() => {
                        let ch = s[i + 1..].chars().next().unwrap_or('\\');
                        v.push(ch);
                        i += 1 + ch.len_utf8();
                    }
                    b'"' => {
                        closed = true;
                        i += 1;
                        break;
                    }
                    _ => {
                        let ch = s[i..].chars().next().unwrap_or('?');
                        v.push(ch);
                        i += ch.len_utf8();
                    }
                }
            }
            if !closed {
                return Err(DigestError::Syntax(format!(
                    "parameter {key:?} has an unclosed quote"
                )));
            }
            v
        } else {
            let vs = i;
            while i < b.len() && b[i] != b',' {
                i += 1;
            }
            s[vs..i].trim().to_string()
        };
        if key.is_empty() {
            return Err(DigestError::Syntax("empty parameter name".into()));
        }
        out.push((key, value));
    }
    Ok(out)
}

impl Credentials {
    /// Parse the value of an `Authorization` header.
    pub fn parse(header: &str) -> Result<Credentials, DigestError> {
        let h = header.trim();
        let (scheme, rest) = h.split_once(char::is_whitespace).unwrap_or((h, ""));
        if !scheme.eq_ignore_ascii_case("Digest") {
            return Err(DigestError::NotDigest);
        }
        let mut c = Credentials::default();
        for (k, v) in parse_params(rest)? {
            match k.as_str() {
                "username" => c.username = v,
                "realm" => c.realm = v,
                "nonce" => c.nonce = v,
                "uri" => c.uri = v,
                "response" => c.response = v,
                "algorithm" => c.algorithm = Some(v),
                "qop" => c.qop = Some(v),
                "nc" => c.nc = Some(v),
                "cnonce" => c.cnonce = Some(v),
                "opaque" => c.opaque = Some(v),
                _ => {}
            }
        }
        for (name, v) in [
            ("username", &c.username),
            ("realm", &c.realm),
            ("nonce", &c.nonce),
            ("uri", &c.uri),
            ("response", &c.response),
        ] {
            if v.is_empty() {
                return Err(DigestError::Missing(name));
            }
        }
        if let Some(q) = &c.qop {
            if !q.eq_ignore_ascii_case("auth") {
                return Err(DigestError::Qop(q.clone()));
            }
            if c.nc.is_none() {
                return Err(DigestError::Missing("nc"));
            }
            if c.cnonce.is_none() {
                return Err(DigestError::Missing("cnonce"));
            }
        }
        Ok(c)
    }

    /// The algorithm the client used (absent = MD5); `Err` when not supported.
    pub fn algorithm(&self) -> Result<Algorithm, DigestError> {
        match &self.algorithm {
            None => Ok(Algorithm::Md5),
            Some(t) => Algorithm::from_token(t).ok_or_else(|| DigestError::Algorithm(t.clone())),
        }
    }

    /// `nc` as a number (0 when absent or unreadable).
    pub fn nc_value(&self) -> u32 {
        self.nc
            .as_deref()
            .and_then(|n| u32::from_str_radix(n, 16).ok())
            .unwrap_or(0)
    }
}

/// `H(username:realm:password)`.
pub fn ha1(alg: Algorithm, username: &str, realm: &str, password: &str) -> String {
    alg.hex(&format!("{username}:{realm}:{password}"))
}

/// The response the client should have sent, from HA1.
pub fn expected_response(c: &Credentials, alg: Algorithm, ha1: &str, method: &str) -> String {
    let ha2 = alg.hex(&format!("{method}:{}", c.uri));
    match &c.qop {
        Some(qop) => alg.hex(&format!(
            "{ha1}:{}:{}:{}:{qop}:{ha2}",
            c.nonce,
            c.nc.as_deref().unwrap_or(""),
            c.cnonce.as_deref().unwrap_or("")
        )),
        None => alg.hex(&format!("{ha1}:{}:{ha2}", c.nonce)),
    }
}

/// Whether the credentials prove knowledge of the password (constant-time comparison).
pub fn verify(c: &Credentials, alg: Algorithm, ha1: &str, method: &str) -> bool {
    let want = expected_response(c, alg, ha1, method);
    let got = c.response.to_ascii_lowercase();
    want.len() == got.len()
        && want
            .bytes()
            .zip(got.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// Issues and checks stateless nonces: `ts(16 hex) salt(8 hex) mac(24 hex)`; the salt is a
/// counter, so no two nonces of one issuer are alike even within one second.
pub struct NonceIssuer {
    secret: [u8; 32],
    /// How long a nonce is good for, seconds.
    pub lifetime_secs: u64,
    counter: std::sync::atomic::AtomicU32,
}

impl Clone for NonceIssuer {
    fn clone(&self) -> Self {
        Self {
            secret: self.secret,
            lifetime_secs: self.lifetime_secs,
            counter: std::sync::atomic::AtomicU32::new(
                self.counter.load(std::sync::atomic::Ordering::Relaxed),
            ),
        }
    }
}

impl std::fmt::Debug for NonceIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NonceIssuer")
            .field("secret", &"[redacted]")
            .field("lifetime_secs", &self.lifetime_secs)
            .finish()
    }
}

/// What a nonce check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceCheck {
    /// Ours and fresh.
    Fresh,
    /// Ours but too old: challenge again with `stale=true`.
    Stale,
    /// Not ours.
    Forged,
}

impl NonceIssuer {
    /// An issuer with a secret (random per process unless the cluster shares one).
    pub fn new(secret: [u8; 32], lifetime_secs: u64) -> Self {
        Self {
            secret,
            lifetime_secs,
            counter: std::sync::atomic::AtomicU32::new(0),
        }
    }

    fn mac(&self, head: &str, realm: &str) -> String {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.secret).expect("any key length");
        m.update(head.as_bytes());
        m.update(b":");
        m.update(realm.as_bytes());
        hex::encode(&m.finalize().into_bytes()[..12])
    }

    /// A fresh nonce issued at `now_secs`.
    pub fn issue(&self, now_secs: u64, realm: &str) -> String {
        let salt = self
            .counter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let head = format!("{now_secs:016x}{salt:08x}");
        let mac = self.mac(&head, realm);
        head + &mac
    }

    /// Check a nonce's origin and age.
    pub fn check(&self, nonce: &str, now_secs: u64, realm: &str) -> NonceCheck {
        if nonce.len() != 48 || !nonce.is_char_boundary(24) || !nonce.is_ascii() {
            return NonceCheck::Forged;
        }
        let Ok(ts) = u64::from_str_radix(&nonce[..16], 16) else {
            return NonceCheck::Forged;
        };
        let mac = self.mac(&nonce[..24], realm);
        let ok = mac
            .bytes()
            .zip(nonce[24..].bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
        if !ok {
            return NonceCheck::Forged;
        }
        if ts > now_secs + 5 || now_secs - ts.min(now_secs) > self.lifetime_secs {
            NonceCheck::Stale
        } else {
            NonceCheck::Fresh
        }
    }

    /// When a nonce of this issuer stops being good (UTC s): its issue time plus the lifetime.
    /// `None` when the nonce is not shaped like ours (check it with [`NonceIssuer::check`]).
    pub fn expires_at_secs(&self, nonce: &str) -> Option<u64> {
        let ts = u64::from_str_radix(nonce.get(..16)?, 16).ok()?;
        ts.checked_add(self.lifetime_secs)
    }

    /// A `WWW-Authenticate` value with a fresh nonce.
    pub fn challenge(&self, now_secs: u64, realm: &str, alg: Algorithm, stale: bool) -> String {
        challenge_header(&self.issue(now_secs, realm), realm, alg, stale)
    }
}

/// The `WWW-Authenticate` value challenging with `nonce`.
pub fn challenge_header(nonce: &str, realm: &str, alg: Algorithm, stale: bool) -> String {
    let mut s = format!(
        "Digest realm=\"{realm}\", nonce=\"{nonce}\", algorithm={}, qop=\"auth\"",
        alg.token()
    );
    if stale {
        s.push_str(", stale=TRUE");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 2617 §3.5's worked example.
    #[test]
    fn rfc2617_example() {
        let c = Credentials::parse(
            "Digest username=\"Mufasa\", realm=\"testrealm@host.com\", \
             nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", uri=\"/dir/index.html\", qop=auth, \
             nc=00000001, cnonce=\"0a4f113b\", response=\"6629fae49393a05397450978507c4ef1\", \
             opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
        )
        .unwrap();
        let h = ha1(
            Algorithm::Md5,
            "Mufasa",
            "testrealm@host.com",
            "Circle Of Life",
        );
        assert!(verify(&c, Algorithm::Md5, &h, "GET"));
        assert!(!verify(&c, Algorithm::Md5, &h, "POST"));
        assert_eq!(c.nc_value(), 1);
    }

    /// RFC 7616 §3.9.1's SHA-256 example.
    #[test]
    fn rfc7616_sha256_example() {
        let c = Credentials::parse(
            "Digest username=\"Mufasa\", realm=\"http-auth@example.org\", uri=\"/dir/index.html\", \
             algorithm=SHA-256, nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", nc=00000001, \
             cnonce=\"f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ\", qop=auth, \
             response=\"753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1\", \
             opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"",
        )
        .unwrap();
        let alg = c.algorithm().unwrap();
        assert_eq!(alg, Algorithm::Sha256);
        let h = ha1(alg, "Mufasa", "http-auth@example.org", "Circle of Life");
        assert!(verify(&c, alg, &h, "GET"));
    }

    #[test]
    fn gb_style_without_qop() {
        // Hikvision-style: no qop, algorithm token, uri is the platform's SIP URI.
        let realm = "3402000000";
        let h = ha1(Algorithm::Md5, "34020000001320000001", realm, "12345678");
        let mut c = Credentials {
            username: "34020000001320000001".into(),
            realm: realm.into(),
            nonce: "abc".into(),
            uri: "sip:34020000002000000001@3402000000".into(),
            algorithm: Some("MD5".into()),
            ..Default::default()
        };
        c.response = expected_response(&c, Algorithm::Md5, &h, "REGISTER");
        let header = format!(
            "Digest username=\"{}\",realm=\"{realm}\",nonce=\"abc\",uri=\"{}\",response=\"{}\",algorithm=MD5",
            c.username, c.uri, c.response.to_uppercase()
        );
        let parsed = Credentials::parse(&header).unwrap();
        assert!(verify(&parsed, Algorithm::Md5, &h, "REGISTER"));
        let wrong = ha1(Algorithm::Md5, "34020000001320000001", realm, "bad");
        assert!(!verify(&parsed, Algorithm::Md5, &wrong, "REGISTER"));
    }

    #[test]
    fn malformed_headers() {
        assert_eq!(Credentials::parse("Basic abc"), Err(DigestError::NotDigest));
        assert_eq!(
            Credentials::parse("Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"u\""),
            Err(DigestError::Missing("response"))
        );
        assert!(matches!(
            Credentials::parse("Digest username=\"a"),
            Err(DigestError::Syntax(_))
        ));
        assert!(matches!(
            Credentials::parse("Digest username"),
            Err(DigestError::Syntax(_))
        ));
        let c = Credentials::parse(
            "Digest username=\"a\",realm=\"r\",nonce=\"n\",uri=\"u\",response=\"x\",qop=auth-int,nc=1,cnonce=\"c\"",
        );
        assert_eq!(c, Err(DigestError::Qop("auth-int".into())));
        let c = Credentials::parse(
            "Digest username=\"a\\\"b\",realm=\"r\",nonce=\"n\",uri=\"u\",response=\"x\",algorithm=SHA-512",
        )
        .unwrap();
        assert_eq!(c.username, "a\"b");
        assert!(c.algorithm().is_err());
    }

    #[test]
    fn nonces() {
        let n = NonceIssuer::new([7; 32], 300);
        let nonce = n.issue(1_000, "r");
        assert_ne!(
            nonce,
            n.issue(1_000, "r"),
            "nonces are unique within a second"
        );
        assert_eq!(n.check(&nonce, 1_100, "r"), NonceCheck::Fresh);
        assert_eq!(n.check(&nonce, 1_301, "r"), NonceCheck::Stale);
        assert_eq!(n.check(&nonce, 1_100, "other"), NonceCheck::Forged);
        let mut forged = nonce.clone();
        forged.replace_range(47.., "0");
        if forged == nonce {
            forged.replace_range(47.., "1");
        }
        assert_eq!(n.check(&forged, 1_100, "r"), NonceCheck::Forged);
        assert_eq!(n.check("short", 1_100, "r"), NonceCheck::Forged);
        assert_eq!(
            n.check("é".repeat(24).as_str(), 1_100, "r"),
            NonceCheck::Forged
        );
        let other = NonceIssuer::new([8; 32], 300);
        assert_eq!(other.check(&nonce, 1_100, "r"), NonceCheck::Forged);
        assert!(n
            .challenge(1_000, "r", Algorithm::Sha256, true)
            .contains("algorithm=SHA-256"));
    }
}
