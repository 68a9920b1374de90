//! Authentication: sessions, the [`Caller`] extractor, signed media tokens.
//!
//! A client authenticates with the bearer token from login (`Authorization: Bearer …`) or the
//! HttpOnly cookie `shouhu_session` that login also sets (so WebSockets, images and video URLs
//! work from a page). Media URLs may instead carry `?media_token=…`, an HMAC-signed token that
//! opens one thing, for a while, for reading: [`MediaGrant`] names one recording, one playlist's
//! segments or one live channel; only `GET` and `HEAD` are accepted with it (anything else is
//! `403 media_token_read_only`, whatever else the request carries, so a token never stands in
//! for the CSRF check); it is bound to the session that minted it and to the account's password
//! (a logout, a superseding login, an idle end, a password change or a disabled account kill it,
//! checked against the session store on every use, through the node cache); and it expires.
//!
//! Sessions are stored by the SHA-256 of the token. Each node keeps a short-lived cache of the
//! sessions it serves (`auth.session_cache_secs`) and writes `last_seen` back at most once a
//! minute; a logout or a superseding login on another node takes effect here within the cache
//! lifetime, on this node at once.

pub mod password;
pub mod roles;
pub mod throttle;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, Method, StatusCode};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use shouhu_storage::accounts::Account;
use shouhu_storage::audit::{Actor, AuditEntry, Outcome};
use shouhu_storage::org_units::Scope;
use shouhu_storage::sessions::Session;
use shouhu_storage::StorageError;

use crate::error::ApiError;
use crate::state::AppState;
use roles::Perm;

/// Name of the session cookie.
pub const COOKIE: &str = "shouhu_session";

/// How often `last_seen` is written back, ms.
const TOUCH_EVERY_MS: i64 = 60_000;

/// A fresh random session token (256 bits, base64url).
pub fn new_token() -> String {
    use rand::RngCore;
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

/// The stored form of a token.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[derive(Debug, Clone)]
struct Cached {
    session: Session,
    account: Account,
    scope: Scope,
    loaded_at_ms: i64,
    last_seen_ms: i64,
    persisted_seen_ms: i64,
}

/// The node-local session cache.
#[derive(Debug, Default)]
pub struct SessionCache {
    map: Mutex<HashMap<String, Cached>>,
}

impl SessionCache {
    /// Forget sessions (after logout, supersede, password change).
    pub fn forget<'a>(&self, hashes: impl IntoIterator<Item = &'a String>) {
        let mut m = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for h in hashes {
            m.remove(h);
        }
    }

    /// Forget every session of an account.
    pub fn forget_account(&self, account_id: &str) {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|_, c| c.account.id != account_id);
    }

    fn get(&self, hash: &str) -> Option<Cached> {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(hash)
            .cloned()
    }

    fn put(&self, hash: String, c: Cached) {
        let mut m = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if m.len() > 100_000 {
            m.clear();
        }
        m.insert(hash, c);
    }
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The account.
    pub account: Account,
    /// Stored hash of the session token (for a media-token request, of the session that minted
    /// the token). Always set by the extractors.
    pub session_hash: Option<String>,
    /// Whether the session is a wall-screen one.
    pub wall_screen: bool,
    /// Client address.
    pub ip: Option<String>,
    /// Data scope.
    pub scope: Scope,
}

impl Caller {
    /// The audit actor.
    pub fn actor(&self) -> Actor {
        Actor {
            account_id: Some(self.account.id.clone()),
            username: Some(self.account.username.clone()),
            ip: self.ip.clone(),
        }
    }

    /// An audit entry for `action` by this caller at `now_ms`.
    pub fn audit(&self, action: &str, now_ms: i64) -> AuditEntry {
        AuditEntry::new(&self.actor(), action, now_ms)
    }

    /// Fail with 403 unless the role grants `perm`.
    pub fn require(&self, perm: Perm) -> Result<(), ApiError> {
        if roles::grants(&self.account.role, perm) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "role {} may not do this",
                self.account.role
            )))
        }
    }

    /// Whether the caller's unit is the root of the tree (corps level).
    pub fn at_corps(&self) -> bool {
        self.scope == Scope::All
    }
}

/// The scope of an account: all data at the root (corps) unit, the subtree elsewhere.
pub async fn scope_of(state: &AppState, account: &Account) -> Result<Scope, ApiError> {
    let unit = state.db.org_units().get(&account.org_unit_id).await?;
    Ok(if unit.parent_id.is_none() {
        Scope::All
    } else {
        Scope::Subtree(unit.id)
    })
}

