//! Shared state backends against a real PostgreSQL (`integration/postgres.sh`, 127.0.0.1:55432)
//! and a real etcd (`integration/etcd.sh`, 127.0.0.1:52379), both started by
//! `scripts/test-all.sh`: the backend contract on each, bad credentials and unreachable servers,
//! database restarts (alone and under twenty running heals), a lock holder killed mid-run (taken
//! over after the lease, not before) on each, twenty concurrent `heal`s through files, then
//! PostgreSQL, then etcd (moved with `state migrate`), and history/rollback.

use crate::common::{json, require_docker, stderr, stdout, Home};
use flotilla::state::backend::{conformance, EtcdBackend, PostgresBackend, StateBackend};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The PostgreSQL tests restart the server: they take turns (other tests still run alongside).
fn pg_turn() -> std::sync::MutexGuard<'static, ()> {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    TURN.lock().unwrap_or_else(|p| p.into_inner())
}

fn pg_url() -> String {
    std::env::var("FLOTILLA_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://flotilla:flotilla-test@127.0.0.1:55432/flotilla".into())
}

fn etcd_url() -> String {
    std::env::var("FLOTILLA_TEST_ETCD_URL")
        .unwrap_or_else(|_| "etcd://127.0.0.1:52379/flotilla-test".into())
}

fn etcd() -> EtcdBackend {
    EtcdBackend::connect(&etcd_url()).unwrap_or_else(|e| {
        panic!("the test etcd is not reachable ({e}); start it with `integration/etcd.sh start`")
    })
}

fn pg() -> PostgresBackend {
    PostgresBackend::connect(&pg_url()).unwrap_or_else(|e| {
        panic!("the test PostgreSQL is not reachable ({e}); start it with `integration/postgres.sh start`")
    })
}

fn pg_script(verb: &str) {
    let s = crate::common::repo_root().join("integration/postgres.sh");
    let out = Command::new("sh")
        .arg(&s)
        .arg(verb)
        .output()
        .expect("postgres.sh");
    assert!(out.status.success(), "postgres.sh {verb}: {}", stderr(&out));
}

/// `flotilla --backend <url> args...`
fn with_backend(home: &Home, url: &str, args: &[&str]) -> Output {
    let mut all = vec!["--backend", url];
    all.extend_from_slice(args);
    home.run(&all)
}

fn blueprint(home: &Home, name: &str, subnet: &str) -> String {
    let p = home.write(
        &format!("{name}.yaml"),
        &format!(
            "name: {name}\nprovider:\n  kind: docker\n  image: {img}\n  subnet: {subnet}\ncluster:\n  kind: none\ndocker:\n  method: preinstalled\nhealth:\n  unhealthy_grace: 0s\ngroups:\n  hosts:\n    role: worker\n    count: 1\n",
            img = crate::heal_scale::baked_image()
        ),
    );
    p.to_str().expect("utf8").to_string()
}

#[test]
fn postgres_backend_keeps_the_contract_and_survives_a_restart() {
    let _turn = pg_turn();
    let b = pg();
    conformance::run(&b);
    // A restarted server: the next call reconnects instead of failing the run.
    let name = format!("restart-{}", std::process::id());
    let _ = b.delete(&name);
    assert_eq!(
        b.write(&name, b"{}", None, None, "t", None).expect("write"),
        1
    );
    pg_script("restart");
    let back = b
        .read(&name)
        .expect("read after the restart")
        .expect("present");
    assert_eq!(back.version, 1);
    b.delete(&name).expect("delete");
}

/// TLS: the role `flotilla_tls` may only connect encrypted (pg_hba); over TLS with the test CA
/// the whole contract holds; a server certificate nobody vouches for is refused.
#[test]
fn postgres_over_tls_verifies_the_server_and_keeps_the_contract() {
    let _turn = pg_turn();
    let ca =
        std::env::var("FLOTILLA_TEST_PG_CA").unwrap_or_else(|_| "/tmp/flotilla-pg/ca.crt".into());
    let tls_user = pg_url().replace("//flotilla:", "//flotilla_tls:");
    let home = Home::new();
    let plain = with_backend(&home, &tls_user, &["list"]);
    assert_eq!(plain.status.code(), Some(1));
    assert!(
        stderr(&plain).contains("no encryption"),
        "{}",
        stderr(&plain)
    );
    let unverified = with_backend(&home, &format!("{tls_user}?sslmode=require"), &["list"]);
    assert_eq!(unverified.status.code(), Some(1));
    assert!(
        stderr(&unverified).contains("UnknownIssuer"),
        "{}",
        stderr(&unverified)
    );
    let url = format!("{tls_user}?sslmode=verify-full&sslrootcert={ca}");
    let ok = with_backend(&home, &url, &["list"]);
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));
    let b = PostgresBackend::connect(&url).expect("TLS connect");
    conformance::run(&b);
}

