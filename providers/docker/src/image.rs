//! The default node image, built without any registry: `debootstrap --variant=minbase` of a Debian
//! suite with sshd, flotilla's node-init and sshd config, imported with the engine's image-create
//! API. The rootfs tarball is cached on disk so a second engine (or a wiped one) imports in seconds.

use bollard::query_parameters::CreateImageOptions;
use bollard::Docker;
use flotilla_provider_core::ProviderError;
use futures::StreamExt;
use std::path::{Path, PathBuf};
use tokio::process::Command;
use tracing::info;

/// Bump when node-init or the package list changes, so old cached images are not reused.
pub const IMAGE_REVISION: u32 = 3;
const NODE_INIT: &str = include_str!("../assets/node-init");
const SSHD_CONF: &str = include_str!("../assets/sshd_flotilla.conf");
const PACKAGES: &str = "openssh-server,ca-certificates,iproute2,procps,iptables,gnupg,curl";

pub fn default_image_name(suite: &str) -> String {
    format!("flotilla/node:{suite}-r{IMAGE_REVISION}")
}

fn local(what: &str, message: impl Into<String>, source: Option<std::io::Error>) -> ProviderError {
    ProviderError::Local {
        what: what.to_string(),
        message: message.into(),
        source,
    }
}

/// Makes sure `image` exists on the engine, building flotilla's default image when it is missing.
/// A user-named image must already exist (flotilla never pulls on its own behalf silently).
pub async fn ensure_image(
    docker: &Docker,
    image: &str,
    is_default: bool,
    suite: &str,
    mirror: &str,
    cache_dir: &Path,
) -> Result<(), ProviderError> {
    if docker.inspect_image(image).await.is_ok() {
        return Ok(());
    }
    if !is_default {
        return Err(ProviderError::NotFound {
            what: format!("image `{image}` (provider.image)"),
            message: "it is not on the Docker engine; `docker pull` or `docker load` it first, or \
                      remove provider.image to use flotilla's locally built node image"
                .to_string(),
        });
    }
    std::fs::create_dir_all(cache_dir).map_err(|e| {
        local(
            "image cache",
            format!("cannot create {}", cache_dir.display()),
            Some(e),
        )
    })?;
    // One builder at a time per cache dir: parallel test runs share one build.
    let lock_path = cache_dir.join(format!("node-{suite}.lock"));
    let lock_file = std::fs::File::create(&lock_path).map_err(|e| {
        local(
            "image cache",
            format!("cannot open {}", lock_path.display()),
            Some(e),
        )
    })?;
    let lock_file = tokio::task::spawn_blocking(move || lock_file.lock().map(|_| lock_file))
        .await
        .map_err(|e| local("image cache", format!("lock task failed: {e}"), None))?
        .map_err(|e| {
            local(
                "image cache",
                format!("cannot lock {}", lock_path.display()),
                Some(e),
            )
        })?;

    // Another process may have imported it while we waited for the lock.
    if docker.inspect_image(image).await.is_ok() {
        drop(lock_file);
        return Ok(());
    }
    let tarball = cache_dir.join(format!("node-rootfs-{suite}-r{IMAGE_REVISION}.tar"));
    if !tarball.exists() {
        build_rootfs_tarball(suite, mirror, &tarball).await?;
    }
    import_tarball(docker, image, &tarball).await?;
    drop(lock_file);
    Ok(())
}

async fn run(cmd: &mut Command, what: &str) -> Result<(), ProviderError> {
    let out = cmd
        .output()
        .await
        .map_err(|e| local(what, "could not start the command".to_string(), Some(e)))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(8).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(local(
            what,
            format!("exited with {}: {}", out.status, tail.join(" | ")),
            None,
        ));
    }
    Ok(())
}

