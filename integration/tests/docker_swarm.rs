//! End to end on the docker provider against the test bed's dockerd: a 3-node Swarm from the
//! shipped blueprint, a concurrent `up`/`down` refused by the lock, a 3-replica service spread over
//! distinct nodes, an idempotent re-run, and a `down` that leaves nothing labelled behind.

use crate::common::{docker_host, json, labelled, require_docker, stderr, stdout, Home};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::{Duration, Instant};

const DEPLOYMENT: &str = "it-swarm";
const SUBNET: &str = "10.198.10.0/24";

fn blueprint() -> String {
    crate::common::repo_root()
        .join("blueprints/local-swarm.yaml")
        .display()
        .to_string()
}

/// A minimal image (static busybox) imported on a node through `flotilla ssh`, no registry.
fn import_tiny_image(home: &Home, node: &str) {
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("busybox-static on the test host (.ci/run installs it)");
    let mut builder = tar::Builder::new(Vec::new());
    builder
        .append_path_with_name(busybox, "bin/busybox")
        .expect("tar busybox");
    let bytes = builder.into_inner().expect("tar");
    let mut child = home
        .cmd()
        .args([
            "ssh",
            DEPLOYMENT,
            node,
            "--",
            "docker",
            "import",
            "-",
            "flotilla-test/tiny:1",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn flotilla ssh");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&bytes)
        .expect("write image");
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "docker import on {node}: {}",
        stderr(&out)
    );
}

fn http_get(ip: &str, port: u16) -> Result<String, String> {
    let addr = format!("{ip}:{port}");
    let mut s = TcpStream::connect_timeout(
        &addr.parse().map_err(|e| format!("{e}"))?,
        Duration::from_secs(3),
    )
    .map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(3)))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).map_err(|e| e.to_string())?;
    Ok(buf)
}

