//! The static provider on hosts the test creates itself (node containers with sshd only):
//! `up` with `cluster.kind: none` installs Docker; a second `up` runs exactly one probe command per
//! host; `down` leaves the machines alone.

use crate::common::{docker, docker_ok, require_docker, stderr, stdout, Home};
use std::process::Command;

const NET: &str = "flotilla-it-static";
const SUBNET: &str = "10.198.11.0/24";
const HOSTS: [(&str, &str); 2] = [
    ("it-static-a", "10.198.11.10"),
    ("it-static-b", "10.198.11.11"),
];

/// Wraps every SSH command in a logger, so the test can count what flotilla runs on each host.
const LOGGER: &str = r#"#!/bin/sh
printf '%s\n' "${SSH_ORIGINAL_COMMAND:-<shell>}" >> /var/log/flotilla-test-commands.log
if [ -n "${SSH_ORIGINAL_COMMAND:-}" ]; then exec /bin/sh -c "$SSH_ORIGINAL_COMMAND"; else exec /bin/sh -l; fi
"#;

/// Shared with other tests that need flotilla's node image on the engine.
pub fn ensure_node_image_pub() -> String {
    ensure_node_image()
}

fn ensure_node_image() -> String {
    // The docker provider's own preflight builds the image (once per cache) exactly as `up` would.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let cfg = flotilla_provider_docker::DockerConfig {
            host: Some(crate::common::docker_host()),
            ..Default::default()
        };
        let p = flotilla_provider_docker::DockerProvider::connect(cfg, crate::common::cache_dir())
            .await
            .expect("connect to the test bed dockerd");
        use flotilla_provider_core::Provider;
        p.preflight(&flotilla_provider_core::Ownership::new("it-static"))
            .await
            .expect("node image");
        p.image().to_string()
    })
}

struct Hosts;

impl Drop for Hosts {
    fn drop(&mut self) {
        for (name, _) in HOSTS {
            let _ = docker(&["rm", "-f", "-v", name]);
            let _ = docker(&["volume", "rm", "-f", &format!("{name}-docker")]);
        }
        let _ = docker(&["network", "rm", NET]);
    }
}

fn commands_logged(name: &str) -> Vec<String> {
    let o = docker(&[
        "exec",
        name,
        "sh",
        "-c",
        "cat /var/log/flotilla-test-commands.log 2>/dev/null || true",
    ]);
    stdout(&o).lines().map(String::from).collect()
}