async fn build_rootfs_tarball(
    suite: &str,
    mirror: &str,
    tarball: &Path,
) -> Result<(), ProviderError> {
    if which("debootstrap").is_none() {
        return Err(local(
            "node image",
            "flotilla builds its default node image with debootstrap, which is not installed: \
             run `apt-get install -y debootstrap` (as root), or set provider.image to an image \
             that runs sshd",
            None,
        ));
    }
    info!(
        suite,
        "building the node image with debootstrap (once; cached)"
    );
    let work = tempfile::Builder::new()
        .prefix("flotilla-rootfs-")
        .tempdir_in(tarball.parent().unwrap_or(Path::new("/tmp")))
        .map_err(|e| local("node image", "cannot create a build directory", Some(e)))?;
    let root = work.path().join("root");
    let mut last_err = None;
    // debootstrap fails on transient mirror/DNS errors now and then; two more tries are cheap.
    for attempt in 1..=3 {
        let _ = std::fs::remove_dir_all(&root);
        match run(
            Command::new("debootstrap")
                .arg("--variant=minbase")
                .arg(format!("--include={PACKAGES}"))
                .arg(suite)
                .arg(&root)
                .arg(mirror),
            "debootstrap",
        )
        .await
        {
            Ok(()) => {
                last_err = None;
                break;
            }
            Err(e) => {
                tracing::warn!(attempt, error = %e, "debootstrap failed");
                last_err = Some(e);
            }
        }
    }
    if let Some(e) = last_err {
        return Err(e);
    }
    let write = |rel: &str, content: &str, mode: u32| -> Result<(), ProviderError> {
        use std::os::unix::fs::PermissionsExt;
        let p = root.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(|e| {
                local(
                    "node image",
                    format!("cannot create {}", parent.display()),
                    Some(e),
                )
            })?;
        }
        std::fs::write(&p, content).map_err(|e| {
            local(
                "node image",
                format!("cannot write {}", p.display()),
                Some(e),
            )
        })?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).map_err(|e| {
            local(
                "node image",
                format!("cannot chmod {}", p.display()),
                Some(e),
            )
        })
    };
    write("usr/local/sbin/node-init", NODE_INIT, 0o755)?;
    write("etc/ssh/sshd_config.d/flotilla.conf", SSHD_CONF, 0o644)?;
    write(
        "etc/apt/sources.list",
        &format!(
            "deb {mirror} {suite} main\ndeb {mirror} {suite}-updates main\n\
             deb {security} {suite}-security main\n",
            security = mirror.replace("/debian", "/debian-security")
        ),
        0o644,
    )?;
    // Never bake host keys into an image; apt lists and docs are dead weight.
    for dir in [
        "var/lib/apt/lists",
        "var/cache/apt/archives",
        "usr/share/doc",
        "usr/share/man",
        "usr/share/locale",
    ] {
        let p = root.join(dir);
        if let Ok(entries) = std::fs::read_dir(&p) {
            for e in entries.flatten() {
                let path = e.path();
                if path.is_dir() {
                    let _ = std::fs::remove_dir_all(&path);
                } else {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir(root.join("etc/ssh")) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with("ssh_host_") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    let partial = tarball.with_extension("tar.partial");
    run(
        Command::new("tar")
            .arg("--numeric-owner")
            .arg("-C")
            .arg(&root)
            .arg("-cf")
            .arg(&partial)
            .arg("."),
        "tar of the node rootfs",
    )
    .await?;
    std::fs::rename(&partial, tarball).map_err(|e| {
        local(
            "node image",
            format!("cannot move {} into place", partial.display()),
            Some(e),
        )
    })?;
    Ok(())
}

async fn import_tarball(docker: &Docker, image: &str, tarball: &Path) -> Result<(), ProviderError> {
    let (repo, tag) = image.rsplit_once(':').unwrap_or((image, "latest"));
    info!(image, "importing the node image");
    let file = tokio::fs::File::open(tarball).await.map_err(|e| {
        local(
            "node image",
            format!("cannot open {}", tarball.display()),
            Some(e),
        )
    })?;
    let body = bollard::body_try_stream(tokio_util::io::ReaderStream::new(file));
    let options = CreateImageOptions {
        from_src: Some("-".to_string()),
        repo: Some(repo.to_string()),
        tag: Some(tag.to_string()),
        changes: vec![
            r#"CMD ["/usr/local/sbin/node-init"]"#.to_string(),
            "EXPOSE 22".to_string(),
            format!("LABEL io.flotilla.node-image={IMAGE_REVISION}"),
        ],
        ..Default::default()
    };
    let mut stream = docker.create_image(Some(options), Some(body), None);
    while let Some(item) = stream.next().await {
        item.map_err(|e| ProviderError::api("import node image", e))?;
    }
    docker
        .inspect_image(image)
        .await
        .map_err(|e| ProviderError::api("inspect imported node image", e))?;
    Ok(())
}

fn which(bin: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(bin))
        .find(|p| p.is_file())
}
