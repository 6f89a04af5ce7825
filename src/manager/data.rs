//! What runs inside a one-off container of the manager image, with `--volumes-from
//! flotilla-data`: seeding the data volume at install, and dumping or restoring both volumes
//! (backups). The image has no shell or tar, so flotilla does it itself.
//!
//! Backup layout: `data/...` (the flotilla home: state, journals, keys, token, blueprints) and
//! `logs/...` (the API's request log).

use super::ManagerError;
use crate::state::Home;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

fn err(what: &str) -> impl Fn(std::io::Error) -> ManagerError + '_ {
    move |e| ManagerError::Data(format!("{what}: {e}"))
}

/// Writes both volumes as one tar stream.
pub fn dump(data_dir: &Path, log_dir: &Path, out: impl Write) -> Result<(), ManagerError> {
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    for (name, dir) in [("data", data_dir), ("logs", log_dir)] {
        if dir.is_dir() {
            b.append_dir_all(name, dir).map_err(err("archiving"))?;
        }
    }
    b.into_inner()
        .map_err(err("archiving"))?
        .flush()
        .map_err(err("writing the archive"))?;
    Ok(())
}

/// Where a backup entry goes: `data/x` under the data dir, `logs/x` under the log dir; anything
/// else (absolute paths, `..`) is refused.
fn destination(entry: &Path, data_dir: &Path, log_dir: &Path) -> Option<PathBuf> {
    let mut parts = entry.components();
    let root = match parts.next()? {
        Component::Normal(n) if n == "data" => data_dir,
        Component::Normal(n) if n == "logs" => log_dir,
        _ => return None,
    };
    let mut dest = root.to_path_buf();
    for c in parts {
        match c {
            Component::Normal(n) => dest.push(n),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(dest)
}

/// Restores a `dump` archive over the volumes. Returns how many entries were written.
pub fn restore(input: impl Read, data_dir: &Path, log_dir: &Path) -> Result<usize, ManagerError> {
    let mut a = tar::Archive::new(input);
    a.set_preserve_permissions(true);
    let mut n = 0;
    for entry in a.entries().map_err(err("reading the backup"))? {
        let mut entry = entry.map_err(err("reading the backup"))?;
        let path = entry
            .path()
            .map_err(err("reading the backup"))?
            .into_owned();
        let dest = destination(&path, data_dir, log_dir).ok_or_else(|| {
            ManagerError::Data(format!(
                "not a flotilla manager backup: unexpected entry `{}`",
                path.display()
            ))
        })?;
        // Files and folders only: a link in the archive could make a later entry land
        // outside the volumes.
        let kind = entry.header().entry_type();
        if !(kind.is_file() || kind.is_dir()) {
            return Err(ManagerError::Data(format!(
                "not a flotilla manager backup: `{}` is not a file or a folder",
                path.display()
            )));
        }
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(err("restoring"))?;
        }
        entry.unpack(&dest).map_err(err("restoring"))?;
        n += 1;
    }
    Ok(n)
}

/// Seeds a new data volume from a tar holding `api-token` and `export.tar` (a `flotilla
/// export` of the deployment the manager lives in).
pub fn init(input: impl Read, home: &Home) -> Result<Vec<String>, ManagerError> {
    let mut a = tar::Archive::new(input);
    let mut done = Vec::new();
    for entry in a.entries().map_err(err("reading the seed"))? {
        let mut entry = entry.map_err(err("reading the seed"))?;
        let path = entry
            .path()
            .map_err(err("reading the seed"))?
            .display()
            .to_string();
        let mut body = Vec::new();
        entry
            .read_to_end(&mut body)
            .map_err(err("reading the seed"))?;
        match path.as_str() {
            "api-token" => {
                std::fs::create_dir_all(&home.root).map_err(err("creating the home"))?;
                crate::state::write_atomic(&home.root.join("api-token"), &body)
                    .map_err(|e| ManagerError::Data(format!("writing the API token: {e}")))?;
                done.push("api-token".to_string());
            }
            "export.tar" => {
                let r = crate::engine::transfer::import(home, &body, true)
                    .map_err(|e| ManagerError::Data(format!("importing the deployment: {e}")))?;
                done.push(format!("deployment {}", r.deployment));
            }
            other => {
                return Err(ManagerError::Data(format!(
                    "unexpected entry `{other}` in the seed"
                )))
            }
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dump_restores_to_the_same_files_and_modes() {
        use std::os::unix::fs::PermissionsExt;
        let src = tempfile::tempdir().expect("tmp");
        let (data, logs) = (src.path().join("data"), src.path().join("logs"));
        std::fs::create_dir_all(data.join("deployments/d1")).expect("mkdir");
        std::fs::create_dir_all(&logs).expect("mkdir");
        std::fs::write(data.join("deployments/d1/state.json"), b"{}").expect("write");
        std::fs::write(data.join("api-token"), b"secret\n").expect("write");
        std::fs::set_permissions(
            data.join("api-token"),
            std::fs::Permissions::from_mode(0o600),
        )
        .expect("chmod");
        std::fs::write(logs.join("serve.jsonl"), b"{\"a\":1}\n").expect("write");
        let mut archive = Vec::new();
        dump(&data, &logs, &mut archive).expect("dump");

        let dst = tempfile::tempdir().expect("tmp");
        let (d2, l2) = (dst.path().join("d"), dst.path().join("l"));
        let n = restore(archive.as_slice(), &d2, &l2).expect("restore");
        assert!(n >= 4, "{n} entries");
        assert_eq!(
            std::fs::read(d2.join("deployments/d1/state.json")).expect("state"),
            b"{}"
        );
        assert_eq!(
            std::fs::read(l2.join("serve.jsonl")).expect("log"),
            b"{\"a\":1}\n"
        );
        let mode = std::fs::metadata(d2.join("api-token"))
            .expect("token")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn entries_outside_the_two_volumes_are_refused() {
        let (d, l) = (Path::new("/v/data"), Path::new("/v/log"));
        assert_eq!(
            destination(Path::new("data/a/b"), d, l),
            Some(PathBuf::from("/v/data/a/b"))
        );
        assert_eq!(
            destination(Path::new("logs"), d, l),
            Some(PathBuf::from("/v/log"))
        );
        assert_eq!(destination(Path::new("data/../etc/passwd"), d, l), None);
        assert_eq!(destination(Path::new("/etc/passwd"), d, l), None);
        assert_eq!(destination(Path::new("other/x"), d, l), None);
    }
}
