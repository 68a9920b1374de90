//! Opens a fresh database of each engine for a test.
//!
//! SQLite: a file in a temporary directory. PostgreSQL: a new database `t_<random>` on the server
//! at `SHOUHU_TEST_PG_URL` (default `postgres://postgres@127.0.0.1:5432/test`), dropped when the
//! guard drops. In CI (`CI=true`) an unreachable PostgreSQL fails the test instead of skipping.

#![allow(dead_code, missing_docs)]

use shouhu_storage::Db;

pub struct TestDb {
    pub db: Db,
    /// The connection URL.
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pg_drop: Option<(String, String)>,
}

impl TestDb {
    /// The SQLite file's directory (`None` for PostgreSQL).
    pub fn dir(&self) -> Option<&std::path::Path> {
        self._dir.as_ref().map(|d| d.path())
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin_url, name)) = self.pg_drop.take() {
            // Drop on a separate runtime: the test's runtime is blocked in this drop. FORCE ends
            // the pool's connections, which belong to the test's runtime.
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    if let Ok(admin) = Db::connect(&admin_url, 1).await {
                        let _ = admin
                            .execute_raw(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                            .await;
                        admin.close().await;
                    }
                });
            })
            .join()
            .ok();
        }
    }
}

pub fn pg_admin_url() -> String {
    std::env::var("SHOUHU_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// The field key of the tests' databases.
pub const TEST_FIELD_KEY: &str = "000102030405060708090a0b0c0d0e0f";

pub fn test_cipher() -> std::sync::Arc<shouhu_storage::crypto::FieldCipher> {
    std::sync::Arc::new(shouhu_storage::crypto::FieldCipher::from_hex(TEST_FIELD_KEY).unwrap())
}

pub async fn sqlite() -> TestDb {
    let t = sqlite_unmigrated().await;
    t.db.migrate().await.unwrap();
    t
}

/// A fresh SQLite database with no schema.
pub async fn sqlite_unmigrated() -> TestDb {
    let dir = tempfile::tempdir().unwrap();
    let url = Db::sqlite_url_in(dir.path());
    let db = Db::connect(&url, 4)
        .await
        .unwrap()
        .with_field_cipher(test_cipher());
    TestDb {
        db,
        url,
        _dir: Some(dir),
        pg_drop: None,
    }
}

/// A fresh PostgreSQL database, or `None` when no server answers outside CI.
pub async fn postgres() -> Option<TestDb> {
    let t = postgres_unmigrated().await?;
    t.db.migrate().await.unwrap();
    Some(t)
}

/// A fresh PostgreSQL database with no schema, or `None` when no server answers outside CI.
pub async fn postgres_unmigrated() -> Option<TestDb> {
    let admin_url = pg_admin_url();
    let admin = match Db::connect(&admin_url, 1).await {
        Ok(a) => a,
        Err(e) => {
            if std::env::var("CI").is_ok_and(|v| v == "true")
                || std::env::var("SHOUHU_TEST_PG_URL").is_ok()
            {
                panic!("PostgreSQL at {admin_url} is required here: {e}");
            }
            eprintln!("skipping PostgreSQL run: {e}");
            return None;
        }
    };
    let name = format!("t_{}", uuid_simple());
    admin
        .execute_raw(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    admin.close().await;
    let url = replace_db(&admin_url, &name);
    let db = Db::connect(&url, 4)
        .await
        .unwrap()
        .with_field_cipher(test_cipher());
    Some(TestDb {
        db,
        url,
        _dir: None,
        pg_drop: Some((admin_url, name)),
    })
}

fn uuid_simple() -> String {
    use rand::Rng;
    let n: u64 = rand::thread_rng().gen();
    format!("{n:016x}")
}

/// Replace the database name of a PostgreSQL URL.
pub fn replace_db(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

/// Run `body` on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! both_engines {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test]
            async fn sqlite() {
                let t = common::sqlite().await;
                ($body)(t.db.clone()).await;
            }
            #[tokio::test]
            async fn postgres() {
                if let Some(t) = common::postgres().await {
                    ($body)(t.db.clone()).await;
                }
            }
        }
    };
}
