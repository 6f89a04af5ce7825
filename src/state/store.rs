//! Where deployments live on disk and how their files are written: temp file + fsync + rename +
//! directory fsync, mode 0600, so a crash leaves either the old or the new state, never half.

use super::backend::{FileBackend, HeldLock, LockAttempt, StateBackend};
use super::lock::{Holder, LockError};
use super::model::{migrate, State};
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("{path}: {what}")]
    Io {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path}: state file is damaged ({message}); restore it from {path}.bak or fix it by hand"
    )]
    Corrupt { path: PathBuf, message: String },
    #[error("deployment `{0}` not found (no state under the flotilla home; see `flotilla list`)")]
    NotFound(String),
    #[error("the state of `{deployment}` changed under this run (expected version {}, found {}): another process wrote it; nothing was overwritten — re-run the command", fmt_version(*expected), fmt_version(*found))]
    Conflict {
        deployment: String,
        expected: Option<u64>,
        found: Option<u64>,
    },
    #[error("this run lost the lock of `{0}` (its lease expired or it was force-unlocked); the state was not written — re-run the command")]
    LockLost(String),
    #[error("state backend {url}: {message}")]
    Backend { url: String, message: String },
    /// A name that may not become a path or a key (`..`, `/`, a leading `-`, ...).
    #[error(transparent)]
    InvalidName(#[from] crate::names::NameError),
}

fn fmt_version(v: Option<u64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "none".into())
}

fn io<'a>(path: &'a Path, what: &'static str) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        what,
        source,
    }
}

/// The flotilla home: `--home`, `$FLOTILLA_HOME`, `$XDG_STATE_HOME/flotilla`, `~/.local/state/flotilla`.
pub fn resolve_home(flag: Option<&Path>) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    if let Some(p) = std::env::var_os("FLOTILLA_HOME").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("XDG_STATE_HOME").filter(|p| !p.is_empty()) {
        return PathBuf::from(p).join("flotilla");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".local/state/flotilla")
}

/// Shared cache (the node rootfs tarball): `$FLOTILLA_CACHE_DIR`, `$XDG_CACHE_HOME/flotilla`, `~/.cache/flotilla`.
pub fn cache_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("FLOTILLA_CACHE_DIR").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("XDG_CACHE_HOME").filter(|p| !p.is_empty()) {
        return PathBuf::from(p).join("flotilla");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".cache/flotilla")
}

/// The flotilla home: the local working folder of every deployment (SSH key, pinned host keys,
/// journal, ssh_config) and the state backend that holds the states and their locks.
#[derive(Clone)]
pub struct Home {
    pub root: PathBuf,
    backend: Arc<dyn StateBackend>,
    /// Version of each state this process read or wrote (the compare-and-swap base).
    versions: Arc<Mutex<HashMap<String, u64>>>,
    /// Fencing tokens of the locks this process holds.
    tokens: Arc<Mutex<HashMap<String, String>>>,
}

impl std::fmt::Debug for Home {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Home")
            .field("root", &self.root)
            .field("backend", &self.backend.url())
            .finish()
    }
}

/// Files of the deployment folder a shared backend carries with the state, so another
/// operator's machine (or a cron host) gets the same SSH key, pinned host keys and kubeconfig.
const CARRIED_FILES: &[&str] = &[
    "id_ed25519",
    "id_ed25519.pub",
    "known_hosts",
    "kubeconfig",
    "manager-token",
];

/// What a shared backend stores: the state and the carried files.
#[derive(serde::Serialize, serde::Deserialize)]
struct Envelope {
    state: serde_json::Value,
    #[serde(default)]
    files: std::collections::BTreeMap<String, String>,
}

impl Home {
    /// A home whose states are files under `root` (the default backend).
    pub fn new(root: PathBuf) -> Self {
        let backend = Arc::new(FileBackend::new(root.clone()));
        Self::with_backend(root, backend)
    }

    /// A home whose states live in `backend` (`--backend` / `FLOTILLA_BACKEND`).
    pub fn open(root: PathBuf, backend_url: Option<&str>) -> Result<Self, StoreError> {
        let backend = super::backend::open(backend_url, &root)?;
        Ok(Self::with_backend(root, backend))
    }