/// The client address of a request.
pub fn client_ip(parts: &Parts, trusted: &[std::net::IpAddr]) -> Option<String> {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ci| ci.0.ip())?;
    let forwarded: Vec<&str> = parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    Some(client_of(peer, &forwarded, trusted).to_string())
}

/// The client behind `peer`: `peer` itself unless it is a trusted proxy; then, walking the
/// `X-Forwarded-For` values from the right, the first address that is not a trusted proxy (an
/// unparseable entry stops the walk at the last trusted hop: nothing left of it is believed).
pub fn client_of(
    peer: std::net::IpAddr,
    forwarded: &[&str],
    trusted: &[std::net::IpAddr],
) -> std::net::IpAddr {
    let mut client = peer;
    if !trusted.contains(&peer) {
        return client;
    }
    let hops = forwarded
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .rev();
    for hop in hops {
        let Ok(ip) = hop.parse::<std::net::IpAddr>() else {
            return client;
        };
        client = ip;
        if !trusted.contains(&ip) {
            return ip;
        }
    }
    client
}

/// The session token of a request: bearer header first, then the cookie.
pub fn request_token(parts: &Parts) -> Option<String> {
    if let Some(v) = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        if let Some(t) = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
        {
            return Some(t.trim().to_string());
        }
    }
    for v in parts.headers.get_all(header::COOKIE) {
        let Ok(s) = v.to_str() else { continue };
        for kv in s.split(';') {
            if let Some((k, val)) = kv.trim().split_once('=') {
                if k == COOKIE && !val.is_empty() {
                    return Some(val.to_string());
                }
            }
        }
    }
    None
}

fn has_bearer(parts: &Parts) -> bool {
    parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Bearer ") || v.starts_with("bearer "))
}

/// Cross-site request forgery guard for cookie-authenticated requests: reads are safe; a write
/// must carry `X-Requested-With`, which a cross-site form cannot set and a cross-site script
/// cannot send without a CORS preflight this server never grants. (The cookie is also
/// `SameSite=Strict`; this is the second line.)
fn csrf_safe(parts: &Parts) -> bool {
    matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS)
        || parts.headers.contains_key("x-requested-with")
}

/// Resolve the session of a request (without the forced-password-change gate).
///
/// A request whose query carries `media_token` is refused unless it is a `GET` or `HEAD`,
/// before anything else; a read with a session token (header or cookie) uses the session, a
/// read with only a media token uses the token.
async fn authenticate(parts: &Parts, state: &AppState) -> Result<Caller, ApiError> {
    let ip = client_ip(parts, &state.cfg.http.trusted_proxies);
    let media = media_token_of(parts);
    if media.is_some() && !matches!(parts.method, Method::GET | Method::HEAD) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "media_token_read_only",
            "a media token opens media for reading (GET, HEAD) only; drop it from the URL and authenticate with the session",
        ));
    }
    let Some(token) = request_token(parts) else {
        if let Some(media) = media {
            return media_token_caller(parts, state, &media, ip).await;
        }
        return Err(ApiError::unauthenticated("login required"));
    };
    if !has_bearer(parts) && !csrf_safe(parts) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "csrf_check_failed",
            "a state-changing request authenticated by the session cookie must carry the X-Requested-With header",
        ));
    }
    let hash = token_hash(&token);
    let now = state.clock.now_ms();
    let mut entry = live_session(state, &hash, &ip, now, "invalid session token").await?;
    entry.last_seen_ms = now;
    if now - entry.persisted_seen_ms >= TOUCH_EVERY_MS {
        entry.persisted_seen_ms = now;
        state.db.sessions().touch(&hash, now).await?;
    }
    let caller = Caller {
        account: entry.account.clone(),
        session_hash: Some(hash.clone()),
        wall_screen: entry.session.wall_screen,
        ip,
        scope: entry.scope.clone(),
    };
    state.sessions.put(hash, entry);
    Ok(caller)
}

