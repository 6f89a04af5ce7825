//! `containers:` workloads: long-running containers on the nodes of some groups, run by `up`
//! (same spec → untouched, changed spec → replaced, entry gone → removed) and removed by `down`
//! on hosts that stay. Images come from a repository (pulled when missing) or from an image
//! tarball streamed to each node that lacks its tags.

use crate::blueprint::{Blueprint, ContainerSpec, ImageSource};
use crate::docker::preload::{present_check, read_archive};
use crate::ssh::{shell_quote, SshPool, Target};
use std::collections::BTreeMap;
use std::time::Duration;

pub const DEPLOYMENT_LABEL: &str = "io.flotilla.deployment";
pub const COMPONENT_LABEL: &str = "io.flotilla.component";

/// A tarball image read once per run: its tags and bytes.
pub struct Tarball {
    pub tags: Vec<String>,
    pub bytes: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error("containers.{name}.image.src: {message}")]
    Source { name: String, message: String },
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Reads (or downloads) every tarball image of the blueprint, checking the optional sha256.
pub async fn load_tarballs(bp: &Blueprint) -> Result<BTreeMap<String, Tarball>, WorkloadError> {
    let mut out = BTreeMap::new();
    for (name, c) in &bp.containers {
        let ImageSource::Tarball { src, sha256 } = &c.image else {
            continue;
        };
        let err = |message: String| WorkloadError::Source {
            name: name.clone(),
            message,
        };
        let (bytes, local) = if src.starts_with("http://") || src.starts_with("https://") {
            let resp = reqwest::get(src)
                .await
                .and_then(|r| r.error_for_status())
                .map_err(|e| err(format!("downloading {src}: {e}")))?;
            let b = resp
                .bytes()
                .await
                .map_err(|e| err(format!("downloading {src}: {e}")))?;
            (b.to_vec(), None)
        } else {
            let path = bp.resolve_path(src).map_err(err)?;
            let b = std::fs::read(&path).map_err(|e| err(format!("{}: {e}", path.display())))?;
            (b, Some(path))
        };
        if let Some(want) = sha256 {
            let want = want.strip_prefix("sha256:").unwrap_or(want).to_lowercase();
            let got = sha256_hex(&bytes);
            if got != want {
                return Err(err(format!(
                    "sha256 is {got}, the blueprint expects {want}"
                )));
            }
        }
        let tags = match local {
            Some(p) => read_archive(&p).map_err(|e| err(e.to_string()))?.tags,
            None => {
                let tmp = tempfile::NamedTempFile::new().map_err(|e| err(e.to_string()))?;
                std::fs::write(tmp.path(), &bytes).map_err(|e| err(e.to_string()))?;
                read_archive(tmp.path())
                    .map_err(|e| err(e.to_string()))?
                    .tags
            }
        };
        out.insert(name.clone(), Tarball { tags, bytes });
    }
    Ok(out)
}

/// The image reference a container runs.
pub fn image_ref(c: &ContainerSpec, tarball: Option<&Tarball>) -> String {
    match (&c.image, tarball) {
        (ImageSource::Repository { repository, tag }, _) => format!("{repository}:{tag}"),
        (ImageSource::Tarball { .. }, Some(t)) => t.tags.first().cloned().unwrap_or_default(),
        (ImageSource::Tarball { src, .. }, None) => src.clone(),
    }
}

/// `docker run` options for one workload (labels first, so the spec records them too).
pub fn run_args(deployment: &str, name: &str, c: &ContainerSpec) -> Vec<String> {
    let mut a = vec![
        "--label".to_string(),
        format!("{DEPLOYMENT_LABEL}={deployment}"),
        "--label".to_string(),
        format!("{COMPONENT_LABEL}={name}"),
    ];
    for (k, v) in &c.labels {
        a.push("--label".into());
        a.push(format!("{k}={v}"));
    }
    a.push(format!(
        "--restart={}",
        c.restart.as_deref().unwrap_or("unless-stopped")
    ));
    for (k, v) in &c.env {
        a.push("-e".into());
        a.push(format!("{k}={v}"));
    }
    for p in &c.ports {
        a.push("-p".into());
        a.push(p.clone());
    }
    for v in &c.volumes {
        a.push("-v".into());
        a.push(v.clone());
    }
    a
}

pub fn container_name(name: &str) -> String {
    format!("flotilla-{name}")
}