#[test]
fn swarm_up_service_rerun_and_down() {
    require_docker();
    let _scrub = crate::common::Scrub::new(DEPLOYMENT);
    let home = Home::new();
    let bp = blueprint();
    let sets = [
        "--set",
        &format!("name={DEPLOYMENT}"),
        "--set",
        &format!("subnet={SUBNET}"),
    ];
    let mut up_args = vec!["up", bp.as_str()];
    up_args.extend_from_slice(&sets);

    // 1. First `up` in the background; while it holds the lock, a second `up` and a `down` are refused.
    let t0 = Instant::now();
    let mut first = home
        .cmd()
        .args(&up_args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn up");
    let lock = home
        .path()
        .join("deployments")
        .join(DEPLOYMENT)
        .join("lock");
    let deadline = Instant::now() + Duration::from_secs(120);
    while std::fs::read_to_string(&lock)
        .map(|s| s.trim().is_empty())
        .unwrap_or(true)
    {
        assert!(
            Instant::now() < deadline,
            "the first up never took the lock"
        );
        assert!(
            first.try_wait().expect("try_wait").is_none(),
            "the first up ended before the lock could be observed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let second = home.run(&up_args);
    assert_eq!(
        second.status.code(),
        Some(3),
        "a concurrent up must exit 3 (locked)"
    );
    let msg = stderr(&second);
    assert!(
        msg.contains(&format!("locked by pid {}", first.id())),
        "names the holder: {msg}"
    );
    let concurrent_down = home.run(&["down", DEPLOYMENT, "--yes"]);
    assert_eq!(
        concurrent_down.status.code(),
        Some(3),
        "a concurrent down must exit 3 too"
    );
    let out = first.wait_with_output().expect("wait up");
    eprintln!("first up: {}\n{}", stdout(&out), stderr(&out));
    assert_eq!(
        out.status.code(),
        Some(0),
        "first up failed: {}",
        stderr(&out)
    );
    eprintln!("up of 3 nodes took {:.1}s", t0.elapsed().as_secs_f64());

    // 2. The swarm: 3 nodes Ready, and a 3-replica service on 3 distinct nodes.
    let status = home.run(&["status", DEPLOYMENT, "-o", "json"]);
    assert_eq!(status.status.code(), Some(0));
    let st = json(&status);
    assert_eq!(st["healthy"], true);
    let nodes = st["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 3);
    for n in nodes {
        assert_eq!(n["cluster"], "ready/active", "{n}");
    }
    // The shipped blueprint's manager: installed by that first up, the API answering on the node.
    let m = home.run(&["manager", "status", DEPLOYMENT, "-o", "json"]);
    assert_eq!(m.status.code(), Some(0), "manager status: {}", stderr(&m));
    let m = json(&m);
    assert_eq!(m["node"], "managers-1", "{m}");
    assert_eq!(m["app_container"]["status"], "running", "{m}");
    // HTTPS only, answering with the certificate recorded at install.
    let url = m["url"].as_str().expect("url");
    assert!(url.starts_with("https://"), "{m}");
    assert_eq!(m["api"], "answers (TLS certificate as recorded)", "{m}");
    let fp = m["tls_fingerprint"].as_str().expect("fingerprint");
    let (code, body) = crate::manager::https(url, fp, "GET", "/", None);
    assert_eq!(code, 404, "GET / on the manager API: {body}");
    let names: Vec<String> = nodes
        .iter()
        .map(|n| n["name"].as_str().expect("name").to_string())
        .collect();
    for n in &names {
        import_tiny_image(&home, n);
    }
    let create = home.run(&[
        "ssh",
        DEPLOYMENT,
        "managers-1",
        "--",
        "docker",
        "service",
        "create",
        "-d",
        "--name",
        "web",
        "--replicas",
        "3",
        "--no-resolve-image",
        "--endpoint-mode",
        "dnsrr",
        "--publish",
        "mode=host,target=8080,published=8080",
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
    let deadline = Instant::now() + Duration::from_secs(90);
    let running_nodes = loop {
        let ps = home.run(&[
            "ssh",
            DEPLOYMENT,
            "managers-1",
            "--",
            "docker",
            "service",
            "ps",
            "web",
            "--filter",
            "desired-state=running",
            "--format",
            "'{{.Node}} {{.CurrentState}}'",
        ]);
        let text = stdout(&ps);
        let mut running: Vec<String> = text
            .lines()
            .filter(|l| l.contains("Running"))
            .filter_map(|l| l.split_whitespace().next().map(String::from))
            .collect();
        running.sort();
        if running.len() == 3 || Instant::now() > deadline {
            break running;
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    let mut distinct = running_nodes.clone();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        3,
        "3 replicas on 3 distinct nodes, got {running_nodes:?}"
    );
    let mut expected = names.clone();
    expected.sort();
    assert_eq!(distinct, expected);
    for n in nodes {
        let ip = n["address"].as_str().expect("address");
        let reply = http_get(ip, 8080).unwrap_or_else(|e| panic!("http to {ip}:8080: {e}"));
        assert!(
            reply.starts_with("HTTP/"),
            "replica on {ip} answers HTTP: {reply}"
        );
    }

    // 3. Re-running `up` changes nothing.
    let mut json_args = up_args.clone();
    json_args.extend_from_slice(&["-o", "json"]);
    let again = home.run(&json_args);
    assert_eq!(again.status.code(), Some(0));
    let r = json(&again);
    assert_eq!(r["changed"], false, "re-up must be a no-op: {r}");
    assert_eq!(r["machines"]["create"].as_array().map(Vec::len), Some(0));
    assert_eq!(r["docker_installed"].as_array().map(Vec::len), Some(0));
    let plan = home.run(&[
        "plan",
        bp.as_str(),
        "--set",
        &format!("name={DEPLOYMENT}"),
        "--set",
        &format!("subnet={SUBNET}"),
    ]);
    assert_eq!(
        plan.status.code(),
        Some(0),
        "plan of a converged deployment exits 0"
    );
    let plan_more = home.run(&[
        "plan",
        bp.as_str(),
        "--set",
        &format!("name={DEPLOYMENT}"),
        "--set",
        &format!("subnet={SUBNET}"),
        "--set",
        "workers=3",
    ]);
    assert_eq!(
        plan_more.status.code(),
        Some(10),
        "plan with changes pending exits 10"
    );
    assert!(stdout(&plan_more).contains("+ create workers-3"));

    // 4. `down` leaves no container, volume or network with the deployment's label.
    let down = home.run(&["down", DEPLOYMENT, "--yes"]);
    assert_eq!(down.status.code(), Some(0), "down: {}", stderr(&down));
    let (c, v, n) = labelled(DEPLOYMENT);
    assert!(
        c.is_empty() && v.is_empty() && n.is_empty(),
        "left behind: containers {c:?} volumes {v:?} networks {n:?}"
    );
    assert!(
        !home.path().join("deployments").join(DEPLOYMENT).exists(),
        "state removed"
    );
    let _ = docker_host();
}
