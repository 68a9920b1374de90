//! Wiring of the GB/T 28181 SIP server: its settings from `[sip]`, the recorder registry pushed
//! into it, device events mapped to dispatch units, and device updates persisted.

use std::sync::Arc;

use shouhu_media::gb28181::platform::{DeviceUpdate, PlatformConfig};
use shouhu_media::gb28181::server::{SipServer, SipServerConfig};
use shouhu_media::gb28181::Secret;
use shouhu_media::model::{UnitEvent, UnitEventSink};
use shouhu_media::sip::digest::Algorithm;
use shouhu_storage::recorders::{AccessReport, Channel, SipSecret};
use shouhu_storage::Db;
use tokio::sync::mpsc;

use crate::config::Config;

/// The SIP server's settings (the advertised address is resolved when the socket is bound).
pub fn server_config(cfg: &Config) -> SipServerConfig {
    let s = &cfg.sip;
    SipServerConfig {
        platform: PlatformConfig {
            platform_id: s.platform_id.clone(),
            domain: s.domain.clone(),
            advertised: s.advertise.clone(),
            algorithms: s
                .digest_algorithms
                .iter()
                .filter_map(|a| Algorithm::from_token(a))
                .collect(),
            max_expires_secs: s.max_expires_secs,
            keepalive_interval_secs: s.keepalive_interval_secs,
            keepalive_misses: s.keepalive_misses,
            position_interval_secs: s.position_interval_secs,
            nonce_lifetime_secs: 300,
            rate_burst: s.rate_burst,
            rate_per_sec: s.rate_per_sec,
            user_agent: concat!("Shouhu/", env!("CARGO_PKG_VERSION")).into(),
        },
        max_tcp_connections: s.max_tcp_connections,
        max_tcp_per_address: s.max_tcp_per_address,
        tcp_idle_timeout: std::time::Duration::from_secs(s.tcp_idle_timeout_secs.max(1)),
    }
}

/// The stream hub over the SIP server. The SDP address is `media.advertise_ip`, else the host
/// of the SIP server's advertised address (resolved when the first stream starts).
pub fn stream_hub(cfg: &Config, sip: &SipServer) -> shouhu_media::hub::StreamHub {
    let m = &cfg.media;
    let advertise_ip = m
        .advertise_ip
        .parse()
        .ok()
        .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
    shouhu_media::hub::StreamHub::new(
        shouhu_media::hub::StreamHubConfig {
            advertise_ip,
            bind_ip: m
                .bind_ip
                .parse()
                .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0])),
            rtp_ports: (m.rtp_port_min, m.rtp_port_max),
            shared_port: m.rtp_shared_port,
            no_media_timeout: std::time::Duration::from_secs(m.no_media_timeout_secs.max(1)),
            grace: std::time::Duration::from_secs(m.grace_secs),
            answer_timeout: std::time::Duration::from_secs(10),
            domain: cfg.sip.domain.clone(),
            platform_id: cfg.sip.platform_id.clone(),
            transport: shouhu_media::gb28181::sdp::MediaTransport::parse(&m.transport)
                .unwrap_or(shouhu_media::gb28181::sdp::MediaTransport::Udp),
        },
        sip.clone(),
    )
}

/// Device ids → dispatch units: a bound recorder reports for its officer.
struct DeviceSink {
    hub: Arc<shouhu_dispatch::hub::Hub>,
}

impl UnitEventSink for DeviceSink {
    fn publish(&self, event: UnitEvent) {
        let map = |id: &str| self.hub.unit_for_device(id);
        let mapped = match event {
            UnitEvent::Position { mut position, live } => map(&position.unit_id).map(|u| {
                position.unit_id = u;
                UnitEvent::Position { position, live }
            }),
            UnitEvent::Online { unit_id, source } => {
                map(&unit_id).map(|u| UnitEvent::Online { unit_id: u, source })
            }
            UnitEvent::Offline { unit_id, source } => {
                map(&unit_id).map(|u| UnitEvent::Offline { unit_id: u, source })
            }
            UnitEvent::Sos {
                unit_id,
                time_ms,
                source,
            } => map(&unit_id).map(|u| UnitEvent::Sos {
                unit_id: u,
                time_ms,
                source,
            }),
        };
        if let Some(e) = mapped {
            self.hub.publish(e);
        }
    }
}

/// Create the server (not yet listening) and the task that persists device updates.
pub fn start(cfg: &Config, db: Db, hub: Arc<shouhu_dispatch::hub::Hub>) -> SipServer {
    use rand::RngCore;
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let (tx, rx) = mpsc::unbounded_channel();
    let server = SipServer::new(server_config(cfg), secret, Arc::new(DeviceSink { hub }), tx);
    // Nonces are single-use across restarts and signalling nodes: kept in the database.
    server.use_nonce_store(db.clone());
    tokio::spawn(persist_updates(db, rx));
    server
}

