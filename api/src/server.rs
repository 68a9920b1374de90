//! Wiring: state from configuration, the router with its layers, and the listeners.
//!
//! [`serve`] takes bound listeners and a shutdown future (tests bind `127.0.0.1:0`); it serves
//! HTTP or HTTPS (rustls, when `http.tls_cert`/`tls_key` are set) and the Prometheus metrics
//! listener, and drains in-flight requests on shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use shouhu_storage::blob::LocalBlobStore;
use shouhu_storage::crypto::FieldCipher;
use shouhu_storage::Db;
use tokio::net::TcpListener;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::services::{ServeDir, ServeFile};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

use crate::auth::SessionCache;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::state::AppState;

/// Connect the database, apply migrations, open the blob store and load the media-token key.
pub async fn build_state(cfg: Config, clock: Arc<dyn Clock>) -> anyhow::Result<AppState> {
    shouhu_storage::private_fs::create_dir_all(&cfg.server.data_dir).map_err(|e| {
        anyhow::anyhow!(
            "cannot create data directory {}: {e}",
            cfg.server.data_dir.display()
        )
    })?;
    let db = Db::connect_tuned(
        &cfg.database_url(),
        cfg.database.max_connections,
        cfg.database.sqlite_tuning(),
    )
    .await?;
    db.migrate().await?;
    build_state_with_db(cfg, clock, db).await
}

