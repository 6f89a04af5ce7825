//! The deployment's SSH key pair: the blueprint's `ssh.private_key`, or an ed25519 key flotilla
//! generates once per deployment (like `docker-machine create` does).

use super::SshError;
use ssh_key::{rand_core::OsRng, Algorithm, LineEnding, PrivateKey};
use std::path::{Path, PathBuf};

/// Returns (private key path, public key line).
pub fn ensure_keypair(
    configured: Option<&Path>,
    deployment_dir: &Path,
    comment: &str,
) -> Result<(PathBuf, String), SshError> {
    let local = |what: String| move |source: std::io::Error| SshError::Local { what, source };
    if let Some(path) = configured {
        let pub_path = PathBuf::from(format!("{}.pub", path.display()));
        let public = match std::fs::read_to_string(&pub_path) {
            Ok(p) => p.trim().to_string(),
            Err(_) => {
                // No .pub next to it: derive the public key from the private one.
                let private = PrivateKey::read_openssh_file(path).map_err(|e| SshError::Local {
                    what: format!(
                        "ssh.private_key {} (encrypted keys need an agent; not supported yet)",
                        path.display()
                    ),
                    source: std::io::Error::other(e.to_string()),
                })?;
                private
                    .public_key()
                    .to_openssh()
                    .map_err(|e| SshError::Local {
                        what: format!("public key of {}", path.display()),
                        source: std::io::Error::other(e.to_string()),
                    })?
            }
        };
        return Ok((path.to_path_buf(), public));
    }
    let path = deployment_dir.join("id_ed25519");
    let pub_path = deployment_dir.join("id_ed25519.pub");
    if path.exists() && pub_path.exists() {
        let public = std::fs::read_to_string(&pub_path)
            .map_err(local(format!("read {}", pub_path.display())))?;
        return Ok((path, public.trim().to_string()));
    }
    let mut key =
        PrivateKey::random(&mut OsRng, Algorithm::Ed25519).map_err(|e| SshError::Local {
            what: "generate an ed25519 key".into(),
            source: std::io::Error::other(e.to_string()),
        })?;
    key.set_comment(comment);
    let private = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| SshError::Local {
            what: "encode the key".into(),
            source: std::io::Error::other(e.to_string()),
        })?;
    let public = key.public_key().to_openssh().map_err(|e| SshError::Local {
        what: "encode the public key".into(),
        source: std::io::Error::other(e.to_string()),
    })?;
    crate::state::store::write_atomic(&path, private.as_bytes()).map_err(|e| SshError::Local {
        what: format!("write {}", path.display()),
        source: std::io::Error::other(e.to_string()),
    })?;
    crate::state::store::write_atomic(&pub_path, format!("{public}\n").as_bytes()).map_err(
        |e| SshError::Local {
            what: format!("write {}", pub_path.display()),
            source: std::io::Error::other(e.to_string()),
        },
    )?;
    Ok((path, public))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn generates_once_and_reuses() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (p1, pub1) = ensure_keypair(None, tmp.path(), "flotilla@test").expect("generate");
        assert!(pub1.starts_with("ssh-ed25519 "), "{pub1}");
        let mode = std::fs::metadata(&p1).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (p2, pub2) = ensure_keypair(None, tmp.path(), "flotilla@test").expect("reuse");
        assert_eq!((p1.clone(), pub1), (p2, pub2));
        // A configured key without .pub derives the public half.
        std::fs::remove_file(tmp.path().join("id_ed25519.pub")).expect("rm");
        let (_, derived) = ensure_keypair(Some(&p1), tmp.path(), "x").expect("derive");
        assert!(derived.starts_with("ssh-ed25519 "));
    }
}
