//! The blob store: files (case files, imports, later recording segments) by key.
//!
//! One interface, [`BlobStore`]; the local-directory implementation [`LocalBlobStore`] is the
//! default. Keys are relative paths of `[A-Za-z0-9._-]` segments separated by `/`; anything else
//! (absolute paths, `..`) is rejected so a key can never escape the store's root. Writes go to a
//! temporary file and are renamed into place, so a reader never sees half a blob.
//!
//! Durability (local store): when `put`/`put_file` returns, the file's content and its name
//! are on disk — the file is fsynced, then its directory (and every directory the put
//! created, in its parent), so an index row committed afterwards never names a blob a power
//! cut could take back. (The S3 store answers after the object is stored.)
//!
//! [`FaultyBlobStore`] wraps a real store and fails chosen writes, for tests of what the
//! recorder does when the store refuses a segment.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::error::{StorageError, StorageResult};

/// Metadata of a stored blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    /// The key it is stored under.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// Lowercase hex SHA-256 of the content.
    pub sha256: String,
    /// Lowercase hex SM3 of the content.
    pub sm3: String,
}

/// Storage of immutable files by key.
#[async_trait]
pub trait BlobStore: Send + Sync + std::fmt::Debug {
    /// Store `data` under `key`, replacing any blob with that key; returns its digests.
    async fn put(&self, key: &str, data: &[u8]) -> StorageResult<BlobInfo>;
    /// Read a whole blob.
    async fn get(&self, key: &str) -> StorageResult<Vec<u8>>;
    /// Read `len` bytes of a blob from `offset` (fewer at its end). The default reads the whole
    /// blob; stores that can read a part override it.
    async fn get_range(&self, key: &str, offset: u64, len: u64) -> StorageResult<Vec<u8>> {
        let all = self.get(key).await?;
        let start = (offset as usize).min(all.len());
        let end = start.saturating_add(len as usize).min(all.len());
        Ok(all[start..end].to_vec())
    }
    /// Store the file at `path` under `key`; the file itself stays where it is (the caller
    /// removes it once it no longer needs it). `digests` are the file's (SHA-256, SM3) when the
    /// caller took them while writing it, so the store need not read it again. The default reads
    /// the file and calls [`BlobStore::put`]; a local store links the file in without copying.
    async fn put_file(
        &self,
        key: &str,
        path: &Path,
        digests: Option<([u8; 32], [u8; 32])>,
    ) -> StorageResult<BlobInfo> {
        let _ = digests;
        let data = tokio::fs::read(path).await?;
        self.put(key, &data).await
    }
    /// Delete a blob; deleting a missing blob is not an error.
    async fn delete(&self, key: &str) -> StorageResult<()>;
    /// Whether a blob exists.
    async fn exists(&self, key: &str) -> StorageResult<bool>;
}

/// Digests of `data`: (SHA-256 hex, SM3 hex).
pub fn digests(data: &[u8]) -> (String, String) {
    digests_of(data)
}

fn digests_of(data: &[u8]) -> (String, String) {
    let sha = hex::encode(Sha256::digest(data));
    let sm3 = hex::encode(sm3::Sm3::digest(data));
    (sha, sm3)
}

/// Blobs as files under a root directory.
#[derive(Debug, Clone)]
pub struct LocalBlobStore {
    root: PathBuf,
}

impl LocalBlobStore {
    /// A store rooted at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path_of(&self, key: &str) -> StorageResult<PathBuf> {
        validate_key(key)?;
        Ok(self.root.join(key))
    }

    /// Create `dir` (under the root) and make each directory it had to create durable in its
    /// parent.
    async fn create_dir_durable(&self, dir: &Path) -> StorageResult<()> {
        if tokio::fs::try_exists(dir).await? {
            return Ok(());
        }
        // The directories to create, deepest last.
        let mut missing = Vec::new();
        let mut d = dir;
        while !tokio::fs::try_exists(d).await? {
            missing.push(d.to_path_buf());
            match d.parent() {
                Some(p) => d = p,
                None => break,
            }
        }
        crate::private_fs::create_dir_all_async(dir).await?;
        for m in missing.iter().rev() {
            if let Some(parent) = m.parent() {
                sync_dir(parent).await?;
            }
        }
        Ok(())
    }
}

/// fsync a directory, so the names created, renamed or removed in it are on disk.
pub async fn sync_dir(dir: &Path) -> std::io::Result<()> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || std::fs::File::open(&dir)?.sync_all())
        .await
        .map_err(std::io::Error::other)?
}

