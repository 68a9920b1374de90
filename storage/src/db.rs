//! The database handle: one of two engines behind one type.
//!
//! Repositories are written once: the [`with_pool!`] macro expands a body for each engine's pool,
//! and every query uses the `$1` placeholder style that both SQLite and PostgreSQL accept. Column
//! types are chosen so the same Rust types decode on both (TEXT ids, BIGINT milliseconds,
//! BOOLEAN, DOUBLE PRECISION).

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::error::{StorageError, StorageResult};

/// The engine behind a [`Db`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// Embedded SQLite (default).
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

#[derive(Clone)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// A connection pool to one of the two engines. Cheap to clone.
#[derive(Clone)]
pub struct Db {
    pub(crate) pool: Pool,
    pub(crate) counts: std::sync::Arc<crate::search::CountCache>,
    pub(crate) org_names: std::sync::Arc<OrgNameCache>,
    /// The org units of each subtree (see [`Db::scope_units`]).
    pub(crate) subtrees: std::sync::Arc<SubtreeCache>,
    /// The keys sealing personal data (see [`Db::with_field_cipher`]).
    pub(crate) fields: Option<std::sync::Arc<crate::crypto::FieldCipher>>,
}

/// Org unit names by id.
pub(crate) type OrgNames = std::sync::Arc<std::collections::HashMap<String, String>>;

/// Names of org units by id, reused for [`crate::search::COUNT_TTL`] and dropped when this node
/// changes the org tree.
#[derive(Debug, Default)]
pub(crate) struct OrgNameCache {
    map: std::sync::Mutex<Option<(OrgNames, std::time::Instant)>>,
}

impl OrgNameCache {
    pub(crate) fn clear(&self) {
        *self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }
}

/// The unit ids of each subtree root, cached for [`crate::search::COUNT_TTL`] and cleared when
/// an org unit is created or moved.
#[derive(Default)]
pub(crate) struct SubtreeCache {
    map: std::sync::Mutex<HashMap<String, CachedSubtree>>,
}

/// A subtree's unit ids and when they were read.
type CachedSubtree = (Arc<Vec<String>>, std::time::Instant);

impl SubtreeCache {
    pub(crate) fn clear(&self) {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
    }
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("engine", &self.engine())
            .finish()
    }
}

/// Expand `$body` once per engine with `$pool` bound to that engine's pool.
macro_rules! with_pool {
    ($db:expr, $pool:ident => $body:expr) => {
        match &$db.pool {
            $crate::db::Pool::Sqlite($pool) => $body,
            $crate::db::Pool::Postgres($pool) => $body,
        }
    };
}
pub(crate) use with_pool;

/// SQLite's memory settings per connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqliteTuning {
    /// Page cache per connection, MiB (allocated as pages are used).
    pub cache_mib: u64,
    /// Memory map of the database file, MiB (address space; the pages read count as resident,
    /// file-backed memory the OS may reclaim).
    pub mmap_mib: u64,
    /// All of SQLite's heap in the process, MiB (`PRAGMA soft_heap_limit`): near it, each
    /// connection reuses its own least recently used cache pages instead of allocating more, so
    /// sixteen connections' caches share one budget. 0 = no limit.
    pub heap_limit_mib: u64,
}

impl Default for SqliteTuning {
    fn default() -> Self {
        SqliteTuning {
            cache_mib: 128,
            mmap_mib: 0,
            heap_limit_mib: 32,
        }
    }
}

/// Transactions that write. On SQLite they begin `IMMEDIATE`: a deferred transaction that reads
/// and then writes fails at once with "database is locked" (`SQLITE_BUSY_SNAPSHOT`, which the
/// busy timeout does not wait out) when another connection committed in between; taking the
/// write lock first makes it wait its turn instead. PostgreSQL begins as usual.
pub(crate) trait BeginWrite {
    /// The database.
    type Db: sqlx::Database;
    /// Begin a transaction that will write.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, Self::Db>, sqlx::Error>;
}

impl BeginWrite for SqlitePool {
    type Db = sqlx::Sqlite;
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        self.begin_with("BEGIN IMMEDIATE").await
    }
}