/// The registry entry of a stored recorder: its own HA1s, else the shared password; `None` when
/// it cannot register (inactive, no password at all, or a password set for another realm).
pub fn secret_of(s: &SipSecret, cfg: &Config) -> Option<Secret> {
    if s.status != "active" {
        return None;
    }
    match (&s.sip_realm, &s.sip_ha1_md5, &s.sip_ha1_sha256) {
        (Some(realm), Some(md5), Some(sha256)) if *realm == cfg.sip.domain => Some(Secret::Ha1 {
            md5: md5.clone(),
            sha256: sha256.clone(),
        }),
        (Some(realm), Some(_), _) => {
            tracing::warn!(device.id = %s.device_id, realm = %realm, domain = %cfg.sip.domain,
                "recorder password was set for another SIP domain; set it again");
            None
        }
        _ if !cfg.sip.password.0.is_empty() => Some(Secret::Password(cfg.sip.password.0.clone())),
        _ => None,
    }
}

/// Push every stored recorder into the server's registry.
pub async fn load_registry(db: &Db, server: &SipServer, cfg: &Config) -> anyhow::Result<()> {
    let mut n = 0;
    let mut unusable = 0;
    for s in db.recorders().secrets().await? {
        match secret_of(&s, cfg) {
            Some(sec) => {
                server.set_device(&s.device_id, sec);
                n += 1;
            }
            None => unusable += 1,
        }
    }
    if unusable > 0 {
        tracing::warn!(unusable, "recorders without a usable SIP password (inactive, none set and no sip.password, or another domain) cannot register");
    }
    tracing::info!(recorders = n, "SIP registry loaded");
    Ok(())
}

/// Re-read one recorder into the registry after it changed.
pub async fn refresh_device(
    db: &Db,
    server: &SipServer,
    cfg: &Config,
    device_id: &str,
) -> anyhow::Result<()> {
    match db
        .recorders()
        .secret(device_id)
        .await?
        .and_then(|s| secret_of(&s, cfg))
    {
        Some(sec) => server.set_device(device_id, sec),
        None => server.remove_device(device_id).await,
    }
    Ok(())
}

/// The SIP password's HA1 values for the configured realm.
pub fn ha1_change(
    cfg: &Config,
    device_id: &str,
    password: Option<&str>,
) -> shouhu_storage::recorders::SipSecretChange {
    use shouhu_storage::recorders::SipSecretChange;
    match password {
        None => SipSecretChange::Keep,
        Some("") => SipSecretChange::Clear,
        Some(p) => {
            let Secret::Ha1 { md5, sha256 } = Secret::from_password(device_id, &cfg.sip.domain, p)
            else {
                unreachable!("from_password makes HA1 values")
            };
            SipSecretChange::Set {
                realm: cfg.sip.domain.clone(),
                md5,
                sha256,
            }
        }
    }
}

async fn persist_updates(db: Db, mut rx: mpsc::UnboundedReceiver<DeviceUpdate>) {
    while let Some(u) = rx.recv().await {
        let now = chrono::Utc::now().timestamp_millis();
        let r = match &u {
            DeviceUpdate::Registered {
                device_id, peer, ..
            } => {
                db.recorders()
                    .record_access(
                        device_id,
                        &AccessReport {
                            transport: Some(peer.transport.token().into()),
                            remote_addr: Some(peer.addr.to_string()),
                            registered_at_ms: Some(now),
                        },
                        now,
                    )
                    .await
            }
            DeviceUpdate::Unregistered { device_id, .. } | DeviceUpdate::Link { device_id, .. } => {
                db.recorders()
                    .record_access(device_id, &AccessReport::default(), now)
                    .await
            }
            DeviceUpdate::Info {
                device_id,
                manufacturer,
                model,
                firmware,
                ..
            } => {
                db.recorders()
                    .record_info(
                        device_id,
                        manufacturer.as_deref(),
                        model.as_deref(),
                        firmware.as_deref(),
                    )
                    .await
            }
            DeviceUpdate::Catalog { device_id, items } => {
                let chans: Vec<Channel> = items
                    .iter()
                    .map(|i| Channel {
                        channel_id: i.device_id.chars().take(64).collect(),
                        name: i.name.as_ref().map(|n| n.chars().take(100).collect()),
                        manufacturer: i
                            .manufacturer
                            .as_ref()
                            .map(|n| n.chars().take(100).collect()),
                        model: i.model.as_ref().map(|n| n.chars().take(100).collect()),
                        status: i.status.as_ref().map(|n| n.chars().take(16).collect()),
                        updated_at_ms: now,
                    })
                    .collect();
                db.recorders()
                    .replace_channels(device_id, &chans, now)
                    .await
            }
            // Answers to queries someone waits for; the SIP server hands them over itself.
            DeviceUpdate::RecordInfo { .. } => Ok(()),
        };
        if let Err(e) = r {
            tracing::warn!(error = %e, update = ?u, "sip.persist_failed");
        }
    }
}