/// The session `hash` at `now` if it is live, from the node cache (for
/// `auth.session_cache_secs`) or the store; `401` when it is unknown (`unknown` is the message),
/// ended (`session_ended` with the reason: logout, superseded, idle, password_reset, disabled…)
/// or its account is disabled. A session idle past its timeout is ended here, audited. It is
/// not touched: the caller decides whether the request counts as activity.
async fn live_session(
    state: &AppState,
    hash: &str,
    ip: &Option<String>,
    now: i64,
    unknown: &'static str,
) -> Result<Cached, ApiError> {
    let cache_ms = state.cfg.auth.session_cache_secs as i64 * 1000;
    let entry = match state.sessions.get(hash) {
        Some(c) if now - c.loaded_at_ms < cache_ms => c,
        prev => {
            let session = match state.db.sessions().get(hash).await {
                Ok(s) => s,
                Err(StorageError::NotFound(_)) => return Err(ApiError::unauthenticated(unknown)),
                Err(e) => return Err(e.into()),
            };
            let account = state.db.accounts().get(&session.account_id).await?;
            let scope = scope_of(state, &account).await?;
            let last_seen = prev
                .map(|p| p.last_seen_ms)
                .unwrap_or(0)
                .max(session.last_seen_at_ms);
            let entry = Cached {
                persisted_seen_ms: session.last_seen_at_ms,
                last_seen_ms: last_seen,
                session,
                account,
                scope,
                loaded_at_ms: now,
            };
            state.sessions.put(hash.to_string(), entry.clone());
            entry
        }
    };
    let hash = hash.to_string();
    if let Some(reason) = &entry.session.end_reason {
        state.sessions.forget([&hash]);
        let msg = match reason.as_str() {
            "superseded" => "this session ended because the account logged in elsewhere",
            "idle" => "this session ended after being idle",
            _ => "this session has ended",
        };
        return Err(
            ApiError::new(StatusCode::UNAUTHORIZED, "session_ended", msg)
                .with("reason", reason.clone().into()),
        );
    }
    if entry.account.status != "active" {
        state.sessions.forget([&hash]);
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "account_disabled",
            "the account is disabled",
        ));
    }
    if let Some(idle_ms) = state
        .cfg
        .idle_timeout_ms(&entry.account.role, entry.session.wall_screen)
    {
        if now - entry.last_seen_ms > idle_ms {
            state.sessions.forget([&hash]);
            let audit = AuditEntry::new(
                &Actor {
                    account_id: Some(entry.account.id.clone()),
                    username: Some(entry.account.username.clone()),
                    ip: ip.clone(),
                },
                "auth.session_expired",
                now,
            )
            .target("account", &entry.account.id)
            .details(serde_json::json!({"idle_ms": now - entry.last_seen_ms}));
            state.db.sessions().end(&hash, "idle", &audit).await?;
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "session_ended",
                "this session ended after being idle",
            )
            .with("reason", "idle".into()));
        }
    }
    Ok(entry)
}

/// A caller that has no pending forced password change.
impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let c = authenticate(parts, state).await?;
        if c.account.must_change_password {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "password_change_required",
                "change the password before anything else",
            ));
        }
        Ok(c)
    }
}

/// Any authenticated caller, even one who must still change the password (for `me`, logout and
/// the password change itself).
#[derive(Debug, Clone)]
pub struct AnyCaller(pub Caller);

impl FromRequestParts<AppState> for AnyCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(AnyCaller(authenticate(parts, state).await?))
    }
}

type HmacSha256 = Hmac<Sha256>;

/// Where the recordings' media live.
const RECORDINGS: &str = "/api/v1/recordings/";
/// Where the live channels' snapshots live.
const STREAMS: &str = "/api/v1/streams/";

/// What a media token opens, for `GET` and `HEAD` only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaGrant {
    /// One recording's media under `/api/v1/recordings/{id}/`: `playlist.m3u8`, `export.mp4`,
    /// `manifest` and `segments/{seq}/init.mp4|media.m4s` (never its JSON routes).
    Recording {
        /// The recording.
        id: String,
    },
    /// One playlist's segments: `/api/v1/recordings/{id}/segments/{seq}/init.mp4|media.m4s`
    /// with `first_seq ≤ seq ≤ last_seq` (what a playlist lists, nothing else).
    Segments {
        /// The recording.
        recording_id: String,
        /// The first segment listed.
        first_seq: i64,
        /// The last segment listed.
        last_seq: i64,
    },
    /// One live channel's snapshot: `/api/v1/streams/{device_id}/{channel_id}/snapshot.jpg`.
    Stream {
        /// The recorder.
        device_id: String,
        /// The channel.
        channel_id: String,
    },
}

