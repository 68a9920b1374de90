//! Files and directories under the data directory are the server's alone: directories `0700`,
//! files `0600`, whatever the process umask (the SQLite database, its WAL, blobs, the recorder's
//! spool, generated keys). The umask can only narrow these further.

use std::path::Path;

/// Mode of directories the server creates.
pub const DIR_MODE: u32 = 0o700;
/// Mode of files the server creates.
pub const FILE_MODE: u32 = 0o600;

/// Create `dir` and its missing parents as `0700`; an existing `dir` is narrowed to `0700`.
pub fn create_dir_all(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, DIR_MODE);
    b.create(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(dir)?;
        if meta.permissions().mode() & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(DIR_MODE))?;
        }
    }
    Ok(())
}

/// [`create_dir_all`] off the async runtime's threads.
pub async fn create_dir_all_async(dir: &Path) -> std::io::Result<()> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || create_dir_all(&dir))
        .await
        .map_err(std::io::Error::other)?
}

/// Options that create (or truncate) a file as `0600`, for writing.
pub fn create_options() -> std::fs::OpenOptions {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, FILE_MODE);
    o
}

/// `File::create` as `0600`.
pub fn create_file(path: &Path) -> std::io::Result<std::fs::File> {
    create_options().open(path)
}

/// `tokio::fs::File::create` as `0600`.
pub async fn create_file_async(path: &Path) -> std::io::Result<tokio::fs::File> {
    tokio::fs::OpenOptions::from(create_options())
        .open(path)
        .await
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn directories_and_files_are_the_owner_s_alone() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("a/b/c");
        create_dir_all(&d).unwrap();
        assert_eq!(mode(&t.path().join("a")), 0o700);
        assert_eq!(mode(&d), 0o700);
        let f = d.join("f");
        create_file(&f).unwrap();
        assert_eq!(mode(&f), 0o600);
        // An existing, wider directory is narrowed.
        let wide = t.path().join("wide");
        std::fs::create_dir(&wide).unwrap();
        std::fs::set_permissions(&wide, std::fs::Permissions::from_mode(0o755)).unwrap();
        create_dir_all(&wide).unwrap();
        assert_eq!(mode(&wide), 0o700);
    }
}
