//! The deployment lock: an advisory `flock` on `<deployment>/lock`, held for the whole of every
//! mutating command. The kernel drops a flock when its process dies, so a lock left by a dead
//! process is free by construction; the holder record written into the file names who holds it
//! (pid, host, start time, command) for the "locked" message and for the takeover notice.

use flotilla_provider_core::backoff::Backoff;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    pub host: String,
    pub started_at: String,
    pub command: String,
}

impl Holder {
    /// This process, running `command`.
    pub fn me(command: &str) -> Self {
        Self {
            pid: std::process::id(),
            host: gethostname::gethostname().to_string_lossy().into_owned(),
            started_at: crate::util::now_rfc3339(),
            command: command.to_string(),
        }
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pid {} on {} since {} (`{}`)",
            self.pid, self.host, self.started_at, self.command
        )
    }
}

#[derive(Debug, Error)]
pub enum LockError {
    #[error("deployment `{deployment}` is locked by {}; wait for it to finish{}",
        holder.as_ref().map(ToString::to_string).unwrap_or_else(|| "another process".into()),
        if *waited { " (gave up waiting)" } else { " or pass --wait-lock DURATION" })]
    Held {
        deployment: String,
        holder: Option<Holder>,
        waited: bool,
    },
    #[error("{0}")]
    Backend(String),
    #[error("{path}: {what}")]
    Io {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug)]
pub struct Flock {
    file: File,
    path: PathBuf,
    /// Holder record found in the file when we took the lock: a previous holder that died.
    pub taken_over_from: Option<Holder>,
}

fn read_holder(file: &mut File) -> Option<Holder> {
    let mut s = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut s).ok()?;
    serde_json::from_str(s.trim()).ok()
}

impl Flock {
    /// Takes the lock, or fails at once with `Held` (or after `wait`, polling).
    pub fn acquire(
        dir: &Path,
        deployment: &str,
        command: &str,
        wait: Option<Duration>,
    ) -> Result<Self, LockError> {
        Self::acquire_as(dir, deployment, &Holder::me(command), wait)
    }

    /// Who holds the lock of the deployment in `dir` right now (None when it is free).
    pub fn current_holder(dir: &Path) -> Option<Holder> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(dir.join("lock"))
            .ok()?;
        match file.try_lock() {
            Ok(()) => {
                let _ = file.unlock();
                None
            }
            Err(_) => read_holder(&mut file),
        }
    }

    /// `acquire` with the holder record given.
    pub fn acquire_as(
        dir: &Path,
        deployment: &str,
        me: &Holder,
        wait: Option<Duration>,
    ) -> Result<Self, LockError> {
        let path = dir.join("lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|source| LockError::Io {
                path: path.clone(),
                what: "cannot open the lock file",
                source,
            })?;
        let mut backoff = wait.map(|w| Backoff::new(w).every(Duration::from_millis(200)));
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) => {
                    let holder = read_holder(&mut file);
                    match backoff.as_mut().map(Backoff::wait_blocking) {
                        Some(true) => {}
                        _ => {
                            return Err(LockError::Held {
                                deployment: deployment.to_string(),
                                holder,
                                waited: backoff.is_some(),
                            })
                        }
                    }
                }
                Err(std::fs::TryLockError::Error(source)) => {
                    return Err(LockError::Io {
                        path,
                        what: "cannot lock",
                        source,
                    });
                }
            }
        }
        let taken_over_from = read_holder(&mut file);
        if let Some(h) = &taken_over_from {
            tracing::warn!(previous = %h, "took over the lock of a process that ended without releasing it; its run is resumed from the journal");
        }
        let body = serde_json::to_string(me).unwrap_or_default();
        file.set_len(0)
            .and_then(|_| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(body.as_bytes()))
            .and_then(|_| file.sync_all())
            .map_err(|source| LockError::Io {
                path: path.clone(),
                what: "cannot record the lock holder",
                source,
            })?;
        Ok(Self {
            file,
            path,
            taken_over_from,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Flock {
    fn drop(&mut self) {
        // Clear the holder record first: an empty file means "released cleanly".
        let _ = self.file.set_len(0);
        let _ = self.file.sync_all();
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_with_the_first_named() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let first = Flock::acquire(tmp.path(), "d", "up", None).expect("first");
        let err = Flock::acquire(tmp.path(), "d", "down", None).expect_err("held");
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        assert!(msg.contains("`up`"), "{msg}");
        drop(first);
        let again = Flock::acquire(tmp.path(), "d", "down", None).expect("free after release");
        assert!(
            again.taken_over_from.is_none(),
            "a clean release leaves no holder record"
        );
    }

    #[test]
    fn a_stale_holder_record_is_taken_over() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let stale = Holder {
            pid: 999_999,
            host: "gone".into(),
            started_at: "t".into(),
            command: "up".into(),
        };
        std::fs::write(
            tmp.path().join("lock"),
            serde_json::to_string(&stale).expect("json"),
        )
        .expect("write");
        let lock = Flock::acquire(tmp.path(), "d", "up", None).expect("takeover");
        assert_eq!(lock.taken_over_from, Some(stale));
    }

    #[test]
    fn waiting_gives_up_after_the_duration() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let _first = Flock::acquire(tmp.path(), "d", "up", None).expect("first");
        let t = std::time::Instant::now();
        let err = Flock::acquire(tmp.path(), "d", "up", Some(Duration::from_millis(500)))
            .expect_err("held");
        assert!(t.elapsed() >= Duration::from_millis(500));
        assert!(matches!(err, LockError::Held { waited: true, .. }));
    }
}
