//! The command line: `serve`, `demo`, `migrate`, `admin create-user`, `config example|show`,
//! `bench`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use shouhu_storage::org_units::{NewOrgUnit, OrgKind};
use shouhu_storage::Db;

use crate::config::Config;

/// Shouhu (守护): command-and-dispatch and enforcement system.
#[derive(Debug, Parser)]
#[command(name = "shouhu", version, about)]
pub struct Cli {
    /// Configuration file (TOML). Environment variables SHOUHU__SECTION__KEY override it.
    #[arg(long, short, global = true, env = "SHOUHU_CONFIG")]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve,
    /// Seed a fresh SQLite database with demo data and run the server on 127.0.0.1.
    Demo(DemoArgs),
    /// Apply pending database migrations and exit.
    Migrate,
    /// Administrative tasks on the database (works while the server runs).
    Admin {
        /// The task.
        #[command(subcommand)]
        task: AdminTask,
    },
    /// Configuration helpers.
    Config {
        /// The helper.
        #[command(subcommand)]
        task: ConfigTask,
    },
    /// Run a benchmark (see docs/benchmarks.md).
    Bench(crate::bench::BenchArgs),
    /// Drive simulated JT/T 808 terminals and phone apps against a running server.
    Simulate(crate::simulate::SimulateArgs),
    /// The audit log's hash chain: `seal` now, or `verify` it against the exported heads.
    Audit {
        /// The task.
        #[command(subcommand)]
        task: crate::audit_seal::AuditTask,
    },
    /// Verify an exported recording against its signed manifest, offline: the file's digests,
    /// the segments' digest chain, and the signatures with the server's public key. Exit 0 when
    /// intact, 1 with the reason otherwise, 2 when it is intact but its recording is incomplete
    /// (each gap named: its time range and the segments around it).
    Verify {
        /// The exported file (MP4).
        file: std::path::PathBuf,
        /// Its manifest (JSON).
        manifest: std::path::PathBuf,
        /// The server's public key (hex); default: the configured evidence key's.
        #[arg(long)]
        public_key: Option<String>,
    },
}

/// `demo` options.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Number of enterprises to seed.
    #[arg(long, default_value_t = 400)]
    pub enterprises: usize,
    /// Seed only, do not serve.
    #[arg(long)]
    pub seed_only: bool,
    /// Serve without the simulated vehicles and phone apps.
    #[arg(long)]
    pub no_simulation: bool,
    /// How many simulated recorders record always (the last ones by device id), so there is
    /// footage to find, play, link and export.
    #[arg(long, default_value_t = 2)]
    pub always_on_recorders: usize,
    /// The simulated body cameras hang up the first download of stored footage they are asked
    /// for half-way (as a camera whose docking link drops), so the download's resumption shows.
    #[arg(long)]
    pub drop_first_downloads: bool,
}

/// `admin` tasks.
#[derive(Debug, Subcommand)]
pub enum AdminTask {
    /// Create an account (forced password change at first login unless --no-force-change).
    CreateUser {
        /// Login name.
        #[arg(long)]
        username: String,
        /// Initial password (≥ 8 characters of 3 classes).
        #[arg(long)]
        password: String,
        /// Role code: admin, corps_leader, operator, reviewer, brigade_head, squad_leader,
        /// statistician, clerk, officer, soe_user.
        #[arg(long)]
        role: String,
        /// Org unit id or code (default: the corps; created if the tree is empty).
        #[arg(long)]
        org_unit: Option<String>,
        /// Display name (default: the username).
        #[arg(long)]
        display_name: Option<String>,
        /// Do not force a password change at first login.
        #[arg(long)]
        no_force_change: bool,
    },
    /// Seal every stored personal-data value again under `auth.field_key`, opening it with the
    /// key of `auth.previous_field_keys` that sealed it. Run after a key change (see
    /// docs/operations.md); afterwards the previous keys open nothing still stored.
    RotateFieldKey,
}

/// `config` tasks.
#[derive(Debug, Subcommand)]
pub enum ConfigTask {
    /// Print the example configuration (every key with its default).
    Example,
    /// Print the configuration in effect (secrets redacted).
    Show,
}