/// State around an open, migrated database (tests share one database between servers).
pub async fn build_state_with_db(
    cfg: Config,
    clock: Arc<dyn Clock>,
    db: Db,
) -> anyhow::Result<AppState> {
    shouhu_storage::private_fs::create_dir_all(&cfg.server.data_dir)?;
    crate::auth::password::set_concurrency(cfg.auth.hash_concurrency);
    let media_key = media_key(&cfg)?;
    let db = db.with_field_cipher(Arc::new(field_cipher(&cfg)?));
    let system = shouhu_storage::audit::Actor {
        account_id: None,
        username: Some("system".into()),
        ip: None,
    };
    let sealed = db
        .seal_personal_data(&shouhu_storage::audit::AuditEntry::new(
            &system,
            "personal_data.seal",
            clock.now_ms(),
        ))
        .await?;
    if sealed > 0 {
        tracing::info!(rows = sealed, "storage.personal_data_sealed");
    }
    let blobs: Arc<dyn shouhu_storage::blob::BlobStore> = match cfg.blob.backend.as_str() {
        "local" => Arc::new(LocalBlobStore::new(cfg.server.data_dir.join("blobs"))),
        "s3" => {
            let s3 = crate::s3::S3BlobStore::new(&cfg.blob)?;
            s3.ensure_bucket()
                .await
                .map_err(|e| anyhow::anyhow!("blob store {}: {e}", cfg.blob.s3_endpoint))?;
            Arc::new(s3)
        }
        other => anyhow::bail!("blob.backend must be \"local\" or \"s3\", not {other:?}"),
    };
    let now: Arc<dyn Fn() -> i64 + Send + Sync> = {
        let c = clock.clone();
        Arc::new(move || c.now_ms())
    };
    let hub = shouhu_dispatch::hub::Hub::start(db.clone(), hub_config(&cfg), now.clone()).await?;
    let open_org = if cfg.jt808.open_registration {
        Some(open_registration_org(&db, &cfg.jt808.open_registration_org_unit).await?)
    } else {
        None
    };
    let jt808 = shouhu_media::jt808::server::Jt808Server::new(
        db.clone(),
        hub.clone(),
        Arc::new(LiveVehicles(hub.clone())),
        shouhu_media::jt808::server::Jt808Config {
            open_registration_org: open_org,
            auth_timeout: Duration::from_secs(cfg.jt808.auth_timeout_secs),
            idle_timeout: Duration::from_secs(cfg.jt808.idle_timeout_secs),
            max_connections: cfg.jt808.max_connections,
            source_burst: cfg.jt808.source_burst,
            source_per_sec: cfg.jt808.source_per_sec,
            max_unauthenticated_per_source: cfg.jt808.max_unauthenticated_per_source,
            open_registrations_per_source_per_min: cfg.jt808.open_registrations_per_source_per_min,
        },
        now,
    );
    let sip = crate::sip::start(&cfg, db.clone(), hub.clone());
    crate::sip::load_registry(&db, &sip, &cfg).await?;
    let streams = crate::sip::stream_hub(&cfg, &sip);
    let webrtc = shouhu_media::whep::WhepConfig {
        udp_ports: (cfg.media.webrtc_udp_port_min, cfg.media.webrtc_udp_port_max),
        nat_ips: cfg.media.webrtc_nat_ips.clone(),
        include_loopback: true,
        only_ip: cfg
            .media
            .bind_ip
            .parse::<std::net::IpAddr>()
            .ok()
            .filter(|ip| !ip.is_unspecified()),
        gather_timeout: Duration::from_secs(3),
    };
    let whep = Arc::new(
        shouhu_media::whep::Whep::new(webrtc.clone())
            .map_err(|e| anyhow::anyhow!("WebRTC: {e}"))?,
    );
    let whip = Arc::new(
        shouhu_media::whip::Whip::new(webrtc).map_err(|e| anyhow::anyhow!("WebRTC: {e}"))?,
    );
    let signer = Arc::new(evidence_signer(&cfg)?);
    let recorder = shouhu_media::recorder::Recorder::new(
        streams.clone(),
        db.clone(),
        blobs.clone(),
        signer.clone(),
        shouhu_media::recorder::RecorderConfig {
            segment_secs: cfg.recording.segment_secs.max(1),
            spool_dir: cfg.server.data_dir.join("spool"),
            start_timeout: Duration::from_secs(cfg.recording.start_timeout_secs.max(1)),
            retry: Duration::from_secs(5),
        },
        {
            let c = clock.clone();
            Arc::new(move || c.now_ms())
        },
    );
    Ok(AppState {
        recorder,
        signer,
        low_disk: Default::default(),
        batches: Arc::new(crate::documents::batch::Batches::new(
            cfg.documents.batch_workers,
            cfg.documents.max_open_batches,
        )),
        imports: Default::default(),
        login_throttle: crate::auth::throttle::LoginThrottle::new(
            cfg.auth.login_burst,
            cfg.auth.login_per_minute,
            cfg.auth.login_concurrent_per_address,
        ),
        subprocesses: Arc::new(crate::subprocess::Subprocesses::new(
            cfg.media.max_subprocesses,
            Duration::from_secs(cfg.media.subprocess_queue_secs),
            Duration::from_secs(cfg.media.subprocess_timeout_secs),
        )),
        calls: Default::default(),
        whep,
        whip,
        streams,
        sip,
        db,
        cfg: Arc::new(cfg),
        clock,
        sessions: Arc::new(SessionCache::default()),
        blobs,
        media_key: Arc::new(media_key),
        tls: false,
        hub,
        jt808,
    })
}

/// Vehicles a terminal's registration created or re-bound go live in the dispatch hub at once.
struct LiveVehicles(Arc<shouhu_dispatch::hub::Hub>);

impl shouhu_media::jt808::server::VehicleRegistry for LiveVehicles {
    fn vehicle_changed<'a>(
        &'a self,
        vehicle_id: &'a str,
    ) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            if let Err(e) = self.0.refresh_vehicle(vehicle_id).await {
                tracing::error!(vehicle = %vehicle_id, error = %e, "dispatch.registry_refresh_failed");
            }
        })
    }
}

/// The dispatch hub's settings from the configuration.
pub fn hub_config(cfg: &Config) -> shouhu_dispatch::hub::HubConfig {
    let d = &cfg.dispatch;
    let s = |secs: u64| secs as i64 * 1000;
    shouhu_dispatch::hub::HubConfig {
        core: shouhu_dispatch::core::CoreConfig {
            ref_lat: d.reference_latitude,
            online_timeout_ms: [
                s(d.online_timeout_jt808_secs),
                s(d.online_timeout_gb28181_secs),
                s(d.online_timeout_app_secs),
            ],
            offline_after_ms: s(d.offline_after_secs),
            max_speed_kmh: d.max_speed_kmh,
            jump_min_m: 500.0,
        },
        enterprise_radius_m: d.enterprise_radius_m,
        track_retention_days: d.track_retention_days,
        history_flush: Duration::from_millis(d.history_flush_ms.clamp(10, 60_000)),
        ..Default::default()
    }
}

