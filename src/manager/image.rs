//! `flotilla manager image build`: the manager image made from local parts, with no registry and
//! no base image: the running flotilla binary, the `ssh` client it drives, the shared libraries
//! both load (as `ldd` lists them), CA certificates and a minimal /etc — one layer, imported
//! with `docker import` semantics (`POST /images/create?fromSrc=-`) and tagged with the version.

use super::{ManagerError, BINARY, DATA_DIR, LOG_DIR, PORT_IN_IMAGE};
use bollard::Docker;
use futures::StreamExt;
use std::path::{Path, PathBuf};

pub const REPOSITORY: &str = "flotilla/manager";

/// `flotilla/manager:<version>`.
pub fn default_tag() -> String {
    format!("{REPOSITORY}:{}", env!("CARGO_PKG_VERSION"))
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct BuiltImage {
    pub tag: String,
    pub id: String,
    pub size_bytes: i64,
    /// Files copied in from the operator's machine (binary, ssh, libraries).
    pub files: Vec<String>,
}

/// Paths of the shared objects in `ldd` output (`name => /path (0x..)` or `/path (0x..)`);
/// the vDSO has no file and is skipped. A library ldd cannot find is an error.
pub fn parse_ldd(binary: &str, out: &str) -> Result<Vec<PathBuf>, ManagerError> {
    let mut libs = Vec::new();
    for line in out.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.contains("not a dynamic executable") || line.contains("statically linked") {
            return Ok(Vec::new());
        }
        let path = match line.split_once("=>") {
            Some((name, rest)) => {
                let rest = rest.trim();
                if rest.starts_with("not found") {
                    return Err(ManagerError::Build(format!(
                        "{binary} needs {} and ldd cannot find it",
                        name.trim()
                    )));
                }
                rest.split_whitespace().next().unwrap_or_default()
            }
            None => line.split_whitespace().next().unwrap_or_default(),
        };
        if path.starts_with('/') {
            libs.push(PathBuf::from(path));
        }
    }
    Ok(libs)
}

fn ldd(binary: &Path) -> Result<Vec<PathBuf>, ManagerError> {
    let out = std::process::Command::new("ldd")
        .arg(binary)
        .output()
        .map_err(|e| {
            ManagerError::Build(format!(
                "running `ldd {}` to find the libraries to copy: {e} (install libc-bin)",
                binary.display()
            ))
        })?;
    // ldd exits 1 for static binaries, with the message on stdout or stderr.
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    parse_ldd(&binary.display().to_string(), &text)
}

/// The first `name` on $PATH.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|c| c.is_file())
    })
}

/// Text files of the image's /etc: root and nobody, and name lookup through files then DNS.
const ETC: &[(&str, &str)] = &[
    (
        "etc/passwd",
        "root:x:0:0:root:/root:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
    ),
    ("etc/group", "root:x:0:\nnogroup:x:65534:\n"),
    (
        "etc/nsswitch.conf",
        "passwd: files\ngroup: files\nhosts: files dns\n",
    ),
];