/// Entry point.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Config {
        task: ConfigTask::Example,
    } = cli.command
    {
        print!("{}", crate::config::EXAMPLE_TOML);
        return ExitCode::SUCCESS;
    }
    crate::telemetry::init_logging();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<Incomplete>() => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let cfg = match cli.command {
        Command::Demo(_) => Config::load_demo(cli.config.as_deref())?,
        _ => Config::load(cli.config.as_deref())?,
    };
    match cli.command {
        Command::Serve => serve(cfg).await,
        Command::Demo(args) => crate::demo::run(cfg, args).await,
        Command::Simulate(args) => crate::simulate::run(args).await,
        Command::Audit { task } => crate::audit_seal::run(cfg, task).await,
        Command::Migrate => {
            shouhu_storage::private_fs::create_dir_all(&cfg.server.data_dir)?;
            let db = Db::connect(&cfg.database_url(), 2)
                .await?
                .with_field_cipher(std::sync::Arc::new(crate::server::field_cipher(&cfg)?));
            db.migrate().await?;
            let sealed = db
                .seal_personal_data(&shouhu_storage::audit::AuditEntry::new(
                    &cli_actor(),
                    "personal_data.seal",
                    crate::clock::Clock::now_ms(&crate::clock::SystemClock),
                ))
                .await?;
            println!("migrations applied to {:?}", db.engine());
            if sealed > 0 {
                println!("sealed the phones of {sealed} rows stored in clear");
            }
            Ok(())
        }
        Command::Admin { task } => admin(cfg, task).await,
        Command::Config {
            task: ConfigTask::Show,
        } => {
            println!("{cfg:#?}");
            Ok(())
        }
        Command::Config {
            task: ConfigTask::Example,
        } => unreachable!("handled before logging starts"),
        Command::Bench(args) => crate::bench::run(cfg, args).await,
        Command::Verify {
            file,
            manifest,
            public_key,
        } => verify(&cfg, &file, &manifest, public_key),
    }
}

fn verify(
    cfg: &Config,
    file: &std::path::Path,
    manifest: &std::path::Path,
    public_key: Option<String>,
) -> anyhow::Result<()> {
    let key = match public_key {
        Some(k) => k,
        None => crate::server::evidence_public_key(cfg)?,
    };
    let bytes =
        std::fs::read(file).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
    let m: shouhu_storage::evidence::Manifest = serde_json::from_slice(
        &std::fs::read(manifest)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", manifest.display()))?,
    )
    .map_err(|e| anyhow::anyhow!("{} is not a manifest: {e}", manifest.display()))?;
    m.verify(&bytes, &key)
        .map_err(|e| anyhow::anyhow!("verification failed: {e}"))?;
    println!(
        "OK: {} ({} bytes) is the export of recording {} from {} segment(s), SHA-256 {}; signatures verified with key {}",
        file.display(),
        bytes.len(),
        m.recording_id,
        m.segments.len(),
        m.export_sha256,
        key
    );
    if m.incomplete {
        println!("{}", gap_report(&m));
        return Err(Incomplete {
            recording_id: m.recording_id.clone(),
            gaps: m.gaps.len(),
        }
        .into());
    }
    Ok(())
}

/// `shouhu verify` of an intact export whose recording is incomplete (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("recording {recording_id} is INCOMPLETE: footage is missing in {gaps} gap(s) (listed above); what the export holds is authentic")]
pub struct Incomplete {
    /// The recording.
    pub recording_id: String,
    /// Its gaps.
    pub gaps: usize,
}

/// The gaps of an incomplete recording's manifest, one line each: the missing time range
/// (UTC), its length, the segments around it, and whether it falls in the exported range.
pub fn gap_report(m: &shouhu_storage::evidence::Manifest) -> String {
    let at = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_else(|| format!("{ms} ms"))
    };
    let total = m.head.as_ref().map(|h| h.segments);
    let mut out = format!(
        "INCOMPLETE: recording {} was signed as incomplete, never as a whole: footage is missing in {} gap(s)",
        m.recording_id,
        m.gaps.len()
    );
    for (i, g) in m.gaps.iter().enumerate() {
        let place = match (g.after_segments, total) {
            (0, _) => "before segment 0".to_string(),
            (n, Some(t)) if n >= t => format!("after segment {} (the last)", n - 1),
            (n, _) => format!("between segment {} and segment {n}", n - 1),
        };
        let within = g.end_ms > m.from_ms && g.start_ms < m.to_ms;
        out.push_str(&format!(
            "\n  gap {}: missing from {} to {} ({:.3} s), {place}{}",
            i + 1,
            at(g.start_ms),
            at(g.end_ms),
            (g.end_ms - g.start_ms) as f64 / 1000.0,
            if within {
                "; inside this export's range"
            } else {
                "; outside this export's range"
            }
        ));
    }
    out
}