/// The org unit open JT/T 808 registration puts new vehicles in: by code, or the root.
async fn open_registration_org(db: &Db, code: &str) -> anyhow::Result<String> {
    if !code.is_empty() {
        return db
            .org_units()
            .by_code(code)
            .await?
            .map(|u| u.id)
            .ok_or_else(|| {
                anyhow::anyhow!("jt808.open_registration_org_unit: no org unit with code {code}")
            });
    }
    db.org_units()
        .list()
        .await?
        .into_iter()
        .find(|u| u.parent_id.is_none())
        .map(|u| u.id)
        .ok_or_else(|| {
            anyhow::anyhow!("jt808.open_registration needs an org unit; create the root first")
        })
}

/// Bind the SIP UDP socket and TCP listener on one address; with port 0, the TCP listener takes
/// the port the UDP socket got (retrying if another process holds it on TCP).
async fn bind_sip(listen: SocketAddr) -> anyhow::Result<(tokio::net::UdpSocket, TcpListener)> {
    let err = |e: std::io::Error| anyhow::anyhow!("cannot listen on sip.listen {listen}: {e}");
    for _ in 0..20 {
        let udp = tokio::net::UdpSocket::bind(listen).await.map_err(err)?;
        let port = udp.local_addr()?.port();
        match TcpListener::bind(SocketAddr::new(listen.ip(), port)).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if listen.port() == 0 && e.kind() == std::io::ErrorKind::AddrInUse => continue,
            Err(e) => return Err(err(e)),
        }
    }
    anyhow::bail!("cannot find a port free on both UDP and TCP for sip.listen {listen}")
}

/// State with the system clock.
pub async fn build_default_state(cfg: Config) -> anyhow::Result<AppState> {
    build_state(cfg, Arc::new(SystemClock)).await
}

fn media_key(cfg: &Config) -> anyhow::Result<[u8; 32]> {
    key_from(
        cfg,
        &cfg.auth.media_token_key.0,
        "media-token.key",
        "auth.media_token_key",
    )
}

/// The SM4 keys sealing personal data: `auth.field_key` seals, it and
/// `auth.previous_field_keys` open.
pub fn field_cipher(cfg: &Config) -> anyhow::Result<FieldCipher> {
    let key: [u8; 16] = key_from(cfg, &cfg.auth.field_key.0, "field.key", "auth.field_key")?;
    FieldCipher::new(&key)
        .with_previous_hex(
            cfg.auth
                .previous_field_keys
                .0
                .split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty()),
        )
        .map_err(|e| anyhow::anyhow!("auth.previous_field_keys: {e}"))
}

/// The key signing recordings' chain heads and export manifests.
pub fn evidence_signer(cfg: &Config) -> anyhow::Result<shouhu_storage::evidence::Signer> {
    let seed: [u8; 32] = key_from(
        cfg,
        &cfg.auth.evidence_key.0,
        "evidence.key",
        "auth.evidence_key",
    )?;
    Ok(shouhu_storage::evidence::Signer::from_seed(&seed))
}

/// The public key (hex) of the configured evidence key, without creating one.
pub fn evidence_public_key(cfg: &Config) -> anyhow::Result<String> {
    let configured = !cfg.auth.evidence_key.0.is_empty();
    if !configured && !cfg.server.data_dir.join("evidence.key").exists() {
        anyhow::bail!(
            "no evidence key in auth.evidence_key or {}: pass the server's public key with --public-key",
            cfg.server.data_dir.join("evidence.key").display()
        );
    }
    Ok(evidence_signer(cfg)?.public_key_hex())
}

