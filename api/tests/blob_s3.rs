//! The S3 blob store against a real S3-compatible server: moto's server mode (PyPI `moto[server]`,
//! installed into `.venv-test` by scripts/install-deps.sh). The store's contract (put, get,
//! exists, delete, overwrite, missing keys, bad keys) and a server whose `blob.backend` is `s3`
//! keeping an uploaded attachment there.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shouhu_api::config::BlobConfig;
use shouhu_api::s3::S3BlobStore;
use shouhu_storage::blob::BlobStore;
use shouhu_storage::StorageError;

/// A moto server on a free port, stopped on drop.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn moto_binary() -> Option<String> {
    if let Ok(p) = std::env::var("SHOUHU_MOTO_SERVER") {
        return Some(p);
    }
    let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/../.venv-test/bin/moto_server");
    if std::path::Path::new(venv).exists() {
        return Some(venv.into());
    }
    Command::new("moto_server")
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()
        .filter(|s| s.success())
        .map(|_| "moto_server".into())
}

/// Start moto, or `None` outside CI when it is not installed (CI must have it).
async fn moto() -> Option<Moto> {
    let Some(bin) = moto_binary() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "moto_server is not installed (scripts/install-deps.sh puts it in .venv-test)"
        );
        eprintln!("skipped: moto_server not installed; run scripts/install-deps.sh");
        return None;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto_server starts");
    let endpoint = format!("http://127.0.0.1:{port}");
    let m = Moto { child, endpoint };
    let deadline = Instant::now() + Duration::from_secs(60);
    while reqwest::get(format!("{}/moto-api/", m.endpoint))
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "moto_server did not answer within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Some(m)
}

fn settings(endpoint: &str, bucket: &str) -> BlobConfig {
    BlobConfig {
        backend: "s3".into(),
        s3_endpoint: endpoint.into(),
        s3_bucket: bucket.into(),
        s3_region: "us-east-1".into(),
        s3_access_key: "shouhu-test".into(),
        s3_secret_key: shouhu_api::config::Secret("shouhu-test-secret".into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_store_contract_and_server_uploads() {
    let Some(m) = moto().await else { return };
    let store = S3BlobStore::new(&settings(&m.endpoint, "evidence")).unwrap();
    store.ensure_bucket().await.unwrap();
    store.ensure_bucket().await.unwrap();

    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let info = store
        .put("recordings/2027/01/seg-000001.mp4", &data)
        .await
        .unwrap();
    assert_eq!(info.size, data.len() as u64);
    assert_eq!(info.sha256, shouhu_storage::blob::digests(&data).0);
    assert_eq!(
        store
            .get("recordings/2027/01/seg-000001.mp4")
            .await
            .unwrap(),
        data
    );
    assert!(store
        .exists("recordings/2027/01/seg-000001.mp4")
        .await
        .unwrap());
    // Parts of it (a `Range` request): inside, across the end, past the end, empty.
    let key = "recordings/2027/01/seg-000001.mp4";
    assert_eq!(
        store.get_range(key, 1000, 5000).await.unwrap(),
        &data[1000..6000]
    );
    assert_eq!(
        store.get_range(key, 199_990, 100).await.unwrap(),
        &data[199_990..]
    );
    assert!(store.get_range(key, 300_000, 10).await.unwrap().is_empty());
    assert!(store.get_range(key, 5, 0).await.unwrap().is_empty());
    assert!(matches!(
        store.get_range("recordings/none.mp4", 0, 10).await,
        Err(StorageError::NotFound(_))
    ));
    // Overwrite, then delete (twice: deleting a missing blob is not an error).
    store
        .put("recordings/2027/01/seg-000001.mp4", b"second")
        .await
        .unwrap();
    assert_eq!(
        store
            .get("recordings/2027/01/seg-000001.mp4")
            .await
            .unwrap(),
        b"second"
    );
    store
        .delete("recordings/2027/01/seg-000001.mp4")
        .await
        .unwrap();
    store
        .delete("recordings/2027/01/seg-000001.mp4")
        .await
        .unwrap();
    assert!(!store
        .exists("recordings/2027/01/seg-000001.mp4")
        .await
        .unwrap());
    assert!(matches!(
        store.get("recordings/2027/01/seg-000001.mp4").await,
        Err(StorageError::NotFound(_))
    ));
    for bad in ["../x", "/abs", "a//b", "a b"] {
        assert!(
            matches!(
                store.put(bad, b"x").await,
                Err(StorageError::Invalid { .. })
            ),
            "{bad}"
        );
    }
    // Wrong settings are refused at start, naming the key.
    let mut no_bucket = settings(&m.endpoint, "");
    no_bucket.s3_bucket.clear();
    assert!(S3BlobStore::new(&no_bucket)
        .unwrap_err()
        .to_string()
        .contains("blob.s3_bucket"));

    // A server on S3: an uploaded attachment lands in the bucket, byte for byte.
    let endpoint = m.endpoint.clone();
    let s = common::start_with(common::Engine::Sqlite, move |c| {
        c.blob = settings(&endpoint, "shouhu-blobs");
    })
    .await
    .unwrap();
    let token = s.login("hp_head").await;
    let png: Vec<u8> = [&b"\x89PNG\r\n\x1a\n"[..], &[9u8; 300][..]].concat();
    let key = s.upload_attachment(&token, png.clone()).await;
    let direct: Arc<dyn BlobStore> =
        Arc::new(S3BlobStore::new(&settings(&m.endpoint, "shouhu-blobs")).unwrap());
    assert_eq!(direct.get(&key).await.unwrap(), png);
    assert!(
        !s.state
            .cfg
            .server
            .data_dir
            .join("blobs")
            .join(&key)
            .exists(),
        "not on local disk"
    );
}