    pub fn with_backend(root: PathBuf, backend: Arc<dyn StateBackend>) -> Self {
        Self {
            root,
            backend: super::backend::checked(backend),
            versions: Arc::default(),
            tokens: Arc::default(),
        }
    }

    pub fn backend(&self) -> &Arc<dyn StateBackend> {
        &self.backend
    }

    /// Whether the backend is this home's own files (no envelope, no carried files).
    fn local(&self) -> bool {
        self.backend.url() == format!("file://{}", self.root.display())
    }

    pub fn deployments_dir(&self) -> PathBuf {
        self.root.join("deployments")
    }

    /// `<home>/deployments/<name>`: only ever for a valid deployment name, so no name can
    /// point outside the home.
    pub fn deployment_dir(&self, name: &str) -> Result<PathBuf, StoreError> {
        crate::names::check(crate::names::NameKind::Deployment, name)?;
        Ok(self.deployments_dir().join(name))
    }

    pub fn ensure_deployment_dir(&self, name: &str) -> Result<PathBuf, StoreError> {
        let dir = self.deployment_dir(name)?;
        fs::create_dir_all(&dir).map_err(io(&dir, "cannot create the deployment directory"))?;
        // Keys and state live here: owner only.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
            .map_err(io(&dir, "cannot set permissions"))?;
        Ok(dir)
    }

    /// Deployment names with a state, sorted.
    pub fn list(&self) -> Result<Vec<String>, StoreError> {
        self.backend.list()
    }

