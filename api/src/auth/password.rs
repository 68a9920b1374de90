//! Password hashing (argon2id, PHC strings) and the password rules.
//!
//! Hashing and verification are CPU-heavy by design (and take `auth.argon2_memory_kib` each):
//! they run on the blocking pool so they never stall the async workers, at most
//! `auth.hash_concurrency` at once in the process (the others wait their turn), so a flood of
//! logins costs a bounded amount of memory and CPU.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::config::AuthConfig;

/// Slots for password hashing, sized once per process ([`set_concurrency`], or the CPUs).
static SLOTS: std::sync::OnceLock<(usize, tokio::sync::Semaphore)> = std::sync::OnceLock::new();
/// Hashes running now, and the most ever at once (for tests and metrics).
static RUNNING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static PEAK: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Size the process's hashing slots (`0`: one per CPU). The first call wins.
pub fn set_concurrency(n: usize) {
    let n = slots_for(n);
    let _ = SLOTS.set((n, tokio::sync::Semaphore::new(n)));
}

fn slots() -> &'static (usize, tokio::sync::Semaphore) {
    SLOTS.get_or_init(|| {
        let n = slots_for(0);
        (n, tokio::sync::Semaphore::new(n))
    })
}

fn slots_for(n: usize) -> usize {
    if n == 0 {
        std::thread::available_parallelism().map_or(2, |p| p.get())
    } else {
        n
    }
}

/// The slots (one per CPU unless [`set_concurrency`] said otherwise first).
pub fn concurrency() -> usize {
    slots().0
}

/// The most hashes that ever ran at once in this process.
pub fn peak_concurrency() -> usize {
    PEAK.load(std::sync::atomic::Ordering::Relaxed)
}

/// Run `f` on the blocking pool in a hashing slot.
async fn in_slot<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    use std::sync::atomic::Ordering;
    let _slot = slots().1.acquire().await.ok()?;
    let now = RUNNING.fetch_add(1, Ordering::SeqCst) + 1;
    PEAK.fetch_max(now, Ordering::SeqCst);
    let r = tokio::task::spawn_blocking(f).await.ok();
    RUNNING.fetch_sub(1, Ordering::SeqCst);
    r
}

/// The argon2id instance for the configured cost.
fn hasher(cfg: &AuthConfig) -> anyhow::Result<Argon2<'static>> {
    let params = Params::new(
        cfg.argon2_memory_kib,
        cfg.argon2_iterations,
        cfg.argon2_parallelism,
        None,
    )
    .map_err(|e| anyhow::anyhow!("invalid argon2 parameters: {e}"))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hash a password (on the blocking pool).
pub async fn hash(cfg: &AuthConfig, password: &str) -> anyhow::Result<String> {
    let a = hasher(cfg)?;
    let pw = password.to_string();
    in_slot(move || {
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        a.hash_password(pw.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("hashing failed: {e}"))
    })
    .await
    .ok_or_else(|| anyhow::anyhow!("hashing was interrupted"))?
}

/// Verify a password against a PHC string (on the blocking pool). The parameters stored in the
/// hash are used, so older hashes keep verifying after a cost change.
pub async fn verify(phc: &str, password: &str) -> bool {
    let phc = phc.to_string();
    let pw = password.to_string();
    in_slot(move || match PasswordHash::new(&phc) {
        Ok(h) => Argon2::default().verify_password(pw.as_bytes(), &h).is_ok(),
        Err(_) => false,
    })
    .await
    .unwrap_or(false)
}

/// A hash that verifies no password; used to spend the same time on unknown usernames.
pub const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2hvdWh1ZHVtbXlzYWx0$J4moa2MM0/6uf3HbY2Tf5Fux8JIBTwIhmhxGRbsY14A";

/// Check the password rules: at least 8 characters from at least 3 of the classes lowercase,
/// uppercase, digit, symbol; at most 128 characters; not containing the username.
pub fn check_policy(password: &str, username: &str) -> Result<(), String> {
    let n = password.chars().count();
    if n < 8 {
        return Err("must be at least 8 characters".into());
    }
    if n > 128 {
        return Err("must be at most 128 characters".into());
    }
    let classes = [
        password.chars().any(|c| c.is_ascii_lowercase()),
        password.chars().any(|c| c.is_ascii_uppercase()),
        password.chars().any(|c| c.is_ascii_digit()),
        password.chars().any(|c| !c.is_ascii_alphanumeric()),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if classes < 3 {
        return Err(
            "must contain at least 3 of: lowercase letters, uppercase letters, digits, symbols"
                .into(),
        );
    }
    if username.chars().count() >= 3 && password.to_lowercase().contains(&username.to_lowercase()) {
        return Err("must not contain the username".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy() {
        assert!(check_policy("short1A", "u").is_err());
        assert!(check_policy("alllowercase", "u").is_err());
        assert!(check_policy("lowerUPPER", "u").is_err());
        assert!(check_policy("lowerUPPER1", "u").is_ok());
        assert!(check_policy("lower1!xx", "u").is_ok());
        assert!(check_policy("Admin123!x", "admin").is_err());
    }

    #[tokio::test]
    async fn hash_and_verify() {
        let cfg = AuthConfig {
            argon2_memory_kib: 1024,
            argon2_iterations: 1,
            ..Default::default()
        };
        let h = hash(&cfg, "Secret123!").await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify(&h, "Secret123!").await);
        assert!(!verify(&h, "Secret123?").await);
        assert!(!verify("not a hash", "x").await);
        assert!(!verify(DUMMY_HASH, "anything").await);
    }
}
