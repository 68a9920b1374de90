//! A throw-away PostgreSQL database for one test, made through the storage crate: created empty
//! on the server of `SHOUHU_TEST_PG_URL` (or the URL given), dropped by [`PgDb::drop_now`].
//! Without a reachable server the test is skipped, except under CI or when the URL was set
//! explicitly, where that is a failure.

use std::sync::atomic::{AtomicU32, Ordering};

/// A database created for one test.
pub struct PgDb {
    /// Its URL.
    pub url: String,
    admin: String,
    name: String,
}

/// Create an empty database `<prefix>_<pid>_<n>` on the server of `admin_url`; `None` (the test
/// skips) when no server answers outside CI.
pub async fn create_database(admin_url: &str, prefix: &str) -> Option<PgDb> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let admin = match shouhu_storage::Db::connect(admin_url, 1).await {
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
    let name = format!(
        "{prefix}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let _ = admin
        .execute_raw(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await;
    admin
        .execute_raw(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    admin.close().await;
    let base = admin_url.split('?').next().unwrap();
    let cut = base.rfind('/').unwrap();
    Some(PgDb {
        url: format!("{}/{name}", &base[..cut]),
        admin: admin_url.to_string(),
        name,
    })
}

impl PgDb {
    /// Drop the database (connections to it are ended).
    pub async fn drop_now(self) {
        if let Ok(a) = shouhu_storage::Db::connect(&self.admin, 1).await {
            let _ = a
                .execute_raw(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    self.name
                ))
                .await;
        }
    }
}
