//! `REGISTER` admission (GB/T 28181 §9.1): who may register, with which digest, for how long.
//!
//! A pure decision function: the caller passes the request, the device's secret as the registry
//! knows it, the nonce issuer and the clock; it gets back what to answer. The rules:
//!
//! * the device id (the `From` user) must be a 20-digit id and known to the registry, else `403`;
//! * no `Authorization` → `401` with one challenge per enabled algorithm (in configured order);
//! * a forged nonce or another realm → a fresh `401`; an old nonce or a replayed `nc` → `401`
//!   with `stale=TRUE`;
//! * a wrong response → `403` (the password is wrong: asking again would not help);
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

/// The decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Challenge: `401` with these `WWW-Authenticate` values.
    Challenge(Vec<String>),
    /// Refuse with this status and reason (`400`, `403`).
    Refuse(u16, String),
    /// `423 Interval Too Brief`.
    TooBrief,
    /// Registered for this many seconds (the nonce and nc used, for replay checks).
    Register {
        /// Granted lifetime.
        expires_secs: u32,
        /// Nonce the device used.
        nonce: String,
        /// Its nonce count.
        nc: u32,
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
/// `last_nonce` is the `(nonce, nc)` of the device's last accepted registration.
pub fn admit(
    req: &Message,
    secret: Option<&Secret>,
    last_nonce: Option<&(String, u32)>,
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
                .map(|a| nonces.challenge(now_secs, policy.realm, *a, stale))
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
        NonceCheck::Forged => return challenge(false),
        NonceCheck::Stale => return challenge(true),
        NonceCheck::Fresh => {}
    }
    let nc = creds.nc_value();
    if let Some((last, last_nc)) = last_nonce {
        if *last == creds.nonce && (creds.qop.is_none() || nc <= *last_nc) {
            return challenge(true);
        }
    }
    let ha1 = secret.ha1(alg, &device_id, policy.realm);
    if !digest::verify(&creds, alg, &ha1, "REGISTER") {
        return Admission::Refuse(403, "wrong password".into());
    }
    match req.expires() {
        Some(0) => Admission::Unregister,
        Some(e) if e < MIN_EXPIRES_SECS => Admission::TooBrief,
        e => Admission::Register {
            expires_secs: e.unwrap_or(3600).min(policy.max_expires_secs),
            nonce: creds.nonce,
            nc,
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
        let Admission::Challenge(ch) =
            admit(&register(None, 3600), Some(&secret), None, &policy, &n, 100)
        else {
            panic!()
        };
        assert_eq!(ch.len(), 2);
        assert!(ch[0].contains("SHA-256") && ch[1].contains("MD5"));
        for (i, alg) in [(0, Algorithm::Sha256), (1, Algorithm::Md5)] {
            let auth = answer(&ch[i], "12345678", alg, "00000001");
            let got = admit(
                &register(Some(&auth), 86400),
                Some(&secret),
                None,
                &policy,
                &n,
                101,
            );
            let Admission::Register {
                expires_secs,
                nonce,
                nc,
            } = got
            else {
                panic!("{got:?}")
            };
            assert_eq!((expires_secs, nc), (7200, 1));
            // The same nonce and nc again is a replay.
            let last = (nonce, nc);
            assert!(matches!(
                admit(&register(Some(&auth), 3600), Some(&secret), Some(&last), &policy, &n, 102),
                Admission::Challenge(c) if c[0].contains("stale=TRUE")
            ));
            let next = answer(&ch[i], "12345678", alg, "00000002");
            assert!(matches!(
                admit(
                    &register(Some(&next), 0),
                    Some(&secret),
                    Some(&last),
                    &policy,
                    &n,
                    102
                ),
                Admission::Unregister
            ));
        }
        let wrong = answer(&ch[1], "nope", Algorithm::Md5, "00000001");
        assert_eq!(
            admit(
                &register(Some(&wrong), 3600),
                Some(&secret),
                None,
                &policy,
                &n,
                101
            ),
            Admission::Refuse(403, "wrong password".into())
        );
        // Too old a nonce is stale, not wrong.
        let auth = answer(&ch[1], "12345678", Algorithm::Md5, "00000001");
        assert!(matches!(
            admit(&register(Some(&auth), 3600), Some(&secret), None, &policy, &n, 1000),
            Admission::Challenge(c) if c[0].contains("stale=TRUE")
        ));
        assert_eq!(
            admit(
                &register(Some(&auth), 30),
                Some(&secret),
                None,
                &policy,
                &n,
                101
            ),
            Admission::TooBrief
        );
        // The shared password works the same way.
        let shared = Secret::Password("12345678".into());
        assert!(matches!(
            admit(
                &register(Some(&auth), 3600),
                Some(&shared),
                None,
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
            admit(&register(None, 3600), None, None, &policy, &n, 1),
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
            matches!(admit(&m, Some(&secret), None, &policy, &n, 1), Admission::Refuse(403, r) if r.contains("20-digit"))
        );
        let m = register(Some("Digest username=\"x"), 3600);
        assert!(matches!(
            admit(&m, Some(&secret), None, &policy, &n, 1),
            Admission::Refuse(400, _)
        ));
    }
}
