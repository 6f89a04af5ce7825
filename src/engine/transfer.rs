//! `flotilla export` / `import`: a deployment's state, SSH key, pinned host keys and kubeconfig
//! as one tar archive, to move it to another operator machine or manager. The archive holds the
//! private key, so it is written 0600; import refuses to overwrite an existing deployment unless
//! forced (and then under its lock).

use crate::error::{Error, Result};
use crate::state::Home;
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

/// The largest archive `import` reads (the manager's data makes up most of a big one).
pub const MAX_ARCHIVE: u64 = 2 * 1024 * 1024 * 1024;

/// The entries an export may hold and the largest size each may have: nothing else is read,
/// and nothing in an archive is ever taken as a path.
fn entry_limit(name: &str) -> Option<u64> {
    const MIB: u64 = 1024 * 1024;
    Some(match name {
        "manifest.json" => MIB,
        "state.json" => 64 * MIB,
        KEY | "id_ed25519.pub" => 64 * 1024,
        "known_hosts" | "kubeconfig" => 16 * MIB,
        "journal.jsonl" => 512 * MIB,
        MANAGER_DATA => MAX_ARCHIVE,
        _ => return None,
    })
}

fn not_an_export(why: impl std::fmt::Display) -> Error {
    Error::Usage(format!("not a flotilla export: {why}"))
}

/// The archive's entries by name: regular files only, each name once, each within its limit.
fn read_entries(archive: &[u8]) -> Result<Vec<(String, Vec<u8>)>> {
    if archive.len() as u64 > MAX_ARCHIVE {
        return Err(not_an_export(format!(
            "larger than {} GiB",
            MAX_ARCHIVE >> 30
        )));
    }
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut a = tar::Archive::new(archive);
    for entry in a.entries().map_err(not_an_export)? {
        let entry = entry.map_err(not_an_export)?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let shown = crate::names::shown(&name);
        let limit =
            entry_limit(&name).ok_or_else(|| not_an_export(format!("unexpected entry {shown}")))?;
        if !entry.header().entry_type().is_file() {
            return Err(not_an_export(format!("{shown} is not a regular file")));
        }
        if files.iter().any(|(n, _)| *n == name) {
            return Err(not_an_export(format!("{shown} appears twice")));
        }
        if entry.size() > limit {
            return Err(not_an_export(format!(
                "{shown} is larger than {limit} bytes"
            )));
        }
        let mut body = Vec::new();
        entry
            .take(limit + 1)
            .read_to_end(&mut body)
            .map_err(|e| not_an_export(format!("reading {shown}: {e}")))?;
        if body.len() as u64 > limit {
            return Err(not_an_export(format!(
                "{shown} is larger than {limit} bytes"
            )));
        }
        files.push((name, body));
    }
    Ok(files)
}

pub fn import(home: &Home, archive: &[u8], force: bool) -> Result<ImportReport> {
    let files = read_entries(archive)?;
    let get = |n: &str| {
        files
            .iter()
            .find(|(p, _)| p == n)
            .map(|(_, b)| b.as_slice())
    };
    let manifest: Manifest = serde_json::from_slice(
        get("manifest.json").ok_or_else(|| not_an_export("no manifest.json"))?,
    )
    .map_err(|e| Error::Usage(format!("manifest.json: {e}")))?;
    if manifest.format != FORMAT {
        return Err(Error::Usage(format!(
            "export format {} is not supported by this flotilla (it reads format {FORMAT})",
            manifest.format
        )));
    }
    crate::names::check(crate::names::NameKind::Deployment, &manifest.deployment)
        .map_err(|e| Error::Usage(format!("manifest.json: deployment: {e}")))?;
    let name = manifest.deployment.clone();
    // The state is read like any stored state: it must name the manifest's deployment and
    // hold only valid names and users.
    let mut state = home
        .parse_local_state(
            &name,
            get("state.json").ok_or_else(|| not_an_export("no state.json"))?,
        )
        .map_err(|e| Error::Usage(format!("state.json in the archive: {e}")))?;
    if !state.ssh_private_key.is_empty() && get(KEY).is_none() {
        return Err(not_an_export(format!(
            "the state uses an SSH key but the archive has no {KEY}"
        )));
    }
    let dir = home.deployment_dir(&name)?;
    let exists = home.exists(&name)?;
    if exists && !force {
        return Err(Error::Usage(format!(
            "deployment `{name}` already exists under {}; pass --force to replace its state with the archive's",
            home.root.display()
        )));
    }
    home.ensure_deployment_dir(&name)?;
    let _lock = home.lock(&name, "import", None)?;
    let mut written = Vec::new();
    for (path, body) in &files {
        if path == "manifest.json" || path == "state.json" {
            continue;
        }
        // A fixed name from `entry_limit`, in the deployment's own folder.
        crate::state::write_atomic(&dir.join(path), body)?;
        written.push(path.clone());
    }
    // Nothing the archive says is taken as a path: the key is the deployment's own file, and
    // the blueprint's file references resolve inside the deployment's folder only.
    state.ssh_private_key = if get(KEY).is_some() {
        dir.join(KEY).display().to_string()
    } else {
        String::new()
    };
    state.blueprint_path = dir.join("blueprint.yaml").display().to_string();
    state.imported_from = Some(format!(
        "export of {} by flotilla {}",
        manifest.exported_at, manifest.flotilla_version
    ));
    home.save_final(&state)?;
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
