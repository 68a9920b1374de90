//! `REGISTER` admission (GB/T 28181 §9.1): who may register, with which digest, for how long.
//!
//! A pure decision function: the caller passes the request, the device's secret as the registry
//! knows it, the nonce issuer and the clock; it gets back what to answer. The rules:
//!
//! * the device id (the `From` user) must be a 20-digit id and known to the registry, else `403`;
//! * no `Authorization` → `401` with one challenge per enabled algorithm (in configured order);
//! * a forged nonce or another realm → a fresh `401`; an old nonce → `401` with `stale=TRUE`.
//!   Nonces are stateless (an HMAC and an issue time, [`NonceIssuer`]): challenging stores
//!   nothing;
//! * a wrong response → `403` (the password is wrong: asking again would not help);
//! * a right response on a nonce whose use is not known yet → [`Admission::Spend`]: the caller
//!   records the nonce as used (its memory, or the shared table) and decides again with
//!   [`NonceState::Unused`] when it was the first use, [`NonceState::Used`] when not. A used
//!   nonce → `401 stale=TRUE`, so a captured `REGISTER` replayed later registers nothing. Only a
//!   request that knows the password costs a record;
//! * `Expires: 0` unregisters; below [`MIN_EXPIRES_SECS`] → `423` with `Min-Expires`; above
//!   `max_expires` the grant is shortened.

use super::is_device_id;
use crate::sip::digest::{self, Algorithm, Credentials, NonceCheck, NonceIssuer};
use crate::sip::Message;

/// Shortest registration accepted, seconds.
pub const MIN_EXPIRES_SECS: u32 = 60;

/// A device's secret as the registry holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Secret {
    /// Its own password's HA1 per algorithm (computed for this realm).
    Ha1 {
        /// `H(id:realm:password)` with MD5.
        md5: String,
        /// `H(id:realm:password)` with SHA-256.
        sha256: String,
    },
    /// A plain password (the shared default, `sip.password`).
    Password(String),
}

impl Secret {
    /// HA1s of a password.
    pub fn from_password(device_id: &str, realm: &str, password: &str) -> Secret {
        Secret::Ha1 {
            md5: digest::ha1(Algorithm::Md5, device_id, realm, password),
            sha256: digest::ha1(Algorithm::Sha256, device_id, realm, password),
        }
    }

    fn ha1(&self, alg: Algorithm, user: &str, realm: &str) -> String {
        match self {
            Secret::Ha1 { md5, .. } if alg == Algorithm::Md5 => md5.clone(),
            Secret::Ha1 { sha256, .. } => sha256.clone(),
            Secret::Password(p) => digest::ha1(alg, user, realm, p),
        }
    }
}

/// One `WWW-Authenticate` challenge and the nonce it issues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The header value.
    pub header: String,
    /// The nonce in it.
    pub nonce: String,
}

/// The nonce an `Authorization` header of a request answers, when it can be read.
pub fn credentials_nonce(req: &Message) -> Option<String> {
    let c = Credentials::parse(req.header("Authorization")?).ok()?;
    Some(c.nonce)
}

/// What the caller knows about the use of the nonce a `REGISTER` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceState {
    /// Not looked at yet: a right answer comes back as [`Admission::Spend`].
    Unknown,
    /// This request has just spent it: the first use.
    Unused,
    /// Spent before (a replay, a retransmission after the answer was forgotten, a refresh
    /// reusing the nonce).
    Used,
}

/// The decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// The digest is right: record `nonce` as used until `expires_at_secs` (UTC s; later it is
    /// stale anyway), then decide again with [`NonceState::Unused`] or [`NonceState::Used`].
    Spend {
        /// The nonce answered.
        nonce: String,
        /// When the nonce stops being good, UTC s.
        expires_at_secs: u64,
    },
    /// Challenge: `401` with these `WWW-Authenticate` values.
    Challenge(Vec<Challenge>),
    /// Refuse with this status and reason (`400`, `403`).
    Refuse(u16, String),
    /// `423 Interval Too Brief`.
    TooBrief,
    /// Registered for this many seconds.
    Register {
        /// Granted lifetime.
        expires_secs: u32,
    },
    /// `Expires: 0`.
    Unregister,
}

/// Registrar settings the decision needs.
#[derive(Debug, Clone)]
pub struct RegisterPolicy<'a> {
    /// Realm (the SIP domain, 10 digits).
    pub realm: &'a str,
    /// Algorithms challenged, in order.
    pub algorithms: &'a [Algorithm],
    /// Longest lifetime granted.
    pub max_expires_secs: u32,
}