impl BeginWrite for sqlx::PgPool {
    type Db = sqlx::Postgres;
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
        self.begin().await
    }
}

impl Db {
    /// Connect to `url` (`sqlite://PATH`, `sqlite::memory:` or `postgres://…`) with at most
    /// `max_connections` connections. SQLite files are created if missing and run in WAL mode.
    /// Migrations are not applied; call [`Db::migrate`].
    pub async fn connect(url: &str, max_connections: u32) -> StorageResult<Self> {
        Self::connect_tuned(url, max_connections, SqliteTuning::default()).await
    }

    /// [`Db::connect`] with SQLite's memory settings (ignored for PostgreSQL).
    pub async fn connect_tuned(
        url: &str,
        max_connections: u32,
        tuning: SqliteTuning,
    ) -> StorageResult<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let opts = PgConnectOptions::from_str(url)?;
            let pool = PgPoolOptions::new()
                .max_connections(max_connections.max(1))
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(opts)
                .await?;
            Ok(Db {
                pool: Pool::Postgres(pool),
                counts: Default::default(),
                org_names: Default::default(),
                subtrees: Default::default(),
                fields: None,
            })
        } else {
            let opts = SqliteConnectOptions::from_str(url)?;
            // A new database file is the server's alone (0600, in a 0700 directory); SQLite
            // gives its WAL and shared-memory files the database file's mode.
            let file = opts.get_filename();
            if file.as_os_str() != ":memory:" && !file.as_os_str().is_empty() && !file.exists() {
                if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
                    crate::private_fs::create_dir_all(dir)?;
                }
                crate::private_fs::create_options()
                    .truncate(false)
                    .open(file)?;
            }
            let opts = opts
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(10))
                // Statement journals (every multi-row write inside a transaction keeps one for
                // statement rollback) and temporary sort files in memory: on disk they cost a
                // 4-byte pwrite per journalled page — bulk imports spent their time in syscalls.
                .pragma("temp_store", "memory")
                // A page cache of up to 128 MiB per connection (allocated as pages are used;
                // SQLite's default is 2 MiB), all of them within the process-wide heap limit
                // below: the busiest connection, the writer, keeps the index pages of its random
                // inserts instead of re-reading them through the OS.
                .pragma(
                    "cache_size",
                    format!("-{}", tuning.cache_mib.saturating_mul(1024)),
                )
                // Optionally read pages through a memory map (off by default: the pages read count
                // in the resident set, 50 MB in the positions benchmark, where the OS's page
                // cache holds the same pages uncounted).
                .pragma(
                    "mmap_size",
                    tuning.mmap_mib.saturating_mul(1 << 20).to_string(),
                )
                // One budget for every connection's cache (the setting is process-wide; each
                // connection sets the same value). Without it sixteen busy connections hold
                // sixteen caches: 450 MB of the positions benchmark's resident set.
                .pragma(
                    "soft_heap_limit",
                    tuning.heap_limit_mib.saturating_mul(1 << 20).to_string(),
                )
                // Each embedded connection keeps its prepared statements (and page cache) in our
                // process: a modest cache, and connections a burst opened are closed once idle.
                .statement_cache_capacity(32);
            let pool = SqlitePoolOptions::new()
                .max_connections(max_connections.max(1))
                .acquire_timeout(Duration::from_secs(10))
                .idle_timeout(Duration::from_secs(30))
                .connect_with(opts)
                .await?;
            Ok(Db {
                pool: Pool::Sqlite(pool),
                counts: Default::default(),
                org_names: Default::default(),
                subtrees: Default::default(),
                fields: None,
            })
        }
    }

    /// The SQLite URL of the default database file under `data_dir`.
    pub fn sqlite_url_in(data_dir: &Path) -> String {
        format!("sqlite://{}", data_dir.join("shouhu.db").display())
    }

    /// Which engine this is.
    pub fn engine(&self) -> Engine {
        match self.pool {
            Pool::Sqlite(_) => Engine::Sqlite,
            Pool::Postgres(_) => Engine::Postgres,
        }
    }

    /// Apply the engine's pending migrations (idempotent: applied ones are skipped, and a changed
    /// applied migration is an error, since migrations are append-only).
    pub async fn migrate(&self) -> StorageResult<()> {
        match &self.pool {
            Pool::Sqlite(p) => sqlx::migrate!("./migrations/sqlite").run(p).await?,
            Pool::Postgres(p) => sqlx::migrate!("./migrations/postgres").run(p).await?,
        }
        crate::inspection_items::seed_builtin(self).await?;
        Ok(())
    }

    /// The same database, sealing and opening personal data (phones, a case party's ID number,
    /// a proposed fine) with `cipher`. Without one, writing or reading such a value is an
    /// error; nothing is ever stored in clear.
    pub fn with_field_cipher(mut self, cipher: std::sync::Arc<crate::crypto::FieldCipher>) -> Self {
        self.fields = Some(cipher);
        self
    }

    /// The field cipher, or an error saying none is configured.
    pub fn field_cipher(&self) -> StorageResult<&crate::crypto::FieldCipher> {
        self.fields.as_deref().ok_or_else(|| {
            StorageError::Corrupt(
                "personal data needs the field key (auth.field_key), and this database handle has none".into(),
            )
        })
    }

    /// `phone` sealed for column `name` with its blind indexes; an empty phone needs no key.
    pub(crate) fn seal_phone(
        &self,
        name: &str,
        phone: &str,
    ) -> StorageResult<crate::crypto::SealedPhone> {
        if phone.is_empty() {
            return Ok(crate::crypto::SealedPhone::default());
        }
        Ok(self.field_cipher()?.seal_phone(name, phone))
    }

    /// A phone opened from column `name`; an empty one needs no key.
    pub(crate) fn open_phone(&self, name: &str, sealed: &str) -> StorageResult<String> {
        if sealed.is_empty() {
            return Ok(String::new());
        }
        self.field_cipher()?.open_phone(name, sealed)
    }

    /// The SQL condition matching column `name`'s phones against `query` through the blind
    /// index columns `index` / `last4` (`alias.column`), if the query is a phone search (a full
    /// number or its last four digits); its values are bound into `b`. Without a field key no
    /// phone can match.
    pub(crate) fn phone_condition(
        &self,
        name: &str,
        query: &str,
        index: &str,
        last4: &str,
        b: &mut SqlBuilder,
    ) -> Option<String> {
        let cipher = self.fields.as_deref()?;
        let (col, values) = match cipher.phone_search(name, query)? {
            crate::crypto::PhoneSearch::Full(v) => (index, v),
            crate::crypto::PhoneSearch::LastFour(v) => (last4, v),
        };
        let ph: Vec<String> = values.into_iter().map(|v| b.s(v)).collect();
        Some(format!("{col} IN ({})", ph.join(", ")))
    }

    /// Check the database answers (for `/healthz`).
    pub async fn ping(&self) -> StorageResult<()> {
        with_pool!(self, p => { sqlx::query("SELECT 1").execute(p).await?; });
        Ok(())
    }

    /// Close all connections.
    pub async fn close(&self) {
        with_pool!(self, p => p.close().await)
    }
}