#[test]
fn etcd_backend_keeps_the_contract() {
    conformance::run(&etcd());
}

/// etcd over TLS with client certificates (`integration/etcd.sh`: 127.0.0.1:52381, its own CA):
/// the contract holds; without a client certificate, with a CA that did not sign the server's
/// certificate, or in plain text, the server is refused (exit 1, one line, nothing written).
#[test]
fn etcd_over_tls_with_client_certificates_keeps_the_contract() {
    let dir = std::env::var("FLOTILLA_TEST_ETCD_TLS_DIR")
        .unwrap_or_else(|_| "/tmp/flotilla-etcd/tls".into());
    let port = std::env::var("FLOTILLA_TEST_ETCD_TLS_PORT").unwrap_or_else(|_| "52381".into());
    let base = format!("etcd://127.0.0.1:{port}/flotilla-tls-test");
    let url = format!("{base}?cacert={dir}/ca.crt&cert={dir}/client.crt&key={dir}/client.key");
    let b = EtcdBackend::connect(&url).unwrap_or_else(|e| {
        panic!("the test etcd with TLS is not reachable ({e}); start it with `integration/etcd.sh start`")
    });
    conformance::run(&b);
    let home = Home::new();
    for refused in [
        base.clone(),
        format!("{base}?cacert={dir}/ca.crt"),
        format!("{base}?cacert={dir}/other-ca.crt&cert={dir}/client.crt&key={dir}/client.key"),
    ] {
        let o = with_backend(&home, &refused, &["list"]);
        assert_eq!(o.status.code(), Some(1), "{refused}: {}", stderr(&o));
        assert_eq!(stderr(&o).trim().lines().count(), 1, "{}", stderr(&o));
        assert!(
            !stderr(&o).contains("client.key"),
            "key paths are redacted: {}",
            stderr(&o)
        );
    }
    let ok = with_backend(&home, &url, &["list"]);
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));
    assert!(!home.path().join("deployments").exists());
}

