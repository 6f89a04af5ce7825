//! The deployment's known_hosts file, rebuilt from the host keys pinned in the state.

use std::path::{Path, PathBuf};

pub struct KnownHostsFile {
    pub path: PathBuf,
}

/// The host pattern ssh writes for an address and port.
pub fn host_pattern(address: &str, port: u16) -> String {
    if port == 22 {
        address.to_string()
    } else {
        format!("[{address}]:{port}")
    }
}

impl KnownHostsFile {
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }

    /// Writes exactly the given (pattern, key) pairs.
    pub fn write(&self, entries: &[(String, String)]) -> std::io::Result<()> {
        let body: String = entries.iter().map(|(h, k)| format!("{h} {k}\n")).collect();
        crate::state::store::write_atomic(&self.path, body.as_bytes())
            .map_err(std::io::Error::other)
    }

    /// The key ssh recorded for a host (first match), as `type base64`.
    pub fn lookup(&self, address: &str, port: u16) -> Option<String> {
        lookup_in(&self.path, &host_pattern(address, port))
    }
}

fn lookup_in(path: &Path, pattern: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        let mut parts = l.split_whitespace();
        let hosts = parts.next()?;
        if !hosts.split(',').any(|h| h == pattern) {
            return None;
        }
        let ty = parts.next()?;
        let key = parts.next()?;
        Some(format!("{ty} {key}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_finds_entries() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let kh = KnownHostsFile::new(tmp.path().join("known_hosts"));
        kh.write(&[
            (host_pattern("10.0.0.1", 22), "ssh-ed25519 AAA1".into()),
            (host_pattern("10.0.0.2", 2222), "ssh-ed25519 AAA2".into()),
        ])
        .expect("write");
        assert_eq!(
            kh.lookup("10.0.0.1", 22).as_deref(),
            Some("ssh-ed25519 AAA1")
        );
        assert_eq!(
            kh.lookup("10.0.0.2", 2222).as_deref(),
            Some("ssh-ed25519 AAA2")
        );
        assert_eq!(kh.lookup("10.0.0.2", 22), None);
    }
}
