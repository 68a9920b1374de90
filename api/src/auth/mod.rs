//! Authentication: sessions, the [`Caller`] extractor, signed media tokens.
//!
//! A client authenticates with the bearer token from login (`Authorization: Bearer …`) or the
//! HttpOnly cookie `shouhu_session` that login also sets (so WebSockets, images and video URLs
//! work from a page). Media URLs may instead carry `?media_token=…`, a short-lived HMAC-signed
//! token bound to one account and one path prefix.
//!
//! Sessions are stored by the SHA-256 of the token. Each node keeps a short-lived cache of the
//! sessions it serves (`auth.session_cache_secs`) and writes `last_seen` back at most once a
//! minute; a logout or a superseding login on another node takes effect here within the cache
//! lifetime, on this node at once.

pub mod password;
pub mod roles;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
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
        let mut m = self.map.lock().expect("session cache lock");
        for h in hashes {
            m.remove(h);
        }
    }

    /// Forget every session of an account.
    pub fn forget_account(&self, account_id: &str) {
        self.map
            .lock()
            .expect("session cache lock")
            .retain(|_, c| c.account.id != account_id);
    }

    fn get(&self, hash: &str) -> Option<Cached> {
        self.map
            .lock()
            .expect("session cache lock")
            .get(hash)
            .cloned()
    }

    fn put(&self, hash: String, c: Cached) {
        let mut m = self.map.lock().expect("session cache lock");
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
    /// Stored hash of the session token (none for media-token requests).
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
pub fn client_ip(parts: &Parts) -> Option<String> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ci| ci.0.ip().to_string())
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
    use axum::http::Method;
    matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS)
        || parts.headers.contains_key("x-requested-with")
}

/// Resolve the session of a request (without the forced-password-change gate).
async fn authenticate(parts: &Parts, state: &AppState) -> Result<Caller, ApiError> {
    let ip = client_ip(parts);
    let Some(token) = request_token(parts) else {
        if let Some(caller) = media_token_caller(parts, state, ip.clone()).await? {
            return Ok(caller);
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
    let cache_ms = state.cfg.auth.session_cache_secs as i64 * 1000;
    let mut entry = match state.sessions.get(&hash) {
        Some(c) if now - c.loaded_at_ms < cache_ms => c,
        prev => {
            let session = match state.db.sessions().get(&hash).await {
                Ok(s) => s,
                Err(StorageError::NotFound(_)) => {
                    return Err(ApiError::unauthenticated("invalid session token"))
                }
                Err(e) => return Err(e.into()),
            };
            let account = state.db.accounts().get(&session.account_id).await?;
            let scope = scope_of(state, &account).await?;
            let last_seen = prev
                .map(|p| p.last_seen_ms)
                .unwrap_or(0)
                .max(session.last_seen_at_ms);
            Cached {
                persisted_seen_ms: session.last_seen_at_ms,
                last_seen_ms: last_seen,
                session,
                account,
                scope,
                loaded_at_ms: now,
            }
        }
    };
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

/// Sign a media token for `account_id`, valid for URLs under `path_prefix` until `exp_ms`.
pub fn sign_media_token(key: &[u8], account_id: &str, path_prefix: &str, exp_ms: i64) -> String {
    let payload = serde_json::json!({"a": account_id, "p": path_prefix, "e": exp_ms}).to_string();
    let mut mac = HmacSha256::new_from_slice(key).expect("any key length");
    mac.update(payload.as_bytes());
    let sig = mac.finalize().into_bytes();
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(payload),
        URL_SAFE_NO_PAD.encode(sig)
    )
}

/// Check a media token for `path` at `now_ms`; returns the account id.
pub fn verify_media_token(key: &[u8], token: &str, path: &str, now_ms: i64) -> Option<String> {
    let (p, s) = token.split_once('.')?;
    let payload = URL_SAFE_NO_PAD.decode(p).ok()?;
    let sig = URL_SAFE_NO_PAD.decode(s).ok()?;
    let mut mac = HmacSha256::new_from_slice(key).ok()?;
    mac.update(&payload);
    mac.verify_slice(&sig).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&payload).ok()?;
    let prefix = v.get("p")?.as_str()?;
    let exp = v.get("e")?.as_i64()?;
    if now_ms > exp || !path.starts_with(prefix) || prefix.is_empty() || path.contains("..") {
        return None;
    }
    Some(v.get("a")?.as_str()?.to_string())
}

async fn media_token_caller(
    parts: &Parts,
    state: &AppState,
    ip: Option<String>,
) -> Result<Option<Caller>, ApiError> {
    let Some(q) = parts.uri.query() else {
        return Ok(None);
    };
    let Some(token) = q.split('&').find_map(|kv| kv.strip_prefix("media_token=")) else {
        return Ok(None);
    };
    let token = percent_decode(token);
    // The full path: under a nested router `parts.uri` lacks the `/api/v1` prefix.
    let path = parts
        .extensions
        .get::<axum::extract::OriginalUri>()
        .map(|u| u.0.path().to_string())
        .unwrap_or_else(|| parts.uri.path().to_string());
    let Some(account_id) =
        verify_media_token(&state.media_key[..], &token, &path, state.clock.now_ms())
    else {
        return Err(ApiError::unauthenticated("invalid or expired media token"));
    };
    let account = state.db.accounts().get(&account_id).await?;
    if account.status != "active" {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "account_disabled",
            "the account is disabled",
        ));
    }
    let scope = scope_of(state, &account).await?;
    Ok(Some(Caller {
        account,
        session_hash: None,
        wall_screen: false,
        ip,
        scope,
    }))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
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

    #[test]
    fn media_tokens_are_bound_to_path_and_time() {
        let key = [7u8; 32];
        let t = sign_media_token(&key, "acc1", "/api/v1/streams/1/", 1_000);
        assert_eq!(
            verify_media_token(&key, &t, "/api/v1/streams/1/snapshot.jpg", 999).as_deref(),
            Some("acc1")
        );
        assert_eq!(
            verify_media_token(&key, &t, "/api/v1/streams/2/snapshot.jpg", 999),
            None
        );
        assert_eq!(
            verify_media_token(&key, &t, "/api/v1/streams/1/x", 1_001),
            None
        );
        assert_eq!(
            verify_media_token(&[8u8; 32], &t, "/api/v1/streams/1/x", 999),
            None
        );
        let mut forged = t.clone();
        forged.replace_range(0..2, "ab");
        assert_eq!(
            verify_media_token(&key, &forged, "/api/v1/streams/1/x", 999),
            None
        );
    }

    #[test]
    fn decodes_percent_escapes() {
        assert_eq!(percent_decode("a%2Eb"), "a.b");
        assert_eq!(percent_decode("a%"), "a%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