    pub fn exists(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self.backend.read(name)?.is_some())
    }

    pub fn state_path(&self, name: &str) -> Result<PathBuf, StoreError> {
        Ok(self.deployment_dir(name)?.join("state.json"))
    }

    /// Parses a stored state (any version this flotilla can migrate). A state is checked like
    /// anything from outside: its names and SSH users must be valid and it must name itself
    /// `name` (a state from a shared backend or an archive cannot point elsewhere).
    pub fn parse_state(&self, name: &str, body: &[u8]) -> Result<State, StoreError> {
        let corrupt = self.corrupt(name)?;
        let mut doc: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| corrupt(e.to_string()))?;
        if !self.local() {
            let env: Envelope = serde_json::from_value(doc).map_err(|e| corrupt(e.to_string()))?;
            doc = env.state;
        }
        self.state_from(name, doc)
    }

    /// A state document as `export` writes it (never in a backend's envelope), checked like
    /// `parse_state`.
    pub fn parse_local_state(&self, name: &str, body: &[u8]) -> Result<State, StoreError> {
        let corrupt = self.corrupt(name)?;
        let doc = serde_json::from_slice(body).map_err(|e| corrupt(e.to_string()))?;
        self.state_from(name, doc)
    }

    fn corrupt(&self, name: &str) -> Result<impl Fn(String) -> StoreError, StoreError> {
        let path = self.state_path(name)?;
        Ok(move |message: String| StoreError::Corrupt {
            path: path.clone(),
            message,
        })
    }

    fn state_from(&self, name: &str, doc: serde_json::Value) -> Result<State, StoreError> {
        let corrupt = self.corrupt(name)?;
        let doc = migrate(doc).map_err(&corrupt)?;
        let state: State = serde_json::from_value(doc).map_err(|e| corrupt(e.to_string()))?;
        let problems = state.trust_problems(name);
        if !problems.is_empty() {
            return Err(corrupt(problems.join("; ")));
        }
        Ok(state)
    }

    pub fn load(&self, name: &str) -> Result<Option<State>, StoreError> {
        let Some(rec) = self.backend.read(name)? else {
            return Ok(None);
        };
        let mut state = self.parse_state(name, &rec.body)?;
        if !self.local() {
            self.materialize(name, &rec.body, &mut state)?;
        }
        if let Ok(mut v) = self.versions.lock() {
            v.insert(name.to_string(), rec.version);
        }
        Ok(Some(state))
    }

    /// Writes the carried files of a shared backend's record into the local deployment folder
    /// (0600) and points the state at the local key.
    fn materialize(&self, name: &str, body: &[u8], state: &mut State) -> Result<(), StoreError> {
        let Ok(env) = serde_json::from_slice::<Envelope>(body) else {
            return Ok(());
        };
        if env.files.is_empty() {
            return Ok(());
        }
        let dir = self.ensure_deployment_dir(name)?;
        for (file, text) in &env.files {
            if !CARRIED_FILES.contains(&file.as_str()) {
                continue;
            }
            let path = dir.join(file);
            if fs::read(&path).ok().as_deref() != Some(text.as_bytes()) {
                write_atomic(&path, text.as_bytes())?;
            }
        }
        if env.files.contains_key("id_ed25519") {
            state.ssh_private_key = dir.join("id_ed25519").display().to_string();
        }
        Ok(())
    }

    pub fn load_existing(&self, name: &str) -> Result<State, StoreError> {
        self.load(name)?
            .ok_or_else(|| StoreError::NotFound(name.to_string()))
    }

    /// Writes the state as a new version: compare-and-swap against the version this process
    /// last saw, fenced by the lock it holds (shared backends). A run saves after every step;
    /// those saves are not history (see `save_final`).
    pub fn save(&self, state: &State) -> Result<(), StoreError> {
        self.write(state, false)
    }

    /// Saves the state a command run ends with and keeps it in the history (`state history`,
    /// `state rollback`): one entry per run, not per step. The history keeps the state only —
    /// a shared backend's carried files (the SSH key among them) live once, in the current
    /// record.
    pub fn save_final(&self, state: &State) -> Result<(), StoreError> {
        self.write(state, true)
    }

    fn write(&self, state: &State, snapshot: bool) -> Result<(), StoreError> {
        let name = state.deployment.as_str();
        self.ensure_deployment_dir(name)?;
        let body = self.body_of(state, true)?;
        let history = if snapshot {
            Some(self.body_of(state, false)?)
        } else {
            None
        };
        let known = self.versions.lock().ok().and_then(|v| v.get(name).copied());
        let expected = match known {
            Some(v) => Some(v),
            // Never read by this process (a first `up`, an import): whatever is there now.
            None => self.backend.read(name)?.map(|r| r.version),
        };
        let token = self.tokens.lock().ok().and_then(|t| t.get(name).cloned());
        let version = self.backend.write(
            name,
            &body,
            expected,
            token.as_deref(),
            &super::backend::writer(),
            history.as_deref(),
        )?;
        if let Ok(mut v) = self.versions.lock() {
            v.insert(name.to_string(), version);
        }
        Ok(())
    }

    /// The stored document: the state itself for the home's own files; for a shared backend
    /// an envelope with the state and (`with_files`) the carried files.
    fn body_of(&self, state: &State, with_files: bool) -> Result<Vec<u8>, StoreError> {
        let path = self.state_path(&state.deployment)?;
        let corrupt = |e: serde_json::Error| StoreError::Corrupt {
            path: path.clone(),
            message: e.to_string(),
        };
        if self.local() {
            return serde_json::to_vec_pretty(state).map_err(corrupt);
        }
        let dir = self.deployment_dir(&state.deployment)?;
        let mut files = std::collections::BTreeMap::new();
        for f in CARRIED_FILES.iter().filter(|_| with_files) {
            let path = if *f == "id_ed25519" {
                PathBuf::from(&state.ssh_private_key)
            } else if *f == "id_ed25519.pub" {
                PathBuf::from(format!("{}.pub", state.ssh_private_key))
            } else {
                dir.join(f)
            };
            if let Ok(text) = fs::read_to_string(&path) {
                files.insert(f.to_string(), text);
            }
        }
        let env = Envelope {
            state: serde_json::to_value(state).map_err(corrupt)?,
            files,
        };
        serde_json::to_vec(&env).map_err(corrupt)
    }

    /// Removes a deployment's state (after `down`) and its local folder.
    pub fn remove(&self, name: &str) -> Result<(), StoreError> {
        let dir = self.deployment_dir(name)?;
        self.backend.delete(name)?;
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&dir, "cannot remove the deployment directory")(e)),
        }
    }

    /// Takes the deployment's lock for this command, waiting up to `wait` (polling) when it is
    /// held. The lease of a shared backend is renewed in the background until the guard drops.
    pub fn lock(
        &self,
        name: &str,
        command: &str,
        wait: Option<Duration>,
    ) -> Result<DeploymentLock, LockError> {
        let me = Holder::me(command);
        let mut backoff = wait.map(|w| {
            flotilla_provider_core::backoff::Backoff::new(w)
                .first(Duration::from_millis(200))
                .cap(Duration::from_secs(2))
                .jitter()
        });
        let lease = super::backend::LEASE;
        loop {
            let attempt = self
                .backend
                .try_lock(name, &me, lease)
                .map_err(|e| LockError::Backend(e.to_string()))?;
            match attempt {
                LockAttempt::Acquired(held) => {
                    if let Some(h) = held.taken_over_from() {
                        tracing::warn!(previous = %h, "took over the lock of a holder that ended without releasing it; its run is resumed from the state");
                    }
                    if let (Some(t), Ok(mut tokens)) = (held.token(), self.tokens.lock()) {
                        tokens.insert(name.to_string(), t);
                    }
                    return Ok(DeploymentLock::start(
                        name,
                        held,
                        lease,
                        self.tokens.clone(),
                    ));
                }
                LockAttempt::Held(info) => match backoff.as_mut().map(|b| b.wait_blocking()) {
                    Some(true) => {}
                    _ => {
                        return Err(LockError::Held {
                            deployment: name.to_string(),
                            holder: info.map(|i| i.holder),
                            waited: backoff.is_some(),
                        })
                    }
                },
            }
        }
    }
}

