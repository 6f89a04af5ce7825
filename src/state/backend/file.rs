//! The file backend: `<root>/deployments/<name>/state.json` written atomically (the previous one
//! kept as `state.json.bak`), its version in `state.version`, the last versions under `history/`,
//! and the lock a `flock` on `lock` (released by the kernel when the holder dies).

use super::{HeldLock, HistoryEntry, LockAttempt, LockInfo, Record, StateBackend, HISTORY_KEPT};
use crate::state::lock::{Flock, Holder, LockError};
use crate::state::store::{write_atomic, StoreError};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct FileBackend {
    root: PathBuf,
}

fn io<'a>(path: &'a Path, what: &'static str) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        what,
        source,
    }
}

impl FileBackend {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.root.join("deployments").join(name)
    }

    fn ensure_dir(&self, name: &str) -> Result<PathBuf, StoreError> {
        let dir = self.dir(name);
        fs::create_dir_all(&dir).map_err(io(&dir, "cannot create the deployment directory"))?;
        // Keys and state live here: owner only.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
            .map_err(io(&dir, "cannot set permissions"))?;
        Ok(dir)
    }

    /// The stored version: `state.version`, or 1 for a state written before versions existed.
    fn version(&self, name: &str) -> Result<Option<u64>, StoreError> {
        let dir = self.dir(name);
        if !dir.join("state.json").exists() {
            return Ok(None);
        }
        match fs::read_to_string(dir.join("state.version")) {
            Ok(v) => Ok(Some(v.trim().parse().unwrap_or(1))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Some(1)),
            Err(e) => Err(io(&dir, "cannot read state.version")(e)),
        }
    }
}

struct FileLock {
    lock: Mutex<Option<Flock>>,
    taken_over_from: Option<Holder>,
}

impl HeldLock for FileLock {
    fn token(&self) -> Option<String> {
        None
    }
    fn renew(&self) -> Result<bool, StoreError> {
        Ok(true)
    }
    fn release(&self) {
        if let Ok(mut l) = self.lock.lock() {
            l.take();
        }
    }
    fn taken_over_from(&self) -> Option<Holder> {
        self.taken_over_from.clone()
    }
}

impl FileBackend {
    /// Keeps the newest `HISTORY_KEPT` runs.
    fn trim_history(&self, name: &str) -> Result<(), StoreError> {
        let history = self.dir(name).join("history");
        for old in self.history(name)?.iter().skip(HISTORY_KEPT as usize) {
            let _ = fs::remove_file(history.join(format!("{:010}.json", old.version)));
        }
        Ok(())
    }
}

impl StateBackend for FileBackend {
    fn url(&self) -> String {
        format!("file://{}", self.root.display())
    }