/// A value bound to a dynamically built query.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    /// Text (or NULL).
    S(Option<String>),
    /// Integer (or NULL).
    I(Option<i64>),
}

/// Builds SQL with numbered `$n` placeholders and the matching argument list.
#[derive(Debug, Default)]
pub(crate) struct SqlBuilder {
    pub(crate) args: Vec<Arg>,
}

impl SqlBuilder {
    /// Add an argument; returns its placeholder.
    pub(crate) fn arg(&mut self, a: Arg) -> String {
        self.args.push(a);
        format!("${}", self.args.len())
    }

    /// Add a text argument.
    pub(crate) fn s(&mut self, v: impl Into<String>) -> String {
        self.arg(Arg::S(Some(v.into())))
    }

    /// Add an integer argument.
    pub(crate) fn i(&mut self, v: i64) -> String {
        self.arg(Arg::I(Some(v)))
    }
}

/// Bind every [`Arg`] of a builder to a query of either engine.
macro_rules! bind_args {
    ($q:expr, $args:expr) => {{
        let mut q = $q;
        for a in $args.iter() {
            q = match a {
                $crate::db::Arg::S(s) => q.bind(s.clone()),
                $crate::db::Arg::I(i) => q.bind(*i),
            };
        }
        q
    }};
}
pub(crate) use bind_args;

