//! `flotilla export` / `import`: a deployment's state, SSH key, pinned host keys and kubeconfig
//! as one tar archive, to move it to another operator machine or manager. The archive holds the
//! private key, so it is written 0600; import refuses to overwrite an existing deployment unless
//! forced (and then under its lock).

use crate::error::{Error, Result};
use crate::state::{Home, State};
use std::io::Read;
use std::path::Path;

const FORMAT: u32 = 1;
/// Files carried besides the state (when present); the key is added under a fixed name.
const CARRIED: &[&str] = &["known_hosts", "kubeconfig", "journal.jsonl"];
const KEY: &str = "id_ed25519";
/// The manager's data volumes (`export --with-manager-data`), kept by `import` for
/// `flotilla manager install NAME --data <dir>/manager-data.tar`.
pub const MANAGER_DATA: &str = "manager-data.tar";

#[derive(serde::Serialize, serde::Deserialize)]
struct Manifest {
    format: u32,
    deployment: String,
    exported_at: String,
    flotilla_version: String,
}

fn append(b: &mut tar::Builder<Vec<u8>>, name: &str, body: &[u8]) -> Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_size(body.len() as u64);
    h.set_mode(0o600);
    h.set_mtime(jiff::Timestamp::now().as_second().max(0) as u64);
    h.set_cksum();
    b.append_data(&mut h, name, body)
        .map_err(|e| Error::Other(format!("building the archive: {e}")))
}

/// The archive's bytes.
pub fn export(home: &Home, name: &str) -> Result<Vec<u8>> {
    export_with(home, name, None)
}

/// The archive, with a manager backup added when given.
pub fn export_with(home: &Home, name: &str, manager_data: Option<&[u8]>) -> Result<Vec<u8>> {
    let state = home.load_existing(name)?;
    let dir = home.deployment_dir(name)?;
    let mut b = tar::Builder::new(Vec::new());
    let manifest = Manifest {
        format: FORMAT,
        deployment: name.to_string(),
        exported_at: crate::util::now_rfc3339(),
        flotilla_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    append(
        &mut b,
        "manifest.json",
        &serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Other(e.to_string()))?,
    )?;
    append(
        &mut b,
        "state.json",
        &serde_json::to_vec_pretty(&state).map_err(|e| Error::Other(e.to_string()))?,
    )?;
    if !state.ssh_private_key.is_empty() {
        let key = std::fs::read(&state.ssh_private_key).map_err(|e| {
            Error::Other(format!(
                "the deployment's SSH key {}: {e}",
                state.ssh_private_key
            ))
        })?;
        append(&mut b, KEY, &key)?;
        if let Ok(public) = std::fs::read(format!("{}.pub", state.ssh_private_key)) {
            append(&mut b, &format!("{KEY}.pub"), &public)?;
        }
    }
    for f in CARRIED {
        if let Ok(body) = std::fs::read(dir.join(f)) {
            append(&mut b, f, &body)?;
        }
    }
    if let Some(data) = manager_data {
        append(&mut b, MANAGER_DATA, data)?;
    }
    b.into_inner()
        .map_err(|e| Error::Other(format!("building the archive: {e}")))
}

#[derive(Debug, serde::Serialize)]
pub struct ImportReport {
    pub deployment: String,
    pub nodes: usize,
    pub replaced_existing: bool,
    pub files: Vec<String>,
}

pub fn import(home: &Home, archive: &[u8], force: bool) -> Result<ImportReport> {
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut a = tar::Archive::new(archive);
    let entries = a
        .entries()
        .map_err(|e| Error::Usage(format!("not a flotilla export: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| Error::Usage(format!("not a flotilla export: {e}")))?;
        let path = entry
            .path()
            .map_err(|e| Error::Usage(format!("not a flotilla export: {e}")))?
            .to_string_lossy()
            .into_owned();
        // Only the known flat names: an archive cannot write anywhere else.
        let allowed = path == "manifest.json"
            || path == "state.json"
            || path == KEY
            || path == format!("{KEY}.pub")
            || path == MANAGER_DATA
            || CARRIED.contains(&path.as_str());
        if !allowed {
            return Err(Error::Usage(format!(
                "not a flotilla export: unexpected entry `{path}`"
            )));
        }
        let mut body = Vec::new();
        entry
            .read_to_end(&mut body)
            .map_err(|e| Error::Usage(format!("reading `{path}` from the archive: {e}")))?;
        files.push((path, body));
    }
    let get = |n: &str| {
        files
            .iter()
            .find(|(p, _)| p == n)
            .map(|(_, b)| b.as_slice())
    };
    let manifest: Manifest = serde_json::from_slice(
        get("manifest.json")
            .ok_or_else(|| Error::Usage("not a flotilla export: no manifest.json".into()))?,
    )
    .map_err(|e| Error::Usage(format!("manifest.json: {e}")))?;
    if manifest.format != FORMAT {
        return Err(Error::Usage(format!(
            "export format {} is not supported by this flotilla (it reads format {FORMAT})",
            manifest.format
        )));
    }
    let mut state: State = serde_json::from_slice(
        get("state.json")
            .ok_or_else(|| Error::Usage("not a flotilla export: no state.json".into()))?,
    )
    .map_err(|e| Error::Usage(format!("state.json in the archive: {e}")))?;
    if state.deployment != manifest.deployment {
        return Err(Error::Usage(format!(
            "the archive's manifest names `{}` but its state is `{}`",
            manifest.deployment, state.deployment
        )));
    }
    let name = state.deployment.clone();
    let dir = home.deployment_dir(&name)?;
    let exists = home.exists(&name)?;
    if exists && !force {
        return Err(Error::Usage(format!(
            "deployment `{name}` already exists under {}; pass --force to replace its state with the archive's",
            home.root.display()
        )));
    }
    std::fs::create_dir_all(&dir).map_err(|e| Error::Other(format!("{}: {e}", dir.display())))?;
    let _lock = home.lock(&name, "import", None)?;
    let mut written = Vec::new();
    for (path, body) in &files {
        if path == "manifest.json" || path == "state.json" {
            continue;
        }
        crate::state::write_atomic(&dir.join(path), body)?;
        written.push(path.clone());
    }
    if get(KEY).is_some() {
        state.ssh_private_key = dir.join(KEY).display().to_string();
    }
    home.save(&state)?;
    written.push("state.json".into());
    Ok(ImportReport {
        deployment: name,
        nodes: state.nodes.len(),
        replaced_existing: exists,
        files: written,
    })
}

/// Writes the archive 0600 (it holds the private key), atomically.
pub fn write_archive(path: &Path, bytes: &[u8]) -> Result<()> {
    crate::state::write_atomic(path, bytes).map_err(Error::from)
}
