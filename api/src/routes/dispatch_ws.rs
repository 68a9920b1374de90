//! `GET /api/v1/dispatch/ws`: the live map's WebSocket (schema in `docs/api/dispatch-ws.md`).
//!
//! Each connection owns a [`ClientSession`]: every `1 / dispatch.push_rate_hz` seconds it takes
//! in the batches the hub broadcast since its last tick (latest frame per unit) and sends one
//! `units` message; SOS events arrive on their own channel and go out at once. While a send is blocked on a slow client the broadcast ring moves on; when the client
//! has fallen behind it, its session is resynchronised from the current frames, so it receives
//! the newest positions and never a backlog, and what the server holds for it stays bounded by
//! the number of units.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue};
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use shouhu_dispatch::hub::{ClientFilter, ClientSession};
use shouhu_dispatch::protocol::{parse_client_message, ClientMessage, ProtocolError, Subscription};
use shouhu_storage::org_units::Scope;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::roles::{grants, Perm};
use crate::auth::Caller;
use crate::clock::rfc3339;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::state::AppState;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(ws))
}

/// The caller of a WebSocket upgrade: bearer header, session cookie, or `?token=` (browsers
/// cannot set headers on a WebSocket). A cookie-authenticated upgrade from another origin is
/// refused (cross-site WebSocket hijacking).
pub struct WsCaller(pub Caller);

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

impl FromRequestParts<AppState> for WsCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let q: Option<TokenQuery> = parts.uri.query().and_then(serde_urlencoded_token);
        let explicit = parts.headers.contains_key(header::AUTHORIZATION);
        if let Some(t) = q.and_then(|q| q.token).filter(|t| !t.is_empty()) {
            if !explicit {
                let v = HeaderValue::from_str(&format!("Bearer {t}"))
                    .map_err(|_| ApiError::unauthenticated("malformed token"))?;
                parts.headers.insert(header::AUTHORIZATION, v);
            }
        } else if !explicit {
            // Cookie authentication: the page must be ours.
            if let Some(origin) = parts
                .headers
                .get(header::ORIGIN)
                .and_then(|v| v.to_str().ok())
            {
                let host = parts
                    .headers
                    .get(header::HOST)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                let origin_host = origin.split("://").nth(1).unwrap_or("");
                if origin_host != host {
                    return Err(ApiError::forbidden(
                        "cross-origin WebSocket with cookie authentication",
                    ));
                }
            }
        }
        Ok(WsCaller(Caller::from_request_parts(parts, state).await?))
    }
}

fn serde_urlencoded_token(q: &str) -> Option<TokenQuery> {
    let token = q.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == "token").then(|| v.to_string())
    });
    Some(TokenQuery { token })
}

/// The live map's WebSocket: a snapshot, then batched deltas and events; the phone app sends
/// its positions on it. See `docs/api/dispatch-ws.md`.
#[utoipa::path(get, path = "/dispatch/ws", tag = "dispatch",
    responses((status = 101, description = "WebSocket; messages in docs/api/dispatch-ws.md"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn ws(
    State(state): State<AppState>,
    WsCaller(caller): WsCaller,
    upgrade: WebSocketUpgrade,
) -> ApiResult<Response> {
    let can_view = grants(&caller.account.role, Perm::DispatchView);
    let reports = state.hub.officer_of_account(&caller.account.id).is_some();
    if !can_view && !reports {
        return Err(ApiError::forbidden(
            "neither a dispatch viewer nor an officer's phone app",
        ));
    }
    let vis = match &caller.scope {
        Scope::All => None,
        s => Some(Arc::new(state.db.org_units().visible_ids(s).await?)),
    };
    Ok(upgrade
        .max_message_size(shouhu_dispatch::protocol::MAX_MESSAGE_BYTES)
        // tungstenite zero-fills its read buffer before each read; clients send little.
        .read_buffer_size(4096)
        // Each message goes out as it is sent (every send is flushed anyway): no 128 KiB
        // write buffer per client on top of the message.
        .write_buffer_size(0)
        .on_upgrade(move |socket| async move {
            metrics::gauge!("shouhu_dispatch_ws_clients").increment(1.0);
            run(socket, state, caller, can_view, vis).await;
            metrics::gauge!("shouhu_dispatch_ws_clients").decrement(1.0);
        }))
}

/// The origin of the shared tick grid of all clients.
static TICK_ORIGIN: std::sync::OnceLock<tokio::time::Instant> = std::sync::OnceLock::new();

/// Longest a send may block before the client is dropped as dead.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);

async fn send(tx: &mut futures::stream::SplitSink<WebSocket, Message>, text: String) -> bool {
    metrics::counter!("shouhu_dispatch_ws_bytes_total").increment(text.len() as u64);
    matches!(
        tokio::time::timeout(SEND_TIMEOUT, tx.send(Message::Text(text.into()))).await,
        Ok(Ok(()))
    )
}

async fn close(
    tx: &mut futures::stream::SplitSink<WebSocket, Message>,
    code: u16,
    err: &str,
    message: String,
) {
    let body = serde_json::json!({"type": "error", "code": err, "message": message}).to_string();
    let _ = send(tx, body).await;
    let reason: String = message.chars().take(60).collect();
    let _ = tx
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        })))
        .await;
}

