//! The Kubernetes driver against real hosts (docker provider nodes with real sshd and Docker)
//! where kubeadm and kubectl are shims (`integration/shims/kubernetes/`): they cannot be installed
//! here. The shims record every call and answer like the real tools, so these tests pin the exact
//! command transcript per node, idempotence, fresh tokens on scale-out, and heal's remove/join.
//! They do not prove that a real kubeadm accepts the rendered configs — that needs a live cluster.

use crate::common::{docker, docker_ok, json, require_docker, stderr, Home};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const SHIM_IMAGE: &str = "flotilla-test/node-k8s-shim:r1";
const KUBECTL: &str = "kubectl --kubeconfig /etc/kubernetes/admin.conf";

/// The Docker-preinstalled test image plus the kubeadm/kubectl shims in /usr/local/bin.
fn shim_image() -> &'static str {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let base = crate::heal_scale::baked_image();
        let c = "flotilla-it-k8s-bake";
        let _ = docker(&["rm", "-f", c]);
        docker_ok(&["create", "--name", c, base]);
        let shims = crate::common::repo_root().join("integration/shims/kubernetes");
        for tool in ["kubeadm", "kubectl"] {
            let src = shims.join(tool);
            docker_ok(&[
                "cp",
                src.to_str().expect("utf8"),
                &format!("{c}:/usr/local/bin/{tool}"),
            ]);
        }
        docker_ok(&["commit", c, SHIM_IMAGE]);
        let _ = docker(&["rm", "-f", c]);
    });
    SHIM_IMAGE
}

struct Shim {
    dir: tempfile::TempDir,
}