/// A held deployment lock: renews its lease every third of it until dropped, then releases it.
pub struct DeploymentLock {
    name: String,
    held: Arc<dyn HeldLock>,
    stop: Option<std::sync::mpsc::Sender<()>>,
    renewer: Option<std::thread::JoinHandle<()>>,
    tokens: Arc<Mutex<HashMap<String, String>>>,
    /// Set when a renewal found the lock gone (the next fenced write fails with LockLost).
    pub lost: Arc<std::sync::atomic::AtomicBool>,
    pub taken_over_from: Option<Holder>,
}

impl DeploymentLock {
    fn start(
        name: &str,
        held: Arc<dyn HeldLock>,
        lease: Duration,
        tokens: Arc<Mutex<HashMap<String, String>>>,
    ) -> Self {
        let taken_over_from = held.taken_over_from();
        let lost = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (stop, renewer) = if held.token().is_some() {
            let (tx, rx) = std::sync::mpsc::channel::<()>();
            let (h, l, n) = (held.clone(), lost.clone(), name.to_string());
            let t = std::thread::Builder::new()
                .name("flotilla-lease".into())
                .spawn(move || loop {
                    match rx.recv_timeout(lease / 3) {
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => match h.renew() {
                            Ok(true) => {}
                            Ok(false) => {
                                tracing::error!(deployment = %n, "the deployment lock was lost (lease expired or force-unlocked); further state writes are refused");
                                l.store(true, std::sync::atomic::Ordering::SeqCst);
                                return;
                            }
                            // A transient backend error: the lease still has two thirds left.
                            Err(e) => tracing::warn!(deployment = %n, "renewing the lock: {e}"),
                        },
                        _ => return,
                    }
                })
                .ok();
            (Some(tx), t)
        } else {
            (None, None)
        };
        Self {
            name: name.to_string(),
            held,
            stop,
            renewer,
            tokens,
            lost,
            taken_over_from,
        }
    }
}

impl Drop for DeploymentLock {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.renewer.take() {
            let _ = t.join();
        }
        if let Ok(mut tokens) = self.tokens.lock() {
            tokens.remove(&self.name);
        }
        self.held.release();
    }
}

