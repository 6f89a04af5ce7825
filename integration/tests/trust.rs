//! Trust boundaries, tried as an attacker would, one table per boundary. Every case proves the
//! attack had no effect — no file outside the flotilla home, no command run on a node, no real
//! heal, no metric series made up by a caller — not only that a message was printed.
//!
//! * names × every entry (CLI commands, `import`, API routes, a state that names another
//!   deployment, blueprint names);
//! * hostile values × every templated or argv field (refused at validate time with the field's
//!   location), inputs that try to add keys, template functions that read the environment or
//!   allocate without bound;
//! * archives: paths, links, duplicates, sizes, hostile key paths;
//! * the API: route names, unreadable bodies, an idle-connection flood, metric series, webhook
//!   cooldown, the Bearer scheme's case;
//! * closed pipes on stdout and stderr.

use crate::common::{json, stderr, stdout, Home};
use crate::serve::http;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Names that must never become a path, a key or an option.
const HOSTILE_NAMES: &[&str] = &[
    "../escape",
    "../../flotilla-escape",
    "..",
    "a/b",
    "/tmp/flotilla-escape-abs",
    "x\ny",
    "UPPER",
    "a b",
];

/// A sandbox folder holding only the flotilla home `h`: anything else that appears in it (or
/// next to it in /tmp) was written outside the home.
struct Sandbox {
    outer: Home,
}

impl Sandbox {
    fn new() -> Self {
        let outer = Home::new();
        std::fs::create_dir(outer.path().join("h")).expect("home");
        Self { outer }
    }

    fn home(&self) -> PathBuf {
        self.outer.path().join("h")
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        let home = self.home();
        let mut all = vec!["--home", home.to_str().expect("utf8")];
        all.extend_from_slice(args);
        self.outer.run(&all)
    }

    /// Nothing was created next to the home, nor under /tmp by an absolute or `..` name.
    fn assert_nothing_outside(&self) {
        let mut entries: Vec<String> = std::fs::read_dir(self.outer.path())
            .expect("sandbox")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        entries.retain(|e| e != "h" && !e.ends_with(".tar") && !e.ends_with(".yaml"));
        assert!(entries.is_empty(), "written outside the home: {entries:?}");
        for p in [
            "/tmp/flotilla-escape",
            "/tmp/flotilla-escape-abs",
            "/flotilla-escape",
        ] {
            assert!(!Path::new(p).exists(), "{p} was created");
        }
    }

