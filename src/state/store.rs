//! Where deployments live on disk and how their files are written: temp file + fsync + rename +
//! directory fsync, mode 0600, so a crash leaves either the old or the new state, never half.

use super::model::{migrate, State};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
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

#[derive(Debug, Clone)]
pub struct Home {
    pub root: PathBuf,
}

impl Home {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    pub fn deployments_dir(&self) -> PathBuf {
        self.root.join("deployments")
    }

    pub fn deployment_dir(&self, name: &str) -> PathBuf {
        self.deployments_dir().join(name)
    }

    pub fn ensure_deployment_dir(&self, name: &str) -> Result<PathBuf, StoreError> {
        let dir = self.deployment_dir(name);
        fs::create_dir_all(&dir).map_err(io(&dir, "cannot create the deployment directory"))?;
        // Keys and state live here: owner only.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
            .map_err(io(&dir, "cannot set permissions"))?;
        Ok(dir)
    }

    /// Deployment names with a state file, sorted.
    pub fn list(&self) -> Result<Vec<String>, StoreError> {
        let dir = self.deployments_dir();
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

    pub fn state_path(&self, name: &str) -> PathBuf {
        self.deployment_dir(name).join("state.json")
    }

    pub fn load(&self, name: &str) -> Result<Option<State>, StoreError> {
        let path = self.state_path(name);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&path, "cannot read the state file")(e)),
        };
        let doc: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
                path: path.clone(),
                message: e.to_string(),
            })?;
        let doc = migrate(doc).map_err(|message| StoreError::Corrupt {
            path: path.clone(),
            message,
        })?;
        serde_json::from_value(doc)
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                path,
                message: e.to_string(),
            })
    }

    pub fn load_existing(&self, name: &str) -> Result<State, StoreError> {
        self.load(name)?
            .ok_or_else(|| StoreError::NotFound(name.to_string()))
    }

    /// Atomically replaces the state file, keeping the previous version as `state.json.bak`.
    pub fn save(&self, state: &State) -> Result<(), StoreError> {
        let dir = self.ensure_deployment_dir(&state.deployment)?;
        let path = dir.join("state.json");
        let body = serde_json::to_vec_pretty(state).map_err(|e| StoreError::Corrupt {
            path: path.clone(),
            message: e.to_string(),
        })?;
        if path.exists() {
            let _ = fs::copy(&path, dir.join("state.json.bak")).and_then(|_| {
                fs::set_permissions(
                    dir.join("state.json.bak"),
                    fs::Permissions::from_mode(0o600),
                )
            });
        }
        write_atomic(&path, &body)
    }

    /// Removes a deployment's directory (after `down`).
    pub fn remove(&self, name: &str) -> Result<(), StoreError> {
        let dir = self.deployment_dir(name);
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&dir, "cannot remove the deployment directory")(e)),
        }
    }
}

/// temp file in the same directory -> write -> fsync -> rename -> fsync(dir); mode 0600.
pub fn write_atomic(path: &Path, body: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp.{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("state"),
        std::process::id()
    ));
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io(&tmp, "cannot create a temporary file"))?;
        f.write_all(body).map_err(io(&tmp, "cannot write"))?;
        f.sync_all().map_err(io(&tmp, "cannot fsync"))?;
    }
    fs::rename(&tmp, path).map_err(io(path, "cannot rename the temporary file into place"))?;
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
        let mode = fs::metadata(home.state_path("demo"))
            .expect("meta")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        assert!(home.deployment_dir("demo").join("state.json.bak").exists());
        let leftovers: Vec<_> = fs::read_dir(home.deployment_dir("demo"))
            .expect("dir")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp."))
            .collect();
        assert!(leftovers.is_empty(), "no temp files left behind");
        assert_eq!(home.list().expect("list"), vec!["demo".to_string()]);
    }

    #[test]
    fn corrupt_state_is_reported_with_its_path() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let home = Home::new(tmp.path().to_path_buf());
        home.ensure_deployment_dir("x").expect("dir");
        fs::write(home.state_path("x"), "{not json").expect("write");
        let err = home.load("x").expect_err("corrupt");
        assert!(err.to_string().contains("state.json"), "{err}");
    }
}
