//! Where deployment states live and how they are locked: the local file backend (the default)
//! or a shared one a team already runs (PostgreSQL, etcd), chosen with `--backend URL` or
//! `FLOTILLA_BACKEND`. Every backend offers the same contract, which one conformance suite
//! checks: versioned compare-and-swap writes, a history of versions, and a lock with an owner
//! and a lease that dies with its holder (a flock for files, an expiring row for PostgreSQL, an
//! etcd lease for etcd).

mod checked;
mod etcd;
mod file;
mod postgres;
mod rt;

pub use checked::checked;
pub use etcd::EtcdBackend;
pub use file::FileBackend;
pub use postgres::PostgresBackend;

use super::lock::Holder;
use super::store::StoreError;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Runs kept per deployment (`flotilla state history`): each run's final state.
pub const HISTORY_KEPT: u64 = 20;
/// How long a lock lives without renewal; the holder renews it every third of that.
pub const LEASE: Duration = Duration::from_secs(15);

/// One stored state: its JSON and its version (1 for the first write, +1 per write).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub body: Vec<u8>,
    pub version: u64,
}

#[derive(Debug, Clone, serde::Serialize, PartialEq, Eq)]
pub struct HistoryEntry {
    pub version: u64,
    pub written_at: String,
    pub written_by: String,
    pub bytes: usize,
}

/// Who holds a deployment's lock, and until when (leases; `None` for a flock).
#[derive(Debug, Clone, serde::Serialize, PartialEq, Eq)]
pub struct LockInfo {
    pub holder: Holder,
    pub expires_at: Option<String>,
}

/// A lock this process holds.
pub trait HeldLock: Send + Sync {
    /// The fencing token writes carry (None where the lock cannot be lost while we live).
    fn token(&self) -> Option<String>;
    /// Extends the lease; false when the lock was lost (expired and taken, or force-unlocked).
    fn renew(&self) -> Result<bool, StoreError>;
    fn release(&self);
    /// A previous holder whose lock was taken over (it died without releasing).
    fn taken_over_from(&self) -> Option<Holder>;
}

pub enum LockAttempt {
    Acquired(Arc<dyn HeldLock>),
    Held(Option<LockInfo>),
}

pub trait StateBackend: Send + Sync {
    /// The backend's address for messages (never a password).
    fn url(&self) -> String;
    fn read(&self, name: &str) -> Result<Option<Record>, StoreError>;
    /// Writes a new version if the stored one is still `expected` (`None`: none may exist),
    /// and, with a fencing `token`, only while that lock is held. Returns the new version.
    /// `snapshot`: the end of a run — this document is kept in the history under the new
    /// version (in the same transaction), and only the newest `HISTORY_KEPT` are kept. The
    /// intermediate saves of a run (many per step) are not history.
    fn write(
        &self,
        name: &str,
        body: &[u8],
        expected: Option<u64>,
        token: Option<&str>,
        by: &str,
        snapshot: Option<&[u8]>,
    ) -> Result<u64, StoreError>;
    fn delete(&self, name: &str) -> Result<(), StoreError>;
    fn list(&self) -> Result<Vec<String>, StoreError>;
    /// The kept runs' versions, newest first.
    fn history(&self, name: &str) -> Result<Vec<HistoryEntry>, StoreError>;
    fn read_version(&self, name: &str, version: u64) -> Result<Option<Vec<u8>>, StoreError>;
    fn try_lock(
        &self,
        name: &str,
        holder: &Holder,
        lease: Duration,
    ) -> Result<LockAttempt, StoreError>;
    fn lock_status(&self, name: &str) -> Result<Option<LockInfo>, StoreError>;
    /// Removes whatever lock there is; true when there was one.
    fn force_unlock(&self, name: &str) -> Result<bool, StoreError>;
}

/// `file` (or empty) → the home's own files; `postgres://…` / `postgresql://…` → PostgreSQL.
pub fn open(url: Option<&str>, home_root: &Path) -> Result<Arc<dyn StateBackend>, StoreError> {
    open_unchecked(url, home_root).map(checked)
}

fn open_unchecked(
    url: Option<&str>,
    home_root: &Path,
) -> Result<Arc<dyn StateBackend>, StoreError> {
    match url.map(str::trim).filter(|u| !u.is_empty()) {
        None | Some("file") => Ok(Arc::new(FileBackend::new(home_root.to_path_buf()))),
        Some(u) if u.starts_with("file://") => Ok(Arc::new(FileBackend::new(
            Path::new(u.trim_start_matches("file://")).to_path_buf(),
        ))),
        Some(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => {
            Ok(Arc::new(PostgresBackend::connect(u)?))
        }
        Some(u) if u.starts_with("etcd://") => Ok(Arc::new(EtcdBackend::connect(u)?)),
        Some(u) => Err(StoreError::Backend {
            url: redact(u),
            message:
                "unknown backend; use `file`, `file:///dir`, `postgres://user@host/db` or `etcd://host:2379/prefix`"
                    .into(),
        }),
    }
}

/// The URL with every secret replaced: the userinfo's password and any query parameter that
/// names one (`password`, `sslpassword`, `token`, `secret`, `key`...). What every message and
/// log line shows of a backend URL.
pub fn redact(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let base = match (base.find("://"), base.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &base[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &base[..scheme + 3], &base[at..]),
                None => base.to_string(),
            }
        }
        _ => base.to_string(),
    };
    let Some(query) = query else { return base };
    let secret = |k: &str| {
        let k = k.to_ascii_lowercase();
        ["pass", "secret", "token", "key", "credential"]
            .iter()
            .any(|s| k.contains(s))
    };
    let params: Vec<String> = query
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) if secret(k) => format!("{k}=***"),
            _ => kv.to_string(),
        })
        .collect();
    format!("{base}?{}", params.join("&"))
}

/// A fresh fencing token for a lock (16 random bytes, hex).
pub(crate) fn new_lock_token() -> String {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Who writes: `pid@host`.
pub fn writer() -> String {
    format!(
        "{}@{}",
        std::process::id(),
        gethostname::gethostname().to_string_lossy()
    )
}

/// The contract every backend must keep, as one function the unit tests (file) and the
/// integration tests (PostgreSQL, against a real server) run.
#[doc(hidden)]
pub mod conformance;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_in_urls_are_redacted() {
        let r = redact(
            "postgres://ops:hunter2@db/f?sslmode=verify-full&password=hunter3&sslpassword=x&application_name=a",
        );
        assert!(!r.contains("hunter") && !r.contains("sslpassword=x"), "{r}");
        assert!(
            r.contains("ops:***@db") && r.contains("application_name=a"),
            "{r}"
        );
        assert_eq!(redact("etcd://h:2379/p"), "etcd://h:2379/p");
        let r = redact("etcd://h:2379/p?key=/k.pem&cacert=/ca.pem");
        assert_eq!(r, "etcd://h:2379/p?key=***&cacert=/ca.pem");
    }

    #[test]
    fn passwords_never_show_in_urls() {
        assert_eq!(
            redact("postgres://flo:s3cret@127.0.0.1:5432/db"),
            "postgres://flo:***@127.0.0.1:5432/db"
        );
        assert_eq!(redact("postgres://flo@h/db"), "postgres://flo@h/db");
        assert_eq!(redact("file"), "file");
    }

    #[test]
    fn the_file_backend_passes_the_conformance_suite() {
        let tmp = tempfile::tempdir().expect("tmp");
        let b = FileBackend::new(tmp.path().to_path_buf());
        conformance::run(&b);
    }
}
