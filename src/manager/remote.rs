//! The node side of the manager, over SSH: shipping the image, the two containers, one-off
//! containers on the data volumes, and waiting for the API to answer.

use super::{
    ManagerError, APP_CONTAINER, BINARY, DATA_CONTAINER, LOG_DIR, MANAGER_LABEL, PORT_IN_IMAGE,
};
use crate::ssh::{shell_quote, SshPool, Target};
use flotilla_provider_core::backoff::Backoff;
use std::time::Duration;

/// Bound for a docker CLI call that normally takes a second (inspect, rm). Generous on purpose:
/// a node's dockerd on a loaded machine was seen taking over a minute to answer two inspects.
pub const DOCKER_CLI_TIMEOUT: Duration = Duration::from_secs(180);

fn node_err(t: &Target, message: impl std::fmt::Display) -> ManagerError {
    ManagerError::Node {
        node: t.node.clone(),
        message: message.to_string(),
    }
}

/// One container as `docker inspect` sees it.
#[derive(Debug, Clone, Default, serde::Serialize, PartialEq, Eq)]
pub struct ContainerState {
    pub present: bool,
    /// created, running, exited, ...
    pub status: String,
    pub image: String,
    pub image_id: String,
    pub restarts: u32,
    /// Docker's healthcheck verdict (healthy, starting, unhealthy) or `none`.
    pub health: String,
}

const INSPECT_FORMAT: &str =
    "{{.State.Status}} {{.Config.Image}} {{.Image}} {{.RestartCount}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}";

/// Parses `INSPECT_FORMAT` output (or `absent`).
pub fn parse_state(line: &str) -> ContainerState {
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() < 5 {
        return ContainerState::default();
    }
    ContainerState {
        present: true,
        status: f[0].into(),
        image: f[1].into(),
        image_id: f[2].into(),
        restarts: f[3].parse().unwrap_or(0),
        health: f[4].into(),
    }
}

pub async fn inspect(
    pool: &SshPool,
    t: &Target,
) -> Result<(ContainerState, ContainerState), ManagerError> {
    let script = [DATA_CONTAINER, APP_CONTAINER]
        .iter()
        .map(|c| {
            format!(
                "docker inspect -f {} {c} 2>/dev/null || echo absent\n",
                shell_quote(INSPECT_FORMAT)
            )
        })
        .collect::<String>();
    let out = pool
        .run_ok(t, "inspect the manager", &script, Some(DOCKER_CLI_TIMEOUT))
        .await
        .map_err(|e| node_err(t, e))?;
    let mut lines = out.lines();
    let data = parse_state(lines.next().unwrap_or_default());
    let app = parse_state(lines.next().unwrap_or_default());
    Ok((data, app))
}

/// The image's ID on the node, if it has it.
pub async fn image_id(
    pool: &SshPool,
    t: &Target,
    image: &str,
) -> Result<Option<String>, ManagerError> {
    let out = pool
        .run_ok(
            t,
            "image check",
            &format!(
                "docker image inspect -f '{{{{.Id}}}}' {} 2>/dev/null || true",
                shell_quote(image)
            ),
            Some(DOCKER_CLI_TIMEOUT),
        )
        .await
        .map_err(|e| node_err(t, e))?;
    let id = out.trim();
    Ok((!id.is_empty()).then(|| id.to_string()))
}

/// Streams the local image to the node (`docker save | ssh node docker load`) unless the node
/// already has the same image ID. Returns whether it was sent.
pub async fn ship_image(
    pool: &SshPool,
    t: &Target,
    docker: &bollard::Docker,
    image: &str,
    local_id: &str,
) -> Result<bool, ManagerError> {
    if image_id(pool, t, image).await?.as_deref() == Some(local_id) {
        return Ok(false);
    }
    let out = pool
        .run_streaming_in(
            t,
            "docker load",
            "docker load -q",
            super::image::save_stream(docker, image),
            Some(Duration::from_secs(900)),
        )
        .await
        .map_err(|e| node_err(t, e))?;
    if out.status != 0 {
        return Err(node_err(
            t,
            format!(
                "docker load of {image} failed: {}",
                crate::ssh::failure_tail_pub(&out)
            ),
        ));
    }
    Ok(true)
}