/// A new file in the same directory (created with `O_EXCL`, mode 0600 from the start, so
/// never through a file or link someone placed there) -> write -> fsync -> rename over `path`
/// -> fsync(dir). Every file flotilla writes that may hold a secret goes through here.
pub fn write_atomic(path: &Path, body: &[u8]) -> Result<(), StoreError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(
            ".{}.tmp.",
            path.file_name().and_then(|n| n.to_str()).unwrap_or("state")
        ))
        .permissions(fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)
        .map_err(io(dir, "cannot create a temporary file"))?;
    tmp.write_all(body)
        .map_err(io(tmp.path(), "cannot write"))?;
    tmp.as_file().sync_all().map_err(io(path, "cannot fsync"))?;
    tmp.persist(path)
        .map_err(|e| io(path, "cannot rename the temporary file into place")(e.error))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir, "cannot fsync the directory"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_is_atomic_private_and_round_trips() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let home = Home::new(tmp.path().to_path_buf());
        let mut s = State::new("demo", "docker", "t0");
        home.save(&s).expect("save");
        s.updated_at = "t1".into();
        home.save(&s).expect("save again");
        let back = home.load_existing("demo").expect("load");
        assert_eq!(back, s);
        let mode = fs::metadata(home.state_path("demo").expect("path"))
            .expect("meta")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        let dir = home.deployment_dir("demo").expect("dir");
        assert!(dir.join("state.json.bak").exists());
        let leftovers: Vec<_> = fs::read_dir(&dir)
            .expect("dir")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp."))
            .collect();
        assert!(leftovers.is_empty(), "no temp files left behind");
        assert_eq!(home.list().expect("list"), vec!["demo".to_string()]);
    }

    #[test]
    fn secrets_are_never_written_through_a_planted_link() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let victim = tmp.path().join("victim");
        fs::write(&victim, "untouched").expect("write");
        let dir = tmp.path().join("d");
        fs::create_dir(&dir).expect("dir");
        // The old temporary name, and the target itself, as links to the victim.
        for name in [
            format!(".key.tmp.{}", std::process::id()),
            "key".to_string(),
        ] {
            std::os::unix::fs::symlink(&victim, dir.join(name)).expect("link");
        }
        write_atomic(&dir.join("key"), b"secret").expect("write");
        assert_eq!(fs::read_to_string(&victim).expect("read"), "untouched");
        let meta = fs::symlink_metadata(dir.join("key")).expect("meta");
        assert!(
            meta.file_type().is_file(),
            "the link was replaced by a file"
        );
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::read(dir.join("key")).expect("read"), b"secret");
    }

    #[test]
    fn invalid_names_never_become_paths() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let home = Home::new(tmp.path().join("home"));
        for bad in ["../x", "..", "a/b", "-x", "/etc"] {
            assert!(matches!(
                home.deployment_dir(bad),
                Err(StoreError::InvalidName(_))
            ));
            assert!(home.ensure_deployment_dir(bad).is_err());
            assert!(home.load(bad).is_err());
            assert!(home.lock(bad, "t", None).is_err());
            assert!(home.remove(bad).is_err());
        }
        assert!(!tmp.path().join("x").exists());
        assert!(!tmp.path().join("home").exists(), "nothing was created");
    }

    #[test]
    fn a_state_that_names_another_deployment_is_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let home = Home::new(tmp.path().to_path_buf());
        let s = State::new("demo", "docker", "t0");
        home.save(&s).expect("save");
        let mut other = serde_json::to_value(&s).expect("json");
        other["deployment"] = "../other".into();
        let dir = home.deployment_dir("demo").expect("dir");
        fs::write(dir.join("state.json"), other.to_string()).expect("write");
        let err = home.load("demo").expect_err("refused");
        assert!(
            err.to_string().contains("not a valid deployment name"),
            "{err}"
        );
    }

    #[test]
    fn corrupt_state_is_reported_with_its_path() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let home = Home::new(tmp.path().to_path_buf());
        home.ensure_deployment_dir("x").expect("dir");
        fs::write(home.state_path("x").expect("path"), "{not json").expect("write");
        let err = home.load("x").expect_err("corrupt");
        assert!(err.to_string().contains("state.json"), "{err}");
    }
}