impl Shim {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("flotilla-k8s-shim-")
            .tempdir()
            .expect("shim dir");
        std::fs::write(dir.path().join("version"), "v1.31.2\n").expect("version");
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The calls recorded on one node, in order.
    fn transcript(&self, node: &str) -> Vec<String> {
        std::fs::read_to_string(self.path().join("transcript").join(format!("{node}.log")))
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    fn clear_transcripts(&self) {
        let _ = std::fs::remove_dir_all(self.path().join("transcript"));
    }

    fn lines(&self, file: &str) -> Vec<String> {
        std::fs::read_to_string(self.path().join(file))
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }
}

fn blueprint(home: &Home, shim: &Shim, name: &str, subnet: &str) -> PathBuf {
    blueprint_with(home, shim, name, subnet, 1, "")
}

fn blueprint_with(
    home: &Home,
    shim: &Shim,
    name: &str,
    subnet: &str,
    managers: u32,
    extra_k8s: &str,
) -> PathBuf {
    home.write(
        &format!("{name}.yaml"),
        &format!(
            "name: {name}\nprovider:\n  kind: docker\n  image: {img}\n  subnet: {subnet}\n  mounts:\n    - {dir}:/var/lib/k8s-shim\n\
             cluster:\n  kind: kubernetes\n  version: \"1.31\"\n  kubernetes:\n    pod_cidr: 10.198.128.0/18\n{extra_k8s}\
             docker:\n  method: preinstalled\nhealth:\n  unhealthy_grace: 0s\n\
             groups:\n  managers:\n    role: manager\n    count: {managers}\n  workers:\n    role: worker\n    count: 2\n    labels:\n      tier: app\n",
            img = shim_image(),
            dir = shim.path().display()
        ),
    )
}

fn prepared_already() -> Vec<String> {
    vec!["kubeadm version -o short".to_string()]
}

fn prepared_now() -> Vec<String> {
    vec![
        "kubeadm version -o short".to_string(),
        "kubeadm version -o short".to_string(),
    ]
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn kubernetes_transcript_up_rerun_scale_heal_down() {
    require_docker();
    let home = Home::new();
    let shim = Shim::new();
    let name = "it-k8s";
    let _scrub = crate::common::Scrub::new(name);
    let bp = blueprint(&home, &shim, name, "10.198.30.0/24");
    let bp = bp.to_str().expect("utf8");

    // 1. First up: init on the first control-plane node, CNI, one token, workers join, labels.
    let up = home.run(&["up", bp, "-o", "json"]);
    assert_eq!(up.status.code(), Some(0), "up: {}", stderr(&up));
    let mut manager = prepared_now();
    manager.extend(strs(&[
        "kubeadm version -o short",
        "kubeadm init --config /etc/flotilla/kubeadm-init.yaml --upload-certs",
        &format!("{KUBECTL} apply -f https://github.com/flannel-io/flannel/releases/download/v0.26.1/kube-flannel.yml"),
        "kubeadm token create --print-join-command --ttl 1h",
        &format!("{KUBECTL} get nodes -o json"),
        &format!("{KUBECTL} label node workers-1 tier=app --overwrite"),
        &format!("{KUBECTL} label node workers-2 tier=app --overwrite"),
        &format!("{KUBECTL} get nodes -o json"),
    ]));
    assert_eq!(shim.transcript("managers-1"), manager);
    let mut worker = prepared_now();
    worker.push("kubeadm join --config /etc/flotilla/kubeadm-join.yaml".into());
    assert_eq!(shim.transcript("workers-1"), worker);
    assert_eq!(shim.transcript("workers-2"), worker);
    // The rendered init config carries the blueprint's settings and the node's own address.
    let init = std::fs::read_to_string(shim.path().join("init-config.yaml")).expect("init config");
    for want in [
        "apiVersion: \"kubeadm.k8s.io/v1beta4\"",
        "advertiseAddress: \"10.198.30.10\"",
        "name: \"managers-1\"",
        "kubernetesVersion: \"v1.31.2\"",
        "podSubnet: \"10.198.128.0/18\"",
        "serviceSubnet: \"10.96.0.0/12\"",
        "cgroupDriver: systemd",
    ] {
        assert!(init.contains(want), "init config lacks {want}:\n{init}");
    }
    assert_eq!(
        shim.lines("tokens").len(),
        1,
        "one fresh token for the joins"
    );
    // The kubeconfig: 0600, server rewritten to the address reachable from here.
    let kc = home.run(&["kubeconfig", name]);
    assert_eq!(kc.status.code(), Some(0));
    let kc_path = crate::common::stdout(&kc).trim().to_string();
    let meta = std::fs::metadata(&kc_path).expect("kubeconfig");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let kc_text = std::fs::read_to_string(&kc_path).expect("read kubeconfig");
    assert!(
        kc_text.contains("server: https://10.198.30.10:6443"),
        "{kc_text}"
    );
    let st = json(&home.run(&["status", name, "-o", "json"]));
    assert_eq!(st["healthy"], true, "{st}");
    for n in st["nodes"].as_array().expect("nodes") {
        assert_eq!(n["cluster"], "ready/active", "{n}");
    }

    // 2. A second up: no init, no token, no join.
    shim.clear_transcripts();
    let again = home.run(&["up", bp, "-o", "json"]);
    assert_eq!(again.status.code(), Some(0), "rerun: {}", stderr(&again));
    assert_eq!(json(&again)["changed"], false);
    let mut manager = prepared_already();
    manager.extend(strs(&[
        &format!("{KUBECTL} get nodes -o json"),
        &format!("{KUBECTL} get nodes -o json"),
    ]));
    assert_eq!(shim.transcript("managers-1"), manager);
    assert_eq!(shim.transcript("workers-1"), prepared_already());

    // 3. Scale out: a fresh token (never the first run's), the new worker joins with it.
    shim.clear_transcripts();
    let out = home.run(&["scale", name, "workers=3", "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "scale out: {}", stderr(&out));
    let tokens = shim.lines("tokens");
    assert_eq!(tokens.len(), 2);
    assert_ne!(tokens[0], tokens[1], "a fresh token per run");
    let joins = shim.lines("joins");
    assert_eq!(
        joins.last().map(String::as_str),
        Some(format!("workers-3 {}", tokens[1]).as_str())
    );
    let mut worker = prepared_now();
    worker.push("kubeadm join --config /etc/flotilla/kubeadm-join.yaml".into());
    assert_eq!(shim.transcript("workers-3"), worker);

    // 4. Heal: workers-1 dies (machine stopped, Node NotReady) → stale Node deleted through the
    //    control plane, new machine, fresh token, join.
    std::fs::create_dir_all(shim.path().join("notready")).expect("notready dir");
    std::fs::write(shim.path().join("notready/workers-1"), "").expect("mark");
    docker_ok(&["stop", "-t", "0", &format!("flotilla-{name}-workers-1")]);
    shim.clear_transcripts();
    let heal = home.run(&["heal", name, "-o", "json"]);
    assert_eq!(heal.status.code(), Some(0), "heal: {}", stderr(&heal));
    let h = json(&heal);
    assert_eq!(h["replaced"], serde_json::json!(["workers-1"]));
    let new_node = h["converge"]["machines"]["create"][0]["name"]
        .as_str()
        .expect("a replacement")
        .to_string();
    let t = shim.transcript("managers-1");
    let pos = |cmd: &str| {
        t.iter()
            .position(|l| l == cmd)
            .unwrap_or_else(|| panic!("{cmd} missing from {t:#?}"))
    };
    let delete = pos(&format!(
        "{KUBECTL} delete node workers-1 --ignore-not-found"
    ));
    let token = pos("kubeadm token create --print-join-command --ttl 1h");
    assert!(
        delete < token,
        "the stale Node goes before the replacement joins: {t:#?}"
    );
    assert_eq!(shim.lines("tokens").len(), 3);
    assert_eq!(
        shim.transcript(&new_node),
        worker,
        "the replacement is prepared and joins"
    );
    assert!(
        !shim.path().join("nodes/workers-1").exists(),
        "no stale Node object"
    );
    let st = json(&home.run(&["status", name, "-o", "json"]));
    assert_eq!(st["healthy"], true, "{st}");

    // 5. Scale in: newest first; drain, kubeadm reset on the node, delete the Node.
    shim.clear_transcripts();
    let out = home.run(&["scale", name, "workers=1", "--yes", "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "scale in: {}", stderr(&out));
    let t = shim.transcript("managers-1");
    for w in [new_node.as_str(), "workers-3"] {
        let drain = t
            .iter()
            .position(|l| l.starts_with(&format!("{KUBECTL} drain {w} --ignore-daemonsets")))
            .unwrap_or_else(|| panic!("no drain of {w}: {t:#?}"));
        let delete = t
            .iter()
            .position(|l| l == &format!("{KUBECTL} delete node {w} --ignore-not-found"))
            .unwrap_or_else(|| panic!("no delete of {w}: {t:#?}"));
        assert!(drain < delete);
    }
    assert!(!shim.path().join("nodes/workers-3").exists());
    assert_eq!(
        shim.transcript("workers-3").last().map(String::as_str),
        Some("kubeadm reset -f"),
        "kubeadm reset ran on the removed node"
    );
    let st = json(&home.run(&["status", name, "-o", "json"]));
    assert_eq!(st["nodes"].as_array().map(Vec::len), Some(2));
    assert_eq!(st["healthy"], true, "{st}");

    let down = home.run(&["down", name, "--yes"]);
    assert_eq!(down.status.code(), Some(0), "down: {}", stderr(&down));
    let (c, v, n) = crate::common::labelled(name);
    assert!(c.is_empty() && v.is_empty() && n.is_empty());
}

#[test]
fn kubernetes_ha_control_plane_joins_one_at_a_time_and_heals_etcd() {
    require_docker();
    let home = Home::new();
    let shim = Shim::new();
    let name = "it-k8s-ha";
    let _scrub = crate::common::Scrub::new(name);
    let bp = blueprint_with(
        &home,
        &shim,
        name,
        "10.198.32.0/24",
        3,
        "    control_plane_endpoint: k8s-api.example.test\n",
    );
    let bp = bp.to_str().expect("utf8");
    let up = home.run(&["up", bp, "-o", "json"]);
    assert_eq!(up.status.code(), Some(0), "up: {}", stderr(&up));
    // One token and one certificate key for the whole run; control-plane joins carry the key.
    assert_eq!(shim.lines("tokens").len(), 1);
    assert_eq!(shim.lines("cert-keys").len(), 1);
    let t = shim.transcript("managers-1");
    let upload = t
        .iter()
        .position(|l| l == "kubeadm init phase upload-certs --upload-certs")
        .unwrap_or_else(|| panic!("no upload-certs: {t:#?}"));
    let token = t
        .iter()
        .position(|l| l == "kubeadm token create --print-join-command --ttl 1h")
        .expect("token");
    assert!(token < upload, "{t:#?}");
    // Control-plane nodes joined one after the other, before the workers (order of `joins`).
    let joined: Vec<String> = shim
        .lines("joins")
        .iter()
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .collect();
    assert_eq!(&joined[..2], ["managers-2", "managers-3"], "{joined:?}");
    assert_eq!(
        shim.lines("etcd-members"),
        vec!["managers-1", "managers-2", "managers-3"]
    );
    let init = std::fs::read_to_string(shim.path().join("init-config.yaml")).expect("init");
    assert!(
        init.contains("controlPlaneEndpoint: \"k8s-api.example.test:6443\""),
        "{init}"
    );
    assert!(
        init.contains("- \"k8s-api.example.test\""),
        "the endpoint is a SAN: {init}"
    );
    let kc = std::fs::read_to_string(home.path().join(format!("deployments/{name}/kubeconfig")))
        .expect("kubeconfig");
    assert!(
        kc.contains("server: https://k8s-api.example.test:6443"),
        "{kc}"
    );

    // A control-plane node dies: its Node and its etcd member are removed through a live one,
    // and a replacement joins as a control-plane node.
    std::fs::create_dir_all(shim.path().join("notready")).expect("dir");
    std::fs::write(shim.path().join("notready/managers-2"), "").expect("mark");
    docker_ok(&["stop", "-t", "0", &format!("flotilla-{name}-managers-2")]);
    shim.clear_transcripts();
    let heal = home.run(&["heal", name, "-o", "json"]);
    assert_eq!(heal.status.code(), Some(0), "heal: {}", stderr(&heal));
    let h = json(&heal);
    assert_eq!(h["replaced"], serde_json::json!(["managers-2"]), "{h}");
    let via: Vec<String> = ["managers-1", "managers-3"]
        .iter()
        .flat_map(|m| shim.transcript(m))
        .filter(|l| l.contains("etcdctl"))
        .collect();
    assert!(
        via.iter().any(|l| l.ends_with("member list"))
            && via.iter().any(|l| l.contains("member remove")),
        "{via:#?}"
    );
    let members = shim.lines("etcd-members");
    assert!(!members.contains(&"managers-2".to_string()), "{members:?}");
    assert_eq!(
        members.len(),
        3,
        "the replacement is an etcd member: {members:?}"
    );
    let st = json(&home.run(&["status", name, "-o", "json"]));
    assert_eq!(st["healthy"], true, "{st}");
    let down = home.run(&["down", name, "--yes"]);
    assert_eq!(down.status.code(), Some(0), "down: {}", stderr(&down));
}

/// `services:` on Kubernetes: the manifest file rendered with tera and piped to `kubectl apply
/// -f -` on a control-plane node; the entry removed → the same text piped to `kubectl delete`.
#[test]
fn kubernetes_services_are_applied_and_deleted_as_manifests() {
    require_docker();
    let home = Home::new();
    let shim = Shim::new();
    let name = "it-k8s-svc";
    let _scrub = crate::common::Scrub::new(name);
    home.write(
        "app.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web-{{ deployment }}\ndata:\n  replicas: \"{{ inputs.replicas }}\"\n",
    );
    let base = blueprint(&home, &shim, name, "10.198.37.0/24");
    let plain = std::fs::read_to_string(&base).expect("blueprint");
    let with = format!(
        "inputs:\n  replicas:\n    type: integer\n    default: 3\n{plain}services:\n  app:\n    file: app.yaml\n"
    );
    std::fs::write(&base, &with).expect("write");
    let bp = base.to_str().expect("utf8");
    let up = home.run(&["up", bp, "-o", "json"]);
    assert_eq!(up.status.code(), Some(0), "up: {}", stderr(&up));
    assert_eq!(json(&up)["services"], serde_json::json!(["app=deployed"]));
    let apply = format!("{KUBECTL} apply -f -");
    assert!(
        shim.transcript("managers-1").contains(&apply),
        "{:?}",
        shim.transcript("managers-1")
    );
    let applied = std::fs::read_to_string(shim.path().join("stdin/1-apply.yaml")).expect("applied");
    // The manifest as kubectl gets it: the rendered documents as JSON (a value is one scalar).
    assert!(
        applied.contains("\"name\": \"web-it-k8s-svc\"") && applied.contains("\"replicas\": \"3\""),
        "{applied}"
    );

    // Entry removed: the recorded text is deleted.
    std::fs::write(
        &base,
        format!("inputs:\n  replicas:\n    type: integer\n    default: 3\n{plain}"),
    )
    .expect("write");
    shim.clear_transcripts();
    let up2 = home.run(&["up", bp, "-o", "json"]);
    assert_eq!(up2.status.code(), Some(0), "up: {}", stderr(&up2));
    assert_eq!(json(&up2)["services"], serde_json::json!(["app=removed"]));
    assert!(shim
        .transcript("managers-1")
        .contains(&format!("{KUBECTL} delete --ignore-not-found -f -")));
    let deleted =
        std::fs::read_to_string(shim.path().join("stdin/2-delete.yaml")).expect("deleted");
    assert_eq!(deleted, applied);

    let down = home.run(&["down", name, "--yes"]);
    assert_eq!(down.status.code(), Some(0), "down: {}", stderr(&down));
}
