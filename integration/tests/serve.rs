//! `flotilla serve` end to end: bearer auth, limits, metrics, and a heal triggered by a **real**
//! Prometheus Alertmanager (Debian's `prometheus-alertmanager`, on loopback) whose webhook
//! receiver points at the API, replacing a worker that was killed.

use crate::common::{docker, docker_ok, require_docker, stderr, Home};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A minimal HTTP/1.1 client (Connection: close): (status, body).
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> (u16, String) {
    http_result(addr, method, path, token, body).expect("connect to the API")
}

/// Like `http`, None when the connection cannot be made.
pub fn http_result(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(300))).ok()?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).expect("write head");
    // A server may answer (413) before reading a large body: a failed write is fine then.
    let _ = s.write_all(body);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

/// Kills a child we started (by its pid) when the test ends, however it ends.
struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

#[test]
fn serve_api_auth_metrics_and_alertmanager_webhook_heal() {
    require_docker();
    let home = Home::new();
    let name = "it-serve";
    let _scrub = crate::common::Scrub::new(name);
    let bp = crate::heal_scale::blueprint_pub(&home, name, "10.198.33.0/24", 1, "");
    let up = home.run(&["up", &bp]);
    assert_eq!(up.status.code(), Some(0), "up: {}", stderr(&up));

    // The API on a free loopback port; the token file is created 0600.
    let token_file = home.path().join("api-token");
    let mut child = home
        .cmd()
        .args(["serve", "--listen", "127.0.0.1:0", "--token-file"])
        .arg(&token_file)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn serve");
    let err = child.stderr.take().expect("stderr");
    let serve = Reaper(child);
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut log = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let addr = loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("serve prints its address");
        log.push(line.clone());
        if let Some(a) = line.strip_prefix("flotilla serve: listening on http://") {
            break a.trim().to_string();
        }
    };
    let token = std::fs::read_to_string(&token_file)
        .expect("token")
        .trim()
        .to_string();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&token_file)
            .expect("meta")
            .permissions()
            .mode()
            & 0o777,
        0o600
    );

    // Auth: none and wrong → 401; right → 200. Health and the description need none.
    assert_eq!(http(&addr, "GET", "/v1/deployments", None, b"").0, 401);
    assert_eq!(
        http(&addr, "GET", "/v1/deployments", Some("wrong"), b"").0,
        401
    );
    let (code, body) = http(&addr, "GET", "/v1/deployments", Some(&token), b"");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"deployment\":\"it-serve\""), "{body}");
    assert_eq!(http(&addr, "GET", "/healthz", None, b"").0, 200);
    let (code, doc) = http(&addr, "GET", "/openapi.json", None, b"");
    assert_eq!(code, 200);
    assert!(doc.contains("\"/v1/alerts\""), "{doc}");
    // Limits and errors: a 2 MiB body is refused; an unknown deployment is a JSON 404.
    let big = vec![b' '; 2 * 1024 * 1024];
    assert_eq!(http(&addr, "POST", "/v1/alerts", Some(&token), &big).0, 413);
    let (code, body) = http(&addr, "GET", "/v1/deployments/nope", Some(&token), b"");
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("\"kind\":\"not_found\""), "{body}");
    let (code, body) = http(
        &addr,
        "POST",
        "/v1/deployments/it-serve/scale",
        Some(&token),
        br#"{"groups":{"workerz":2}}"#,
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("did you mean `workers`"), "{body}");
    let (code, body) = http(&addr, "GET", "/v1/deployments/it-serve", Some(&token), b"");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"healthy\":true"), "{body}");

    // A worker dies; Alertmanager (real) fires an alert naming the deployment at the webhook.
    docker_ok(&["stop", "-t", "0", &format!("flotilla-{name}-workers-1")]);
    let am_port = free_port();
    let am_dir = tempfile::tempdir().expect("alertmanager dir");
    let cfg = am_dir.path().join("alertmanager.yml");
    std::fs::write(
        &cfg,
        format!(
            "route:\n  receiver: flotilla\n  group_by: [flotilla_deployment]\n  group_wait: 1s\n  group_interval: 5s\n  repeat_interval: 1h\n\
             receivers:\n  - name: flotilla\n    webhook_configs:\n      - url: http://{addr}/v1/alerts\n        send_resolved: false\n\
             \x20       http_config:\n          authorization:\n            type: Bearer\n            credentials_file: {}\n",
            token_file.display()
        ),
    )
    .expect("config");
    let check = Command::new("amtool")
        .arg("check-config")
        .arg(&cfg)
        .output()
        .expect("amtool (.ci/run installs prometheus-alertmanager)");
    assert!(
        check.status.success(),
        "amtool check-config: {}",
        crate::common::stdout(&check)
    );
    let am = Command::new("prometheus-alertmanager")
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "--storage.path={}",
            am_dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{am_port}"))
        .arg("--cluster.listen-address=")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus-alertmanager (.ci/run installs it)");
    let _am = Reaper(am);
    let am_url = format!("http://127.0.0.1:{am_port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if TcpStream::connect(("127.0.0.1", am_port)).is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "alertmanager did not start");
        std::thread::sleep(Duration::from_millis(200));
    }
    let add = Command::new("amtool")
        .args([
            "alert",
            "add",
            "alertname=FlotillaNodeDown",
            "flotilla_deployment=it-serve",
            "node=workers-1",
            "--alertmanager.url",
            &am_url,
        ])
        .output()
        .expect("amtool");
    assert!(add.status.success(), "amtool alert add: {}", stderr(&add));

    // The webhook heals: the metrics say a replacement happened, the node list is healthy.
    let deadline = Instant::now() + Duration::from_secs(240);
    let metrics = loop {
        let (code, m) = http(&addr, "GET", "/metrics", Some(&token), b"");
        assert_eq!(code, 200);
        if m.contains("flotilla_heals_total{deployment=\"it-serve\",result=\"replaced\"} 1") {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "no heal from the webhook; metrics:\n{m}"
        );
        std::thread::sleep(Duration::from_secs(1));
    };
    assert!(
        metrics.contains("flotilla_replacements_total{deployment=\"it-serve\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("flotilla_webhook_alerts_total{outcome=\"heal_started\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("flotilla_api_requests_total{route=\"/v1/deployments\",code=\"401\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("flotilla_nodes{deployment=\"it-serve\",health=\"unhealthy\"} 0"),
        "{metrics}"
    );
    assert!(
        !docker(&["inspect", &format!("flotilla-{name}-workers-1")])
            .status
            .success(),
        "the dead machine was replaced"
    );
    let (code, body) = http(&addr, "GET", "/v1/deployments/it-serve", Some(&token), b"");
    assert_eq!(code, 200);
    assert!(body.contains("\"healthy\":true"), "{body}");

    // SIGTERM stops the server cleanly; the token never appeared in its output.
    let mut serve = serve;
    let pid = serve.0.id();
    let _ = Command::new("kill").arg(pid.to_string()).status();
    let status = serve.0.wait().expect("wait serve");
    assert_eq!(status.code(), Some(0), "serve exits 0 on SIGTERM");
    while let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
        log.push(line);
    }
    assert!(
        !log.iter().any(|l| l.contains(&token)),
        "the token is never logged"
    );
    let down = home.run(&["down", name, "--yes"]);
    assert_eq!(down.status.code(), Some(0), "down: {}", stderr(&down));
}
