//! `/api/v1/auth`: login, logout, the current account, password change, media tokens.
//!
//! A password change keeps the session it is made in but kills the media tokens minted before
//! it (they carry a stamp of the password; see [`crate::auth`]).

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use shouhu_storage::audit::{Actor, AuditEntry, Outcome};
use shouhu_storage::sessions::NewSession;
use shouhu_storage::StorageError;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::roles::Perm;
use crate::auth::{self, password, AnyCaller, Caller, MediaGrant, COOKIE};
use crate::clock::rfc3339;
use crate::dto::AccountDto;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::ApiJson;
use crate::state::AppState;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(logout))
        .routes(routes!(me))
        .routes(routes!(change_password))
        .routes(routes!(media_token))
}

/// Login request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// Username.
    pub username: String,
    /// Password.
    pub password: String,
    /// A wall-screen session (dispatch screen): for roles in `auth.wall_screen_roles` it never
    /// idles out.
    #[serde(default)]
    pub wall_screen: bool,
}

/// Login answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct LoginResponse {
    /// Bearer token (also set as the HttpOnly cookie `shouhu_session`).
    pub token: String,
    /// The account.
    pub account: AccountDto,
    /// Idle timeout of this session in seconds (none: never).
    pub idle_timeout_secs: Option<i64>,
}

fn cookie(state: &AppState, value: &str, max_age: Option<i64>) -> HeaderValue {
    let secure = if state.tls || state.cfg.http.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let age = max_age
        .map(|a| format!("; Max-Age={a}"))
        .unwrap_or_default();
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict{secure}{age}"
    ))
    .expect("cookie is ASCII")
}

/// Log in with username and password.
///
/// Five failures in a row (configurable) lock the account for 15 minutes (configurable); a
/// login ends the account's other live session.
#[utoipa::path(post, path = "/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = LoginResponse), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 423, body = ErrorBody)))]
async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    ip: ClientIp,
    ApiJson(req): ApiJson<LoginRequest>,
) -> ApiResult<Response> {
    let now = state.now();
    let actor = Actor {
        account_id: None,
        username: Some(req.username.clone()),
        ip: ip.0.clone(),
    };
    let fail = |reason: &str| {
        AuditEntry::new(&actor, "auth.login", now)
            .outcome(Outcome::Failure)
            .details(serde_json::json!({"reason": reason}))
    };
    // The address's budget first: over it, nothing is hashed or looked up.
    let addr = ip.0.clone().unwrap_or_default();
    let attempt = match state.login_throttle.begin(&addr, now) {
        Ok(a) => a,
        Err(wait_ms) => {
            let secs = wait_ms.div_ceil(1000).max(1);
            metrics::counter!("shouhu_login_throttled_total").increment(1);
            let mut resp = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_attempts",
                format!("too many login attempts from this address; try again in {secs} s"),
            )
            .with("retry_after_secs", secs.into())
            .into_response();
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            return Ok(resp);
        }
    };
    let max = i64::from(state.cfg.auth.max_failures);
    let lock_until = now + state.cfg.auth.lockout_minutes as i64 * 60_000;
    let Some(account) = state.db.accounts().by_username(&req.username).await? else {
        // Answered exactly as a known name is: attempts left, then locked for the same time
        // (counted under a keyed hash of the name), with the same time spent hashing.
        let key = name_key(&state, &req.username);
        if let Some(until) = state.db.accounts().unknown_lock(&key, now).await? {
            state
                .db
                .audit()
                .record(&fail("locked").outcome(Outcome::Denied))
                .await?;
            return Err(locked(until));
        }
        password::verify(password::DUMMY_HASH, &req.password).await;
        attempt.failed();
        let st = state
            .db
            .accounts()
            .record_unknown_failure(&key, max, lock_until, &fail("unknown_user"))
            .await?;
        if let Some(until) = st.locked_until_ms {
            return Err(locked(until));
        }
        return Err(wrong_credentials(max - st.failed_attempts));
    };
    let actor = Actor {
        account_id: Some(account.id.clone()),
        ..actor
    };
    let fail = |reason: &str| {
        AuditEntry::new(&actor, "auth.login", now)
            .target("account", &account.id)
            .outcome(Outcome::Failure)
            .details(serde_json::json!({"reason": reason}))
    };
    if let Some(until) = account.locked_until_ms.filter(|u| *u > now) {
        state
            .db
            .audit()
            .record(&fail("locked").outcome(Outcome::Denied))
            .await?;
        return Err(locked(until));
    }
    if !password::verify(&account.password_hash, &req.password).await {
        attempt.failed();
        let st = state
            .db
            .accounts()
            .record_failure(&account.id, max, lock_until, &fail("wrong_password"))
            .await?;
        if let Some(until) = st.locked_until_ms {
            return Err(locked(until));
        }
        return Err(wrong_credentials(max - st.failed_attempts));
    }
    if account.status != "active" {
        state
            .db
            .audit()
            .record(&fail("disabled").outcome(Outcome::Denied))
            .await?;
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "account_disabled",
            "the account is disabled",
        ));
    }
    // A successful sign-in costs the address nothing.
    drop(attempt);
    let token = auth::new_token();
    let hash = auth::token_hash(&token);
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(200).collect());
    let audit = AuditEntry::new(&actor, "auth.login", now)
        .target("account", &account.id)
        .details(serde_json::json!({"wall_screen": req.wall_screen}));
    let new = NewSession {
        token_hash: hash,
        account_id: account.id.clone(),
        wall_screen: req.wall_screen,
        ip: ip.0.clone(),
        user_agent,
    };
    let ended = state.db.sessions().start(&new, &audit).await?;
    state.sessions.forget(&ended);
    let account = state.db.accounts().get(&account.id).await?;
    let idle = state
        .cfg
        .idle_timeout_ms(&account.role, req.wall_screen)
        .map(|ms| ms / 1000);
    let body = LoginResponse {
        token: token.clone(),
        account: account.into(),
        idle_timeout_secs: idle,
    };
    let mut resp = axum::Json(body).into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, cookie(&state, &token, None));
    Ok(resp)
}

