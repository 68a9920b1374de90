//! The audit sealing job and `shouhu audit seal|verify`.
//!
//! The job ([`start`]) runs every `audit.seal_interval_secs` and once more at shutdown
//! ([`SealJob::finish`]): it chains every committed audit row not yet sealed
//! ([`shouhu_storage::audit_chain`]; ordinary writes are never serialised behind it) and exports
//! each seal's signed head **outside the database**: to the blob store as
//! `audit-heads/<seal_no, 12 digits>.json` and `audit-heads/latest.json`, and as one JSON line
//! appended (and fsynced) to `audit.heads_file`, which a deployment ships off the machine.
//!
//! `shouhu audit verify` recomputes the chain over the rows as they are now and checks it against
//! the exported heads (the file and/or the blob store), trusting the evidence public key; it
//! names the first row that breaks and exits non-zero.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use shouhu_storage::audit_chain::AuditHead;
use shouhu_storage::blob::{BlobStore, LocalBlobStore};
use shouhu_storage::evidence::Signer;
use shouhu_storage::{Db, StorageError};
use tokio::sync::watch;

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::state::AppState;

/// The blob key of the newest head.
pub const LATEST_KEY: &str = "audit-heads/latest.json";

/// The blob key of a seal's head.
pub fn head_key(seal_no: i64) -> String {
    format!("audit-heads/{seal_no:012}.json")
}

/// What sealing needs: the database, the signing key, where heads go, and the clock.
#[derive(Clone)]
pub struct Sealer {
    db: Db,
    signer: Arc<Signer>,
    blobs: Arc<dyn BlobStore>,
    heads_file: PathBuf,
    settle_ms: i64,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("heads_file", &self.heads_file)
            .finish_non_exhaustive()
    }
}

impl Sealer {
    /// From parts.
    pub fn new(
        db: Db,
        signer: Arc<Signer>,
        blobs: Arc<dyn BlobStore>,
        cfg: &Config,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            db,
            signer,
            blobs,
            heads_file: cfg.audit_heads_file(),
            settle_ms: cfg.audit.settle_secs.saturating_mul(1000) as i64,
            clock,
        }
    }

    /// From the server's state.
    pub fn from_state(state: &AppState) -> Self {
        Self::new(
            state.db.clone(),
            state.signer.clone(),
            state.blobs.clone(),
            &state.cfg,
            state.clock.clone(),
        )
    }

    /// Seal every committed row not yet in the chain and export each new head. An export that
    /// fails is logged and reported as an error after the others were tried (the next seal's
    /// head covers the rows again).
    pub async fn seal_once(&self) -> anyhow::Result<Vec<AuditHead>> {
        let heads = self
            .db
            .audit_chain()
            .seal(&self.signer, self.clock.now_ms(), self.settle_ms)
            .await?;
        let mut failed = None;
        for h in &heads {
            if let Err(e) = self.export(h).await {
                tracing::error!(seal = h.seal_no, error = %e, "audit.head_export_failed");
                failed = Some(e);
            } else {
                tracing::info!(
                    seal = h.seal_no,
                    position = h.position,
                    rows = h.position - h.first_position + 1,
                    "audit.sealed"
                );
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(heads),
        }
    }

    async fn export(&self, head: &AuditHead) -> anyhow::Result<()> {
        let json = serde_json::to_vec(head)?;
        self.blobs.put(&head_key(head.seal_no), &json).await?;
        self.blobs.put(LATEST_KEY, &json).await?;
        let path = self.heads_file.clone();
        tokio::task::spawn_blocking(move || append_line(&path, &json)).await??;
        Ok(())
    }
}

/// Append one line and fsync it.
fn append_line(path: &Path, json: &[u8]) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        shouhu_storage::private_fs::create_dir_all(dir)?;
    }
    // The server's alone (0600) like everything under the data directory; ship it off the
    // machine with a reader of its own.
    let mut f = shouhu_storage::private_fs::create_options()
        .truncate(false)
        .append(true)
        .open(path)
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
    let mut line = json.to_vec();
    line.push(b'\n');
    f.write_all(&line)?;
    f.sync_data()?;
    Ok(())
}

/// The running job.
#[derive(Debug)]
pub struct SealJob {
    sealer: Sealer,
    task: tokio::task::JoinHandle<()>,
}

/// Start the periodic sealing job; it stops when `stop` turns true. Call [`SealJob::finish`]
/// after the last audited work of the shutdown for a final seal.
pub fn start(state: &AppState, mut stop: watch::Receiver<bool>) -> SealJob {
    let sealer = Sealer::from_state(state);
    let every = Duration::from_secs(state.cfg.audit.seal_interval_secs.max(1));
    let s = sealer.clone();
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|v| *v) => break,
            }
            if let Err(e) = s.seal_once().await {
                tracing::warn!(error = %e, "audit.seal_failed");
            }
        }
    });
    SealJob { sealer, task }
}

impl SealJob {
    /// Wait for the periodic loop to end (the stop signal) and seal once more.
    pub async fn finish(self) {
        let _ = self.task.await;
        if let Err(e) = self.sealer.seal_once().await {
            tracing::warn!(error = %e, "audit.seal_failed at shutdown");
        }
    }
}