/// Check a blob key: non-empty `/`-separated segments of `[A-Za-z0-9._-]`, no `.`/`..` segments.
pub fn validate_key(key: &str) -> StorageResult<()> {
    let ok = !key.is_empty()
        && key.len() <= 512
        && key.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        });
    if ok {
        Ok(())
    } else {
        Err(StorageError::invalid(
            "key",
            format!("invalid blob key {key:?}"),
        ))
    }
}

#[async_trait]
impl BlobStore for LocalBlobStore {
    async fn put(&self, key: &str, data: &[u8]) -> StorageResult<BlobInfo> {
        let path = self.path_of(key)?;
        let dir = path.parent().expect("a key has a parent under root");
        self.create_dir_durable(dir).await?;
        let tmp = dir.join(format!(".{}.tmp", crate::new_id()));
        let written = async {
            let mut f = crate::private_fs::create_file_async(&tmp).await?;
            f.write_all(data).await?;
            f.sync_all().await?;
            drop(f);
            tokio::fs::rename(&tmp, &path).await
        }
        .await;
        if let Err(e) = written {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e.into());
        }
        sync_dir(dir).await?;
        let (sha256, sm3) = digests(data);
        Ok(BlobInfo {
            key: key.to_string(),
            size: data.len() as u64,
            sha256,
            sm3,
        })
    }

    async fn put_file(
        &self,
        key: &str,
        src: &Path,
        digests: Option<([u8; 32], [u8; 32])>,
    ) -> StorageResult<BlobInfo> {
        let path = self.path_of(key)?;
        let dir = path.parent().expect("a key has a parent under root");
        self.create_dir_durable(dir).await?;
        let tmp = dir.join(format!(".{}.tmp", crate::new_id()));
        let linked = async {
            // A second name for the same file (no copy); across file systems, a copy. Either
            // way its content is made durable (a no-op for a spool file synced already).
            if tokio::fs::hard_link(src, &tmp).await.is_err() {
                tokio::fs::copy(src, &tmp).await?;
            }
            tokio::fs::File::open(&tmp).await?.sync_all().await?;
            tokio::fs::rename(&tmp, &path).await
        }
        .await;
        if let Err(e) = linked {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e.into());
        }
        sync_dir(dir).await?;
        let size = tokio::fs::metadata(&path).await?.len();
        let (sha256, sm3) = match digests {
            Some((a, b)) => (hex::encode(a), hex::encode(b)),
            None => {
                let data = tokio::fs::read(&path).await?;
                tokio::task::spawn_blocking(move || digests_of(&data))
                    .await
                    .map_err(|e| {
                        StorageError::Blob(std::io::Error::other(format!("digest task: {e}")))
                    })?
            }
        };
        Ok(BlobInfo {
            key: key.to_string(),
            size,
            sha256,
            sm3,
        })
    }

    async fn get_range(&self, key: &str, offset: u64, len: u64) -> StorageResult<Vec<u8>> {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        let path = self.path_of(key)?;
        let mut f = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StorageError::NotFound("blob"))
            }
            Err(e) => return Err(e.into()),
        };
        f.seek(std::io::SeekFrom::Start(offset)).await?;
        let mut out = Vec::with_capacity(len.min(64 << 20) as usize);
        f.take(len).read_to_end(&mut out).await?;
        Ok(out)
    }

    async fn get(&self, key: &str) -> StorageResult<Vec<u8>> {
        let path = self.path_of(key)?;
        match tokio::fs::read(&path).await {
            Ok(d) => Ok(d),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(StorageError::NotFound("blob"))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn delete(&self, key: &str) -> StorageResult<()> {
        let path = self.path_of(key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn exists(&self, key: &str) -> StorageResult<bool> {
        let path = self.path_of(key)?;
        Ok(tokio::fs::try_exists(&path).await?)
    }
}

/// A blob store that fails chosen writes of the store it wraps (for tests): the `n`th distinct
/// content put (from 0, told apart by SHA-256, so a retry of the same segment is the same
/// content) fails its first `times` attempts (`u32::MAX`: always). Reads, deletes and other
/// writes go to the inner store.
#[doc(hidden)]
#[derive(Debug)]
pub struct FaultyBlobStore {
    inner: std::sync::Arc<dyn BlobStore>,
    fail_nth: usize,
    times: u32,
    state: std::sync::Mutex<FaultState>,
}

#[derive(Debug, Default)]
struct FaultState {
    seen: Vec<[u8; 32]>,
    failed: u32,
}

impl FaultyBlobStore {
    /// Wrap `inner`; the `fail_nth` distinct content put fails `times` times.
    pub fn new(inner: std::sync::Arc<dyn BlobStore>, fail_nth: usize, times: u32) -> Self {
        Self {
            inner,
            fail_nth,
            times,
            state: Default::default(),
        }
    }

    /// Puts refused so far.
    pub fn failures(&self) -> u32 {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).failed
    }

    fn refuse(&self, sha256: [u8; 32], key: &str) -> StorageResult<()> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let n = match st.seen.iter().position(|s| *s == sha256) {
            Some(n) => n,
            None => {
                st.seen.push(sha256);
                st.seen.len() - 1
            }
        };
        if n == self.fail_nth && st.failed < self.times {
            st.failed += 1;
            return Err(StorageError::Blob(std::io::Error::other(format!(
                "injected fault: put {key} refused"
            ))));
        }
        Ok(())
    }
}

#[async_trait]
impl BlobStore for FaultyBlobStore {
    async fn put(&self, key: &str, data: &[u8]) -> StorageResult<BlobInfo> {
        self.refuse(Sha256::digest(data).into(), key)?;
        self.inner.put(key, data).await
    }

    async fn put_file(
        &self,
        key: &str,
        path: &Path,
        digests: Option<([u8; 32], [u8; 32])>,
    ) -> StorageResult<BlobInfo> {
        let sha = match digests {
            Some((sha, _)) => sha,
            None => Sha256::digest(tokio::fs::read(path).await?).into(),
        };
        self.refuse(sha, key)?;
        self.inner.put_file(key, path, digests).await
    }

    async fn get(&self, key: &str) -> StorageResult<Vec<u8>> {
        self.inner.get(key).await
    }

    async fn get_range(&self, key: &str, offset: u64, len: u64) -> StorageResult<Vec<u8>> {
        self.inner.get_range(key, offset, len).await
    }

    async fn delete(&self, key: &str) -> StorageResult<()> {
        self.inner.delete(key).await
    }

    async fn exists(&self, key: &str) -> StorageResult<bool> {
        self.inner.exists(key).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cannot_escape_the_root() {
        for bad in ["", "/etc/passwd", "a/../b", "a//b", "./a", "a/b\\c", "名字"] {
            assert!(validate_key(bad).is_err(), "{bad}");
        }
        validate_key("case-files/2026/abc.pdf").unwrap();
    }

    /// A file put by path is linked in (same content, the source stays), with the caller's
    /// digests or, without them, its own.
    #[tokio::test]
    async fn put_file_links_and_digests() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalBlobStore::new(dir.path().join("blobs"));
        let src = dir.path().join("spooled.part");
        std::fs::write(&src, b"abc").unwrap();
        let info = store.put_file("r/1.mp4", &src, None).await.unwrap();
        assert_eq!(info.size, 3);
        assert_eq!(
            info.sm3,
            "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
        );
        assert_eq!(store.get("r/1.mp4").await.unwrap(), b"abc");
        assert!(src.exists(), "the source stays for its owner to remove");
        let given = ([1u8; 32], [2u8; 32]);
        let info = store.put_file("r/2.mp4", &src, Some(given)).await.unwrap();
        assert_eq!(info.sha256, hex::encode([1u8; 32]));
        assert_eq!(info.sm3, hex::encode([2u8; 32]));
        assert!(store.put_file("../x", &src, None).await.is_err());
        assert!(store
            .put_file("r/3.mp4", &dir.path().join("missing"), None)
            .await
            .is_err());
    }

    /// A put creates its directories durably and leaves no temporary file, also when it fails;
    /// the faulty store refuses the chosen content the chosen number of times.
    #[tokio::test]
    async fn puts_leave_no_temporary_files_and_faults_are_injected() {
        let dir = tempfile::tempdir().unwrap();
        let local = std::sync::Arc::new(LocalBlobStore::new(dir.path().join("blobs")));
        local.put("a/b/c/1.bin", b"one").await.unwrap();
        let faulty = FaultyBlobStore::new(local.clone(), 1, 2);
        faulty.put("x/0", b"zero").await.unwrap();
        assert!(faulty.put("x/1", b"first").await.is_err());
        assert!(faulty.put("x/1", b"first").await.is_err());
        faulty.put("x/1", b"first").await.unwrap();
        assert_eq!(faulty.failures(), 2);
        assert_eq!(faulty.get("x/1").await.unwrap(), b"first");
        let names: Vec<String> = std::fs::read_dir(dir.path().join("blobs/x"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
    }

    #[tokio::test]
    async fn put_get_delete() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalBlobStore::new(dir.path());
        let info = store.put("a/b.txt", b"abc").await.unwrap();
        assert_eq!(
            info.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            info.sm3,
            "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
        );
        assert_eq!(store.get("a/b.txt").await.unwrap(), b"abc");
        assert!(store.exists("a/b.txt").await.unwrap());
        store.delete("a/b.txt").await.unwrap();
        assert!(!store.exists("a/b.txt").await.unwrap());
        assert!(matches!(
            store.get("a/b.txt").await,
            Err(StorageError::NotFound(_))
        ));
    }
}