fn labels(deployment: &str, component: &str) -> String {
    format!(
        "--label {} --label {}",
        shell_quote(&format!("{MANAGER_LABEL}={deployment}")),
        shell_quote(&format!("io.flotilla.component={component}"))
    )
}

/// Creates the data-only container (never started: it only holds the image's volumes).
pub async fn create_data(
    pool: &SshPool,
    t: &Target,
    deployment: &str,
    image: &str,
) -> Result<(), ManagerError> {
    let script = format!(
        "docker create --name {DATA_CONTAINER} {} {} --version >/dev/null",
        labels(deployment, "manager-data"),
        shell_quote(image)
    );
    pool.run_ok(
        t,
        "create the data container",
        &script,
        Some(Duration::from_secs(120)),
    )
    .await
    .map_err(|e| node_err(t, e))?;
    Ok(())
}

/// `docker run --rm` of `flotilla manager <args>` on the data volumes.
fn one_off(deployment: &str, image: &str, args: &str) -> String {
    format!(
        "docker run --rm -i --volumes-from {DATA_CONTAINER} {} --entrypoint {BINARY} {} manager {args}",
        labels(deployment, "manager-task"),
        shell_quote(image)
    )
}

/// Runs `flotilla manager <args>` in a one-off container with `input` on stdin.
pub async fn one_off_with_input(
    pool: &SshPool,
    t: &Target,
    deployment: &str,
    image: &str,
    args: &str,
    input: crate::ssh::ByteStream,
) -> Result<String, ManagerError> {
    let out = pool
        .run_streaming_in(
            t,
            &format!("manager {args}"),
            &one_off(deployment, image, args),
            input,
            Some(Duration::from_secs(600)),
        )
        .await
        .map_err(|e| node_err(t, e))?;
    if out.status != 0 {
        return Err(node_err(
            t,
            format!(
                "`flotilla manager {args}` failed: {}",
                crate::ssh::failure_tail_pub(&out)
            ),
        ));
    }
    Ok(out.stdout)
}

/// Runs `flotilla manager dump-data` in a one-off container, its stdout into `sink`.
pub async fn dump_data(
    pool: &SshPool,
    t: &Target,
    deployment: &str,
    image: &str,
    sink: &mut (dyn tokio::io::AsyncWrite + Unpin + Send),
) -> Result<(), ManagerError> {
    let script = format!("{} </dev/null", one_off(deployment, image, "dump-data"));
    let out = pool
        .run_streaming_out(
            t,
            "manager backup",
            &script,
            sink,
            Some(Duration::from_secs(900)),
        )
        .await
        .map_err(|e| node_err(t, e))?;
    if out.status != 0 {
        return Err(node_err(
            t,
            format!("the backup failed: {}", crate::ssh::failure_tail_pub(&out)),
        ));
    }
    Ok(())
}

/// (Re)creates the app container over the data container (unchanged spec and running: left
/// alone). Returns true when it was started.
pub async fn run_app(
    pool: &SshPool,
    t: &Target,
    deployment: &str,
    image: &str,
    port: u16,
    listen: std::net::IpAddr,
) -> Result<bool, ManagerError> {
    // Published on one address of the node only (`[v6]:port` for IPv6).
    let publish = match listen {
        std::net::IpAddr::V6(v6) => format!("[{v6}]:{port}:{PORT_IN_IMAGE}"),
        v4 => format!("{v4}:{port}:{PORT_IN_IMAGE}"),
    };
    let args: Vec<String> = vec![
        "--label".into(),
        format!("{MANAGER_LABEL}={deployment}"),
        "--label".into(),
        "io.flotilla.component=manager".into(),
        format!("--volumes-from={DATA_CONTAINER}"),
        "--restart=always".into(),
        "-p".into(),
        publish,
    ];
    let command: Vec<String> = vec![
        "serve".into(),
        "--listen".into(),
        format!("0.0.0.0:{PORT_IN_IMAGE}"),
        "--tls-dir".into(),
        super::TLS_DIR.into(),
        // Standard clients (Alertmanager with the certificate as its CA) check this name.
        "--tls-name".into(),
        listen.to_string(),
        "--log-file".into(),
        format!("{LOG_DIR}/serve.jsonl"),
    ];
    let script = crate::docker::run_script(APP_CONTAINER, image, &args, &command, &[]);
    let out = pool
        .run_ok(
            t,
            "start the manager",
            &script,
            Some(Duration::from_secs(120)),
        )
        .await
        .map_err(|e| node_err(t, e))?;
    Ok(out.contains("=started"))
}