impl Db {
    /// Org unit names by id (cached; see [`OrgNameCache`]).
    pub(crate) async fn org_unit_names(
        &self,
    ) -> StorageResult<std::sync::Arc<std::collections::HashMap<String, String>>> {
        if let Some((m, at)) = self
            .org_names
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
        {
            if at.elapsed() < crate::search::COUNT_TTL {
                return Ok(m.clone());
            }
        }
        let rows: Vec<(String, String)> = with_pool!(self, p => sqlx::query_as("SELECT id, name FROM org_units").fetch_all(p).await?);
        let m = std::sync::Arc::new(
            rows.into_iter()
                .collect::<std::collections::HashMap<_, _>>(),
        );
        *self
            .org_names
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some((m.clone(), std::time::Instant::now()));
        Ok(m)
    }

    /// The org unit ids a scope covers: `None` for everything, else the subtree's ids. Queries
    /// bound the rows with `org_unit_id IN (…the ids…)` rather than a sub-select on the closure
    /// table: with the list's length known, the planners use the `(org_unit_id, status, …)`
    /// indexes (SQLite scanned two million hazards for a sub-select).
    pub(crate) async fn scope_units(
        &self,
        scope: &crate::org_units::Scope,
    ) -> StorageResult<Option<Arc<Vec<String>>>> {
        let root = match scope {
            crate::org_units::Scope::All => return Ok(None),
            crate::org_units::Scope::Subtree(root) => root,
        };
        if let Some((ids, at)) = self
            .subtrees
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(root)
        {
            if at.elapsed() < crate::search::COUNT_TTL {
                return Ok(Some(ids.clone()));
            }
        }
        let mut ids: Vec<String> = with_pool!(self, p => sqlx::query_scalar(
            "SELECT descendant_id FROM org_unit_closure WHERE ancestor_id = $1").bind(root).fetch_all(p).await?);
        ids.sort();
        let ids = Arc::new(ids);
        self.subtrees
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(root.clone(), (ids.clone(), std::time::Instant::now()));
        Ok(Some(ids))
    }

    /// Whether `table` holds a row with this `id` (whatever its scope). `table` is a name from
    /// the caller's own fixed list, never user input.
    pub async fn row_exists(&self, table: &'static str, id: &str) -> StorageResult<bool> {
        self.row_exists_by(table, "id", id).await
    }

    /// Whether `table` holds a row whose key column `key` is `value` (whatever its scope).
    /// `table` and `key` are names from the caller's own fixed list, never user input.
    pub async fn row_exists_by(
        &self,
        table: &'static str,
        key: &'static str,
        value: &str,
    ) -> StorageResult<bool> {
        Ok(!self
            .existing_values(table, key, &[value.to_string()])
            .await?
            .is_empty())
    }

    /// The values among `values` that `table.column` already holds (for import checks).
    /// `table` and `column` are names from this crate, never user input.
    pub(crate) async fn existing_values(
        &self,
        table: &'static str,
        column: &'static str,
        values: &[String],
    ) -> StorageResult<Vec<String>> {
        let mut found = Vec::new();
        for chunk in values.chunks(500) {
            let mut b = SqlBuilder::default();
            let ph: Vec<String> = chunk.iter().map(|c| b.s(c.clone())).collect();
            let sql = format!(
                "SELECT {column} FROM {table} WHERE {column} IN ({})",
                ph.join(", ")
            );
            let rows: Vec<String> = with_pool!(self, p => bind_args!(sqlx::query_scalar(&sql), b.args).fetch_all(p).await?);
            found.extend(rows);
        }
        Ok(found)
    }

    /// The database's size on disk, bytes.
    pub async fn size_bytes(&self) -> StorageResult<i64> {
        Ok(match &self.pool {
            Pool::Sqlite(p) => {
                sqlx::query_scalar(
                    "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()",
                )
                .fetch_one(p)
                .await?
            }
            Pool::Postgres(p) => {
                sqlx::query_scalar("SELECT pg_database_size(current_database())")
                    .fetch_one(p)
                    .await?
            }
        })
    }