    fn read(&self, name: &str) -> Result<Option<Record>, StoreError> {
        let path = self.dir(name).join("state.json");
        let body = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&path, "cannot read the state file")(e)),
        };
        Ok(Some(Record {
            body,
            version: self.version(name)?.unwrap_or(1),
        }))
    }

    fn write(
        &self,
        name: &str,
        body: &[u8],
        expected: Option<u64>,
        _token: Option<&str>,
        _by: &str,
        snapshot: Option<&[u8]>,
    ) -> Result<u64, StoreError> {
        let found = self.version(name)?;
        if found != expected {
            return Err(StoreError::Conflict {
                deployment: name.to_string(),
                expected,
                found,
            });
        }
        let dir = self.ensure_dir(name)?;
        let path = dir.join("state.json");
        if path.exists() {
            let bak = dir.join("state.json.bak");
            let _ = fs::copy(&path, &bak)
                .and_then(|_| fs::set_permissions(&bak, fs::Permissions::from_mode(0o600)));
        }
        let version = found.unwrap_or(0) + 1;
        if let Some(doc) = snapshot {
            let history = dir.join("history");
            fs::create_dir_all(&history)
                .map_err(io(&history, "cannot create the history folder"))?;
            write_atomic(&history.join(format!("{version:010}.json")), doc)?;
        }
        write_atomic(&path, body)?;
        write_atomic(&dir.join("state.version"), version.to_string().as_bytes())?;
        if snapshot.is_some() {
            self.trim_history(name)?;
        }
        Ok(version)
    }

    /// The stored state and its history; the folder's other files (key, host keys, lock,
    /// journal) belong to the home's working copy and go with `Home::remove`.
    fn delete(&self, name: &str) -> Result<(), StoreError> {
        let dir = self.dir(name);
        for f in ["state.json", "state.json.bak", "state.version"] {
            match fs::remove_file(dir.join(f)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&dir, "cannot remove the state")(e)),
            }
        }
        match fs::remove_dir_all(dir.join("history")) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&dir, "cannot remove the state history")(e)),
        }
    }

    fn list(&self) -> Result<Vec<String>, StoreError> {
        let dir = self.root.join("deployments");
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&dir, "cannot list deployments")(e)),
        };
        let mut names: Vec<String> = entries
            .flatten()
            .filter(|e| e.path().join("state.json").exists())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        Ok(names)
    }

    fn history(&self, name: &str) -> Result<Vec<HistoryEntry>, StoreError> {
        let dir = self.dir(name).join("history");
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&dir, "cannot list the history")(e)),
        };
        let mut out: Vec<HistoryEntry> = entries
            .flatten()
            .filter_map(|e| {
                let version = e
                    .file_name()
                    .to_str()?
                    .strip_suffix(".json")?
                    .parse()
                    .ok()?;
                let meta = e.metadata().ok()?;
                let written_at = meta
                    .modified()
                    .ok()
                    .and_then(|t| jiff::Timestamp::try_from(t).ok())
                    .map(|t| t.to_string())
                    .unwrap_or_default();
                Some(HistoryEntry {
                    version,
                    written_at,
                    written_by: "local".into(),
                    bytes: meta.len() as usize,
                })
            })
            .collect();
        out.sort_by_key(|e| std::cmp::Reverse(e.version));
        Ok(out)
    }

    fn read_version(&self, name: &str, version: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self
            .dir(name)
            .join("history")
            .join(format!("{version:010}.json"));
        match fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path, "cannot read the version")(e)),
        }
    }

    fn try_lock(
        &self,
        name: &str,
        holder: &Holder,
        _lease: Duration,
    ) -> Result<LockAttempt, StoreError> {
        let dir = self.ensure_dir(name)?;
        match Flock::acquire_as(&dir, name, holder, None) {
            Ok(l) => {
                let taken_over_from = l.taken_over_from.clone();
                Ok(LockAttempt::Acquired(Arc::new(FileLock {
                    lock: Mutex::new(Some(l)),
                    taken_over_from,
                })))
            }
            Err(LockError::Held { holder, .. }) => {
                Ok(LockAttempt::Held(holder.map(|h| LockInfo {
                    holder: h,
                    expires_at: None,
                })))
            }
            Err(LockError::Io { path, what, source }) => Err(StoreError::Io { path, what, source }),
            Err(LockError::Backend(message)) => Err(StoreError::Backend {
                url: self.url(),
                message,
            }),
        }
    }

    fn lock_status(&self, name: &str) -> Result<Option<LockInfo>, StoreError> {
        let dir = self.dir(name);
        if !dir.join("lock").exists() {
            return Ok(None);
        }
        Ok(Flock::current_holder(&dir).map(|h| LockInfo {
            holder: h,
            expires_at: None,
        }))
    }

    /// A flock cannot be taken from a live process: the holder has to end. What can be cleared
    /// is a stale holder record (the process is gone, the kernel already released the lock).
    fn force_unlock(&self, name: &str) -> Result<bool, StoreError> {
        let dir = self.dir(name);
        match Flock::current_holder(&dir) {
            None => Ok(false),
            Some(h) => Err(StoreError::Backend {
                url: self.url(),
                message: format!(
                    "the file lock is held by {h}: a flock ends only with its process (stop it, e.g. `kill {}` on {})",
                    h.pid, h.host
                ),
            }),
        }
    }
}
