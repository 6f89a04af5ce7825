//! Shared helpers: running the binary, temp homes, the test bed's Docker engine.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_flotilla")
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The test bed's Docker engine (`integration/testbed.sh start` prints it); DOCKER_HOST wins.
pub fn docker_host() -> String {
    std::env::var("DOCKER_HOST")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unix:///tmp/flotilla-testbed/docker.sock".into())
}

/// Panics with a clear message when the engine is missing, so a CI without it fails loudly.
pub fn require_docker() {
    static CHECK: OnceLock<Result<(), String>> = OnceLock::new();
    let r = CHECK.get_or_init(|| {
        let out = Command::new("docker")
            .env("DOCKER_HOST", docker_host())
            .args(["version", "--format", "{{.Server.Version}}"])
            .output();
        match out {
            Ok(o) if o.status.success() => Ok(()),
            Ok(o) => Err(String::from_utf8_lossy(&o.stderr).into_owned()),
            Err(e) => Err(e.to_string()),
        }
    });
    if let Err(e) = r {
        panic!("these tests need the test bed's Docker engine at {} (run `integration/testbed.sh start`): {e}", docker_host());
    }
}

pub struct Home {
    pub dir: tempfile::TempDir,
}

impl Home {
    pub fn new() -> Self {
        Self {
            dir: tempfile::Builder::new()
                .prefix("flotilla-it-")
                .tempdir()
                .expect("tempdir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(bin());
        c.env("FLOTILLA_HOME", self.path())
            // Tests name their backend explicitly; a developer's own setting must not leak in.
            .env_remove("FLOTILLA_BACKEND")
            .env("DOCKER_HOST", docker_host())
            .env("FLOTILLA_CACHE_DIR", cache_dir())
            .env("FLOTILLA_PLAIN_PROGRESS", "1")
            .stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        let out = self.cmd().args(args).output().expect("run flotilla");
        eprintln!(
            "$ flotilla {}\n-> exit {:?}\n--- stdout\n{}--- stderr\n{}",
            args.join(" "),
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    pub fn write(&self, name: &str, body: &str) -> PathBuf {
        let p = self.path().join(name);
        std::fs::write(&p, body).expect("write file");
        p
    }
}

/// Shared across tests so the node image is built once per run.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("FLOTILLA_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("flotilla-test-cache"))
}

/// Runs `script` (no single quotes in it) on a node with `flotilla ssh`; its stdout, trimmed.
pub fn on_node(home: &Home, deployment: &str, node: &str, script: &str) -> String {
    let o = home.run(&[
        "ssh",
        deployment,
        node,
        "--",
        "sh",
        "-c",
        &format!("'{script}'"),
    ]);
    assert_eq!(o.status.code(), Some(0), "{script}: {}", stderr(&o));
    stdout(&o).trim().to_string()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `docker` CLI against the test bed's engine.
pub fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .env("DOCKER_HOST", docker_host())
        .args(args)
        .output()
        .expect("run docker")
}

pub fn docker_ok(args: &[&str]) -> String {
    let o = docker(args);
    assert!(
        o.status.success(),
        "docker {} failed: {}",
        args.join(" "),
        stderr(&o)
    );
    stdout(&o)
}

/// Objects on the engine that carry a deployment's label.
pub fn labelled(deployment: &str) -> (Vec<String>, Vec<String>, Vec<String>) {
    let filter = format!("label=io.flotilla.deployment={deployment}");
    let lines = |s: String| {
        s.lines()
            .map(String::from)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
    };
    (
        lines(docker_ok(&["ps", "-aq", "--filter", &filter])),
        lines(docker_ok(&["volume", "ls", "-q", "--filter", &filter])),
        lines(docker_ok(&["network", "ls", "-q", "--filter", &filter])),
    )
}

pub fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", stdout(o)))
}

/// Removes everything labelled for a deployment on the test bed's engine, now and again on drop,
/// so a test that failed earlier (its state gone with its temp home) cannot leave machines that a
/// later run would adopt with the wrong key.
pub struct Scrub(pub &'static str);

impl Scrub {
    pub fn new(deployment: &'static str) -> Self {
        scrub(deployment);
        Self(deployment)
    }
}

impl Drop for Scrub {
    fn drop(&mut self) {
        scrub(self.0);
    }
}

fn scrub(deployment: &str) {
    let filter = format!("label=io.flotilla.deployment={deployment}");
    let ids = |args: &[&str]| -> Vec<String> {
        let o = docker(args);
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(String::from)
            .filter(|l| !l.is_empty())
            .collect()
    };
    for c in ids(&["ps", "-aq", "--filter", &filter]) {
        let _ = docker(&["rm", "-f", "-v", &c]);
    }
    for v in ids(&["volume", "ls", "-q", "--filter", &filter]) {
        let _ = docker(&["volume", "rm", "-f", &v]);
    }
    for n in ids(&["network", "ls", "-q", "--filter", &filter]) {
        let _ = docker(&["network", "rm", &n]);
    }
}

/// A `docker save` archive of `flotilla-test/tiny:1` (busybox only), made once per test run with
/// the test bed's engine: what `docker.preload_images` carries to nodes that have no registry.
pub fn tiny_image_archive() -> &'static Path {
    static ONCE: OnceLock<PathBuf> = OnceLock::new();
    ONCE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("flotilla-it-images-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("image dir");
        let busybox = ["/bin/busybox", "/usr/bin/busybox"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("busybox-static on the test host (.ci/run installs it)");
        let fs_tar = dir.join("rootfs.tar");
        let mut builder = tar::Builder::new(std::fs::File::create(&fs_tar).expect("rootfs.tar"));
        builder
            .append_path_with_name(busybox, "bin/busybox")
            .expect("tar busybox");
        builder.finish().expect("tar");
        drop(builder);
        docker_ok(&[
            "import",
            fs_tar.to_str().expect("utf8"),
            "flotilla-test/tiny:1",
        ]);
        let archive = dir.join("tiny.tar");
        docker_ok(&[
            "save",
            "-o",
            archive.to_str().expect("utf8"),
            "flotilla-test/tiny:1",
        ]);
        archive
    })
}

/// Tasks of a swarm service that run, as `(node, state)` lines from `docker service ps`.
pub fn running_tasks(home: &Home, deployment: &str, via: &str, service: &str) -> Vec<String> {
    let ps = home.run(&[
        "ssh",
        deployment,
        via,
        "--",
        "docker",
        "service",
        "ps",
        service,
        "--filter",
        "desired-state=running",
        "--format",
        "'{{.Node}} {{.CurrentState}}'",
    ]);
    stdout(&ps)
        .lines()
        .filter(|l| l.contains("Running"))
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .collect()
}

/// Waits (bounded, 90 s) until `want` tasks of the service run; returns the nodes they run on.
pub fn wait_replicas(
    home: &Home,
    deployment: &str,
    via: &str,
    service: &str,
    want: usize,
) -> Vec<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    loop {
        let nodes = running_tasks(home, deployment, via, service);
        if nodes.len() >= want || std::time::Instant::now() > deadline {
            return nodes;
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}
