//! The Mesos driver on real hosts (docker provider nodes: real sshd, real Docker, and the real
//! ZooKeeper from Debian's `zookeeperd`, which the driver installs and configures as an
//! ensemble). mesos-master and mesos-agent cannot be installed here: their images are stand-ins
//! (`integration/shims/mesos/fake-mesos`, loaded through `docker.preload_images` under the real
//! image names) that record how flotilla ran them and answer /health, /master/slaves and the
//! operator API like Mesos. Not proved here: that real Mesos accepts this configuration.

use crate::common::{docker, docker_ok, json, require_docker, stderr, Home};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const NODE_IMAGE: &str = "flotilla-test/node-mesos:r1";

/// Docker-preinstalled node image plus zookeeperd and curl (what the driver would apt-install).
fn node_image() -> &'static str {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        if docker(&["image", "inspect", NODE_IMAGE]).status.success() {
            return;
        }
        let base = crate::heal_scale::baked_image();
        let c = "flotilla-it-mesos-bake";
        let _ = docker(&["rm", "-f", c]);
        let _ = docker(&["network", "rm", c]);
        docker_ok(&["network", "create", "--subnet", "10.198.28.0/24", c]);
        docker_ok(&["run", "-d", "--name", c, "--network", c, base, "sleep", "infinity"]);
        let install = docker(&["exec", c, "sh", "-c",
            "export DEBIAN_FRONTEND=noninteractive; for i in 1 2 3; do apt-get update -q && apt-get install -y -q --no-install-recommends zookeeperd curl ca-certificates && break; sleep 2; done; apt-get clean; rm -rf /var/lib/apt/lists/*"]);
        assert!(install.status.success(), "baking zookeeperd: {}", stderr(&install));
        docker_ok(&["commit", "-c", r#"CMD ["/usr/local/sbin/node-init"]"#, c, NODE_IMAGE]);
        let _ = docker(&["rm", "-f", c]);
        let _ = docker(&["network", "rm", c]);
    });
    NODE_IMAGE
}

/// `docker save` archive of the stand-in under mesosphere/mesos-master:1.7.1 and mesos-slave:1.7.1.
fn fake_images() -> &'static Path {
    static ONCE: OnceLock<PathBuf> = OnceLock::new();
    ONCE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("flotilla-it-mesos-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let busybox = ["/bin/busybox", "/usr/bin/busybox"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("busybox-static on the test host");
        let rootfs = dir.join("rootfs.tar");
        let mut b = tar::Builder::new(std::fs::File::create(&rootfs).expect("rootfs"));
        b.append_path_with_name(busybox, "bin/busybox")
            .expect("busybox");
        b.append_path_with_name(
            crate::common::repo_root().join("integration/shims/mesos/fake-mesos"),
            "fake-mesos",
        )
        .expect("fake-mesos");
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o1777);
        h.set_size(0);
        h.set_cksum();
        b.append_data(&mut h, "tmp/", std::io::empty())
            .expect("tmp");
        b.finish().expect("tar");
        drop(b);
        docker_ok(&[
            "import",
            "--change",
            r#"ENTRYPOINT ["/bin/busybox", "sh", "/fake-mesos"]"#,
            rootfs.to_str().expect("utf8"),
            "mesosphere/mesos-master:1.7.1",
        ]);
        docker_ok(&[
            "tag",
            "mesosphere/mesos-master:1.7.1",
            "mesosphere/mesos-slave:1.7.1",
        ]);
        let archive = dir.join("mesos-images.tar");
        docker_ok(&[
            "save",
            "-o",
            archive.to_str().expect("utf8"),
            "mesosphere/mesos-master:1.7.1",
            "mesosphere/mesos-slave:1.7.1",
        ]);
        archive
    })
}

fn blueprint(home: &Home, shared: &Path, name: &str, subnet: &str) -> String {
    let p = home.write(
        &format!("{name}.yaml"),
        &format!(
            "name: {name}\nprovider:\n  kind: docker\n  image: {img}\n  subnet: {subnet}\n  mounts:\n    - {d}:/var/lib/mesos\n    - {d}:/var/lib/mesos-agent\n\
             cluster:\n  kind: mesos\n  version: 1.7.1\n  mesos:\n    agent_privileged: false\n\
             docker:\n  method: preinstalled\n  preload_images: [{archive}]\nhealth:\n  unhealthy_grace: 0s\n\
             groups:\n  masters:\n    role: manager\n    count: 3\n  agents:\n    role: worker\n    count: 1\n    labels:\n      tier: app\n",
            img = node_image(),
            d = shared.display(),
            archive = fake_images().display()
        ),
    );
    p.to_str().expect("utf8").to_string()
}