/// Brings one node's workloads to `wanted`: each started or left alone, and flotilla workloads
/// of this deployment that are no longer wanted on the node removed. Returns `name=outcome` lines.
pub async fn converge_node(
    pool: &SshPool,
    t: &Target,
    deployment: &str,
    wanted: &[(&String, &ContainerSpec)],
    tarballs: &BTreeMap<String, Tarball>,
) -> Result<Vec<String>, String> {
    let mut done = Vec::new();
    for (name, c) in wanted {
        let tarball = tarballs.get(*name);
        let image = image_ref(c, tarball);
        match (&c.image, tarball) {
            (ImageSource::Tarball { .. }, Some(tb)) => {
                let present = pool
                    .run(
                        t,
                        "image check",
                        &present_check(&tb.tags),
                        Some(Duration::from_secs(60)),
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                if present.status != 0 {
                    let out = pool
                        .run_with_input(
                            t,
                            "docker load",
                            "docker load -q",
                            Some(tb.bytes.clone()),
                            Some(Duration::from_secs(600)),
                        )
                        .await
                        .map_err(|e| e.to_string())?;
                    if out.status != 0 {
                        return Err(format!(
                            "{name}: docker load failed: {}",
                            crate::ssh::failure_tail_pub(&out)
                        ));
                    }
                }
            }
            (ImageSource::Repository { .. }, _) => {
                let q = shell_quote(&image);
                pool.run_ok(
                    t,
                    "docker pull",
                    &format!(
                        "docker image inspect {q} >/dev/null 2>&1 || docker pull -q {q} >/dev/null"
                    ),
                    Some(Duration::from_secs(900)),
                )
                .await
                .map_err(|e| format!("{name}: {e}"))?;
            }
            (ImageSource::Tarball { .. }, None) => {
                return Err(format!("{name}: its image tarball was not read"))
            }
        }
        let script = crate::docker::run_script(
            &container_name(name),
            &image,
            &run_args(deployment, name, c),
            &c.command,
            &[],
        );
        let out = pool
            .run_ok(t, "docker run", &script, Some(Duration::from_secs(300)))
            .await
            .map_err(|e| format!("{name}: {e}"))?;
        done.push(format!(
            "{name}={}",
            if out.contains("=started") {
                "started"
            } else {
                "unchanged"
            }
        ));
    }
    // Workloads of this deployment the blueprint no longer puts on this node.
    let list = format!(
        "docker ps -a --filter label={DEPLOYMENT_LABEL}={} --format '{{{{.Label \"{COMPONENT_LABEL}\"}}}}'",
        shell_quote(deployment)
    );
    let out = pool
        .run_ok(t, "docker ps", &list, Some(Duration::from_secs(60)))
        .await
        .map_err(|e| e.to_string())?;
    for component in out.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if wanted.iter().any(|(n, _)| n.as_str() == component) {
            continue;
        }
        pool.run_ok(
            t,
            "docker rm",
            &format!(
                "docker rm -f {} >/dev/null",
                shell_quote(&container_name(component))
            ),
            Some(Duration::from_secs(60)),
        )
        .await
        .map_err(|e| format!("{component}: {e}"))?;
        done.push(format!("{component}=removed"));
    }
    Ok(done)
}

/// The shell command that removes every workload of a deployment from a host (`down` of hosts
/// that stay).
pub fn remove_all_script(deployment: &str) -> String {
    format!(
        "docker ps -aq --filter label={DEPLOYMENT_LABEL}={} | xargs -r docker rm -f >/dev/null",
        shell_quote(deployment)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_args_carry_labels_env_ports_volumes_and_restart() {
        let c = ContainerSpec {
            groups: vec!["workers".into()],
            image: ImageSource::Repository {
                repository: "nginx".into(),
                tag: "1.27".into(),
            },
            command: vec![],
            env: [("A".to_string(), "1".to_string())].into(),
            ports: vec!["8080:80".into()],
            volumes: vec!["data:/data".into()],
            restart: None,
            labels: [("team".to_string(), "web".to_string())].into(),
        };
        assert_eq!(image_ref(&c, None), "nginx:1.27");
        assert_eq!(
            run_args("shop", "web", &c),
            vec![
                "--label",
                "io.flotilla.deployment=shop",
                "--label",
                "io.flotilla.component=web",
                "--label",
                "team=web",
                "--restart=unless-stopped",
                "-e",
                "A=1",
                "-p",
                "8080:80",
                "-v",
                "data:/data"
            ]
        );
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