/// Bind the configured listeners and serve until SIGINT/SIGTERM.
pub async fn serve(cfg: Config) -> anyhow::Result<()> {
    let http = tokio::net::TcpListener::bind(cfg.http.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on http.listen {}: {e}", cfg.http.listen))?;
    let metrics = if cfg.metrics.enabled {
        Some(
            tokio::net::TcpListener::bind(cfg.metrics.listen)
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "cannot listen on metrics.listen {}: {e}",
                        cfg.metrics.listen
                    )
                })?,
        )
    } else {
        None
    };
    let state = crate::server::build_default_state(cfg).await?;
    crate::server::serve(state, http, metrics, crate::server::shutdown_signal()).await
}

/// The root org unit, created (as the city corps) when the tree is empty.
pub async fn ensure_root(db: &Db) -> anyhow::Result<shouhu_storage::org_units::OrgUnit> {
    if let Some(root) = db
        .org_units()
        .list()
        .await?
        .into_iter()
        .find(|u| u.parent_id.is_none())
    {
        return Ok(root);
    }
    let audit = shouhu_storage::audit::AuditEntry::new(
        &cli_actor(),
        "org_unit.create",
        crate::clock::Clock::now_ms(&crate::clock::SystemClock),
    );
    Ok(db
        .org_units()
        .create(
            &NewOrgUnit {
                parent_id: None,
                kind: OrgKind::Corps,
                name: "市应急管理局执法总队".into(),
                code: "corps".into(),
            },
            &audit,
        )
        .await?)
}

fn cli_actor() -> shouhu_storage::audit::Actor {
    shouhu_storage::audit::Actor {
        account_id: None,
        username: Some("cli".into()),
        ip: None,
    }
}

/// `admin rotate-field-key`.
async fn rotate_field_key(cfg: Config) -> anyhow::Result<()> {
    let cipher = crate::server::field_cipher(&cfg)?;
    let key_id = cipher.key_id().to_string();
    let db = Db::connect(&cfg.database_url(), 2)
        .await?
        .with_field_cipher(std::sync::Arc::new(cipher));
    db.migrate().await?;
    let audit = |action| {
        shouhu_storage::audit::AuditEntry::new(
            &cli_actor(),
            action,
            crate::clock::Clock::now_ms(&crate::clock::SystemClock),
        )
    };
    db.seal_personal_data(&audit("personal_data.seal")).await?;
    let report = db
        .rotate_field_key(&audit("personal_data.rotate_key"))
        .await?;
    for (column, n) in &report.columns {
        println!("{column}: {n} sealed again");
    }
    println!(
        "{} values now sealed under field key {key_id}; the previous keys may be removed from auth.previous_field_keys",
        report.total()
    );
    Ok(())
}

async fn admin(cfg: Config, task: AdminTask) -> anyhow::Result<()> {
    let (username, password, role, org_unit, display_name, no_force_change) = match task {
        AdminTask::CreateUser {
            username,
            password,
            role,
            org_unit,
            display_name,
            no_force_change,
        } => (
            username,
            password,
            role,
            org_unit,
            display_name,
            no_force_change,
        ),
        AdminTask::RotateFieldKey => return rotate_field_key(cfg).await,
    };
    if !crate::auth::roles::is_role(&role) {
        anyhow::bail!(
            "unknown role {role:?}; one of: {}",
            crate::auth::roles::ROLES
                .iter()
                .map(|r| r.0)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    crate::auth::password::check_policy(&password, &username)
        .map_err(|m| anyhow::anyhow!("password {m}"))?;
    shouhu_storage::private_fs::create_dir_all(&cfg.server.data_dir)?;
    let db = Db::connect(&cfg.database_url(), 2).await?;
    db.migrate().await?;
    let unit = match org_unit {
        None => ensure_root(&db).await?,
        Some(u) => match db.org_units().get(&u).await {
            Ok(unit) => unit,
            Err(_) => db
                .org_units()
                .by_code(&u)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no org unit with id or code {u:?}"))?,
        },
    };
    let hash = crate::auth::password::hash(&cfg.auth, &password).await?;
    let audit = shouhu_storage::audit::AuditEntry::new(
        &cli_actor(),
        "account.create",
        crate::clock::Clock::now_ms(&crate::clock::SystemClock),
    );
    let acc = db
        .accounts()
        .create(
            &shouhu_storage::accounts::NewAccount {
                display_name: display_name.unwrap_or_else(|| username.clone()),
                username,
                password_hash: hash,
                role,
                org_unit_id: unit.id.clone(),
                must_change_password: !no_force_change,
            },
            &audit,
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "created account {} ({}) in {} [{}]",
        acc.username, acc.role, unit.name, acc.id
    );
    Ok(())
}
