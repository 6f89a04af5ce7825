//! The containerized manager on a real node (docker provider, real sshd and dockerd in the node):
//! image built from this binary with no registry, streamed with `docker save | ssh docker load`,
//! installed by `up` (data-only container + app container), the API answering from inside the
//! node with the token flotilla generated; a crashed app restarted by Docker with its data, a
//! `docker kill`ed one re-created by `manager recover`, an upgrade that keeps the data, a backup,
//! install refused over an existing manager, and a restore from the backup after both
//! containers are gone. Also a Swarm stack from `services:` deployed and removed by `up`.

use crate::common::{docker_ok, json, require_docker, stderr, stdout, Home};
use std::time::{Duration, Instant};

const DEPLOYMENT: &str = "it-mgr";

fn blueprint(home: &Home, with_stack: bool) -> String {
    let base = crate::heal_scale::blueprint_pub(home, DEPLOYMENT, "10.198.36.0/24", 1, "");
    let mut text = std::fs::read_to_string(&base).expect("blueprint");
    text.push_str("manager:\n  group: managers\n  port: 8700\n  image: flotilla/manager:it-a\n");
    if with_stack {
        home.write(
            "stack.yml",
            "version: \"3.8\"\nservices:\n  web:\n    image: flotilla-test/tiny:1\n    command: [/bin/busybox, httpd, -f, -p, \"8080\", -h, /]\n    environment:\n      DEPLOYMENT: \"{{ deployment }}\"\n    deploy:\n      replicas: 2\n      endpoint_mode: dnsrr\n",
        );
        text.push_str("services:\n  shop:\n    file: stack.yml\n    resolve_image: never\n");
    }
    std::fs::write(&base, text).expect("write");
    base
}

fn token_of(home: &Home) -> String {
    let p = home
        .path()
        .join("deployments")
        .join(DEPLOYMENT)
        .join("manager-token");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&p).expect("token file").permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "token file mode");
    std::fs::read_to_string(p)
        .expect("token")
        .trim()
        .to_string()
}