/// A recording id as a media token names it: a UUID today; letters, digits, `-` and `_`.
fn is_recording_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A segment number as it appears in a URL: digits only (no sign, no escape).
fn seq_of(s: &str) -> Option<i64> {
    if s.is_empty() || s.len() > 18 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Whether `rest` (after `…/segments/`) is a segment file; its number.
fn segment_file_seq(rest: &str) -> Option<i64> {
    let (seq, file) = rest.split_once('/')?;
    matches!(file, "init.mp4" | "media.m4s")
        .then(|| seq_of(seq))
        .flatten()
}

impl MediaGrant {
    /// The grant a client asks for by path prefix: exactly one recording
    /// (`/api/v1/recordings/{id}/`) or one live channel (`/api/v1/streams/{device_id}/{channel_id}/`).
    /// Anything else (a bare prefix, a sub-path, a malformed id) is refused with the reason.
    /// Whether the resource exists and the caller sees it is the caller's check.
    pub fn from_prefix(prefix: &str) -> Result<Self, String> {
        let shape = format!(
            "must name one recording ({RECORDINGS}{{id}}/) or one live channel ({STREAMS}{{device_id}}/{{channel_id}}/) exactly"
        );
        if let Some(rest) = prefix.strip_prefix(RECORDINGS) {
            let id = rest.strip_suffix('/').ok_or_else(|| shape.clone())?;
            if !is_recording_id(id) {
                return Err(shape);
            }
            return Ok(MediaGrant::Recording { id: id.into() });
        }
        if let Some(rest) = prefix.strip_prefix(STREAMS) {
            let (d, c) = rest
                .strip_suffix('/')
                .and_then(|r| r.split_once('/'))
                .ok_or_else(|| shape.clone())?;
            let device: shouhu_storage::model::DeviceId =
                d.parse().map_err(|e| format!("{shape}: {e}"))?;
            let channel: shouhu_storage::model::ChannelId =
                c.parse().map_err(|e| format!("{shape}: {e}"))?;
            return Ok(MediaGrant::Stream {
                device_id: device.to_string(),
                channel_id: channel.to_string(),
            });
        }
        Err(shape)
    }

    /// The path prefix every URL it opens starts with.
    pub fn prefix(&self) -> String {
        match self {
            MediaGrant::Recording { id } => format!("{RECORDINGS}{id}/"),
            MediaGrant::Segments { recording_id, .. } => {
                format!("{RECORDINGS}{recording_id}/segments/")
            }
            MediaGrant::Stream {
                device_id,
                channel_id,
            } => format!("{STREAMS}{device_id}/{channel_id}/"),
        }
    }

    /// Whether it opens `path`, the request path as sent (not percent-decoded: an escaped path
    /// opens nothing).
    pub fn opens(&self, path: &str) -> bool {
        let Some(rest) = path.strip_prefix(&self.prefix()) else {
            return false;
        };
        match self {
            MediaGrant::Recording { .. } => {
                matches!(rest, "playlist.m3u8" | "export.mp4" | "manifest")
                    || rest
                        .strip_prefix("segments/")
                        .and_then(segment_file_seq)
                        .is_some()
            }
            MediaGrant::Segments {
                first_seq,
                last_seq,
                ..
            } => segment_file_seq(rest).is_some_and(|s| (*first_seq..=*last_seq).contains(&s)),
            MediaGrant::Stream { .. } => rest == "snapshot.jpg",
        }
    }

    fn from_payload(p: &str, r: Option<[i64; 2]>) -> Option<Self> {
        match r {
            None => Self::from_prefix(p).ok(),
            Some([first_seq, last_seq]) => {
                let id = p.strip_prefix(RECORDINGS)?.strip_suffix("/segments/")?;
                is_recording_id(id).then(|| MediaGrant::Segments {
                    recording_id: id.into(),
                    first_seq,
                    last_seq,
                })
            }
        }
    }
}

/// What a media token says, signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaClaims {
    /// The account that minted it.
    pub account_id: String,
    /// The stored hash of the session it was minted in: the token dies with the session.
    pub session_hash: String,
    /// [`password_stamp`] of the account's password then: the token dies with a password change.
    pub password_stamp: String,
    /// What it opens.
    pub grant: MediaGrant,
    /// Expiry, UTC ms (valid through this instant).
    pub exp_ms: i64,
}