/// The fingerprint of the running API's certificate, read over SSH (an authenticated channel:
/// what the CLI then pins).
pub async fn tls_fingerprint(pool: &SshPool, t: &Target) -> Result<String, ManagerError> {
    let out = pool
        .run_ok(
            t,
            "read the API certificate's fingerprint",
            &format!("docker exec {APP_CONTAINER} {BINARY} manager tls-fingerprint"),
            Some(Duration::from_secs(30)),
        )
        .await
        .map_err(|e| node_err(t, e))?;
    let fp = out.trim();
    let ok = fp.len() == 71
        && fp
            .strip_prefix("sha256:")
            .is_some_and(|h| h.chars().all(|c| c.is_ascii_hexdigit()));
    if ok {
        Ok(fp.to_string())
    } else {
        Err(node_err(
            t,
            format!(
                "answered {} where a certificate fingerprint was expected",
                crate::names::shown(fp)
            ),
        ))
    }
}

pub async fn remove_app(pool: &SshPool, t: &Target) -> Result<(), ManagerError> {
    pool.run_ok(
        t,
        "remove the manager app container",
        &format!("docker rm -f {APP_CONTAINER} >/dev/null 2>&1 || true"),
        Some(DOCKER_CLI_TIMEOUT),
    )
    .await
    .map_err(|e| node_err(t, e))?;
    Ok(())
}

fn health_probe() -> String {
    format!("docker exec {APP_CONTAINER} {BINARY} manager healthcheck 2>&1")
}

/// One health probe.
pub async fn wait_healthy_once(pool: &SshPool, t: &Target) -> bool {
    matches!(
        pool.run(t, "manager healthcheck", &health_probe(), Some(Duration::from_secs(20))).await,
        Ok(out) if out.status == 0
    )
}

/// Waits (bounded: a minute, a probe every 1.5 s) until the API answers inside the container.
pub async fn wait_healthy(pool: &SshPool, t: &Target) -> Result<Duration, ManagerError> {
    let mut backoff = Backoff::new(Duration::from_secs(60)).every(Duration::from_millis(1500));
    let probe = health_probe();
    let mut last;
    loop {
        match pool
            .run(
                t,
                "manager healthcheck",
                &probe,
                Some(Duration::from_secs(20)),
            )
            .await
        {
            Ok(out) if out.status == 0 => return Ok(backoff.elapsed()),
            Ok(out) => last = crate::ssh::failure_tail_pub(&out),
            Err(e) => last = e.to_string(),
        }
        if !backoff.wait().await {
            break;
        }
    }
    Err(node_err(
        t,
        format!("the manager API did not answer within {}: {last} (see `docker logs {APP_CONTAINER}` there)", crate::util::human_duration(backoff.elapsed())),
    ))
}

/// The shell command that removes both manager containers and the data volumes (`down` of
/// hosts that stay).
pub fn remove_all_script(deployment: &str) -> String {
    format!(
        "docker ps -aq --filter label={} | xargs -r docker rm -fv >/dev/null",
        shell_quote(&format!("{MANAGER_LABEL}={deployment}"))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inspect_lines_parse() {
        let s = parse_state("running flotilla/manager:0.1.0 sha256:abc 2 healthy");
        assert!(s.present);
        assert_eq!(s.status, "running");
        assert_eq!(s.image, "flotilla/manager:0.1.0");
        assert_eq!(s.restarts, 2);
        assert_eq!(s.health, "healthy");
        assert!(!parse_state("absent").present);
    }

    #[test]
    fn scripts_are_valid_shell() {
        crate::util::assert_sh_syntax(&one_off("d1", "flotilla/manager:0.1.0", "dump-data"));
        crate::util::assert_sh_syntax(&remove_all_script("d'1"));
    }
}