#[test]
fn static_hosts_get_docker_and_a_second_up_only_probes() {
    require_docker();
    let image = ensure_node_image();
    let home = Home::new();
    let guard = Hosts;
    drop(docker(&["network", "rm", NET]));
    docker_ok(&[
        "network",
        "create",
        "--subnet",
        SUBNET,
        "--label",
        "io.flotilla.test=static",
        NET,
    ]);
    let key = home.path().join("id_ed25519");
    let kg = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .output()
        .expect("ssh-keygen");
    assert!(kg.status.success(), "ssh-keygen: {}", stderr(&kg));
    let public = std::fs::read_to_string(key.with_extension("pub")).expect("pub key");
    // The command logger is in place before sshd starts (mounted read-only): reloading sshd with
    // SIGHUP right after start raced its signal setup once and killed it.
    let logger = home.write("log-command", LOGGER);
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&logger, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let force = home.write("zz-log.conf", "ForceCommand /usr/local/bin/log-command\n");
    for (name, ip) in HOSTS {
        let _ = docker(&["rm", "-f", "-v", name]);
        docker_ok(&[
            "run",
            "-d",
            "--name",
            name,
            "--hostname",
            name,
            "--init",
            "--network",
            NET,
            "--ip",
            ip,
            "--cap-add",
            "ALL",
            "--cap-drop",
            "SYS_RESOURCE",
            "--security-opt",
            "seccomp=unconfined",
            "--security-opt",
            "apparmor=unconfined",
            "--device-cgroup-rule",
            "a *:* rwm",
            "-v",
            &format!("{name}-docker:/var/lib/docker"),
            "-v",
            &format!("{}:/usr/local/bin/log-command:ro", logger.display()),
            "-v",
            &format!("{}:/etc/ssh/sshd_config.d/zz-log.conf:ro", force.display()),
            "-e",
            &format!("SSH_AUTHORIZED_KEYS={}", public.trim()),
            &image,
        ]);
    }
    let inventory = home.write(
        "hosts.ini",
        &format!("# existing machines\n[edge]\nroot@{}\n", HOSTS[1].1),
    );
    let bp = home.write(
        "static.yaml",
        &format!(
            "name: it-static\nprovider:\n  kind: static\n  inventory: {inv}\nssh:\n  user: root\n  private_key: {key}\n  boot_timeout: 60s\ncluster:\n  kind: none\ngroups:\n  hosts:\n    role: worker\n    hosts: [\"root@{a}:22\"]\n  edge:\n    role: worker\n",
            inv = inventory.display(),
            key = key.display(),
            a = HOSTS[0].1
        ),
    );
    let bp = bp.to_str().expect("utf8").to_string();

    let first = home.run(&["up", &bp]);
    if first.status.code() != Some(0) {
        // Seen once in CI ("No route to host" to a running host): say what the host looked like.
        let ps = docker(&[
            "ps",
            "-a",
            "--filter",
            "name=it-static",
            "--format",
            "{{.Names}} {{.Status}}",
        ]);
        let net = docker(&[
            "network",
            "inspect",
            NET,
            "--format",
            "{{json .Containers}}",
        ]);
        let route = Command::new("ip")
            .args(["route", "get", HOSTS[1].1])
            .output();
        let neigh = Command::new("ip")
            .args(["neigh", "show", "to", HOSTS[1].1])
            .output();
        eprintln!(
            "diagnostics:\n{}\n{}\n{:?}\n{:?}",
            stdout(&ps),
            stdout(&net),
            route.map(|o| stdout(&o)),
            neigh.map(|o| stdout(&o))
        );
    }
    assert_eq!(first.status.code(), Some(0), "first up: {}", stderr(&first));
    for (name, _) in HOSTS {
        let v = docker(&[
            "exec",
            name,
            "docker",
            "version",
            "--format",
            "{{.Server.Version}}",
        ]);
        assert!(
            v.status.success() && !stdout(&v).trim().is_empty(),
            "Docker answers on {name}: {}",
            stderr(&v)
        );
    }

    // Second run: nothing to do, and exactly one command (the probe) per host.
    for (name, _) in HOSTS {
        docker_ok(&[
            "exec",
            name,
            "sh",
            "-c",
            "rm -f /var/log/flotilla-test-commands.log",
        ]);
    }
    let second = home.run(&["up", &bp, "-o", "json"]);
    assert_eq!(
        second.status.code(),
        Some(0),
        "second up: {}",
        stderr(&second)
    );
    let r = crate::common::json(&second);
    assert_eq!(r["changed"], false, "{r}");
    for (name, _) in HOSTS {
        let cmds = commands_logged(name);
        assert_eq!(
            cmds,
            vec!["sh -s".to_string()],
            "{name}: one probe and nothing else"
        );
    }

    // `down` releases the hosts: they keep running, with Docker.
    let down = home.run(&["down", "it-static", "--yes"]);
    assert_eq!(down.status.code(), Some(0), "down: {}", stderr(&down));
    for (name, _) in HOSTS {
        let state = docker_ok(&["inspect", "-f", "{{.State.Running}}", name]);
        assert_eq!(state.trim(), "true", "{name} still runs after down");
        let v = docker(&["exec", name, "docker", "version"]);
        assert!(v.status.success(), "{name} keeps Docker");
    }
    drop(guard);
}