/// A key of `N` bytes: the configured hex value, else the one generated once into
/// `<data_dir>/<file>` (created with fresh random bytes on first start).
fn key_from<const N: usize>(
    cfg: &Config,
    configured: &str,
    file: &str,
    name: &str,
) -> anyhow::Result<[u8; N]> {
    let hex_key = if configured.is_empty() {
        let path = cfg.server.data_dir.join(file);
        match std::fs::read_to_string(&path) {
            Ok(s) => s.trim().to_string(),
            Err(_) => {
                use rand::RngCore;
                let mut k = [0u8; N];
                rand::rngs::OsRng.fill_bytes(&mut k);
                let s = hex::encode(k);
                write_private(&path, &s)
                    .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
                s
            }
        }
    } else {
        configured.to_string()
    };
    let bad = || anyhow::anyhow!("{name} must be {} hex characters", N * 2);
    hex::decode(hex_key.trim())
        .map_err(|_| bad())?
        .try_into()
        .map_err(|_| bad())
}

/// Write a secret readable by the owner only.
fn write_private(path: &std::path::Path, content: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    opts.open(path)?.write_all(content.as_bytes())
}

/// The whole application router.
pub fn router(state: AppState) -> Router {
    let body_timeout = Duration::from_secs(state.cfg.http.body_timeout_secs.max(1));
    let (api, doc) = crate::routes::api(&state);
    let doc_json = Arc::new(doc.to_pretty_json().expect("OpenAPI serialises"));
    let web_dir = state.cfg.http.web_dir.clone();
    let index = web_dir.join("index.html");
    let web = ServeDir::new(&web_dir)
        .append_index_html_on_directories(true)
        .fallback(ServeFile::new(&index));
    let api = api
        .route(
            "/api/v1/openapi.json",
            get(move || {
                let d = doc_json.clone();
                async move {
                    (
                        [(header::CONTENT_TYPE, "application/json")],
                        d.as_str().to_owned(),
                    )
                }
            }),
        )
        .route(
            "/api/docs",
            get(|| async { axum::response::Redirect::permanent("/api-docs/") }),
        )
        .route("/healthz", get(crate::routes::health::healthz))
        .route(
            "/api/{*rest}",
            axum::routing::any(|| async { crate::error::ApiError::not_found("route") }),
        )
        .fallback_service(web_or_404(web, web_dir.exists()))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            audit_out_of_scope,
        ))
        .layer(middleware::from_fn(no_store_api))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::request_guard::reject_malformed_uri,
        ))
        .layer(middleware::from_fn(http_metrics))
        .with_state(state);
    api.layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let rid = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
            tracing::info_span!("http", http.method = %req.method(), http.path = %req.uri().path(), request.id = %rid)
        }))
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        // A request body that stalls ends the request (`http.body_timeout_secs`).
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(body_timeout))
}

fn web_or_404(web: ServeDir<ServeFile>, built: bool) -> Router {
    if built {
        Router::new().fallback_service(web)
    } else {
        Router::new().fallback(|req: Request| async move {
            if req.uri().path().starts_with("/api/") {
                crate::error::ApiError::not_found("route").into_response()
            } else {
                (
                    StatusCode::NOT_FOUND,
                    "the web UI is not built: run `make web`",
                )
                    .into_response()
            }
        })
    }
}

async fn no_store_api(req: Request, next: Next) -> Response {
    let api = req.uri().path().starts_with("/api/");
    let mut resp = next.run(req).await;
    if api {
        resp.headers_mut()
            .entry(header::CACHE_CONTROL)
            .or_insert(HeaderValue::from_static("no-store"));
        if resp.status() == StatusCode::NOT_FOUND
            && resp
                .headers()
                .get(header::CONTENT_TYPE)
                .is_none_or(|c| c != "application/json")
        {
            return crate::error::ApiError::not_found("route").into_response();
        }
        if resp.status() == StatusCode::METHOD_NOT_ALLOWED {
            return crate::error::ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this route",
            )
            .into_response();
        }
    }
    resp
}