/// A wrong username or password, with the attempts left before the name locks.
fn wrong_credentials(left: i64) -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
        format!(
            "wrong username or password; {} more wrong attempts lock the account",
            left.max(0)
        ),
    )
    .with("attempts_left", left.max(0).into())
}

/// A keyed hash of a username as typed (trimmed, lower-cased): what counts failures of names
/// that name no account. The server's media-token key keys it, so the table reveals nothing
/// typed (people type passwords into the username field).
fn name_key(state: &AppState, username: &str) -> String {
    use hmac::Mac;
    let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(&state.media_key[..])
        .expect("HMAC takes any key length");
    mac.update(b"login-name\0");
    mac.update(username.trim().to_lowercase().as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

fn locked(until_ms: i64) -> ApiError {
    ApiError::new(
        StatusCode::LOCKED,
        "account_locked",
        format!(
            "too many wrong passwords: the account is locked until {} (ask an administrator to unlock it sooner)",
            rfc3339(until_ms)
        ),
    )
    .with("locked_until", rfc3339(until_ms).into())
}

/// End the current session.
#[utoipa::path(post, path = "/logout", tag = "auth", responses((status = 204), (status = 401, body = ErrorBody)))]
async fn logout(
    State(state): State<AppState>,
    AnyCaller(caller): AnyCaller,
) -> ApiResult<Response> {
    if let Some(h) = &caller.session_hash {
        let audit = caller
            .audit("auth.logout", state.now())
            .target("account", &caller.account.id);
        state.db.sessions().end(h, "logout", &audit).await?;
        state.sessions.forget([h]);
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, cookie(&state, "", Some(0)));
    Ok(resp)
}

/// The current account with what its role may do.
#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    /// The account.
    #[serde(flatten)]
    pub account: AccountDto,
    /// Permission codes of the role (`registry.read`, `enterprise.write`, `officer.write`,
    /// `item.write`, `registry.export`, `org.write`, `account.manage`, `application.file`,
    /// `application.decide`, `audit.read`).
    pub permissions: Vec<&'static str>,
    /// Whether the account is at the corps level (sees every district).
    pub corps_level: bool,
}

/// The current account.
#[utoipa::path(get, path = "/me", tag = "auth", responses((status = 200, body = Me), (status = 401, body = ErrorBody)))]
async fn me(AnyCaller(caller): AnyCaller) -> axum::Json<Me> {
    let permissions = crate::auth::roles::permissions(&caller.account.role);
    let corps_level = caller.at_corps();
    axum::Json(Me {
        account: caller.account.into(),
        permissions,
        corps_level,
    })
}

/// Password change request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    /// Current password.
    pub old_password: String,
    /// New password (≥ 8 characters of 3 classes).
    pub new_password: String,
}

