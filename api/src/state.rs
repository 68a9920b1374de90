//! The shared state of every handler.

use std::sync::Arc;

use shouhu_storage::blob::BlobStore;
use shouhu_storage::Db;

use crate::auth::SessionCache;
use crate::clock::Clock;
use crate::config::Config;

/// Everything a handler needs. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The database.
    pub db: Db,
    /// The configuration.
    pub cfg: Arc<Config>,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// Session cache of this node.
    pub sessions: Arc<SessionCache>,
    /// The blob store.
    pub blobs: Arc<dyn BlobStore>,
    /// Key of signed media tokens.
    pub media_key: Arc<[u8; 32]>,
    /// Whether the HTTP listener speaks TLS (cookies get `Secure`).
    pub tls: bool,
    /// Live dispatch: units, positions, geofences, SOS, WebSocket fan-out.
    pub hub: Arc<shouhu_dispatch::hub::Hub>,
    /// The JT/T 808 terminal server (its listener is bound by `serve`).
    pub jt808: Arc<shouhu_media::jt808::server::Jt808Server>,
    /// The GB/T 28181 SIP server (its sockets are bound by `serve`).
    pub sip: shouhu_media::gb28181::server::SipServer,
    /// The stream hub (live video ingest, one per channel, shared by viewers).
    pub streams: shouhu_media::hub::StreamHub,
    /// WHEP sessions (live video to browsers).
    pub whep: Arc<shouhu_media::whep::Whep>,
    /// WHIP ingest (phone apps publishing a channel).
    pub whip: Arc<shouhu_media::whip::Whip>,
    /// Document batches being rendered or ready for download.
    pub batches: Arc<crate::documents::batch::Batches>,
    /// The recorder (live streams into indexed fMP4 segments).
    pub recorder: shouhu_media::recorder::Recorder,
    /// The server's evidence key (signs chain heads and export manifests).
    pub signer: Arc<shouhu_storage::evidence::Signer>,
    /// Whether the data directory's free space is below `recording.min_free_percent`.
    pub low_disk: Arc<std::sync::atomic::AtomicBool>,
    /// Dispatch calls, open and recently ended.
    pub calls: Arc<crate::calls::Calls>,
    /// Registry imports in progress (and for ten minutes after), by their `X-Import-Id`.
    pub imports: Arc<crate::routes::imports::Imports>,
    /// Login attempts per client address.
    pub login_throttle: crate::auth::throttle::LoginThrottle,
    /// Slots for helper programs on request paths.
    pub subprocesses: Arc<crate::subprocess::Subprocesses>,
}

impl AppState {
    /// Now, ms.
    pub fn now(&self) -> i64 {
        self.clock.now_ms()
    }
}