/// The table (and its key column) holding rows of a kind named by a `not_found` answer, for the
/// kinds whose reads and writes are bounded by the caller's org scope.
fn scoped_table(kind: &str) -> Option<(&'static str, &'static str)> {
    if kind == "recorder" {
        // Recorders are keyed by their GB/T 28181 device id.
        return Some(("recorders", "device_id"));
    }
    Some((
        match kind {
            "account" => "accounts",
            "account application" => "account_applications",
            "case" => "cases",
            "document" => "case_documents",
            "rendered document" => "rendered_documents",
            "enterprise" => "enterprises",
            "geofence" => "geofences",
            "hazard" => "hazards",
            "inspection" => "inspections",
            "over-cap filing" => "over_cap_filings",
            "officer" => "officers",
            "org unit" => "org_units",
            "plan" => "plans",
            "plan visit" => "plan_visits",
            "recording" => "recordings",
            "review" => "case_reviews",
            "sos alarm" => "sos_alarms",
            "unit" | "vehicle" => "vehicles",
            "work order" => "work_orders",
            _ => return None,
        },
        "id",
    ))
}

/// The central out-of-scope audit: a `not_found` answer of an API route about a row that does
/// exist (a scoped read or write hid it from the caller, or the handler said so with
/// [`crate::error::ApiError::out_of_scope`]) writes one `denied` audit row naming the caller,
/// the row, the method and the matched route. The client's answer is the ordinary 404.
async fn audit_out_of_scope(State(state): State<AppState>, req: Request, next: Next) -> Response {
    use axum::extract::{ConnectInfo, FromRequestParts, RawPathParams};
    let Some(route) = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .filter(|r| r.starts_with("/api/v1/"))
    else {
        return next.run(req).await;
    };
    let (mut parts, body) = req.into_parts();
    let params: Vec<String> = RawPathParams::from_request_parts(&mut parts, &())
        .await
        .map(|p| p.iter().map(|(_, v)| v.to_string()).collect())
        .unwrap_or_default();
    // What the caller's identity is read from, kept for after the answer.
    let mut probe = axum::http::Request::<()>::builder()
        .method(parts.method.clone())
        .uri(parts.uri.clone())
        .body(())
        .expect("request parts are valid");
    *probe.headers_mut() = parts.headers.clone();
    if let Some(ci) = parts.extensions.get::<ConnectInfo<SocketAddr>>() {
        probe.extensions_mut().insert(*ci);
    }
    let resp = next.run(Request::from_parts(parts, body)).await;
    if resp.status() != StatusCode::NOT_FOUND {
        return resp;
    }
    let Some(mark) = resp
        .extensions()
        .get::<crate::error::NotFoundMark>()
        .cloned()
    else {
        return resp;
    };
    let hidden = match (mark.hidden_id, scoped_table(&mark.kind)) {
        (Some(id), _) => Some(id),
        (None, Some((table, key))) => {
            let mut found = None;
            for id in params {
                match state.db.row_exists_by(table, key, &id).await {
                    Ok(true) => {
                        found = Some(id);
                        break;
                    }
                    Ok(false) => {}
                    Err(e) => tracing::error!(error = %e, "out-of-scope check failed"),
                }
            }
            found
        }
        (None, None) => None,
    };
    let Some(id) = hidden else {
        return resp;
    };
    let (mut probe, _) = probe.into_parts();
    let Ok(crate::auth::AnyCaller(caller)) =
        crate::auth::AnyCaller::from_request_parts(&mut probe, &state).await
    else {
        return resp;
    };
    let verb =
        if probe.method == axum::http::Method::GET || probe.method == axum::http::Method::HEAD {
            "read"
        } else {
            "write"
        };
    let action = format!("{}.{verb}", mark.kind.replace([' ', '-'], "_"));
    let entry = caller
        .audit(&action, state.clock.now_ms())
        .target(&mark.kind.replace([' ', '-'], "_"), id)
        .outcome(shouhu_storage::audit::Outcome::Denied)
        .details(serde_json::json!({"method": probe.method.as_str(), "route": route}));
    if let Err(e) = state.db.audit().record(&entry).await {
        tracing::error!(error = %e, "could not write the denied audit row");
    }
    resp
}

async fn http_metrics(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let start = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    metrics::counter!("http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status).increment(1);
    metrics::histogram!("http_request_duration_seconds", "method" => method, "route" => route)
        .record(start.elapsed().as_secs_f64());
    resp
}

async fn metrics_page(
    State(handle): State<metrics_exporter_prometheus::PrometheusHandle>,
) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
}