    /// The home's deployments folder holds exactly these names.
    fn deployments(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.home().join("deployments"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

/// Every command that takes a deployment name, for one name.
fn entries(name: &str, out: &str) -> Vec<Vec<String>> {
    let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    vec![
        v(&["status", name]),
        v(&["status", name, "--no-probe"]),
        v(&["outputs", name]),
        v(&["down", name, "--yes"]),
        v(&["heal", name]),
        v(&["heal", name, "--dry-run"]),
        v(&["scale", name, "workers=1", "--yes"]),
        v(&["ssh", name, "workers-1", "--", "true"]),
        v(&["ps", name]),
        v(&["stop", name, "workers-1", "c", "--yes"]),
        v(&["export", name, "--file", out]),
        v(&["extend", name, "1h"]),
        v(&["kubeconfig", name]),
        v(&["lock", "status", name]),
        v(&["lock", "force-unlock", name, "--yes"]),
        v(&["state", "history", name]),
        v(&["state", "show", name]),
        v(&["state", "rollback", name, "--to", "1", "--yes"]),
        v(&["manager", "status", name]),
        v(&["manager", "recover", name]),
        v(&["manager", "backup", name, "--file", out]),
    ]
}

#[test]
fn names_that_could_leave_the_home_are_refused_at_every_entry() {
    let sb = Sandbox::new();
    let out = sb.outer.path().join("out.tar");
    let out = out.to_str().expect("utf8");
    let mut runs = 0;
    for name in HOSTILE_NAMES {
        for args in entries(name, out) {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let o = sb.run(&args);
            runs += 1;
            assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
            assert!(
                stderr(&o).contains("is not a valid deployment name"),
                "{args:?}: {}",
                stderr(&o)
            );
            assert!(!stderr(&o).contains('\u{0}'));
        }
    }
    assert!(runs >= 150, "{runs} cases");
    assert_eq!(sb.deployments(), Vec::<String>::new());
    assert!(!Path::new(out).exists(), "no archive was written");
    sb.assert_nothing_outside();
}

#[test]
fn a_blueprint_name_from_an_input_is_checked_like_any_name() {
    let sb = Sandbox::new();
    let bp = sb.outer.write(
        "named.yaml",
        "name: \"{{ inputs.n }}\"\ninputs:\n  n: demo\nprovider:\n  kind: docker\ncluster:\n  kind: swarm\ngroups:\n  managers: {role: manager, count: 1}\n",
    );
    let bp = bp.to_str().expect("utf8");
    for name in HOSTILE_NAMES {
        let set = format!("n={name}");
        for args in [
            vec!["validate", bp, "--set", &set],
            vec!["plan", bp, "--set", &set],
            vec!["up", bp, "--set", &set, "--yes"],
        ] {
            let o = sb.run(&args);
            assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
            assert!(
                stderr(&o).contains("not a valid deployment name"),
                "{}",
                stderr(&o)
            );
        }
    }
    assert_eq!(sb.deployments(), Vec::<String>::new());
    sb.assert_nothing_outside();
}

/// The fields of an export archive, to be tampered with.
struct Archive {
    entries: Vec<(String, Vec<u8>, tar::EntryType)>,
}

impl Archive {
    fn new() -> Self {
        Self {
            entries: Vec::new(),
        }
    }

    fn file(mut self, name: &str, body: &[u8]) -> Self {
        self.entries
            .push((name.into(), body.to_vec(), tar::EntryType::Regular));
        self
    }

    fn link(mut self, name: &str, target: &str) -> Self {
        self.entries.push((
            name.into(),
            target.as_bytes().to_vec(),
            tar::EntryType::Symlink,
        ));
        self
    }

    fn write(&self, path: &Path) {
        let mut b = tar::Builder::new(Vec::new());
        for (name, body, kind) in &self.entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(0o600);
            if *kind == tar::EntryType::Symlink {
                h.set_size(0);
                // Names with `..` are written raw: `set_path` would refuse them.
                raw_name(&mut h, name);
                h.set_link_name(std::str::from_utf8(body).expect("utf8"))
                    .expect("link");
                h.set_cksum();
                b.append(&h, std::io::empty()).expect("append");
            } else {
                h.set_size(body.len() as u64);
                raw_name(&mut h, name);
                h.set_cksum();
                b.append(&h, body.as_slice()).expect("append");
            }
        }
        std::fs::write(path, b.into_inner().expect("tar")).expect("write");
    }
}

fn raw_name(h: &mut tar::Header, name: &str) {
    let field = &mut h.as_old_mut().name;
    field.fill(0);
    field[..name.len()].copy_from_slice(name.as_bytes());
}

fn manifest(name: &str) -> Vec<u8> {
    serde_json::json!({"format": 1, "deployment": name, "exported_at": "2026-12-01T00:00:00Z", "flotilla_version": "0.1.0"})
        .to_string()
        .into_bytes()
}

/// A state with no nodes recorded yet, whose blueprint is one existing host at a loopback port
/// where nothing listens: every command can act on it at once, and nothing is ever reached.
fn state(name: &str) -> serde_json::Value {
    let recorded = serde_json::json!({
        "name": name,
        "provider": {"kind": "static"},
        "cluster": {"kind": "none"},
        "groups": {"workers": {"role": "worker", "count": 1, "hosts": ["root@127.0.0.1:1"]}},
        "health": {"alert_cooldown": "10m"},
        "ssh": {"connect_timeout": "2s", "boot_timeout": "2s"},
    });
    serde_json::json!({
        "format_version": 1,
        "deployment": name,
        "provider": "static",
        "cluster": {"kind": "none"},
        "blueprint_path": "/etc/flotilla-archive-said-so.yaml",
        "blueprint_rendered": recorded.to_string(),
        "inputs": {},
        "ssh_user": "root",
        "ssh_private_key": "",
        "nodes": {},
        "next_index": {},
        "outputs": {},
        "runs": [],
        "created_at": "2026-12-01T00:00:00Z",
        "updated_at": "2026-12-01T00:00:00Z",
    })
}

fn state_bytes(name: &str) -> Vec<u8> {
    state(name).to_string().into_bytes()
}

#[test]
fn export_archives_cannot_write_or_read_outside_the_home() {
    let sb = Sandbox::new();
    let key =
        b"-----BEGIN OPENSSH PRIVATE KEY-----\nnot really\n-----END OPENSSH PRIVATE KEY-----\n";
    let mut other = state("trust-other");
    other["deployment"] = "../escape".into();
    let mut bad_user = state("trust-user");
    bad_user["ssh_user"] = "-oProxyCommand=touch /tmp/flotilla-escape".into();
    let mut bad_node = state("trust-node");
    bad_node["nodes"] = serde_json::json!({"../x": {"name": "../x", "group": "workers", "role": "worker", "machine_id": null, "run_token": "", "phase": "creating", "private_ip": null, "public_ip": null, "ssh_port": 22, "ssh_user": "root", "host_key": null, "os": null, "docker_version": null, "cluster_id": null, "created_at": ""}});
    let mut needs_key = state("trust-key");
    needs_key["ssh_private_key"] = "/etc/shadow".into();
    let cases: Vec<(&str, Archive, &str)> = vec![
        (
            "an entry that walks out",
            Archive::new()
                .file("manifest.json", &manifest("trust-a"))
                .file("state.json", &state_bytes("trust-a"))
                .file("../escape", b"x"),
            "unexpected entry",
        ),
        (
            "an absolute entry",
            Archive::new()
                .file("manifest.json", &manifest("trust-a"))
                .file("/tmp/flotilla-escape", b"x")
                .file("state.json", &state_bytes("trust-a")),
            "unexpected entry",
        ),
        (
            "a link in place of a carried file",
            Archive::new()
                .file("manifest.json", &manifest("trust-a"))
                .file("state.json", &state_bytes("trust-a"))
                .link("known_hosts", "/etc/passwd"),
            "not a regular file",
        ),
        (
            "a file given twice",
            Archive::new()
                .file("manifest.json", &manifest("trust-a"))
                .file("state.json", &state_bytes("trust-a"))
                .file("state.json", &state_bytes("trust-a")),
            "appears twice",
        ),
        (
            "a manifest naming a path",
            Archive::new()
                .file("manifest.json", &manifest("../escape"))
                .file("state.json", &state_bytes("trust-a")),
            "not a valid deployment name",
        ),
        (
            "a state naming another deployment",
            Archive::new()
                .file("manifest.json", &manifest("trust-other"))
                .file("state.json", other.to_string().as_bytes()),
            "not a valid deployment name",
        ),
        (
            "an ssh user that is an option",
            Archive::new()
                .file("manifest.json", &manifest("trust-user"))
                .file("state.json", bad_user.to_string().as_bytes()),
            "not a valid SSH user",
        ),
        (
            "a node name that is a path",
            Archive::new()
                .file("manifest.json", &manifest("trust-node"))
                .file("state.json", bad_node.to_string().as_bytes()),
            "not a valid node name",
        ),
        (
            "a key path and no key",
            Archive::new()
                .file("manifest.json", &manifest("trust-key"))
                .file("state.json", needs_key.to_string().as_bytes()),
            "has no id_ed25519",
        ),
        (
            "a key larger than any key",
            Archive::new()
                .file("manifest.json", &manifest("trust-a"))
                .file("state.json", &state_bytes("trust-a"))
                .file("id_ed25519", &vec![b'k'; 100_000]),
            "larger than",
        ),
    ];
    let path = sb.outer.path().join("case.tar");
    for (what, archive, expect) in cases {
        archive.write(&path);
        let o = sb.run(&["import", path.to_str().expect("utf8")]);
        assert_eq!(o.status.code(), Some(2), "{what}: {}", stderr(&o));
        assert!(stderr(&o).contains(expect), "{what}: {}", stderr(&o));
        assert!(
            sb.deployments().is_empty(),
            "{what}: {:?}",
            sb.deployments()
        );
    }
    sb.assert_nothing_outside();

    // A good archive whose state points its key and blueprint at files of its choosing: the
    // key becomes the deployment's own file, the blueprint path its own folder.
    needs_key["deployment"] = "trust-key".into();
    Archive::new()
        .file("manifest.json", &manifest("trust-key"))
        .file("state.json", needs_key.to_string().as_bytes())
        .file("id_ed25519", key)
        .write(&path);
    let o = sb.run(&["import", path.to_str().expect("utf8"), "-o", "json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let shown = sb.run(&["state", "show", "trust-key"]);
    let st = json(&shown);
    let dir = sb.home().join("deployments/trust-key");
    assert_eq!(
        st["ssh_private_key"],
        dir.join("id_ed25519").display().to_string()
    );
    assert_eq!(
        st["blueprint_path"],
        dir.join("blueprint.yaml").display().to_string()
    );
    assert!(st["imported_from"].is_string(), "{st}");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.join("id_ed25519"))
            .expect("key")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    sb.assert_nothing_outside();
}

#[test]
fn an_unreadable_or_misnamed_state_is_an_error_row_and_never_an_orphan() {
    let sb = Sandbox::new();
    let dir = sb.home().join("deployments/trust-bad");
    std::fs::create_dir_all(&dir).expect("dir");
    let mut st = state("trust-bad");
    st["deployment"] = "trust-elsewhere".into();
    std::fs::write(dir.join("state.json"), st.to_string()).expect("write");
    let dir2 = sb.home().join("deployments/trust-damaged");
    std::fs::create_dir_all(&dir2).expect("dir");
    std::fs::write(dir2.join("state.json"), "{not json").expect("write");
    let o = sb.run(&["list", "-o", "json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let rows = json(&o);
    let rows = rows.as_array().expect("rows");
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows.iter().all(|r| r["error"].is_string()), "{rows:?}");
    let text = sb.run(&["list"]);
    assert!(
        stdout(&text).contains("cannot be read"),
        "{}",
        stdout(&text)
    );
    // gc reports them and exits 7; the states stay.
    let gc = sb.run(&["gc", "--yes", "--grace", "0s", "-o", "json"]);
    assert_eq!(gc.status.code(), Some(7), "{}", stderr(&gc));
    let report = json(&gc);
    assert_eq!(
        report["failed"].as_array().map(Vec::len),
        Some(2),
        "{report}"
    );
    assert!(dir.join("state.json").exists() && dir2.join("state.json").exists());
    let status = sb.run(&["status", "trust-bad"]);
    assert_eq!(status.status.code(), Some(1), "{}", stderr(&status));
    assert!(stderr(&status).contains("stored as"), "{}", stderr(&status));
}

/// (what, YAML to splice in, field path the error must name)
fn hostile_fields() -> Vec<(&'static str, String, &'static str)> {
    let h = "x'; touch /tmp/flotilla-pwned; echo '";
    vec![
        ("docker version", format!("docker:\n  version: \"{h}\"\n"), "docker.version"),
        ("proxy with a quote", "docker:\n  proxy:\n    http: 'http://p:3128/\"; touch /tmp/x'\n".into(), "docker.proxy.http"),
        ("proxy not a URL", "docker:\n  proxy:\n    https: 'file:///etc/passwd'\n".into(), "docker.proxy.https"),
        ("no_proxy with a command", "docker:\n  proxy:\n    no_proxy: 'a,$(id)'\n".into(), "docker.proxy.no_proxy"),
        ("apt proxy with a newline", "docker:\n  apt_proxy: \"http://p:3142/\\nAPT::Update::Pre-Invoke {\\\"touch /tmp/x\\\"};\"\n".into(), "docker.apt_proxy"),
        ("kubernetes version", format!("cluster:\n  kind: kubernetes\n  version: \"1.31; {h}\"\n"), "cluster.version"),
        ("control-plane endpoint", "cluster:\n  kind: kubernetes\n  kubernetes:\n    control_plane_endpoint: '-x; id'\n".into(), "cluster.kubernetes.control_plane_endpoint"),
        ("CNI", "cluster:\n  kind: kubernetes\n  kubernetes:\n    cni: 'flannel; id'\n".into(), "cluster.kubernetes.cni"),
        ("manager image", format!("manager:\n  image: \"{h}\"\n"), "manager.image"),
        ("mesos image", "cluster:\n  kind: mesos\n  mesos:\n    master_image: '-v /:/host'\n".into(), "cluster.mesos.master_image"),
        ("container repository", "containers:\n  web:\n    groups: [managers]\n    image: {repository: '--privileged', tag: latest}\n".into(), "containers.web.image.repository"),
        ("container tag", "containers:\n  web:\n    groups: [managers]\n    image: {repository: busybox, tag: 'x y'}\n".into(), "containers.web.image.tag"),
        ("container env name", "containers:\n  web:\n    groups: [managers]\n    image: {repository: busybox}\n    env: {'A B': x}\n".into(), "containers.web.env.A B"),
        ("container label with a newline", "containers:\n  web:\n    groups: [managers]\n    image: {repository: busybox}\n    labels: {k: \"a\\nb\"}\n".into(), "containers.web.labels.k"),
        ("group label key", "groups:\n  managers:\n    role: manager\n    count: 1\n    labels: {'-x': y}\n".into(), "groups.managers.labels.-x"),
        ("ssh user", "ssh:\n  user: '-oProxyCommand=touch /tmp/x'\n".into(), "ssh.user"),
        ("ssh jump", "ssh:\n  jump: 'ops@-oProxyCommand=x'\n".into(), "ssh.jump"),
        ("resolve_image", "services:\n  s:\n    definition: {version: '3.8'}\n    resolve_image: 'never --detach'\n".into(), "services.s.resolve_image"),
    ]
}

#[test]
fn hostile_values_in_templated_and_argv_fields_are_refused_with_their_field() {
    let home = Home::new();
    let base = "name: trust-values\nprovider:\n  kind: docker\ncluster:\n  kind: swarm\ngroups:\n  managers:\n    role: manager\n    count: 1\n";
    for (what, snippet, field) in hostile_fields() {
        // A later top-level key replaces the base's (`groups`, `cluster`).
        let top: Vec<&str> = snippet
            .lines()
            .filter(|l| !l.starts_with(' ') && l.ends_with(':'))
            .collect();
        let mut text = String::new();
        let mut skip = false;
        for l in base.lines() {
            if !l.starts_with(' ') {
                skip = top.contains(&l);
            }
            if !skip {
                text.push_str(l);
                text.push('\n');
            }
        }
        text.push_str(&snippet);
        let bp = home.write("v.yaml", &text);
        let o = home.run(&["validate", bp.to_str().expect("utf8")]);
        assert_eq!(o.status.code(), Some(2), "{what}: {}", stderr(&o));
        assert!(
            stderr(&o).contains(field),
            "{what}: expected {field}: {}",
            stderr(&o)
        );
        assert!(
            stderr(&o).contains("v.yaml:"),
            "{what}: a location: {}",
            stderr(&o)
        );
    }
    assert!(!Path::new("/tmp/flotilla-pwned").exists());
}

#[test]
fn inputs_are_one_scalar_and_templates_cannot_read_the_environment() {
    let home = Home::new();
    let bp = home.write(
        "in.yaml",
        "name: trust-inputs\ndescription: \"env {{ inputs.env }}\"\ninputs:\n  env: dev\nprovider:\n  kind: docker\ncluster:\n  kind: swarm\ngroups:\n  managers: {role: manager, count: 1}\n",
    );
    let bp = bp.to_str().expect("utf8");
    for hostile in [
        "dev\"\nprovider: {kind: static}\nx: \"",
        "dev\ngroups: {evil: {role: manager, count: 99}}",
        "{kind: static}",
        "dev\" , \"k\": \"v",
    ] {
        let set = format!("env={hostile}");
        let o = home.run(&["validate", bp, "--set", &set, "-o", "json"]);
        assert_eq!(o.status.code(), Some(0), "{hostile:?}: {}", stderr(&o));
        let r = json(&o);
        assert_eq!(r["provider"], "docker", "{hostile:?}: {r}");
        assert_eq!(r["groups"].as_array().map(Vec::len), Some(1), "{r}");
    }
    // Conditions still see the values (Tera escapes their operands too).
    let cond = home.write(
        "cond.yaml",
        "name: trust-cond\ninputs:\n  env: dev\n  cloud: \"\"\nprovider:\n  kind: docker\ncluster:\n  kind: swarm\ngroups:\n  managers: {role: manager, count: 1}\n{% if inputs.env == \"prod\" %}  workers: {role: worker, count: 3}\n{% endif %}{% if inputs.cloud %}  extra: {role: worker, count: 1}\n{% endif %}",
    );
    let cond = cond.to_str().expect("utf8");
    for (set, groups) in [("env=dev", 1), ("env=prod", 2)] {
        let o = home.run(&["validate", cond, "--set", set, "-o", "json"]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert_eq!(
            json(&o)["groups"].as_array().map(Vec::len),
            Some(groups),
            "{set}"
        );
    }
    let o = home.run(&["validate", cond, "--set", "cloud=x", "-o", "json"]);
    assert_eq!(json(&o)["groups"].as_array().map(Vec::len), Some(2));
    std::env::set_var("FLOTILLA_TRUST_SECRET", "s3cret");
    for (what, text, expect) in [
        ("get_env", "name: \"{{ get_env(name='FLOTILLA_TRUST_SECRET') }}\"\n", "get_env is not available"),
        ("a range bomb", "name: x\n{% for i in range(end=100000000) %}{% endfor %}\n", "at most 10000"),
        ("nested loops", "name: x\n{% for i in range(end=500) %}{% for j in range(end=500) %}{% endfor %}{% endfor %}\n", "at most 10000"),
    ] {
        let p = home.write("t.yaml", text);
        let started = Instant::now();
        let o = home
            .cmd()
            .env("FLOTILLA_TRUST_SECRET", "s3cret")
            .args(["validate", p.to_str().expect("utf8")])
            .output()
            .expect("run");
        assert_eq!(o.status.code(), Some(2), "{what}: {}", stderr(&o));
        assert!(stderr(&o).contains(expect), "{what}: {}", stderr(&o));
        assert!(!stderr(&o).contains("s3cret") && !stdout(&o).contains("s3cret"));
        assert!(started.elapsed() < Duration::from_secs(20), "{what} was bounded");
    }
}

#[test]
fn a_literal_template_in_a_recorded_blueprint_stays_literal() {
    // A Docker log tag is Go-template text; the recorded blueprint is parsed, never rendered.
    let sb = Sandbox::new();
    let mut st = state("trust-literal");
    let recorded = serde_json::json!({
        "name": "trust-literal",
        "provider": {"kind": "static"},
        "cluster": {"kind": "none"},
        "groups": {"workers": {"role": "worker", "count": 1, "hosts": ["root@127.0.0.1:1"]}},
        "docker": {"daemon": {"log-opts": {"tag": "{{.Name}}/{{.ID}}"}}},
        "outputs": {"where": "{{ deployment }}"},
    });
    st["blueprint_rendered"] = recorded.to_string().into();
    let path = sb.outer.path().join("lit.tar");
    Archive::new()
        .file("manifest.json", &manifest("trust-literal"))
        .file("state.json", st.to_string().as_bytes())
        .write(&path);
    let o = sb.run(&["import", path.to_str().expect("utf8")]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // Before, the second rendering broke on `{{.Name}}`: "no longer validates", exit 1.
    for args in [
        vec!["status", "trust-literal", "--no-probe", "-o", "json"],
        vec!["heal", "trust-literal", "--dry-run", "-o", "json"],
    ] {
        let o = sb.run(&args);
        assert!(
            !stderr(&o).contains("no longer validates"),
            "{args:?}: {}",
            stderr(&o)
        );
        assert!(
            matches!(o.status.code(), Some(0 | 4)),
            "{args:?}: {}",
            stderr(&o)
        );
        assert_eq!(json(&o)["deployment"], "trust-literal", "{}", stdout(&o));
    }
    let shown = json(&sb.run(&["state", "show", "trust-literal"]));
    assert!(
        shown["blueprint_rendered"]
            .as_str()
            .is_some_and(|b| b.contains("{{.Name}}/{{.ID}}")),
        "{shown}"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

/// `flotilla serve` on loopback for a sandbox, stopped (by pid) when dropped.
struct Server {
    child: std::process::Child,
    addr: String,
    token: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(sb: &Sandbox) -> Server {
    let addr = format!("127.0.0.1:{}", free_port());
    let home = sb.home();
    let child = sb
        .outer
        .cmd()
        .args([
            "--home",
            home.to_str().expect("utf8"),
            "serve",
            "--listen",
            &addr,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(Instant::now() < deadline, "serve did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let token = std::fs::read_to_string(home.join("api-token"))
        .expect("token")
        .trim()
        .to_string();
    Server { child, addr, token }
}

/// The stored state's version (every write, step or run end, counts one).
fn state_version(sb: &Sandbox, name: &str) -> String {
    std::fs::read_to_string(
        sb.home()
            .join("deployments")
            .join(name)
            .join("state.version"),
    )
    .unwrap_or_default()
}

#[test]
fn the_api_holds_under_abuse() {
    let sb = Sandbox::new();
    let path = sb.outer.path().join("api.tar");
    Archive::new()
        .file("manifest.json", &manifest("trust-api"))
        .file("state.json", &state_bytes("trust-api"))
        .write(&path);
    let o = sb.run(&["import", path.to_str().expect("utf8")]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let s = serve(&sb);
    let (addr, token) = (s.addr.as_str(), s.token.as_str());

    // Names in routes: 400, and nothing read or made outside the home.
    for name in [
        "..%2Fescape",
        "%2E%2E",
        "a%2Fb",
        "UPPER",
        "-x",
        "a%0Ab",
        "a%20b",
    ] {
        for (method, route, body) in [
            ("GET", "", &b""[..]),
            ("GET", "/outputs", b""),
            ("POST", "/plan", b""),
            ("POST", "/heal", br#"{"dry_run": true}"#),
            ("POST", "/scale", br#"{"groups": {"workers": 1}}"#),
        ] {
            let (code, body) = http(
                addr,
                method,
                &format!("/v1/deployments/{name}{route}"),
                Some(token),
                body,
            );
            assert_eq!(code, 400, "{method} {name}{route}: {body}");
        }
    }
    sb.assert_nothing_outside();

    // Bodies: anything but the documented JSON is refused, and no heal runs.
    let before = state_version(&sb, "trust-api");
    for body in [
        &b""[..],
        b"{}",
        br#"{"dry_run": "yes"}"#,
        br#"{"dry_run": true, "extra": 1}"#,
        b"dry_run=false",
        b"[true]",
    ] {
        let (code, answer) = http(
            addr,
            "POST",
            "/v1/deployments/trust-api/heal",
            Some(token),
            body,
        );
        assert_eq!(code, 400, "{:?}: {answer}", String::from_utf8_lossy(body));
    }
    let (code, answer) = http(
        addr,
        "POST",
        "/v1/deployments/trust-api/heal",
        Some(token),
        br#"{"dry_run": true}"#,
    );
    assert_eq!(code, 200, "{answer}");
    assert!(answer.contains("\"dry_run\":true"), "{answer}");
    assert_eq!(
        state_version(&sb, "trust-api"),
        before,
        "no state was written by refused or dry-run heals"
    );

    // The Bearer scheme is case-insensitive; a wrong scheme is not Bearer.
    let raw = |auth: &str| {
        let mut c = std::net::TcpStream::connect(addr).expect("connect");
        write!(
            c,
            "GET /v1/deployments HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n"
        )
        .expect("write");
        let mut out = String::new();
        let _ = c.read_to_string(&mut out);
        out.split_whitespace().nth(1).unwrap_or("").to_string()
    };
    assert_eq!(raw(&format!("bearer {token}")), "200");
    assert_eq!(raw(&format!("BEARER {token}")), "200");
    assert_eq!(raw(&format!("Basic {token}")), "401");

    // Metric series only for deployments that exist.
    for (method, route, body) in [
        ("GET", "/v1/deployments/nope-one", &b""[..]),
        (
            "POST",
            "/v1/deployments/nope-two/heal",
            br#"{"dry_run": false}"#,
        ),
        (
            "POST",
            "/v1/deployments/nope-three/scale",
            br#"{"groups": {"workers": 1}}"#,
        ),
    ] {
        let (code, _) = http(addr, method, route, Some(token), body);
        assert_eq!(code, 404, "{route}");
    }
    let alert = |names: &[&str]| {
        let alerts: Vec<serde_json::Value> = names
            .iter()
            .map(|n| serde_json::json!({"status": "firing", "labels": {"flotilla_deployment": n}}))
            .collect();
        let body = serde_json::json!({"version": "4", "alerts": alerts}).to_string();
        let (code, answer) = http(addr, "POST", "/v1/alerts", Some(token), body.as_bytes());
        assert_eq!(code, 200, "{answer}");
        serde_json::from_str::<serde_json::Value>(&answer).expect("json")
    };
    let first = alert(&["trust-api", "nope-four", "../escape"]);
    assert_eq!(
        first["heal_started"],
        serde_json::json!(["trust-api"]),
        "{first}"
    );
    // Repeats within the deployment's cooldown (10m) are acknowledged, not acted on.
    let deadline = Instant::now() + Duration::from_secs(60);
    let repeat = loop {
        let r = alert(&["trust-api"]);
        if r["in_progress"].as_array().is_none_or(Vec::is_empty) {
            break r;
        }
        assert!(Instant::now() < deadline, "the first heal did not end: {r}");
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(
        repeat["cooling_down"],
        serde_json::json!(["trust-api"]),
        "{repeat}"
    );
    assert_eq!(repeat["heal_started"], serde_json::json!([]), "{repeat}");
    let (_, metrics) = http(addr, "GET", "/metrics", Some(token), b"");
    assert!(
        metrics.contains("flotilla_webhook_alerts_total{outcome=\"cooldown\"} 1"),
        "{metrics}"
    );
    for fake in ["nope-one", "nope-two", "nope-three", "nope-four", "escape"] {
        assert!(!metrics.contains(fake), "a series for {fake}:\n{metrics}");
    }

    // A flood of idle connections: /healthz and an authorised call still answer at once.
    let idle: Vec<std::net::TcpStream> = (0..400)
        .filter_map(|_| std::net::TcpStream::connect(addr).ok())
        .collect();
    assert!(idle.len() >= 300, "{} idle connections", idle.len());
    let started = Instant::now();
    assert_eq!(http(addr, "GET", "/healthz", None, b"").0, 200);
    assert_eq!(
        http(addr, "GET", "/v1/deployments", Some(token), b"").0,
        200
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered after {:?}",
        started.elapsed()
    );
    drop(idle);
    // A half-sent request is cut off at the header deadline (10 s), not kept for ever.
    let mut slow = std::net::TcpStream::connect(addr).expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .expect("write");
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut buf = Vec::new();
    let started = Instant::now();
    let _ = slow.read_to_end(&mut buf);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the server closed the slow connection after {:?}",
        started.elapsed()
    );
}

#[test]
fn closed_pipes_never_make_a_panic() {
    let home = Home::new();
    let bp = crate::common::repo_root().join("blueprints/local-swarm.yaml");
    let bp = bp.to_str().expect("utf8");
    let cases: Vec<Vec<&str>> = vec![
        vec!["validate", bp],
        vec!["validate", bp, "-o", "json"],
        vec!["list"],
        vec!["list", "-o", "json"],
        vec!["status", "nope"],
        vec!["status", "nope", "-o", "json"],
        vec!["--help"],
    ];
    for args in cases {
        for close in ["stdout", "stderr", "both"] {
            let mut c = home.cmd();
            c.args(&args);
            c.stdout(Stdio::piped()).stderr(Stdio::piped());
            let mut child = c.spawn().expect("spawn");
            // The reader goes away before flotilla writes a byte.
            if close != "stderr" {
                drop(child.stdout.take());
            }
            if close != "stdout" {
                drop(child.stderr.take());
            }
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            let status = child.wait().expect("wait");
            assert_ne!(
                status.code(),
                Some(101),
                "{args:?} ({close} closed) panicked: {err}"
            );
            assert!(
                status.code().is_some(),
                "{args:?} ({close}): killed by {status:?}"
            );
            assert!(!err.contains("panicked"), "{args:?} ({close}): {err}");
        }
    }
}

/// Values that pass validation but are full of shell syntax (a label, an environment value, a
/// node label) reach a real node as plain text: the node runs none of it, and Docker and the
/// swarm hold exactly the value written in the blueprint.
#[test]
fn shell_syntax_in_valid_values_reaches_the_node_as_text() {
    crate::common::require_docker();
    let home = Home::new();
    let name = "it-trust-node";
    let _scrub = crate::common::Scrub::new(name);
    let bp = crate::heal_scale::blueprint_pub(&home, name, "10.198.40.0/24", 0, "");
    let env = "$(touch /tmp/pwned-env) `touch /tmp/pwned-tick` ' \" ; touch /tmp/pwned-semi";
    let label = "'; touch /tmp/pwned-label; echo '";
    let zone = "$(touch /tmp/pwned-zone)\"'";
    let text = std::fs::read_to_string(&bp)
        .expect("blueprint")
        .replace(
            "  managers:\n    role: manager\n    count: 1\n",
            &format!(
                "  managers:\n    role: manager\n    count: 1\n    labels:\n      zone: {}\n",
                serde_json::to_string(zone).expect("json")
            ),
        )
        + &format!(
            "containers:\n  probe:\n    groups: [managers]\n    image: {{repository: flotilla-test/tiny, tag: \"1\"}}\n    command: [/bin/busybox, sleep, \"3600\"]\n    env: {{X: {}}}\n    labels: {{note: {}}}\n",
            serde_json::to_string(env).expect("json"),
            serde_json::to_string(label).expect("json"),
        );
    std::fs::write(&bp, text).expect("write");
    let up = home.run(&["up", &bp, "-o", "json"]);
    assert_eq!(up.status.code(), Some(0), "{}", stderr(&up));
    let on_node = |script: &str| crate::common::on_node(&home, name, "managers-1", script);
    assert_eq!(
        on_node("ls /tmp | grep -c pwned || true").trim(),
        "0",
        "a value ran as a command on the node"
    );
    let id = on_node("docker ps -q --filter label=io.flotilla.deployment=it-trust-node");
    let id = id.trim();
    assert!(!id.is_empty(), "the probe container runs");
    let envs: Vec<String> = serde_json::from_str(&on_node(&format!(
        "docker inspect -f \"{{{{json .Config.Env}}}}\" {id}"
    )))
    .expect("env json");
    assert!(envs.contains(&format!("X={env}")), "{envs:?}");
    let labels: serde_json::Value = serde_json::from_str(&on_node(&format!(
        "docker inspect -f \"{{{{json .Config.Labels}}}}\" {id}"
    )))
    .expect("labels json");
    assert_eq!(labels["note"], label, "{labels}");
    let node_labels: serde_json::Value = serde_json::from_str(&on_node(
        "docker node inspect self -f \"{{json .Spec.Labels}}\"",
    ))
    .expect("node labels");
    assert_eq!(node_labels["zone"], zone, "{node_labels}");
    let down = home.run(&["down", name, "--yes"]);
    assert_eq!(down.status.code(), Some(0), "{}", stderr(&down));
}