/// The signed payload (short keys: it rides in every media URL).
#[derive(serde::Serialize, serde::Deserialize)]
struct Payload {
    a: String,
    s: String,
    g: String,
    p: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    r: Option<[i64; 2]>,
    e: i64,
}

/// Why a media token is refused before its session is looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaTokenError {
    /// Malformed, forged or signed with another key.
    Invalid,
    /// Past its expiry.
    Expired,
    /// Valid, but it does not open this URL.
    NotThisUrl,
}

/// A stamp of the account's password hash under the media key: it changes with every password
/// change (a fresh salt each time) and reveals nothing of the hash.
pub fn password_stamp(key: &[u8], password_hash: &str) -> String {
    let mut mac = HmacSha256::new_from_slice(key).expect("any key length");
    mac.update(b"password-stamp\0");
    mac.update(password_hash.as_bytes());
    hex::encode(&mac.finalize().into_bytes()[..12])
}

/// Sign a media token.
pub fn sign_media_token(key: &[u8], claims: &MediaClaims) -> String {
    let r = match &claims.grant {
        MediaGrant::Segments {
            first_seq,
            last_seq,
            ..
        } => Some([*first_seq, *last_seq]),
        _ => None,
    };
    let payload = serde_json::to_vec(&Payload {
        a: claims.account_id.clone(),
        s: claims.session_hash.clone(),
        g: claims.password_stamp.clone(),
        p: claims.grant.prefix(),
        r,
        e: claims.exp_ms,
    })
    .expect("a payload serializes");
    let mut mac = HmacSha256::new_from_slice(key).expect("any key length");
    mac.update(&payload);
    let sig = mac.finalize().into_bytes();
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(payload),
        URL_SAFE_NO_PAD.encode(sig)
    )
}

/// Check a media token's signature, expiry and grant for `path` at `now_ms`; its claims.
/// (Whether its session is alive is the check of the extractor that accepts the token.)
pub fn verify_media_token(
    key: &[u8],
    token: &str,
    path: &str,
    now_ms: i64,
) -> Result<MediaClaims, MediaTokenError> {
    use MediaTokenError::*;
    let (p, s) = token.split_once('.').ok_or(Invalid)?;
    let payload = URL_SAFE_NO_PAD.decode(p).map_err(|_| Invalid)?;
    let sig = URL_SAFE_NO_PAD.decode(s).map_err(|_| Invalid)?;
    let mut mac = HmacSha256::new_from_slice(key).map_err(|_| Invalid)?;
    mac.update(&payload);
    mac.verify_slice(&sig).map_err(|_| Invalid)?;
    let v: Payload = serde_json::from_slice(&payload).map_err(|_| Invalid)?;
    let grant = MediaGrant::from_payload(&v.p, v.r).ok_or(Invalid)?;
    if now_ms > v.e {
        return Err(Expired);
    }
    if !grant.opens(path) {
        return Err(NotThisUrl);
    }
    Ok(MediaClaims {
        account_id: v.a,
        session_hash: v.s,
        password_stamp: v.g,
        grant,
        exp_ms: v.e,
    })
}

/// A media token for `grant`, minted by `caller` in its session, valid through `exp_ms`.
pub fn mint_media_token(
    state: &AppState,
    caller: &Caller,
    grant: MediaGrant,
    exp_ms: i64,
) -> Result<String, ApiError> {
    let session_hash = caller
        .session_hash
        .clone()
        .ok_or_else(|| ApiError::internal("a media token needs the caller's session"))?;
    Ok(sign_media_token(
        &state.media_key[..],
        &MediaClaims {
            account_id: caller.account.id.clone(),
            session_hash,
            password_stamp: password_stamp(&state.media_key[..], &caller.account.password_hash),
            grant,
            exp_ms,
        },
    ))
}

/// The `media_token` query parameter of a request, decoded (present even when empty).
fn media_token_of(parts: &Parts) -> Option<String> {
    let q = parts.uri.query()?;
    q.split('&').find_map(|kv| match kv.split_once('=') {
        Some(("media_token", v)) => Some(percent_decode(v)),
        None if kv == "media_token" => Some(String::new()),
        _ => None,
    })
}