fn header(size: u64, mode: u32, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

/// The root filesystem as one tar layer.
pub fn root_filesystem(binary: &Path, ssh: &Path) -> Result<(Vec<u8>, Vec<String>), ManagerError> {
    let err = |e: std::io::Error| ManagerError::Build(format!("assembling the image layer: {e}"));
    let mut b = tar::Builder::new(Vec::new());
    for (dir, mode) in [
        ("tmp", 0o1777),
        ("root", 0o700),
        ("root/.ssh", 0o700),
        ("etc", 0o755),
        ("usr/local/bin", 0o755),
        (DATA_DIR.trim_start_matches('/'), 0o700),
        (LOG_DIR.trim_start_matches('/'), 0o755),
    ] {
        let mut h = header(0, mode, tar::EntryType::Directory);
        b.append_data(&mut h, dir, std::io::empty()).map_err(err)?;
    }
    let mut files: Vec<(String, PathBuf, u32)> = vec![
        (BINARY.trim_start_matches('/').into(), binary.into(), 0o755),
        ("usr/bin/ssh".into(), ssh.into(), 0o755),
    ];
    let mut libs = ldd(binary)?;
    libs.extend(ldd(ssh)?);
    libs.sort();
    libs.dedup();
    for lib in libs {
        let inside = lib
            .display()
            .to_string()
            .trim_start_matches('/')
            .to_string();
        files.push((inside, lib, 0o755));
    }
    if let Some(ca) = [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
    ]
    .iter()
    .map(Path::new)
    .find(|p| p.is_file())
    {
        files.push((
            "etc/ssl/certs/ca-certificates.crt".into(),
            ca.to_path_buf(),
            0o644,
        ));
    }
    let mut copied = Vec::new();
    for (inside, from, mode) in &files {
        // Read through symlinks: the image gets regular files at the paths the loader asks for.
        let body = std::fs::read(from).map_err(|e| {
            ManagerError::Build(format!("reading {} for the image: {e}", from.display()))
        })?;
        let mut h = header(body.len() as u64, *mode, tar::EntryType::Regular);
        b.append_data(&mut h, inside, body.as_slice())
            .map_err(err)?;
        copied.push(from.display().to_string());
    }
    for (inside, text) in ETC {
        let mut h = header(text.len() as u64, 0o644, tar::EntryType::Regular);
        b.append_data(&mut h, inside, text.as_bytes())
            .map_err(err)?;
    }
    Ok((b.into_inner().map_err(err)?, copied))
}

/// Label with the sha256 of the binary inside, so a stale default image is rebuilt.
pub const BINARY_LABEL: &str = "io.flotilla.binary-sha256";

/// sha256 of a file, streamed.
pub fn file_sha256(path: &Path) -> Result<String, ManagerError> {
    use sha2::Digest;
    let mut f = std::fs::File::open(path)
        .map_err(|e| ManagerError::Build(format!("reading {}: {e}", path.display())))?;
    let mut h = sha2::Sha256::new();
    std::io::copy(&mut f, &mut h)
        .map_err(|e| ManagerError::Build(format!("reading {}: {e}", path.display())))?;
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// The running binary and its sha256.
pub fn running_binary() -> Result<(PathBuf, String), ManagerError> {
    let binary = std::env::current_exe()
        .map_err(|e| ManagerError::Build(format!("finding the running flotilla binary: {e}")))?;
    let sum = file_sha256(&binary)?;
    Ok((binary, sum))
}

/// The image configuration, as `docker import --change` lines.
pub fn config_changes(binary_sha256: &str) -> Vec<String> {
    let version = env!("CARGO_PKG_VERSION");
    vec![
        format!("ENV FLOTILLA_HOME={DATA_DIR}"),
        format!("ENTRYPOINT [\"{BINARY}\"]"),
        format!(
            "CMD [\"serve\", \"--listen\", \"0.0.0.0:{PORT_IN_IMAGE}\", \"--log-file\", \"{LOG_DIR}/serve.jsonl\"]"
        ),
        format!("VOLUME [\"{DATA_DIR}\", \"{LOG_DIR}\"]"),
        format!("EXPOSE {PORT_IN_IMAGE}/tcp"),
        format!(
            "HEALTHCHECK --interval=30s --timeout=5s CMD [\"{BINARY}\", \"manager\", \"healthcheck\"]"
        ),
        format!("LABEL io.flotilla.version={version} {BINARY_LABEL}={binary_sha256}"),
    ]
}

/// The Docker engine the operator's commands use (`DOCKER_HOST`, else the local socket).
pub fn local_docker() -> Result<Docker, ManagerError> {
    Docker::connect_with_defaults()
        .map_err(|e| ManagerError::Build(format!("connecting to the local Docker engine: {e}")))
}

/// `repo[:tag]` → (repo, tag); a registry port (`host:5000/x`) is not a tag.
pub fn split_tag(image: &str) -> (&str, &str) {
    match image.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') && !repo.is_empty() => (repo, tag),
        _ => (image, "latest"),
    }
}

/// The image's ID, when the local engine has it.
pub async fn local_image_id(docker: &Docker, tag: &str) -> Option<String> {
    docker.inspect_image(tag).await.ok().and_then(|i| i.id)
}

/// The image's ID when the local engine has it *and* it holds this very binary.
pub async fn current_image_id(docker: &Docker, tag: &str, binary_sha256: &str) -> Option<String> {
    let info = docker.inspect_image(tag).await.ok()?;
    let label = info
        .config
        .as_ref()
        .and_then(|c| c.labels.as_ref())
        .and_then(|l| l.get(BINARY_LABEL).cloned());
    (label.as_deref() == Some(binary_sha256))
        .then_some(info.id)
        .flatten()
}

/// Builds and tags the image from the running binary.
pub async fn build(docker: &Docker, tag: &str) -> Result<BuiltImage, ManagerError> {
    let (repo, version) = split_tag(tag);
    let (binary, sum) = running_binary()?;
    let ssh = on_path("ssh").ok_or_else(|| {
        ManagerError::Build(
            "no `ssh` on PATH to copy into the image (install openssh-client)".into(),
        )
    })?;
    let (layer, files) = root_filesystem(&binary, &ssh)?;
    let options = bollard::query_parameters::CreateImageOptionsBuilder::new()
        .from_src("-")
        .repo(repo)
        .tag(version)
        .changes(config_changes(&sum))
        .message(&format!(
            "flotilla manager image built by flotilla {}",
            env!("CARGO_PKG_VERSION")
        ))
        .build();
    let mut progress =
        docker.create_image(Some(options), Some(bollard::body_full(layer.into())), None);
    while let Some(step) = progress.next().await {
        let step = step.map_err(|e| ManagerError::Build(format!("docker import: {e}")))?;
        if let Some(e) = step.error_detail.and_then(|d| d.message) {
            return Err(ManagerError::Build(format!("docker import: {e}")));
        }
    }
    let info = docker
        .inspect_image(tag)
        .await
        .map_err(|e| ManagerError::Build(format!("inspecting {tag} after the import: {e}")))?;
    Ok(BuiltImage {
        tag: tag.to_string(),
        id: info.id.unwrap_or_default(),
        size_bytes: info.size.unwrap_or_default(),
        files,
    })
}

/// `docker save` of the image, as a stream (for `docker load` on a node over SSH).
pub fn save_stream(docker: &Docker, tag: &str) -> crate::ssh::ByteStream {
    let s = docker
        .export_image(tag)
        .map(|r| r.map_err(|e| std::io::Error::other(format!("docker save: {e}"))));
    Box::pin(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_gives_library_paths() {
        let out = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x1)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x2)\n\t/lib64/ld-linux-x86-64.so.2 (0x3)\n";
        let libs = parse_ldd("x", out).expect("parses");
        assert_eq!(
            libs,
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libgcc_s.so.1"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
        assert!(parse_ldd("x", "\tnot a dynamic executable\n")
            .expect("static")
            .is_empty());
        let missing = parse_ldd("x", "\tlibfoo.so.1 => not found\n");
        assert!(missing.is_err_and(|e| e.to_string().contains("libfoo.so.1")));
    }

    #[test]
    fn tags_split_after_the_registry_port() {
        assert_eq!(
            split_tag("flotilla/manager:0.1.0"),
            ("flotilla/manager", "0.1.0")
        );
        assert_eq!(split_tag("reg:5000/x"), ("reg:5000/x", "latest"));
        assert_eq!(split_tag("reg:5000/x:2"), ("reg:5000/x", "2"));
        assert_eq!(split_tag("plain"), ("plain", "latest"));
    }

    #[test]
    fn the_layer_has_the_binary_its_libraries_and_a_root_user() {
        let me = std::env::current_exe().expect("test binary");
        let sh = Path::new("/bin/sh");
        let (layer, files) = root_filesystem(&me, sh).expect("layer");
        let mut names = Vec::new();
        let mut a = tar::Archive::new(layer.as_slice());
        for e in a.entries().expect("entries") {
            let e = e.expect("entry");
            names.push(e.path().expect("path").display().to_string());
        }
        for want in ["usr/local/bin/flotilla", "usr/bin/ssh", "etc/passwd", "tmp"] {
            assert!(
                names.iter().any(|n| n.trim_end_matches('/') == want),
                "{want} in {names:?}"
            );
        }
        assert!(names.iter().any(|n| n.contains("libc.so")), "{names:?}");
        assert!(files.len() >= 3);
    }
}