#[test]
fn bad_credentials_and_an_unreachable_server_fail_in_one_line_without_local_fallback() {
    let _turn = pg_turn();
    let home = Home::new();
    let wrong = pg_url().replace(":flotilla-test@", ":not-the-password@");
    let o = with_backend(&home, &wrong, &["list"]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("password authentication failed"), "{e}");
    assert!(
        !e.contains("not-the-password"),
        "the password is never printed: {e}"
    );
    assert_eq!(e.trim().lines().count(), 1, "one line: {e}");
    let o = with_backend(
        &home,
        "postgres://flotilla@127.0.0.1:1/flotilla",
        &["status", "x"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("127.0.0.1:1"), "{}", stderr(&o));
    let o = with_backend(&home, "etcd://127.0.0.1:1/x", &["list"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o).trim().lines().count(),
        1,
        "one line: {}",
        stderr(&o)
    );
    assert!(
        !home.path().join("deployments").exists(),
        "nothing was written locally instead"
    );
}

/// Heal processes started together, all waiting for the lock: every one must finish (none
/// may see a conflicting write or a lost lock), and the versions they wrote must not
/// interleave (one holder at a time).
fn concurrent_heals(home: &Home, backend: Option<&str>, name: &str, n: usize) {
    let before = versions(home, backend, name);
    let children: Vec<_> = (0..n)
        .map(|_| {
            let mut c = home.cmd();
            if let Some(b) = backend {
                c.args(["--backend", b]);
            }
            c.args(["heal", name, "--wait-lock", "5m", "-o", "json", "-q"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn heal")
        })
        .collect();
    // Every child is reaped before anything is asserted, so a failing assertion leaves no
    // process behind.
    let outputs: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().expect("wait heal"))
        .collect();
    for out in outputs {
        assert_eq!(
            out.status.code(),
            Some(0),
            "a heal failed: {}",
            stderr(&out)
        );
        assert!(json(&out)["replaced"].as_array().is_some_and(Vec::is_empty));
    }
    let after = versions(home, backend, name);
    assert!(
        after.0 >= before.0 + n as u64,
        "{n} heals each wrote: {before:?} -> {after:?}"
    );
    // Writers in version order: each heal's writes are contiguous.
    let mut seen: Vec<String> = Vec::new();
    for w in after.1.iter().rev() {
        if seen.last() != Some(w) {
            assert!(
                !seen.contains(w),
                "writes of {w} interleaved with another heal: {:?}",
                after.1
            );
            seen.push(w.clone());
        }
    }
}

/// (newest version, writers newest first) from `state history`.
fn versions(home: &Home, backend: Option<&str>, name: &str) -> (u64, Vec<String>) {
    let mut args = vec![];
    if let Some(b) = backend {
        args.extend(["--backend", b]);
    }
    args.extend(["state", "history", name, "-o", "json"]);
    let o = home.run(&args);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let h = json(&o);
    let rows = h.as_array().expect("history");
    (
        rows.first()
            .and_then(|r| r["version"].as_u64())
            .unwrap_or(0),
        rows.iter()
            .map(|r| r["written_by"].as_str().unwrap_or_default().to_string())
            .collect(),
    )
}

/// The versions `state history` lists (one per run), newest first.
fn run_versions(home: &Home, url: &str, name: &str) -> Vec<u64> {
    let o = with_backend(home, url, &["state", "history", name, "-o", "json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let rows = json(&o);
    let versions: Vec<u64> = rows
        .as_array()
        .map(|r| r.iter().filter_map(|e| e["version"].as_u64()).collect())
        .unwrap_or_default();
    assert!(versions.len() >= 2, "at least two runs: {rows}");
    versions
}

#[test]
fn twenty_heals_at_once_through_files_postgres_and_etcd() {
    require_docker();
    let _turn = pg_turn();
    let home = Home::new();
    let name = "it-team";
    let _scrub = crate::common::Scrub::new(name);
    let url = pg_url();
    let b = pg();
    let _ = b.delete(name);
    let _ = b.force_unlock(name);
    let bp = blueprint(&home, name, "10.198.38.0/24");
    let up = home.run(&["up", &bp]);
    assert_eq!(up.status.code(), Some(0), "up: {}", stderr(&up));

    // The file backend: history carries local writers only, so interleaving shows as one writer;
    // what matters is that all twenty finish and each wrote.
    concurrent_heals(&home, None, name, 20);

    // Move it to PostgreSQL; the local state goes, the working files stay.
    let m = home.run(&[
        "state",
        "migrate",
        name,
        "--to",
        &url,
        "--remove-source",
        "-o",
        "json",
    ]);
    assert_eq!(m.status.code(), Some(0), "migrate: {}", stderr(&m));
    assert!(!home
        .path()
        .join("deployments")
        .join(name)
        .join("state.json")
        .exists());
    let st = with_backend(&home, &url, &["status", name, "-o", "json"]);
    assert_eq!(
        st.status.code(),
        Some(0),
        "status through postgres: {}",
        stderr(&st)
    );
    assert_eq!(json(&st)["healthy"], true);

    // Another operator's machine: an empty home, the same backend — the key comes with it.
    let other = Home::new();
    let st = with_backend(&other, &url, &["status", name, "-o", "json"]);
    assert_eq!(
        st.status.code(),
        Some(0),
        "status from another home: {}",
        stderr(&st)
    );
    assert_eq!(json(&st)["nodes"][0]["ssh"], "ok", "{}", stdout(&st));

    // Twenty more through PostgreSQL, with the server restarted while they run: in-flight
    // statements are retried on a new connection, and leases outlive the short outage.
    let restarter = std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(6));
        pg_script("restart");
    });
    concurrent_heals(&home, Some(&url), name, 20);
    restarter.join().expect("restart thread");

    // History (one entry per run) and rollback to the run before the last.
    let (latest, _) = versions(&home, Some(&url), name);
    let runs = run_versions(&home, &url, name);
    let previous = runs[1];
    // The SSH key is stored once, in the current record, never in a run of the history.
    let current = b.read(name).expect("read").expect("stored");
    assert!(
        String::from_utf8_lossy(&current.body).contains("PRIVATE KEY"),
        "the key travels with the state"
    );
    for v in &runs {
        let doc = b.read_version(name, *v).expect("read a run").expect("kept");
        assert!(
            !String::from_utf8_lossy(&doc).contains("PRIVATE KEY"),
            "run {v} holds a copy of the key"
        );
    }
    let show = with_backend(
        &home,
        &url,
        &["state", "show", name, "--version", &previous.to_string()],
    );
    assert_eq!(show.status.code(), Some(0), "{}", stderr(&show));
    assert_eq!(json(&show)["deployment"], name);
    let rb = with_backend(
        &home,
        &url,
        &[
            "state",
            "rollback",
            name,
            "--to",
            &previous.to_string(),
            "--yes",
        ],
    );
    assert_eq!(rb.status.code(), Some(0), "{}", stderr(&rb));
    assert_eq!(versions(&home, Some(&url), name).0, latest + 1);

    let down = with_backend(&home, &url, &["down", name, "--yes"]);
    assert_eq!(down.status.code(), Some(0), "down: {}", stderr(&down));
    assert!(
        b.read(name).expect("read").is_none(),
        "down removed the state from postgres"
    );
}

#[test]
fn a_killed_lock_holder_is_taken_over_after_its_lease_not_before_postgres() {
    let _turn = pg_turn();
    let _ = pg();
    killed_holder(&pg_url(), "it-lease-pg", "10.198.39.0/24", true);
}

#[test]
fn a_killed_lock_holder_is_taken_over_after_its_lease_not_before_etcd() {
    let _ = etcd();
    killed_holder(&etcd_url(), "it-lease-etcd", "10.198.27.0/24", false);
}

/// The blueprint can name the backend (`state.backend`) for `up`/`plan`; a different
/// --backend is refused rather than splitting the state.
#[test]
fn a_blueprint_names_its_backend_and_a_conflicting_flag_is_refused() {
    let home = Home::new();
    let url = etcd_url();
    let bp = home.write(
        "named.yaml",
        &format!("name: it-named\nprovider:\n  kind: docker\ncluster:\n  kind: none\nstate:\n  backend: {url}\ngroups:\n  hosts:\n    role: worker\n    count: 1\n"),
    );
    let bp = bp.to_str().expect("utf8");
    let clash = home.run(&["--backend", "file", "plan", bp]);
    assert_eq!(clash.status.code(), Some(2), "{}", stderr(&clash));
    assert!(stderr(&clash).contains("use one"), "{}", stderr(&clash));
    let bad = home.write("bad.yaml", "name: x\nprovider:\n  kind: docker\ncluster:\n  kind: none\nstate:\n  backend: redis://h\ngroups:\n  hosts:\n    role: worker\n    count: 1\n");
    let v = home.run(&["validate", bad.to_str().expect("utf8")]);
    assert_eq!(v.status.code(), Some(2));
    assert!(stderr(&v).contains("state.backend"), "{}", stderr(&v));
}

fn killed_holder(url: &str, name: &'static str, subnet: &str, restart_db: bool) {
    require_docker();
    let home = Home::new();
    let _scrub = crate::common::Scrub::new(name);
    let _ = with_backend(&home, url, &["lock", "force-unlock", name, "--yes"]);
    let bp = blueprint(&home, name, subnet);

    // The first up is SIGKILLed right after creating its machine (a test hook pauses it
    // there): the lock stays until its lease runs out.
    let marker = home.path().join("paused");
    let mut first = home
        .cmd()
        .args(["--backend", url, "up", &bp])
        .env("FLOTILLA_FAULT_PAUSE_AT", "after-create")
        .env("FLOTILLA_FAULT_PAUSE_FILE", &marker)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("up");
    let deadline = Instant::now() + Duration::from_secs(180);
    while !marker.exists() {
        assert!(
            Instant::now() < deadline,
            "the first up never reached after-create"
        );
        assert!(
            first.try_wait().expect("try_wait").is_none(),
            "the first up ended early"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    first.kill().expect("SIGKILL the lock holder");
    let killed = first.wait().expect("reap");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&killed),
        Some(9),
        "killed by SIGKILL"
    );
    let died = Instant::now();
    let st = with_backend(&home, url, &["lock", "status", name, "-o", "json"]);
    assert_eq!(st.status.code(), Some(3), "still locked: {}", stdout(&st));
    assert_eq!(json(&st)["holder"]["command"], "up");
    let early = with_backend(&home, url, &["up", &bp]);
    assert_eq!(
        early.status.code(),
        Some(3),
        "not taken before the lease ends: {}",
        stderr(&early)
    );

    if restart_db {
        // A database restart in between changes nothing about the lease.
        pg_script("restart");
    }

    let waited = with_backend(&home, url, &["up", &bp, "--wait-lock", "2m", "-o", "json"]);
    assert_eq!(
        waited.status.code(),
        Some(0),
        "taken over after the lease: {}",
        stderr(&waited)
    );
    let after = died.elapsed();
    assert!(
        after >= Duration::from_secs(10),
        "the lock was taken {after:?} after its holder died; the lease is 15 s"
    );
    let r = json(&waited);
    assert_eq!(
        r["machines"]["create"].as_array().map(Vec::len),
        Some(0),
        "the machine the dead run made is adopted, not made twice: {r}"
    );

    let down = with_backend(&home, url, &["down", name, "--yes"]);
    assert_eq!(down.status.code(), Some(0), "down: {}", stderr(&down));
    let (c, v, n) = crate::common::labelled(name);
    assert!(
        c.is_empty() && v.is_empty() && n.is_empty(),
        "nothing orphaned"
    );
}