/// One run of the scheduled work-order reminders; returns how many recipients were reminded.
pub async fn remind_work_orders(state: &AppState) -> anyhow::Result<u64> {
    const DAY_MS: i64 = 86_400_000;
    let actor = shouhu_storage::audit::Actor {
        account_id: None,
        username: Some("system".into()),
        ip: None,
    };
    let audit = shouhu_storage::audit::AuditEntry::new(&actor, "work_order.remind", state.now());
    let n = state
        .db
        .work_orders()
        .auto_remind(DAY_MS, DAY_MS, &audit)
        .await?;
    if n > 0 {
        tracing::info!(reminded = n, "scheduled work-order reminders");
    }
    Ok(n)
}

/// Serve until `shutdown` resolves, then drain for up to 10 s.
pub async fn serve(
    mut state: AppState,
    http: TcpListener,
    metrics_listener: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|v| *v).await;
    };
    if let Some(ml) = metrics_listener {
        let handle = crate::telemetry::prometheus();
        let app = Router::new()
            .route("/metrics", get(metrics_page))
            .with_state(handle);
        let rx = stop_rx.clone();
        tokio::spawn(async move {
            if let Err(e) = axum::serve(ml, app).with_graceful_shutdown(wait(rx)).await {
                tracing::error!(error = %e, "metrics listener failed");
            }
        });
    }
    // Scheduled work-order reminders: hourly, recipients that have not replied to an order due
    // within a day (or overdue) are reminded, at most once a day each.
    {
        let st = state.clone();
        let mut rx = stop_rx.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = rx.wait_for(|v| *v) => break,
                }
                if let Err(e) = remind_work_orders(&st).await {
                    tracing::warn!(error = %e, "scheduled work-order reminders failed");
                }
            }
        });
    }
    let tls = match (&state.cfg.http.tls_cert, &state.cfg.http.tls_key) {
        (Some(c), Some(k)) => {
            let _ = rustls::crypto::ring::default_provider().install_default();
            Some(
                axum_server::tls_rustls::RustlsConfig::from_pem_file(c, k)
                    .await
                    .map_err(|e| anyhow::anyhow!("TLS certificate or key: {e}"))?
                    .get_inner(),
            )
        }
        _ => None,
    };
    state.tls = tls.is_some();
    if state.cfg.jt808.enabled {
        let l = TcpListener::bind(state.cfg.jt808.listen)
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot listen on jt808.listen {}: {e}",
                    state.cfg.jt808.listen
                )
            })?;
        tracing::info!(jt808 = %l.local_addr()?, "JT/T 808 listening");
        tokio::spawn(state.jt808.clone().run(l, stop_rx.clone()));
    }
    if state.cfg.sip.enabled {
        let (udp, tcp) = bind_sip(state.cfg.sip.listen).await?;
        state
            .sip
            .run(udp, tcp, stop_rx.clone())
            .map_err(|e| anyhow::anyhow!("SIP server: {e}"))?;
    }
    crate::recording_jobs::start(&state, stop_rx.clone()).await?;
    let audit_seal = crate::audit_seal::start(&state, stop_rx.clone());
    let recorder = state.recorder.clone();
    let calls = state.calls.clone();
    let hub = state.hub.clone();
    let addr = http.local_addr()?;
    let limits = crate::http_server::HttpLimits::from_config(&state.cfg.http);
    let app = router(state);
    tracing::info!(listen = %addr, tls = tls.is_some(), "HTTP listening");
    crate::http_server::serve(
        http,
        app,
        tls,
        limits,
        stop_rx.clone(),
        Duration::from_secs(10),
    )
    .await;
    // Calls end (their recordings with them), then every other recording, each with its last
    // segment stored and its chain head signed.
    calls.shutdown().await;
    recorder.shutdown().await;
    hub.close().await;
    audit_seal.finish().await;
    tracing::info!("server stopped");
    Ok(())
}

/// Resolve on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutdown requested");
}