/// One HTTPS request to the manager, accepting only the certificate `fingerprint`:
/// (status, body), or (0, why) when no answer came.
pub fn https(
    base: &str,
    fingerprint: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> (u16, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let client = flotilla::serve::tls::pinned_client(fingerprint, Duration::from_secs(60))
            .expect("client");
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = client.request(method, format!("{base}{path}"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        match req.send().await {
            Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
            Err(e) => (0, flotilla::util::error_chain(&e)),
        }
    })
}

/// Asks the API until it answers 200 (bounded: 60 s): the deployments it knows.
fn deployments_listed(base: &str, fingerprint: &str, token: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = https(base, fingerprint, "GET", "/v1/deployments", Some(token));
        if let (200, body) = &answer {
            return serde_json::from_str(body).expect("json");
        }
        assert!(
            Instant::now() < deadline,
            "the manager API did not answer: {answer:?}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn on_node(home: &Home, script: &str) -> String {
    crate::common::on_node(home, DEPLOYMENT, "managers-1", script)
}

fn log_lines(home: &Home) -> usize {
    on_node(
        home,
        "docker cp flotilla-data:/var/log/flotilla/serve.jsonl - | tar -xO | wc -l",
    )
    .parse()
    .expect("a count")
}

#[test]
fn manager_installs_survives_crash_kill_upgrade_and_restores_from_backup() {
    require_docker();
    let home = Home::new();
    let _scrub = crate::common::Scrub::new(DEPLOYMENT);
    for tag in ["flotilla/manager:it-a", "flotilla/manager:it-b"] {
        let b = home.run(&["manager", "image", "build", "--tag", tag, "-o", "json"]);
        assert_eq!(b.status.code(), Some(0), "build {tag}: {}", stderr(&b));
        let built = json(&b);
        assert!(
            built["files"].as_array().is_some_and(|f| f.len() >= 3),
            "{built}"
        );
    }
    // Layer of it-a: the binary, ssh, and no shell.
    let cfg = docker_ok(&[
        "image",
        "inspect",
        "-f",
        "{{json .Config.Volumes}} {{json .Config.Entrypoint}}",
        "flotilla/manager:it-a",
    ]);
    assert!(
        cfg.contains("/var/lib/flotilla") && cfg.contains("/var/log/flotilla"),
        "{cfg}"
    );

    let bp = blueprint(&home, true);
    let up = home.run(&["up", &bp, "-o", "json"]);
    assert_eq!(up.status.code(), Some(0), "up: {}", stderr(&up));
    let r = json(&up);
    assert_eq!(r["manager"]["action"], "installed", "{r}");
    assert_eq!(r["manager"]["image_shipped"], true, "{r}");
    assert_eq!(r["services"], serde_json::json!(["shop=deployed"]), "{r}");
    let url = r["manager"]["url"].as_str().expect("url").to_string();
    let fp = r["manager"]["tls_fingerprint"]
        .as_str()
        .expect("fingerprint")
        .to_string();
    let token = token_of(&home);
    // TLS only, published on the node's private address only, and the recorded certificate.
    assert!(url.starts_with("https://10.198.36."), "{url}");
    let published = on_node(&home, "docker port flotilla-manager");
    let addr = url.trim_start_matches("https://");
    assert_eq!(
        published.trim(),
        format!("8700/tcp -> {addr}"),
        "{published}"
    );
    let plain = crate::serve::http_result(addr, "GET", "/healthz", None, b"");
    assert!(
        plain.map(|(c, _)| c).unwrap_or(0) != 200,
        "plain HTTP must not answer 200"
    );
    let other = "sha256:".to_string() + &"0".repeat(64);
    let (code, why) = https(&url, &other, "GET", "/healthz", None);
    assert_eq!(code, 0, "a different certificate pin must be refused");
    assert!(why.contains("not the one recorded"), "{why}");
    let st = home.run(&["manager", "status", DEPLOYMENT, "-o", "json"]);
    assert_eq!(st.status.code(), Some(0), "{}", stderr(&st));
    assert_eq!(
        json(&st)["api"],
        "answers (TLS certificate as recorded)",
        "{}",
        stdout(&st)
    );

    // The stack runs its two replicas (the compose file was rendered: {{ deployment }}).
    let nodes = crate::common::wait_replicas(&home, DEPLOYMENT, "managers-1", "shop_web", 2);
    assert_eq!(nodes.len(), 2, "{nodes:?}");
    let env = on_node(
        &home,
        "docker service inspect -f \"{{json .Spec.TaskTemplate.ContainerSpec.Env}}\" shop_web",
    );
    assert!(env.contains("DEPLOYMENT=it-mgr"), "{env}");

    // The API inside the node: auth, and the deployment it was seeded with.
    assert_eq!(https(&url, &fp, "GET", "/v1/deployments", None).0, 401);
    let listed = deployments_listed(&url, &fp, &token);
    assert_eq!(listed[0]["deployment"], DEPLOYMENT, "{listed}");
    // Status from inside the container: it reaches every node over SSH with the imported key
    // (machine states are unknown there: the docker provider's engine is on the operator's side).
    let (code, body) = https(
        &url,
        &fp,
        "GET",
        &format!("/v1/deployments/{DEPLOYMENT}"),
        Some(&token),
    );
    assert_eq!(code, 200, "{body}");
    let status: serde_json::Value = serde_json::from_str(&body).expect("json");
    let nodes = status["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 2, "{status}");
    assert!(
        nodes
            .iter()
            .all(|n| n["ssh"] == "ok" && n["cluster"] == "ready/active"),
        "{status}"
    );

    // A rerun leaves the manager alone.
    let again = home.run(&["up", &bp, "-o", "json"]);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert_eq!(json(&again)["manager"]["action"], "present");

    // A crash of the app process: Docker restarts it (--restart=always), data intact.
    let before = log_lines(&home);
    assert!(before >= 3, "request log lines: {before}");
    on_node(
        &home,
        "kill -9 $(docker inspect -f {{.State.Pid}} flotilla-manager)",
    );
    deployments_listed(&url, &fp, &token);
    let restarts: u32 = on_node(
        &home,
        "docker inspect -f {{.RestartCount}} flotilla-manager",
    )
    .parse()
    .expect("count");
    assert!(restarts >= 1, "restarts {restarts}");

    // `docker kill` is a manual stop (Docker does not restart it): recover re-creates it.
    on_node(&home, "docker kill flotilla-manager >/dev/null");
    let st = home.run(&["manager", "status", DEPLOYMENT, "-o", "json"]);
    assert_eq!(
        st.status.code(),
        Some(1),
        "status of a killed app: {}",
        stdout(&st)
    );
    assert_eq!(json(&st)["app_container"]["status"], "exited");
    let rec = home.run(&["manager", "recover", DEPLOYMENT, "-o", "json"]);
    assert_eq!(rec.status.code(), Some(0), "recover: {}", stderr(&rec));
    assert_eq!(json(&rec)["action"], "recovered");
    assert_eq!(
        deployments_listed(&url, &fp, &token)[0]["deployment"],
        DEPLOYMENT
    );
    assert!(log_lines(&home) > before, "the request log kept its lines");
    let rec2 = home.run(&["manager", "recover", DEPLOYMENT, "-o", "json"]);
    assert_eq!(
        json(&rec2)["action"],
        "unchanged",
        "a healthy app is left alone"
    );

    // Upgrade: only the app container changes; token and data stay.
    let before = log_lines(&home);
    let up2 = home.run(&[
        "manager",
        "upgrade",
        DEPLOYMENT,
        "--image",
        "flotilla/manager:it-b",
        "-o",
        "json",
    ]);
    assert_eq!(up2.status.code(), Some(0), "upgrade: {}", stderr(&up2));
    let u = json(&up2);
    assert_eq!(u["action"], "upgraded", "{u}");
    assert_eq!(u["app_container"]["image"], "flotilla/manager:it-b", "{u}");
    assert_eq!(
        u["tls_fingerprint"],
        fp.as_str(),
        "the certificate lives in the data volume"
    );
    assert_eq!(
        deployments_listed(&url, &fp, &token)[0]["deployment"],
        DEPLOYMENT
    );
    assert!(
        log_lines(&home) > before,
        "the request log survived the upgrade"
    );

    // Backup: both volumes, 0600.
    let backup = home.path().join("manager-backup.tar");
    let b = home.run(&[
        "manager",
        "backup",
        DEPLOYMENT,
        "-f",
        backup.to_str().expect("utf8"),
    ]);
    assert_eq!(b.status.code(), Some(0), "backup: {}", stderr(&b));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&backup).expect("backup").permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let listing = std::process::Command::new("tar")
        .arg("-tf")
        .arg(&backup)
        .output()
        .expect("tar");
    let names = stdout(&listing);
    for want in [
        "data/api-token",
        "data/deployments/it-mgr/state.json",
        "data/deployments/it-mgr/id_ed25519",
        "logs/serve.jsonl",
    ] {
        assert!(
            names.lines().any(|l| l == want),
            "{want} in the backup:\n{names}"
        );
    }

    // export --with-manager-data carries the same volumes to another operator home.
    let moved = home.path().join("moved.tar");
    let ex = home.run(&[
        "export",
        DEPLOYMENT,
        "--with-manager-data",
        "-f",
        moved.to_str().expect("utf8"),
    ]);
    assert_eq!(ex.status.code(), Some(0), "export: {}", stderr(&ex));
    let other = Home::new();
    let im = other.run(&["import", moved.to_str().expect("utf8")]);
    assert_eq!(im.status.code(), Some(0), "import: {}", stderr(&im));
    assert!(stdout(&im).contains("manager install"), "{}", stdout(&im));
    let carried = other
        .path()
        .join("deployments")
        .join(DEPLOYMENT)
        .join("manager-data.tar");
    let listing = std::process::Command::new("tar")
        .arg("-tf")
        .arg(&carried)
        .output()
        .expect("tar");
    assert!(
        stdout(&listing).lines().any(|l| l == "data/api-token"),
        "{}",
        stdout(&listing)
    );

    // Install over an existing manager is refused, pointing at upgrade/recover.
    let again = home.run(&["manager", "install", DEPLOYMENT]);
    assert_eq!(again.status.code(), Some(2), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("manager upgrade") && stderr(&again).contains("manager recover"),
        "{}",
        stderr(&again)
    );

    // Both containers gone (the node's data with them): recover cannot, install --data restores.
    on_node(
        &home,
        "docker rm -fv flotilla-manager flotilla-data >/dev/null",
    );
    let rec = home.run(&["manager", "recover", DEPLOYMENT]);
    assert_eq!(rec.status.code(), Some(2), "{}", stderr(&rec));
    assert!(
        stderr(&rec).contains("data container flotilla-data is gone")
            && stderr(&rec).contains("--data BACKUP"),
        "the refusal says why and what to do: {}",
        stderr(&rec)
    );
    let restored = home.run(&[
        "manager",
        "install",
        DEPLOYMENT,
        "--data",
        backup.to_str().expect("utf8"),
        "--image",
        "flotilla/manager:it-b",
        "-o",
        "json",
    ]);
    assert_eq!(
        restored.status.code(),
        Some(0),
        "restore: {}",
        stderr(&restored)
    );
    assert_eq!(token_of(&home), token, "the token came back with the data");
    assert_eq!(
        json(&restored)["tls_fingerprint"],
        fp.as_str(),
        "so did the certificate"
    );
    assert_eq!(
        deployments_listed(&url, &fp, &token)[0]["deployment"],
        DEPLOYMENT
    );

    // The stack entry goes: so does the stack.
    let bp = blueprint(&home, false);
    let up3 = home.run(&["up", &bp, "-o", "json"]);
    assert_eq!(up3.status.code(), Some(0), "{}", stderr(&up3));
    assert_eq!(json(&up3)["services"], serde_json::json!(["shop=removed"]));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !on_node(&home, "docker service ls -q --filter name=shop_").is_empty() {
        assert!(Instant::now() < deadline, "the stack's service stayed");
        std::thread::sleep(Duration::from_secs(1));
    }

    let down = home.run(&["down", DEPLOYMENT, "--yes"]);
    assert_eq!(down.status.code(), Some(0), "down: {}", stderr(&down));
}