/// `audit` tasks.
#[derive(Debug, clap::Subcommand)]
pub enum AuditTask {
    /// Seal the committed audit rows not yet chained and export their signed heads now (works
    /// while the server runs).
    Seal,
    /// Check the audit log against the exported signed chain heads: exit 0 when intact, 1 with
    /// the first row that breaks otherwise.
    Verify {
        /// Heads file (JSON lines); default `audit.heads_file`. Given explicitly, it must exist.
        #[arg(long)]
        heads: Option<PathBuf>,
        /// Do not read heads from the blob store (`audit-heads/`).
        #[arg(long)]
        no_blob: bool,
        /// The server's evidence public key (hex); default: the configured evidence key's.
        #[arg(long)]
        public_key: Option<String>,
    },
}

/// The blob store of the configuration (as the server opens it).
async fn blob_store(cfg: &Config) -> anyhow::Result<Arc<dyn BlobStore>> {
    Ok(match cfg.blob.backend.as_str() {
        "local" => Arc::new(LocalBlobStore::new(cfg.server.data_dir.join("blobs"))),
        "s3" => Arc::new(crate::s3::S3BlobStore::new(&cfg.blob)?),
        other => anyhow::bail!("blob.backend must be \"local\" or \"s3\", not {other:?}"),
    })
}

/// Run an `audit` task.
pub async fn run(cfg: Config, task: AuditTask) -> anyhow::Result<()> {
    match task {
        AuditTask::Seal => {
            shouhu_storage::private_fs::create_dir_all(&cfg.server.data_dir)?;
            let db = Db::connect(&cfg.database_url(), 2).await?;
            db.migrate().await?;
            let signer = Arc::new(crate::server::evidence_signer(&cfg)?);
            let sealer = Sealer::new(
                db,
                signer,
                blob_store(&cfg).await?,
                &cfg,
                Arc::new(SystemClock),
            );
            let heads = sealer.seal_once().await?;
            match heads.last() {
                Some(h) => println!(
                    "sealed {} row(s) in {} seal(s); chain length {}, head {} (seal {})",
                    h.position - heads[0].first_position + 1,
                    heads.len(),
                    h.position,
                    h.link,
                    h.seal_no
                ),
                None => println!("nothing to seal"),
            }
            Ok(())
        }
        AuditTask::Verify {
            heads,
            no_blob,
            public_key,
        } => verify(&cfg, heads, no_blob, public_key).await,
    }
}

/// Read the heads of a JSON-lines file.
pub fn read_heads_file(path: &Path) -> anyhow::Result<Vec<AuditHead>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| {
                anyhow::anyhow!("{} line {}: not an audit head: {e}", path.display(), i + 1)
            })
        })
        .collect()
}

/// Heads from the blob store: the newest, and each seal the database lists.
async fn blob_heads(db: &Db, blobs: &dyn BlobStore) -> anyhow::Result<Vec<AuditHead>> {
    let mut keys = vec![LATEST_KEY.to_string()];
    keys.extend(
        db.audit_chain()
            .seal_numbers()
            .await?
            .into_iter()
            .map(head_key),
    );
    let mut out = Vec::new();
    for key in keys {
        match blobs.get(&key).await {
            Ok(bytes) => out.push(
                serde_json::from_slice(&bytes)
                    .map_err(|e| anyhow::anyhow!("blob {key}: not an audit head: {e}"))?,
            ),
            Err(StorageError::NotFound(_)) => {}
            Err(e) => return Err(anyhow::anyhow!("blob {key}: {e}")),
        }
    }
    Ok(out)
}

async fn verify(
    cfg: &Config,
    heads_file: Option<PathBuf>,
    no_blob: bool,
    public_key: Option<String>,
) -> anyhow::Result<()> {
    let key = match public_key {
        Some(k) => k,
        None => crate::server::evidence_public_key(cfg)?,
    };
    let db = Db::connect(&cfg.database_url(), 2).await?;
    let mut heads = Vec::new();
    let mut sources = Vec::new();
    let file = match heads_file {
        Some(f) => Some(f),
        None => Some(cfg.audit_heads_file()).filter(|f| f.exists()),
    };
    if let Some(f) = file {
        let h = read_heads_file(&f)?;
        sources.push(format!("{} head(s) from {}", h.len(), f.display()));
        heads.extend(h);
    }
    if !no_blob {
        let h = blob_heads(&db, blob_store(cfg).await?.as_ref()).await?;
        sources.push(format!("{} head(s) from the blob store", h.len()));
        heads.extend(h);
    }
    let report = db
        .audit_chain()
        .verify(
            &heads,
            &key,
            SystemClock.now_ms(),
            cfg.audit.settle_secs.saturating_mul(1000) as i64,
        )
        .await?;
    db.close().await;
    if let Some(b) = report.broken {
        anyhow::bail!(
            "audit log verification FAILED at {b} (checked against {})",
            sources.join(", ")
        );
    }
    println!(
        "OK: {} sealed audit row(s) verified against {} (newest head at position {}, key {}); {} row(s) not sealed yet",
        report.rows_checked,
        sources.join(", "),
        report.last_head_position,
        key,
        report.unsealed_rows
    );
    Ok(())
}
