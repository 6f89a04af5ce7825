//! `scale` and `heal` on the docker provider against the test bed's dockerd. Nodes come from an
//! image with Docker pre-installed (baked once per test run from flotilla's node image), so these
//! tests measure flotilla's orchestration rather than apt.

use crate::common::{docker, docker_ok, json, require_docker, stderr, stdout, Home};
use std::sync::OnceLock;

/// flotilla's node image plus docker.io, committed once (no host keys, no authorized_keys baked);
/// named after the node image's revision, so a new node-init is baked in.
pub fn baked_image() -> &'static str {
    static ONCE: OnceLock<String> = OnceLock::new();
    ONCE.get_or_init(|| {
        let baked = format!(
            "flotilla-test/node-docker:r{}",
            flotilla_provider_docker::IMAGE_REVISION
        );
        if docker(&["image", "inspect", &baked]).status.success() {
            return baked;
        }
        crate::static_hosts::ensure_node_image_pub();
        let base = format!("flotilla/node:bookworm-r{}", flotilla_provider_docker::IMAGE_REVISION);
        let _ = docker(&["rm", "-f", "flotilla-it-bake"]);
        let _ = docker(&["network", "rm", "flotilla-it-bake"]);
        docker_ok(&["network", "create", "--subnet", "10.198.29.0/24", "flotilla-it-bake"]);
        docker_ok(&["run", "-d", "--name", "flotilla-it-bake", "--network", "flotilla-it-bake", &base, "sleep", "infinity"]);
        let install = docker(&["exec", "flotilla-it-bake", "sh", "-c",
            "export DEBIAN_FRONTEND=noninteractive; for i in 1 2 3; do apt-get update -q && apt-get install -y -q --no-install-recommends docker.io iptables && break; sleep 2; done; apt-get clean; rm -rf /var/lib/apt/lists/* /etc/ssh/ssh_host_* /root/.ssh/authorized_keys"]);
        assert!(install.status.success(), "baking docker.io into the node image: {}", stderr(&install));
        docker_ok(&["commit", "-c", r#"CMD ["/usr/local/sbin/node-init"]"#, "flotilla-it-bake", &baked]);
        let _ = docker(&["rm", "-f", "flotilla-it-bake"]);
        let _ = docker(&["network", "rm", "flotilla-it-bake"]);
        baked
    })
}

/// Shared with the fault matrix.
pub fn blueprint_pub(
    home: &Home,
    name: &str,
    subnet: &str,
    workers: u32,
    extra_health: &str,
) -> String {
    blueprint(home, name, subnet, workers, extra_health)
}

pub fn wait_down_pub(home: &Home, deployment: &str, expected_down: usize) {
    wait_down(home, deployment, expected_down)
}

fn blueprint(home: &Home, name: &str, subnet: &str, workers: u32, extra_health: &str) -> String {
    let p = home.write(
        &format!("{name}.yaml"),
        &format!(
            "name: {name}\nprovider:\n  kind: docker\n  image: {img}\n  subnet: {subnet}\ncluster:\n  kind: swarm\n  swarm:\n    dispatcher_heartbeat: 1s\n    default_addr_pool: 10.198.192.0/18\ndocker:\n  method: preinstalled\n  preload_images: [{archive}]\nhealth:\n  unhealthy_grace: 0s\n{extra_health}groups:\n  managers:\n    role: manager\n    count: 1\n  workers:\n    role: worker\n    count: {workers}\noutputs:\n  manager: \"{{{{ groups.managers[0].name }}}}\"\n  workers: \"{{{{ groups.workers | length }}}}\"\n",
            img = baked_image(),
            archive = crate::common::tiny_image_archive().display()
        ),
    );
    p.to_str().expect("utf8").to_string()
}

/// A replicated busybox web service from the preloaded image (no registry needed).
fn create_service(home: &Home, deployment: &str, replicas: usize) {
    let create = home.run(&[
        "ssh",
        deployment,
        "managers-1",
        "--",
        "docker",
        "service",
        "create",
        "-d",
        "--name",
        "web",
        "--replicas",
        &replicas.to_string(),
        "--no-resolve-image",
        "--endpoint-mode",
        "dnsrr",
        "flotilla-test/tiny:1",
        "/bin/busybox",
        "httpd",
        "-f",
        "-p",
        "8080",
        "-h",
        "/",
    ]);
    assert!(
        create.status.success(),
        "service create: {}",
        stderr(&create)
    );
    let nodes = crate::common::wait_replicas(home, deployment, "managers-1", "web", replicas);
    assert_eq!(
        nodes.len(),
        replicas,
        "all {replicas} replicas run before the test goes on"
    );
}

/// `flotilla outputs NAME -o json`.
fn outputs(home: &Home, deployment: &str) -> serde_json::Value {
    let o = home.run(&["outputs", deployment, "-o", "json"]);
    assert_eq!(o.status.code(), Some(0), "outputs: {}", stderr(&o));
    json(&o)
}

fn container(deployment: &str, node: &str) -> String {
    format!("flotilla-{deployment}-{node}")
}

/// (Ready members, all members) as the swarm reports them through `flotilla ssh`.
fn swarm_members(home: &Home, deployment: &str) -> (usize, usize) {
    let out = home.run(&[
        "ssh",
        deployment,
        "managers-1",
        "--",
        "docker",
        "node",
        "ls",
        "--format",
        "'{{.Status}}'",
    ]);
    assert!(out.status.success(), "docker node ls: {}", stderr(&out));
    let text = stdout(&out);
    (
        text.lines().filter(|l| l.trim() == "Ready").count(),
        text.lines().filter(|l| !l.trim().is_empty()).count(),
    )
}

fn wait_down(home: &Home, deployment: &str, expected_down: usize) {
    // dispatcher_heartbeat 1s: a stopped node shows Down after ~5 s; bounded wait.
    for _ in 0..60 {
        let out = home.run(&[
            "ssh",
            deployment,
            "managers-1",
            "--",
            "docker",
            "node",
            "ls",
            "--format",
            "'{{.Status}}'",
        ]);
        if stdout(&out).lines().filter(|l| l.trim() == "Down").count() >= expected_down {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    panic!("the swarm never reported {expected_down} node(s) Down");
}

#[test]
fn heal_replaces_a_dead_worker_and_refuses_a_storm() {
    require_docker();
    let home = Home::new();
    let name = "it-heal";
    let _scrub = crate::common::Scrub::new("it-heal");
    let bp = blueprint(&home, name, "10.198.20.0/24", 2, "  max_unhealthy: 1\n");
    let up = home.run(&["up", &bp]);
    assert_eq!(up.status.code(), Some(0), "up: {}", stderr(&up));
    let healthy = home.run(&["heal", name, "-o", "json"]);
    assert_eq!(healthy.status.code(), Some(0));
    assert!(
        json(&healthy)["replaced"]
            .as_array()
            .is_some_and(Vec::is_empty),
        "nothing to heal on a healthy swarm"
    );
    create_service(&home, name, 3);

    // A worker dies.
    docker_ok(&["stop", "-t", "0", &container(name, "workers-1")]);
    wait_down(&home, name, 1);
    let dry = home.run(&["heal", name, "--dry-run", "-o", "json"]);
    assert_eq!(dry.status.code(), Some(0));
    let d = json(&dry);
    let v = d["verdicts"]
        .as_array()
        .expect("verdicts")
        .iter()
        .find(|v| v["node"] == "workers-1")
        .cloned()
        .expect("workers-1");
    assert_eq!(v["decision"], "replace", "{d}");
    assert!(
        docker(&["inspect", &container(name, "workers-1")])
            .status
            .success(),
        "dry run deletes nothing"
    );

    let heal = home.run(&["heal", name, "-o", "json"]);
    assert_eq!(heal.status.code(), Some(0), "heal: {}", stderr(&heal));
    let h = json(&heal);
    assert_eq!(h["replaced"], serde_json::json!(["workers-1"]), "{h}");
    assert!(
        !docker(&["inspect", &container(name, "workers-1")])
            .status
            .success(),
        "the dead machine is deleted"
    );
    assert_eq!(
        swarm_members(&home, name),
        (3, 3),
        "3 Ready members and no stale Down one"
    );
    let loaded = &h["converge"]["images_loaded"];
    assert_eq!(
        loaded.as_object().map(|m| m.len()),
        Some(1),
        "the replacement (only) got the preloaded image: {h}"
    );
    let back = crate::common::wait_replicas(&home, name, "managers-1", "web", 3);
    assert_eq!(
        back.len(),
        3,
        "the service is back to full replicas: {back:?}"
    );
    let st = json(&home.run(&["status", name, "-o", "json"]));
    assert_eq!(st["healthy"], true, "{st}");
    // The blueprint's outputs survive the heal's converge (it renders them from the state).
    assert_eq!(
        outputs(&home, name),
        serde_json::json!({"manager": "managers-1", "workers": "2"})
    );

    // Two of three nodes die: above max_unhealthy (1), so heal refuses and replaces nothing.
    docker_ok(&["stop", "-t", "0", &container(name, "workers-2")]);
    docker_ok(&["stop", "-t", "0", &container(name, "workers-3")]);
    wait_down(&home, name, 2);
    let refused = home.run(&["heal", name]);
    assert_eq!(
        refused.status.code(),
        Some(5),
        "heal refused by the guard: {}",
        stdout(&refused)
    );
    assert!(stdout(&refused).contains("max_unhealthy"));
    for n in ["workers-2", "workers-3"] {
        assert!(
            docker(&["inspect", &container(name, n)]).status.success(),
            "{n} was not deleted"
        );
    }
    let down = home.run(&["down", name, "--yes"]);
    assert_eq!(down.status.code(), Some(0), "down: {}", stderr(&down));
    let (c, v, n) = crate::common::labelled(name);
    assert!(c.is_empty() && v.is_empty() && n.is_empty());
}

#[test]
fn twenty_concurrent_heals_one_acts() {
    require_docker();
    let home = Home::new();
    let name = "it-heal20";
    let _scrub = crate::common::Scrub::new("it-heal20");
    let bp = blueprint(&home, name, "10.198.21.0/24", 2, "");
    let up = home.run(&["up", &bp]);
    assert_eq!(up.status.code(), Some(0), "up: {}", stderr(&up));
    docker_ok(&["stop", "-t", "0", &container(name, "workers-2")]);
    wait_down(&home, name, 1);
    let children: Vec<_> = (0..20)
        .map(|_| {
            home.cmd()
                .args(["heal", name, "-o", "json"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn heal")
        })
        .collect();
    let outs: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().expect("wait"))
        .collect();
    let mut acted = 0;
    let mut locked = 0;
    for o in &outs {
        match o.status.code() {
            Some(3) => locked += 1,
            Some(0) => {
                if json(o)["replaced"]
                    .as_array()
                    .is_some_and(|r| !r.is_empty())
                {
                    acted += 1;
                }
            }
            other => panic!("unexpected heal exit {other:?}: {}", stderr(o)),
        }
    }
    assert_eq!(
        acted, 1,
        "exactly one heal replaced the node ({locked} were locked out)"
    );
    assert!(locked >= 1, "concurrent heals were refused by the lock");
    assert_eq!(swarm_members(&home, name), (3, 3));
    let down = home.run(&["down", name, "--yes"]);
    assert_eq!(down.status.code(), Some(0));
}

#[test]
fn scale_out_and_in_keeps_membership_in_step() {
    require_docker();
    let home = Home::new();
    let name = "it-scale";
    let _scrub = crate::common::Scrub::new("it-scale");
    let bp = blueprint(&home, name, "10.198.22.0/24", 2, "");
    let up = home.run(&["up", &bp]);
    assert_eq!(up.status.code(), Some(0), "up: {}", stderr(&up));
    let out = home.run(&["scale", name, "workers=5", "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "scale out: {}", stderr(&out));
    assert_eq!(swarm_members(&home, name), (6, 6));
    assert_eq!(
        outputs(&home, name)["workers"],
        "5",
        "outputs follow a scale"
    );
    create_service(&home, name, 6);
    let bad = home.run(&["scale", name, "managers=2"]);
    assert_eq!(
        bad.status.code(),
        Some(2),
        "an even manager count is refused"
    );
    let typo = home.run(&["scale", name, "worker=1"]);
    assert_eq!(typo.status.code(), Some(2));
    assert!(stderr(&typo).contains("did you mean `workers`"));
    let no_yes = home.run(&["scale", name, "workers=1"]);
    assert_eq!(
        no_yes.status.code(),
        Some(2),
        "deleting machines needs --yes off a terminal"
    );
    let out = home.run(&["scale", name, "workers=1", "--yes", "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "scale in: {}", stderr(&out));
    let r = json(&out);
    let mut removed: Vec<String> = r["machines"]["remove"]
        .as_array()
        .expect("remove")
        .iter()
        .map(|v| v.as_str().unwrap_or_default().to_string())
        .collect();
    removed.sort();
    assert_eq!(
        removed,
        vec!["workers-2", "workers-3", "workers-4", "workers-5"],
        "newest first"
    );
    assert_eq!(
        swarm_members(&home, name),
        (2, 2),
        "membership matches the state"
    );
    let tasks = crate::common::wait_replicas(&home, name, "managers-1", "web", 6);
    assert_eq!(tasks.len(), 6, "no replica lost by the scale-in: {tasks:?}");
    assert!(
        tasks.iter().all(|n| n == "managers-1" || n == "workers-1"),
        "they all run on the nodes that remain: {tasks:?}"
    );
    let st = json(&home.run(&["status", name, "-o", "json"]));
    assert_eq!(st["nodes"].as_array().map(Vec::len), Some(2));
    assert_eq!(st["healthy"], true);
    assert_eq!(
        outputs(&home, name)["workers"],
        "1",
        "outputs follow a scale-in"
    );
    // The scaled size sticks for heal/status; `up` with the blueprint goes back to it.
    let again = home.run(&["up", &bp, "--yes", "-o", "json"]);
    assert_eq!(again.status.code(), Some(0));
    assert_eq!(json(&again)["nodes"].as_array().map(Vec::len), Some(3));
    assert_eq!(
        outputs(&home, name),
        serde_json::json!({"manager": "managers-1", "workers": "2"}),
        "outputs after a re-run of up"
    );
    let down = home.run(&["down", name, "--yes"]);
    assert_eq!(down.status.code(), Some(0));
}

#[test]
fn heal_replaces_a_dead_manager_keeping_quorum() {
    require_docker();
    let home = Home::new();
    let name = "it-heal3m";
    let _scrub = crate::common::Scrub::new("it-heal3m");
    let bp = blueprint(&home, name, "10.198.23.0/24", 1, "");
    let text = std::fs::read_to_string(&bp).unwrap_or_default().replacen(
        "    count: 1\n  workers:",
        "    count: 3\n  workers:",
        1,
    );
    let bp = home
        .write(&format!("{name}-3m.yaml"), &text)
        .to_str()
        .expect("utf8")
        .to_string();
    let up = home.run(&["up", &bp]);
    assert_eq!(up.status.code(), Some(0), "up: {}", stderr(&up));
    assert_eq!(swarm_members(&home, name), (4, 4));
    docker_ok(&["stop", "-t", "0", &container(name, "managers-2")]);
    wait_down(&home, name, 1);
    let heal = home.run(&["heal", name, "-o", "json"]);
    assert_eq!(heal.status.code(), Some(0), "heal: {}", stderr(&heal));
    assert_eq!(json(&heal)["replaced"], serde_json::json!(["managers-2"]));
    // The swarm answers (quorum), has 3 reachable managers again and no stale member.
    let out = home.run(&[
        "ssh",
        name,
        "managers-1",
        "--",
        "docker",
        "node",
        "ls",
        "--format",
        "'{{.ManagerStatus}}'",
    ]);
    assert!(out.status.success(), "quorum kept: {}", stderr(&out));
    let statuses = stdout(&out);
    let managers = statuses
        .lines()
        .filter(|l| matches!(l.trim(), "Leader" | "Reachable"))
        .count();
    assert_eq!(managers, 3, "three reachable managers: {statuses}");
    assert_eq!(swarm_members(&home, name), (4, 4));
    let down = home.run(&["down", name, "--yes"]);
    assert_eq!(down.status.code(), Some(0));
}

#[test]
fn a_rebooted_node_gets_docker_started_and_rejoins() {
    require_docker();
    let home = Home::new();
    let name = "it-reboot";
    let _scrub = crate::common::Scrub::new("it-reboot");
    let bp = blueprint(&home, name, "10.198.24.0/24", 1, "");
    let up = home.run(&["up", &bp]);
    assert_eq!(up.status.code(), Some(0), "up: {}", stderr(&up));
    // A reboot: the machine comes back with sshd only; nothing starts dockerd.
    docker_ok(&["restart", "-t", "0", &container(name, "workers-1")]);
    let again = home.run(&["up", &bp, "-o", "json"]);
    assert_eq!(
        again.status.code(),
        Some(0),
        "up after the reboot: {}",
        stderr(&again)
    );
    let r = json(&again);
    assert_eq!(r["docker_started"], serde_json::json!(["workers-1"]), "{r}");
    assert_eq!(
        r["cluster"]["joined"].as_array().map(Vec::len),
        Some(0),
        "it is still a member: no second join"
    );
    assert_eq!(swarm_members(&home, name), (2, 2));
    let down = home.run(&["down", name, "--yes"]);
    assert_eq!(down.status.code(), Some(0));
}

#[test]
fn heal_watch_heals_and_stops_cleanly_on_sigterm() {
    require_docker();
    let home = Home::new();
    let name = "it-watch";
    let _scrub = crate::common::Scrub::new("it-watch");
    let bp = blueprint(&home, name, "10.198.25.0/24", 1, "");
    let up = home.run(&["up", &bp]);
    assert_eq!(up.status.code(), Some(0), "up: {}", stderr(&up));
    let watch = home
        .cmd()
        .args(["heal", name, "--watch", "--interval", "1s", "-o", "json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn heal --watch");
    docker_ok(&["stop", "-t", "0", &container(name, "workers-1")]);
    // Bounded: the watcher must notice and replace the worker within 60 s.
    let mut healed = false;
    for _ in 0..120 {
        std::thread::sleep(std::time::Duration::from_millis(500));
        if !docker(&["inspect", &container(name, "workers-1")])
            .status
            .success()
            && swarm_members(&home, name) == (2, 2)
        {
            healed = true;
            break;
        }
    }
    let pid = nix::unistd::Pid::from_raw(i32::try_from(watch.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let out = watch.wait_with_output().expect("wait");
    assert!(
        healed,
        "the watcher replaced the dead worker: {}",
        stderr(&out)
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "SIGTERM ends the watch cleanly: {}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("SIGTERM"), "{}", stderr(&out));
    let down = home.run(&["down", name, "--yes"]);
    assert_eq!(down.status.code(), Some(0));
}

#[test]
fn heal_restarts_a_stopped_docker_in_place_instead_of_replacing() {
    require_docker();
    let home = Home::new();
    let name = "it-restart";
    let _scrub = crate::common::Scrub::new("it-restart");
    let bp = blueprint(&home, name, "10.198.26.0/24", 1, "");
    let up = home.run(&["up", &bp]);
    assert_eq!(up.status.code(), Some(0), "up: {}", stderr(&up));
    let c = container(name, "workers-1");
    let id_before = docker_ok(&["inspect", "-f", "{{.Id}}", &c]);
    // The daemon stops (as `systemctl stop docker` or an OOM kill would leave it); the machine
    // and sshd stay up.
    docker_ok(&[
        "exec", &c, "sh", "-c",
        "pid=$(cat /var/run/docker.pid); kill $pid; i=0; while [ -e /proc/$pid ] && [ $i -lt 150 ]; do i=$((i+1)); sleep 0.2; done; [ ! -e /proc/$pid ]",
    ]);
    let heal = home.run(&["heal", name, "-o", "json"]);
    assert_eq!(heal.status.code(), Some(0), "heal: {}", stderr(&heal));
    let h = json(&heal);
    let verdict = h["verdicts"]
        .as_array()
        .expect("verdicts")
        .iter()
        .find(|v| v["node"] == "workers-1")
        .cloned()
        .expect("workers-1");
    assert_eq!(verdict["decision"], "restart_docker", "{h}");
    assert!(h["restarted"]["workers-1"]["docker"].is_string(), "{h}");
    assert_eq!(
        h["replaced"],
        serde_json::json!([]),
        "nothing replaced: {h}"
    );
    assert_eq!(
        docker_ok(&["inspect", "-f", "{{.Id}}", &c]),
        id_before,
        "the same machine"
    );
    // Its membership comes back from disk: Ready again, no second member.
    let mut members = (0, 0);
    for _ in 0..30 {
        members = swarm_members(&home, name);
        if members == (2, 2) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
    assert_eq!(members, (2, 2));
    let again = json(&home.run(&["heal", name, "-o", "json"]));
    assert_eq!(
        again["restarted"],
        serde_json::json!({}),
        "healthy now: {again}"
    );
    let down = home.run(&["down", name, "--yes"]);
    assert_eq!(down.status.code(), Some(0));
}