fn transcript(shared: &Path, ip: &str) -> Vec<String> {
    std::fs::read_to_string(shared.join("transcript").join(format!("{ip}.log")))
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

/// Node name → address, from `status`.
fn addresses(home: &Home, name: &str) -> std::collections::BTreeMap<String, String> {
    let st = json(&home.run(&["status", name, "-o", "json"]));
    st["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| {
            (
                n["name"].as_str().unwrap_or_default().to_string(),
                n["address"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn starts(lines: &[String], what: &str) -> usize {
    lines.iter().filter(|l| l.starts_with(what)).count()
}

#[test]
fn mesos_with_a_real_zookeeper_ensemble_up_rerun_scale_heal_down() {
    require_docker();
    let home = Home::new();
    let shared = tempfile::Builder::new()
        .prefix("flotilla-mesos-shim-")
        .tempdir()
        .expect("shared dir");
    let name = "it-mesos";
    let _scrub = crate::common::Scrub::new(name);
    let bp = blueprint(&home, shared.path(), name, "10.198.31.0/24");

    // 1. Three masters with a ZooKeeper ensemble (real), an agent.
    let up = home.run(&["up", &bp, "-o", "json"]);
    assert_eq!(up.status.code(), Some(0), "up: {}", stderr(&up));
    let ips = addresses(&home, name);
    let zk = format!(
        "MESOS_ZK=zk://{}:2181,{}:2181,{}:2181/mesos",
        ips["masters-1"], ips["masters-2"], ips["masters-3"]
    );
    let mut modes = Vec::new();
    for (i, m) in ["masters-1", "masters-2", "masters-3"].iter().enumerate() {
        let t = transcript(shared.path(), &ips[*m]);
        assert_eq!(starts(&t, "mesos-master"), 1, "{m}: {t:#?}");
        let start = t
            .iter()
            .find(|l| l.starts_with("mesos-master"))
            .expect("start");
        for want in [
            zk.as_str(),
            "MESOS_QUORUM=2",
            &format!("MESOS_IP={}", ips[*m]),
            "MESOS_CLUSTER=it-mesos",
        ] {
            assert!(start.contains(want), "{m} lacks {want}: {start}");
        }
        let mode = t
            .iter()
            .find_map(|l| l.strip_prefix("zookeeper mode="))
            .map(|l| l.split_whitespace().next().unwrap_or_default().to_string())
            .expect("zookeeper mode");
        modes.push(mode);
        let myid = home.run(&["ssh", name, m, "--", "cat", "/var/lib/zookeeper/myid"]);
        assert_eq!(
            crate::common::stdout(&myid).trim(),
            (i + 1).to_string(),
            "myid of {m}"
        );
    }
    modes.sort();
    assert_eq!(
        modes,
        vec!["follower", "follower", "leader"],
        "a real 3-member ensemble"
    );
    let agent = transcript(shared.path(), &ips["agents-1"]);
    let a = agent.first().expect("agent start");
    for want in [
        "MESOS_CONTAINERIZERS=docker,mesos",
        &zk.replace("MESOS_ZK", "MESOS_MASTER"),
        "MESOS_ATTRIBUTES=tier:app",
    ] {
        assert!(a.contains(want), "agent lacks {want}: {a}");
    }
    let st = json(&home.run(&["status", name, "-o", "json"]));
    assert_eq!(st["healthy"], true, "{st}");

    // 2. Rerun: nothing restarted.
    let again = home.run(&["up", &bp, "-o", "json"]);
    assert_eq!(again.status.code(), Some(0), "rerun: {}", stderr(&again));
    assert_eq!(
        json(&again)["changed"],
        false,
        "{}",
        crate::common::stdout(&again)
    );
    for m in ["masters-1", "agents-1"] {
        let t = transcript(shared.path(), &ips[m]);
        assert_eq!(starts(&t, "mesos-"), 1, "{m} was not restarted: {t:#?}");
    }

    // 3. Scale out: a second agent registers; masters untouched.
    let out = home.run(&["scale", name, "agents=2", "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "scale out: {}", stderr(&out));
    let ips = addresses(&home, name);
    assert_eq!(
        starts(&transcript(shared.path(), &ips["agents-2"]), "mesos-agent"),
        1
    );
    assert_eq!(
        starts(
            &transcript(shared.path(), &ips["masters-1"]),
            "mesos-master"
        ),
        1
    );

    // 4. Heal: agents-1 dies → marked gone through the operator API, a replacement registers.
    let dead_ip = ips["agents-1"].clone();
    docker_ok(&["stop", "-t", "0", &format!("flotilla-{name}-agents-1")]);
    std::thread::sleep(std::time::Duration::from_secs(7)); // its heartbeats stop: inactive
    let heal = home.run(&["heal", name, "-o", "json"]);
    assert_eq!(heal.status.code(), Some(0), "heal: {}", stderr(&heal));
    let h = json(&heal);
    assert_eq!(h["replaced"], serde_json::json!(["agents-1"]), "{h}");
    let api: Vec<String> = ["masters-1", "masters-2", "masters-3"]
        .iter()
        .flat_map(|m| transcript(shared.path(), &ips[*m]))
        .filter(|l| l.starts_with("api ") && l.contains("MARK_AGENT_GONE"))
        .collect();
    assert_eq!(api.len(), 1, "one MARK_AGENT_GONE: {api:#?}");
    let st = json(&home.run(&["status", name, "-o", "json"]));
    assert_eq!(st["healthy"], true, "{st}");
    assert!(
        !st["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .any(|n| n["name"] == "agents-1"),
        "{st}"
    );
    let _ = dead_ip;

    // 5. Scale in to one agent: the newest goes, marked gone.
    let out = home.run(&["scale", name, "agents=1", "--yes", "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "scale in: {}", stderr(&out));
    let st = json(&home.run(&["status", name, "-o", "json"]));
    assert_eq!(st["nodes"].as_array().map(Vec::len), Some(4));
    assert_eq!(st["healthy"], true, "{st}");

    // 6. `ps` on agents-2: the agent flotilla runs, a swarm service task and a container started
    //    by hand, each with its owner; stop/kill only touch another tool's container with --yes.
    let on = |args: &[&str]| {
        let mut a = vec!["ssh", name, "agents-2", "--"];
        a.extend_from_slice(args);
        let o = home.run(&a);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    };
    on(&["docker", "swarm", "init", "--advertise-addr", "127.0.0.1"]);
    on(&[
        "docker",
        "service",
        "create",
        "-d",
        "--name",
        "web",
        "--no-resolve-image",
        "--entrypoint",
        "/bin/busybox",
        "mesosphere/mesos-slave:1.7.1",
        "sleep",
        "600",
    ]);
    on(&[
        "docker",
        "run",
        "-d",
        "--name",
        "by-hand",
        "--entrypoint",
        "/bin/busybox",
        "mesosphere/mesos-slave:1.7.1",
        "sleep",
        "600",
    ]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let rows = loop {
        let ps = home.run(&["ps", name, "--node", "agents-2", "-o", "json"]);
        assert_eq!(ps.status.code(), Some(0), "ps: {}", stderr(&ps));
        let rows = json(&ps)["containers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if rows.iter().any(|r| r["owner"] == "swarm") || std::time::Instant::now() > deadline {
            break rows;
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    };
    let owner = |pred: &dyn Fn(&serde_json::Value) -> bool| {
        rows.iter()
            .find(|r| pred(r))
            .map(|r| r["owner"].as_str().unwrap_or_default().to_string())
    };
    assert_eq!(
        owner(&|r| r["name"] == "flotilla-mesos-agent").as_deref(),
        Some("flotilla"),
        "{rows:#?}"
    );
    assert_eq!(
        owner(&|r| r["name"] == "by-hand").as_deref(),
        Some("unmanaged"),
        "{rows:#?}"
    );
    assert_eq!(
        owner(&|r| r["detail"] == "service web").as_deref(),
        Some("swarm"),
        "{rows:#?}"
    );
    let refused = home.run(&["stop", name, "agents-2", "by-hand"]);
    assert_eq!(
        refused.status.code(),
        Some(2),
        "another tool's container needs --yes"
    );
    assert!(
        stderr(&refused).contains("not created by flotilla"),
        "{}",
        stderr(&refused)
    );
    let stopped = home.run(&["stop", name, "agents-2", "by-hand", "--yes"]);
    assert_eq!(stopped.status.code(), Some(0), "{}", stderr(&stopped));
    let killed = home.run(&["kill", name, "agents-2", "flotilla-mesos-agent"]);
    assert_eq!(
        killed.status.code(),
        Some(0),
        "flotilla's own container: {}",
        stderr(&killed)
    );
    let ps = json(&home.run(&["ps", name, "--node", "agents-2", "-o", "json"]));
    let state_of = |n: &str| {
        ps["containers"]
            .as_array()
            .and_then(|a| a.iter().find(|r| r["name"] == n))
            .map(|r| r["state"].as_str().unwrap_or_default().to_string())
    };
    assert_eq!(state_of("by-hand").as_deref(), Some("exited"));

    let down = home.run(&["down", name, "--yes"]);
    assert_eq!(down.status.code(), Some(0), "down: {}", stderr(&down));
    let (c, v, n) = crate::common::labelled(name);
    assert!(c.is_empty() && v.is_empty() && n.is_empty());
}