async fn filter_for(
    state: &AppState,
    sub: &Subscription,
    vis: &Option<Arc<HashSet<String>>>,
) -> ApiResult<ClientFilter> {
    let orgs = match sub.org_unit_id.as_deref().filter(|s| !s.is_empty()) {
        Some(o) => {
            let sub_ids = state
                .db
                .org_units()
                .visible_ids(&Scope::Subtree(o.to_string()))
                .await?;
            Some(Arc::new(match vis {
                Some(v) => sub_ids.intersection(v).cloned().collect(),
                None => sub_ids,
            }))
        }
        None => vis.clone(),
    };
    Ok(state.hub.filter(sub, orgs, vis.clone()))
}

async fn run(
    socket: WebSocket,
    state: AppState,
    caller: Caller,
    can_view: bool,
    vis: Option<Arc<HashSet<String>>>,
) {
    let (mut tx, mut rx) = socket.split();
    let hub = state.hub.clone();
    let mut batches = hub.batches();
    let mut urgent = hub.urgent();
    let mut session = ClientSession::new(ClientFilter::new(
        &Subscription::default(),
        vis.clone(),
        vis.clone(),
    ));
    if can_view {
        let f = ClientFilter::new(&Subscription::default(), vis.clone(), vis.clone());
        let snap = session.snapshot(f, &hub.frames(), state.now());
        if !send(&mut tx, snap).await {
            return;
        }
        while let Some(m) = session.take_units() {
            if !send(&mut tx, m).await {
                return;
            }
        }
    }
    let period = Duration::from_secs_f64(1.0 / state.cfg.dispatch.push_rate_hz);
    // Every client ticks on the same grid, so one wake-up of a worker serves them all.
    let origin = *TICK_ORIGIN.get_or_init(tokio::time::Instant::now);
    let since = origin.elapsed().as_nanos() % period.as_nanos().max(1);
    let first = tokio::time::Instant::now() + (period - Duration::from_nanos(since as u64));
    let mut tick = tokio::time::interval_at(first, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            m = rx.next() => {
                let text = match m {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                    Some(Ok(Message::Ping(_))) | Some(Ok(Message::Pong(_))) => continue,
                    Some(Ok(Message::Binary(_))) => {
                        close(&mut tx, 1003, "bad_message", "binary frames are not part of this protocol".into()).await;
                        break;
                    }
                    Some(Ok(Message::Text(t))) => t,
                };
                match parse_client_message(text.as_str()) {
                    Err(e) => {
                        let code = if matches!(e, ProtocolError::TooLarge(_)) { 1009 } else { 1003 };
                        tracing::info!(account = %caller.account.username, error = %e, "dispatch WebSocket: bad message");
                        close(&mut tx, code, "bad_message", e.to_string()).await;
                        break;
                    }
                    Ok(ClientMessage::Ping) => {
                        let pong = serde_json::json!({"type": "pong", "server_time": rfc3339(state.now())}).to_string();
                        if !send(&mut tx, pong).await { break; }
                    }
                    Ok(ClientMessage::Subscribe(sub)) => {
                        if !can_view {
                            let m = serde_json::json!({"type": "error", "code": "forbidden", "message": "this account may not view units"}).to_string();
                            if !send(&mut tx, m).await { break; }
                            continue;
                        }
                        match Box::pin(filter_for(&state, &sub, &vis)).await {
                            Ok(f) => {
                                let snap = session.snapshot(f, &hub.frames(), state.now());
                                if !send(&mut tx, snap).await { break; }
                                let mut closed = false;
                                while let Some(m) = session.take_units() {
                                    if !send(&mut tx, m).await { closed = true; break; }
                                }
                                if closed { break; }
                            }
                            Err(e) => {
                                close(&mut tx, 1011, "internal", e.message.clone()).await;
                                break;
                            }
                        }
                    }
                    Ok(ClientMessage::Positions { positions }) => {
                        let reply = match crate::routes::dispatch::take_app_positions(&state, &caller, &positions) {
                            Ok(ack) if ack.accepted == 0 && !ack.rejected.is_empty() => serde_json::json!({
                                "type": "error", "code": "invalid_position", "message": "no position of the batch was valid", "rejected": ack.rejected}),
                            Ok(ack) => serde_json::json!({"type": "positions_ack", "accepted": ack.accepted, "rejected": ack.rejected}),
                            Err(e) => serde_json::json!({"type": "error", "code": "forbidden", "message": e.message}),
                        };
                        if !send(&mut tx, reply.to_string()).await { break; }
                    }
                }
            }
            e = urgent.recv(), if can_view => match e {
                Ok(e) => {
                    if let Some(m) = session.urgent_message(&e) {
                        if !send(&mut tx, m).await { break; }
                    }
                }
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => break,
            },
            _ = tick.tick() => {
                // Take in what was broadcast since the last tick: one wake-up per period, not
                // one per batch.
                if can_view {
                    loop {
                        match batches.try_recv() {
                            Ok(b) => { session.on_batch(&b); }
                            Err(TryRecvError::Lagged(_)) => {
                                hub.stats.resyncs.fetch_add(1, Ordering::Relaxed);
                                metrics::counter!("shouhu_dispatch_ws_resyncs_total").increment(1);
                                session.resync(&hub.frames());
                            }
                            Err(TryRecvError::Empty) => break,
                            Err(TryRecvError::Closed) => return,
                        }
                    }
                }
                if let Some(m) = session.take_events() {
                    if !send(&mut tx, m).await { break; }
                }
                let mut closed = false;
                while let Some(m) = session.take_units() {
                    if !send(&mut tx, m).await { closed = true; break; }
                }
                if closed { break; }
            }
        }
    }
}