/// The caller of a read authenticated by a media token: the token's signature, expiry and grant
/// for this URL, then its session (live, not idle, account active, password unchanged) — the
/// session is not touched: a player fetching segments is not the person at the console.
async fn media_token_caller(
    parts: &Parts,
    state: &AppState,
    token: &str,
    ip: Option<String>,
) -> Result<Caller, ApiError> {
    // The full path: under a nested router `parts.uri` lacks the `/api/v1` prefix.
    let path = parts
        .extensions
        .get::<axum::extract::OriginalUri>()
        .map(|u| u.0.path().to_string())
        .unwrap_or_else(|| parts.uri.path().to_string());
    let now = state.clock.now_ms();
    let claims =
        verify_media_token(&state.media_key[..], token, &path, now).map_err(|e| match e {
            MediaTokenError::Invalid => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "media_token_invalid",
                "the media token is malformed or not ours",
            ),
            MediaTokenError::Expired => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "media_token_expired",
                "the media token has expired; ask for a new one (or reload the playlist)",
            ),
            MediaTokenError::NotThisUrl => ApiError::new(
                StatusCode::FORBIDDEN,
                "media_token_not_for_this_url",
                "the media token opens another recording, stream or segment range",
            ),
        })?;
    let entry = live_session(
        state,
        &claims.session_hash,
        &ip,
        now,
        "the media token's session is unknown",
    )
    .await?;
    if entry.account.id != claims.account_id {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "media_token_invalid",
            "the media token does not belong to its session's account",
        ));
    }
    if password_stamp(&state.media_key[..], &entry.account.password_hash) != claims.password_stamp {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "session_ended",
            "the password changed after this media token was issued",
        )
        .with("reason", "password_changed".into()));
    }
    Ok(Caller {
        account: entry.account,
        session_hash: Some(claims.session_hash),
        wall_screen: entry.session.wall_screen,
        ip,
        scope: entry.scope,
    })
}