    /// A digest of every table's rows (name, row count, hash of the sorted rows), tables in
    /// name order, skipping those named in `except`. Two equal answers mean no row was added,
    /// changed or removed in between (tests prove a refused request wrote nothing).
    ///
    /// One statement per call: on SQLite every table's rows (each quoted column joined) in one
    /// `UNION ALL`, hashed here; on PostgreSQL each table's count and the MD5 of its sorted
    /// rows, computed by the server.
    pub async fn table_digests(&self, except: &[&str]) -> StorageResult<Vec<(String, usize, u64)>> {
        use std::hash::{Hash, Hasher};
        let ident = |t: &str| format!("\"{}\"", t.replace('"', "\"\""));
        let lit = |t: &str| format!("'{}'", t.replace('\'', "''"));
        let mut out = Vec::new();
        match &self.pool {
            Pool::Sqlite(p) => {
                let cols: Vec<(String, String)> = sqlx::query_as(
                    "SELECT m.name, c.name FROM sqlite_master m, pragma_table_info(m.name) c \
                     WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' \
                     AND m.name NOT LIKE '_sqlx%' ORDER BY m.name, c.cid",
                )
                .fetch_all(p)
                .await?;
                let mut tables: std::collections::BTreeMap<String, Vec<String>> =
                    Default::default();
                for (t, c) in cols {
                    if !except.contains(&t.as_str()) {
                        tables.entry(t).or_default().push(c);
                    }
                }
                if tables.is_empty() {
                    return Ok(out);
                }
                let sql = tables
                    .iter()
                    .map(|(t, cols)| {
                        let expr = cols
                            .iter()
                            .map(|c| format!("quote({})", ident(c)))
                            .collect::<Vec<_>>()
                            .join(" || ',' || ");
                        format!("SELECT {} AS t, {expr} AS r FROM {}", lit(t), ident(t))
                    })
                    .collect::<Vec<_>>()
                    .join(" UNION ALL ");
                let rows: Vec<(String, String)> = sqlx::query_as(&sql).fetch_all(p).await?;
                let mut by_table: std::collections::BTreeMap<String, Vec<String>> =
                    tables.into_keys().map(|t| (t, Vec::new())).collect();
                for (t, r) in rows {
                    by_table.entry(t).or_default().push(r);
                }
                for (t, mut rows) in by_table {
                    rows.sort();
                    let mut h = std::collections::hash_map::DefaultHasher::new();
                    rows.hash(&mut h);
                    out.push((t, rows.len(), h.finish()));
                }
            }
            Pool::Postgres(p) => {
                let tables: Vec<String> = sqlx::query_scalar(
                    "SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema() \
                     AND tablename NOT LIKE '_sqlx%' ORDER BY tablename",
                )
                .fetch_all(p)
                .await?;
                let tables: Vec<String> = tables
                    .into_iter()
                    .filter(|t| !except.contains(&t.as_str()))
                    .collect();
                if tables.is_empty() {
                    return Ok(out);
                }
                let sql = tables
                    .iter()
                    .map(|t| {
                        format!(
                            "SELECT {}::text AS t, count(*)::int8 AS n, \
                             coalesce(md5(string_agg(x::text, E'\\n' ORDER BY x::text)), '') AS h \
                             FROM {} x",
                            lit(t),
                            ident(t)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(" UNION ALL ");
                let mut rows: Vec<(String, i64, String)> =
                    sqlx::query_as(&sql).fetch_all(p).await?;
                rows.sort();
                for (t, n, md5) in rows {
                    let mut h = std::collections::hash_map::DefaultHasher::new();
                    md5.hash(&mut h);
                    out.push((t, n as usize, h.finish()));
                }
            }
        }
        Ok(out)
    }

    /// Run one statement without parameters (administrative SQL such as `CREATE DATABASE`).
    pub async fn execute_raw(&self, sql: &str) -> StorageResult<u64> {
        with_pool!(self, p => Ok(sqlx::raw_sql(sql).execute(p).await?.rows_affected()))
    }
}