/// Decide on a `REGISTER`. `secret` is `None` when the registry does not know the device;
/// `nonce` says what the caller knows of the use of the nonce the request answers (see
/// [`NonceState`]).
pub fn admit(
    req: &Message,
    secret: Option<&Secret>,
    nonce: NonceState,
    policy: &RegisterPolicy<'_>,
    nonces: &NonceIssuer,
    now_secs: u64,
) -> Admission {
    let Some(device_id) = req.from().and_then(|f| f.uri.user) else {
        return Admission::Refuse(400, "From has no user part".into());
    };
    if !is_device_id(&device_id) {
        return Admission::Refuse(403, format!("{device_id:?} is not a 20-digit device id"));
    }
    let Some(secret) = secret else {
        return Admission::Refuse(403, "device is not registered on this platform".into());
    };
    let challenge = |stale: bool| {
        Admission::Challenge(
            policy
                .algorithms
                .iter()
                .map(|a| {
                    let nonce = nonces.issue(now_secs, policy.realm);
                    Challenge {
                        header: digest::challenge_header(&nonce, policy.realm, *a, stale),
                        nonce,
                    }
                })
                .collect(),
        )
    };
    let Some(auth) = req.header("Authorization") else {
        return challenge(false);
    };
    let creds = match Credentials::parse(auth) {
        Ok(c) => c,
        Err(e) => return Admission::Refuse(400, e.to_string()),
    };
    if creds.username != device_id {
        return Admission::Refuse(
            403,
            format!("digest username {:?} is not the device id", creds.username),
        );
    }
    let alg = match creds.algorithm() {
        Ok(a) if policy.algorithms.contains(&a) => a,
        _ => return challenge(false),
    };
    if creds.realm != policy.realm {
        return challenge(false);
    }
    match nonces.check(&creds.nonce, now_secs, policy.realm) {
        NonceCheck::Stale => return challenge(true),
        NonceCheck::Forged => return challenge(false),
        NonceCheck::Fresh => {}
    }
    let ha1 = secret.ha1(alg, &device_id, policy.realm);
    if !digest::verify(&creds, alg, &ha1, "REGISTER") {
        return Admission::Refuse(403, "wrong password".into());
    }
    let expires = req.expires();
    if expires.is_some_and(|e| e != 0 && e < MIN_EXPIRES_SECS) {
        // Changes nothing: the nonce need not be spent.
        return Admission::TooBrief;
    }
    match nonce {
        NonceState::Unknown => {
            return Admission::Spend {
                expires_at_secs: nonces
                    .expires_at_secs(&creds.nonce)
                    .unwrap_or(now_secs + nonces.lifetime_secs)
                    .saturating_add(1),
                nonce: creds.nonce,
            }
        }
        NonceState::Used => return challenge(true),
        NonceState::Unused => {}
    }
    match expires {
        Some(0) => Admission::Unregister,
        e => Admission::Register {
            expires_secs: e.unwrap_or(3600).min(policy.max_expires_secs),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::parse_datagram;

    const ID: &str = "34020000001320000001";
    const REALM: &str = "3402000000";

    fn register(auth: Option<&str>, expires: u32) -> Message {
        let mut s = format!(
            "REGISTER sip:34020000002000000001@{REALM} SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bK1\r\n\
             From: <sip:{ID}@{REALM}>;tag=1\r\nTo: <sip:{ID}@{REALM}>\r\nCall-ID: c1\r\nCSeq: 2 REGISTER\r\n\
             Contact: <sip:{ID}@10.0.0.9:5060>\r\nExpires: {expires}\r\n"
        );
        if let Some(a) = auth {
            s.push_str(&format!("Authorization: {a}\r\n"));
        }
        s.push_str("Content-Length: 0\r\n\r\n");
        parse_datagram(s.as_bytes()).unwrap()
    }

    fn answer(challenge: &str, password: &str, alg: Algorithm, nc: &str) -> String {
        let params = digest::parse_params(challenge.strip_prefix("Digest ").unwrap()).unwrap();
        let nonce = &params.iter().find(|(k, _)| k == "nonce").unwrap().1;
        let mut c = Credentials {
            username: ID.into(),
            realm: REALM.into(),
            nonce: nonce.clone(),
            uri: format!("sip:34020000002000000001@{REALM}"),
            qop: Some("auth".into()),
            nc: Some(nc.into()),
            cnonce: Some("0a4f113b".into()),
            ..Default::default()
        };
        c.response =
            digest::expected_response(&c, alg, &digest::ha1(alg, ID, REALM, password), "REGISTER");
        format!(
            "Digest username=\"{ID}\", realm=\"{REALM}\", nonce=\"{}\", uri=\"{}\", response=\"{}\", algorithm={}, qop=auth, nc={nc}, cnonce=\"0a4f113b\"",
            c.nonce, c.uri, c.response, alg.token()
        )
    }

    #[test]
    fn challenge_then_register_then_replay() {
        let n = NonceIssuer::new([1; 32], 300);
        let policy = RegisterPolicy {
            realm: REALM,
            algorithms: &[Algorithm::Sha256, Algorithm::Md5],
            max_expires_secs: 7200,
        };
        let secret = Secret::from_password(ID, REALM, "12345678");
        let Admission::Challenge(ch) = admit(
            &register(None, 3600),
            Some(&secret),
            NonceState::Used,
            &policy,
            &n,
            100,
        ) else {
            panic!()
        };
        assert_eq!(ch.len(), 2);
        assert!(ch[0].header.contains("SHA-256") && ch[1].header.contains("MD5"));
        assert_ne!(ch[0].nonce, ch[1].nonce);
        assert!(ch[0].header.contains(&ch[0].nonce));
        for (i, alg) in [(0, Algorithm::Sha256), (1, Algorithm::Md5)] {
            let auth = answer(&ch[i].header, "12345678", alg, "00000001");
            let got = admit(
                &register(Some(&auth), 86400),
                Some(&secret),
                NonceState::Unused,
                &policy,
                &n,
                101,
            );
            assert_eq!(got, Admission::Register { expires_secs: 7200 });
            // Not knowing the nonce's use yet: the right answer asks for it to be spent, good
            // until the nonce's own expiry (issued at 100, 300 s).
            let spend = admit(
                &register(Some(&auth), 86400),
                Some(&secret),
                NonceState::Unknown,
                &policy,
                &n,
                101,
            );
            let nonce = ch[i].nonce.clone();
            assert_eq!(
                spend,
                Admission::Spend {
                    nonce,
                    expires_at_secs: 401
                }
            );
            // The same nonce again (a replay, or the next nc of a refresh) is stale: nonces are
            // single-use.
            for nc in ["00000001", "00000002"] {
                let again = answer(&ch[i].header, "12345678", alg, nc);
                assert!(matches!(
                    admit(&register(Some(&again), 3600), Some(&secret), NonceState::Used, &policy, &n, 102),
                    Admission::Challenge(c) if c[0].header.contains("stale=TRUE")
                ));
            }
            let bye = answer(&ch[i].header, "12345678", alg, "00000002");
            assert_eq!(
                admit(
                    &register(Some(&bye), 0),
                    Some(&secret),
                    NonceState::Unused,
                    &policy,
                    &n,
                    102
                ),
                Admission::Unregister
            );
        }
        let wrong = answer(&ch[1].header, "nope", Algorithm::Md5, "00000001");
        assert_eq!(
            admit(
                &register(Some(&wrong), 3600),
                Some(&secret),
                NonceState::Unused,
                &policy,
                &n,
                101
            ),
            Admission::Refuse(403, "wrong password".into())
        );
        // A wrong password costs no record: refused before the nonce's use is asked.
        assert_eq!(
            admit(
                &register(Some(&wrong), 3600),
                Some(&secret),
                NonceState::Unknown,
                &policy,
                &n,
                101
            ),
            Admission::Refuse(403, "wrong password".into())
        );
        // Too old a nonce is stale, not wrong, even when unused.
        let auth = answer(&ch[1].header, "12345678", Algorithm::Md5, "00000001");
        assert!(matches!(
            admit(&register(Some(&auth), 3600), Some(&secret), NonceState::Unused, &policy, &n, 1000),
            Admission::Challenge(c) if c[0].header.contains("stale=TRUE")
        ));
        assert_eq!(
            admit(
                &register(Some(&auth), 30),
                Some(&secret),
                NonceState::Unused,
                &policy,
                &n,
                101
            ),
            Admission::TooBrief
        );
        // A nonce that is not ours and that the store does not vouch for: a fresh challenge.
        let other = NonceIssuer::new([2; 32], 300);
        let forged = answer(
            &other.challenge(100, REALM, Algorithm::Md5, false),
            "12345678",
            Algorithm::Md5,
            "00000001",
        );
        assert!(matches!(
            admit(&register(Some(&forged), 3600), Some(&secret), NonceState::Used, &policy, &n, 101),
            Admission::Challenge(c) if !c[0].header.contains("stale")
        ));
        // The shared password works the same way.
        let shared = Secret::Password("12345678".into());
        assert!(matches!(
            admit(
                &register(Some(&auth), 3600),
                Some(&shared),
                NonceState::Unused,
                &policy,
                &n,
                101
            ),
            Admission::Register { .. }
        ));
    }

    #[test]
    fn unknown_and_bad_ids() {
        let n = NonceIssuer::new([1; 32], 300);
        let policy = RegisterPolicy {
            realm: REALM,
            algorithms: &[Algorithm::Md5],
            max_expires_secs: 7200,
        };
        assert!(matches!(
            admit(
                &register(None, 3600),
                None,
                NonceState::Used,
                &policy,
                &n,
                1
            ),
            Admission::Refuse(403, _)
        ));
        let m = parse_datagram(
            register(None, 3600)
                .to_bytes()
                .iter()
                .map(|b| *b as char)
                .collect::<String>()
                .replace(&format!("From: <sip:{ID}"), "From: <sip:12ab")
                .as_bytes(),
        )
        .unwrap();
        let secret = Secret::Password("x".into());
        assert!(
            matches!(admit(&m, Some(&secret), NonceState::Used, &policy, &n, 1), Admission::Refuse(403, r) if r.contains("20-digit"))
        );
        let m = register(Some("Digest username=\"x"), 3600);
        assert!(matches!(
            admit(&m, Some(&secret), NonceState::Used, &policy, &n, 1),
            Admission::Refuse(400, _)
        ));
    }
}