/// Change one's own password (required at first login for accounts an administrator created).
#[utoipa::path(post, path = "/password", tag = "auth", request_body = PasswordChange,
    responses((status = 204), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn change_password(
    State(state): State<AppState>,
    AnyCaller(caller): AnyCaller,
    ApiJson(req): ApiJson<PasswordChange>,
) -> ApiResult<StatusCode> {
    let now = state.now();
    if !password::verify(&caller.account.password_hash, &req.old_password).await {
        let audit = caller
            .audit("auth.password_change", now)
            .target("account", &caller.account.id)
            .outcome(Outcome::Failure);
        state.db.audit().record(&audit).await?;
        return Err(ApiError::validation(vec![crate::error::RowError {
            row: None,
            field: "old_password".into(),
            message: "is wrong".into(),
        }]));
    }
    check_new_password(&req.new_password, &caller.account.username)?;
    if req.new_password == req.old_password {
        return Err(field_error(
            "new_password",
            "must differ from the old password",
        ));
    }
    let hash = password::hash(&state.cfg.auth, &req.new_password).await?;
    let audit = caller.audit("auth.password_change", now);
    state
        .db
        .accounts()
        .set_password(&caller.account.id, &hash, false, &audit)
        .await?;
    // Other sessions of the account cannot exist (one live session), but the cached account
    // must drop its forced-change flag.
    state.sessions.forget_account(&caller.account.id);
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) fn field_error(field: &str, message: &str) -> ApiError {
    ApiError::validation(vec![crate::error::RowError {
        row: None,
        field: field.into(),
        message: message.into(),
    }])
}

pub(crate) fn check_new_password(pw: &str, username: &str) -> ApiResult<()> {
    password::check_policy(pw, username).map_err(|m| field_error("new_password", &m))
}

/// Media token request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MediaTokenRequest {
    /// The one thing the token opens, named by its URL path: `/api/v1/recordings/{id}/` (the
    /// recording's playlist, segments, export and manifest) or
    /// `/api/v1/streams/{device_id}/{channel_id}/` (the channel's snapshot). A bare prefix, a
    /// sub-path, or a recording or channel the caller does not see is refused (422).
    pub path_prefix: String,
    /// Lifetime in seconds (at most `auth.media_token_ttl_secs`, the default).
    pub ttl_secs: Option<u64>,
}

/// A signed media token.
#[derive(Debug, Serialize, ToSchema)]
pub struct MediaToken {
    /// Append as `?media_token=…` to a media URL under the prefix (`GET`/`HEAD` only).
    pub token: String,
    /// Expiry (it also ends with the session: logout, a login elsewhere, idling, a password
    /// change, a disabled account).
    pub expires_at: String,
}

/// Issue a short-lived token opening one recording's media or one live channel's snapshot for
/// reading, bound to the caller's session (for players and `<img>` that cannot send the
/// session). Refused (422, `path_prefix`) unless the prefix names exactly one recording or
/// channel the caller may see.
#[utoipa::path(post, path = "/media-token", tag = "auth", request_body = MediaTokenRequest,
    responses((status = 200, body = MediaToken), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn media_token(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<MediaTokenRequest>,
) -> ApiResult<axum::Json<MediaToken>> {
    let grant =
        MediaGrant::from_prefix(&req.path_prefix).map_err(|m| field_error("path_prefix", &m))?;
    match &grant {
        MediaGrant::Recording { id } => {
            caller.require(Perm::RecordingView)?;
            match state.db.recordings().get(&caller.scope, id).await {
                Ok(_) => {}
                Err(StorageError::NotFound(_)) => {
                    return Err(field_error("path_prefix", "names no recording you may see"))
                }
                Err(e) => return Err(e.into()),
            }
        }
        MediaGrant::Stream {
            device_id,
            channel_id,
        } => {
            caller.require(Perm::DispatchView)?;
            match state.db.recorders().get(&caller.scope, device_id).await {
                Ok(_) => {}
                Err(StorageError::NotFound(_)) => {
                    return Err(field_error("path_prefix", "names no recorder you may see"))
                }
                Err(e) => return Err(e.into()),
            }
            let device = crate::routes::streams::parse_device(device_id)?;
            let channel = crate::routes::streams::parse_channel(channel_id)?;
            crate::routes::streams::require_in_catalog(&state, &device, &channel)
                .await
                .map_err(|e| field_error("path_prefix", &e.message))?;
        }
        MediaGrant::Segments { .. } => {
            return Err(field_error(
                "path_prefix",
                "segment ranges are granted by a playlist",
            ))
        }
    }
    let ttl = req
        .ttl_secs
        .unwrap_or(state.cfg.auth.media_token_ttl_secs)
        .min(state.cfg.auth.media_token_ttl_secs)
        .max(1);
    let exp = state.now() + ttl as i64 * 1000;
    let token = auth::mint_media_token(&state, &caller, grant, exp)?;
    Ok(axum::Json(MediaToken {
        token,
        expires_at: rfc3339(exp),
    }))
}

/// The client address as an extractor.
#[derive(Debug, Clone)]
pub struct ClientIp(pub Option<String>);

impl axum::extract::FromRequestParts<AppState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(auth::client_ip(
            parts,
            &state.cfg.http.trusted_proxies,
        )))
    }
}