/// Percent-decode a query value byte by byte (an escape is `%` and two hex digits; anything
/// else, including a `%` before a non-ASCII byte, is kept as it is).
fn percent_decode(s: &str) -> String {
    let hex = |c: u8| (c as char).to_digit(16);
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Audit a denied action (used where a role or scope check refuses a request).
pub async fn audit_denied(
    state: &AppState,
    caller: &Caller,
    action: &str,
    target_kind: &str,
    target_id: &str,
) {
    let entry = caller
        .audit(action, state.clock.now_ms())
        .target(target_kind, target_id)
        .outcome(Outcome::Denied);
    if let Err(e) = state.db.audit().record(&entry).await {
        tracing::error!(error = %e, "could not write audit row");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(grant: MediaGrant, exp_ms: i64) -> MediaClaims {
        MediaClaims {
            account_id: "acc1".into(),
            session_hash: "s1".into(),
            password_stamp: password_stamp(&[7u8; 32], "$argon2id$one"),
            grant,
            exp_ms,
        }
    }

    #[test]
    fn media_tokens_are_bound_to_one_resource_and_time() {
        let key = [7u8; 32];
        let stream =
            MediaGrant::from_prefix("/api/v1/streams/34020000001320000001/34020000001310000001/")
                .unwrap();
        let t = sign_media_token(&key, &claims(stream.clone(), 1_000));
        let ok = "/api/v1/streams/34020000001320000001/34020000001310000001/snapshot.jpg";
        assert_eq!(
            verify_media_token(&key, &t, ok, 1_000).map(|c| c.grant),
            Ok(stream)
        );
        let other = "/api/v1/streams/34020000001320000002/34020000001310000001/snapshot.jpg";
        assert_eq!(
            verify_media_token(&key, &t, other, 999),
            Err(MediaTokenError::NotThisUrl)
        );
        assert_eq!(
            verify_media_token(&key, &t, &format!("{ok}/../whep"), 999),
            Err(MediaTokenError::NotThisUrl)
        );
        assert_eq!(
            verify_media_token(&key, &t, ok, 1_001),
            Err(MediaTokenError::Expired)
        );
        assert_eq!(
            verify_media_token(&[8u8; 32], &t, ok, 999),
            Err(MediaTokenError::Invalid)
        );
        let mut forged = t.clone();
        forged.replace_range(0..2, "ab");
        assert_eq!(
            verify_media_token(&key, &forged, ok, 999),
            Err(MediaTokenError::Invalid)
        );
    }

    #[test]
    fn a_recording_grant_opens_its_media_only() {
        let g = MediaGrant::from_prefix("/api/v1/recordings/r-1/").unwrap();
        for p in [
            "playlist.m3u8",
            "export.mp4",
            "manifest",
            "segments/0/init.mp4",
            "segments/12/media.m4s",
        ] {
            assert!(g.opens(&format!("/api/v1/recordings/r-1/{p}")), "{p}");
        }
        for p in [
            "/api/v1/recordings/r-1/links",
            "/api/v1/recordings/r-1/hold",
            "/api/v1/recordings/r-1",
            "/api/v1/recordings/r-10/playlist.m3u8",
            "/api/v1/recordings/r-1/segments/%31/init.mp4",
            "/api/v1/recordings/r-1/segments/-1/init.mp4",
            "/api/v1/recordings/r-1//playlist.m3u8",
        ] {
            assert!(!g.opens(p), "{p}");
        }
        let s = MediaGrant::Segments {
            recording_id: "r-1".into(),
            first_seq: 3,
            last_seq: 5,
        };
        assert!(s.opens("/api/v1/recordings/r-1/segments/3/init.mp4"));
        assert!(s.opens("/api/v1/recordings/r-1/segments/5/media.m4s"));
        assert!(!s.opens("/api/v1/recordings/r-1/segments/6/media.m4s"));
        assert!(!s.opens("/api/v1/recordings/r-1/segments/2/media.m4s"));
        assert!(!s.opens("/api/v1/recordings/r-1/playlist.m3u8"));
        let key = [1u8; 32];
        let t = sign_media_token(&key, &claims(s.clone(), 10));
        assert_eq!(
            verify_media_token(&key, &t, "/api/v1/recordings/r-1/segments/4/init.mp4", 5)
                .map(|c| c.grant),
            Ok(s)
        );
    }

    #[test]
    fn only_one_named_resource_is_granted() {
        for bad in [
            "/api/v1/recordings/",
            "/api/v1/recordings",
            "/api/v1/streams/",
            "/api/v1/streams/34020000001320000001/",
            "/api/v1/recordings/r-1/segments/",
            "/api/v1/recordings/r-1",
            "/api/v1/recordings/../enterprises/",
            "/api/v1/recordings/a%2Fb/",
            "/api/v1/streams/3402/1/",
            "/api/v1/blobs/x/",
            "/api/v1/enterprises/",
        ] {
            assert!(MediaGrant::from_prefix(bad).is_err(), "{bad}");
        }
        assert!(MediaGrant::from_prefix("/api/v1/streams/34020000001320000001/app/").is_ok());
    }

    #[test]
    fn a_password_change_changes_the_stamp() {
        let key = [3u8; 32];
        assert_eq!(password_stamp(&key, "a"), password_stamp(&key, "a"));
        assert_ne!(password_stamp(&key, "a"), password_stamp(&key, "b"));
        assert_ne!(password_stamp(&key, "a"), password_stamp(&[4u8; 32], "a"));
    }

    #[test]
    fn decodes_percent_escapes() {
        assert_eq!(percent_decode("a%2Eb"), "a.b");
        assert_eq!(percent_decode("a%"), "a%");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("%2"), "%2");
        // A `%` before a non-ASCII character: kept, no panic (it sliced inside `é` once).
        assert_eq!(percent_decode("%a\u{e9}"), "%a\u{e9}");
        assert_eq!(percent_decode("%\u{e9}x"), "%\u{e9}x");
        assert_eq!(percent_decode("%C3%A9"), "\u{e9}");
    }

    #[test]
    fn the_client_behind_trusted_proxies_only() {
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        let proxy = ip("10.0.0.5");
        let trusted = [proxy, ip("10.0.0.6")];
        // A direct client: its header is not believed.
        assert_eq!(
            client_of(ip("203.0.113.9"), &["1.2.3.4"], &trusted),
            ip("203.0.113.9")
        );
        // Through the proxy: the rightmost untrusted hop.
        assert_eq!(
            client_of(proxy, &["1.2.3.4, 198.51.100.7"], &trusted),
            ip("198.51.100.7")
        );
        // Through two trusted proxies (and two header lines).
        assert_eq!(
            client_of(proxy, &["6.6.6.6, 198.51.100.7", "10.0.0.6"], &trusted),
            ip("198.51.100.7")
        );
        // Garbage ends the walk at the last trusted hop.
        assert_eq!(client_of(proxy, &["198.51.100.7, junk"], &trusted), proxy);
        // No proxies configured: the peer.
        assert_eq!(client_of(proxy, &["198.51.100.7"], &[]), proxy);
    }
}
