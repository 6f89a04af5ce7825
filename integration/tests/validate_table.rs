//! Malformed blueprints and flags: each must exit 2 and name the field (and line where the file
//! has one). No network is touched: `validate` only.

use crate::common::{stderr, Home};

const BASE: &str = "name: demo
provider:
  kind: docker
cluster:
  kind: swarm
groups:
  managers:
    role: manager
    count: 1
  workers:
    role: worker
    count: 2
";

struct Case {
    what: &'static str,
    /// Blueprint text; `None` uses BASE.
    text: Option<String>,
    args: &'static [&'static str],
    /// Substrings the error output must contain.
    expect: &'static [&'static str],
    /// `file:LINE:` expected in the message.
    line: Option<usize>,
}

fn with(from: &str, to: &str) -> Option<String> {
    assert!(BASE.contains(from), "test setup: `{from}` not in BASE");
    Some(BASE.replacen(from, to, 1))
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            what: "unknown top-level field",
            text: with("groups:", "grups:"),
            args: &[],
            expect: &["grups", "did you mean `groups`"],
            line: Some(6),
        },
        Case {
            what: "negative count",
            text: with("count: 2", "count: -1"),
            args: &[],
            expect: &["groups.workers.count", "must be 0 or more"],
            line: Some(12),
        },
        Case {
            what: "count not a number",
            text: with("count: 2", "count: lots"),
            args: &[],
            expect: &["groups.workers.count", "whole number"],
            line: Some(12),
        },
        Case {
            what: "unknown provider kind",
            text: with("kind: docker", "kind: dockr"),
            args: &[],
            expect: &["provider.kind", "did you mean `docker`"],
            line: Some(3),
        },
        Case {
            what: "unknown cluster kind",
            text: with("kind: swarm", "kind: swarmm"),
            args: &[],
            expect: &["cluster.kind", "did you mean `swarm`"],
            line: Some(5),
        },
        Case {
            what: "mesos version not a version",
            text: with("kind: swarm", "kind: mesos\n  version: one"),
            args: &[],
            expect: &["cluster.version", "not a Mesos version"],
            line: Some(6),
        },
        Case {
            what: "misspelt group field",
            text: with("    role: worker", "    rol: worker"),
            args: &[],
            expect: &["groups.workers.rol", "did you mean `role`"],
            line: Some(11),
        },
        Case {
            what: "missing role",
            text: with("    role: worker\n", ""),
            args: &[],
            expect: &["groups.workers.role", "missing"],
            line: None,
        },
        Case {
            what: "bad role value",
            text: with("role: worker", "role: boss"),
            args: &[],
            expect: &["groups.workers.role", "boss", "manager, worker"],
            line: Some(11),
        },
        Case {
            what: "duplicate group name",
            text: Some(format!(
                "{BASE}  workers:\n    role: worker\n    count: 1\n"
            )),
            args: &[],
            expect: &["groups.workers", "defined twice", "line 10"],
            line: Some(13),
        },
        Case {
            what: "missing name",
            text: with("name: demo\n", ""),
            args: &[],
            expect: &["name", "missing required field"],
            line: None,
        },
        Case {
            what: "invalid deployment name",
            text: with("name: demo", "name: Demo_1"),
            args: &[],
            expect: &["name", "not a valid deployment name"],
            line: Some(1),
        },
        Case {
            what: "missing provider",
            text: with("provider:\n  kind: docker\n", ""),
            args: &[],
            expect: &["provider", "missing required section"],
            line: None,
        },
        Case {
            what: "undefined template variable",
            text: with("count: 2", "count: {{ inputs.wrkers }}"),
            args: &[],
            expect: &["undefined template variable `inputs.wrkers`"],
            line: Some(12),
        },
        Case {
            what: "template syntax error",
            text: with("count: 2", "count: {{ inputs.workers "),
            args: &[],
            expect: &["template syntax error"],
            line: None,
        },
        Case {
            what: "input default of the wrong type",
            text: Some(format!(
                "inputs:\n  workers: {{ type: integer, default: two }}\n{BASE}"
            )),
            args: &[],
            expect: &["inputs.workers.default", "expected an integer"],
            line: Some(2),
        },
        Case {
            what: "unknown input type",
            text: Some(format!(
                "inputs:\n  workers:\n    type: int\n    default: 2\n{BASE}"
            )),
            args: &[],
            expect: &["inputs.workers.type", "did you mean `integer`"],
            line: Some(3),
        },
        Case {
            what: "--set of an unknown input",
            text: Some(format!(
                "inputs:\n  workers: {{ type: integer, default: 2 }}\n{BASE}"
            )),
            args: &["--set", "wrkers=3"],
            expect: &["--set wrkers", "did you mean `workers`"],
            line: None,
        },
        Case {
            what: "--set of the wrong type",
            text: Some(format!(
                "inputs:\n  workers: {{ type: integer, default: 2 }}\n{BASE}"
            )),
            args: &["--set", "workers=abc"],
            expect: &["--set workers", "not an integer"],
            line: None,
        },
        Case {
            what: "--set above max",
            text: Some(format!(
                "inputs:\n  workers: {{ type: integer, default: 2, max: 5 }}\n{BASE}"
            )),
            args: &["--set", "workers=9"],
            expect: &["--set workers", "above the maximum 5"],
            line: None,
        },
        Case {
            what: "--set without =",
            text: None,
            args: &["--set", "workers"],
            expect: &["--set", "expected NAME=VALUE"],
            line: None,
        },
        Case {
            what: "YAML syntax error",
            text: with("  workers:\n", "  workers: [\n"),
            args: &[],
            expect: &["YAML syntax error"],
            line: None,
        },
        Case {
            what: "even number of managers",
            text: with("count: 1", "count: 2"),
            args: &[],
            expect: &["groups", "odd number"],
            line: None,
        },
        Case {
            what: "no manager for a swarm",
            text: with("count: 1", "count: 0"),
            args: &[],
            expect: &["groups", "at least one manager"],
            line: None,
        },
        Case {
            what: "misspelt provider field",
            text: with("kind: docker\n", "kind: docker\n  subnett: 10.198.0.0/24\n"),
            args: &[],
            expect: &["provider.subnett", "did you mean `subnet`"],
            line: Some(4),
        },
        Case {
            what: "bad subnet",
            text: with("kind: docker\n", "kind: docker\n  subnet: 10.198.0.0/33\n"),
            args: &[],
            expect: &["provider.subnet"],
            line: Some(4),
        },
        Case {
            what: "host list on the docker provider",
            text: with("    count: 2\n", "    count: 2\n    hosts: [10.0.0.1]\n"),
            args: &[],
            expect: &["groups.workers.hosts", "only for `provider.kind: static`"],
            line: Some(13),
        },
        Case {
            what: "static group without hosts",
            text: with("kind: docker", "kind: static"),
            args: &[],
            expect: &["groups.managers.count", "needs hosts"],
            line: Some(9),
        },
        Case {
            what: "misspelt ssh field",
            text: Some(format!("{BASE}ssh:\n  usr: root\n")),
            args: &[],
            expect: &["ssh.usr", "did you mean `user`"],
            line: Some(14),
        },
        Case {
            what: "unknown install method",
            text: Some(format!("{BASE}docker:\n  method: dstro\n")),
            args: &[],
            expect: &["docker.method", "did you mean `distro`"],
            line: Some(14),
        },
        Case {
            what: "offline install without packages",
            text: Some(format!("{BASE}docker:\n  method: offline\n")),
            args: &[],
            expect: &["docker.packages", "needs `packages`"],
            line: Some(14),
        },
        Case {
            what: "preload archive missing",
            text: Some(format!(
                "{BASE}docker:\n  preload_images:\n    - images/web.tar\n"
            )),
            args: &[],
            expect: &[
                "docker.preload_images[0]",
                "images/web.tar",
                "docker save -o",
            ],
            line: Some(15),
        },
        Case {
            what: "kubernetes too old",
            text: with("kind: swarm", "kind: kubernetes\n  version: \"1.23\""),
            args: &[],
            expect: &["cluster.version", "too old", "dockershim"],
            line: Some(6),
        },
        Case {
            what: "kubernetes version not a version",
            text: with("kind: swarm", "kind: kubernetes\n  version: latest"),
            args: &[],
            expect: &["cluster.version", "not a Kubernetes version"],
            line: Some(6),
        },
        Case {
            what: "kubernetes HA without an endpoint",
            text: with("kind: swarm", "kind: kubernetes")
                .map(|t| t.replacen("count: 1", "count: 3", 1)),
            args: &[],
            expect: &[
                "cluster.kubernetes.control_plane_endpoint",
                "3 control-plane nodes",
            ],
            line: Some(5),
        },
        Case {
            what: "unknown CNI",
            text: with(
                "kind: swarm",
                "kind: kubernetes\n  kubernetes:\n    cni: flanel",
            ),
            args: &[],
            expect: &["cluster.kubernetes.cni", "did you mean `flannel`"],
            line: Some(7),
        },
        Case {
            what: "version on a swarm",
            text: with("kind: swarm", "kind: swarm\n  version: \"24.0\""),
            args: &[],
            expect: &["cluster.version", "only used with"],
            line: Some(6),
        },
        Case {
            what: "another kind's options",
            text: with("kind: swarm", "kind: swarm\n  kubernetes:\n    cni: flannel"),
            args: &[],
            expect: &["cluster.kubernetes", "options of `kind: kubernetes`", "`kind: swarm`"],
            line: Some(6),
        },
        Case {
            what: "unknown key under cluster",
            text: with("kind: swarm", "kind: swarm\n  swram: {}"),
            args: &[],
            expect: &["cluster.swram", "did you mean `swarm`"],
            line: Some(6),
        },
        Case {
            what: "options on kind none",
            text: with("kind: swarm", "kind: none\n  none: {}"),
            args: &[],
            expect: &["cluster.none", "no options"],
            line: Some(6),
        },
        Case {
            what: "unknown swarm option",
            text: with("kind: swarm", "kind: swarm\n  swarm:\n    heartbeat: 5s"),
            args: &[],
            expect: &["cluster.swarm.heartbeat", "unknown field"],
            line: Some(7),
        },
        Case {
            what: "bad docker mount",
            text: with("kind: docker", "kind: docker\n  mounts: [\"relative:/x\"]"),
            args: &[],
            expect: &["provider.mounts[0]", "absolute"],
            line: Some(4),
        },
        Case {
            what: "container on an unknown group",
            text: Some(format!(
                "{BASE}containers:\n  web:\n    groups: [workerz]\n    image: {{repository: nginx}}\n"
            )),
            args: &[],
            expect: &["containers.web.groups[0]", "did you mean `workers`"],
            line: Some(15),
        },
        Case {
            what: "container restart policy",
            text: Some(format!(
                "{BASE}containers:\n  web:\n    groups: [workers]\n    image: {{repository: nginx}}\n    restart: sometimes\n"
            )),
            args: &[],
            expect: &["containers.web.restart", "unless-stopped"],
            line: Some(17),
        },
        Case {
            what: "manager on an unknown group",
            text: Some(format!("{BASE}manager:\n  group: workerz\n")),
            args: &[],
            expect: &["manager.group", "did you mean `workers`"],
            line: Some(14),
        },
        Case {
            what: "service with both file and definition",
            text: Some(format!(
                "{BASE}services:\n  web:\n    file: web.yml\n    definition: {{services: {{}}}}\n"
            )),
            args: &[],
            expect: &["services.web", "exactly one of `file`"],
            line: Some(14),
        },
        Case {
            what: "service file missing",
            text: Some(format!("{BASE}services:\n  web:\n    file: no-such-stack.yml\n")),
            args: &[],
            expect: &["services.web.file", "no-such-stack.yml", "cannot read"],
            line: None,
        },
        Case {
            what: "services on mesos",
            text: Some(
                BASE.replacen("kind: swarm", "kind: mesos", 1)
                    + "services:\n  web:\n    file: web.yml\n",
            ),
            args: &[],
            expect: &["services", "swarm or kubernetes", "containers:"],
            line: Some(13),
        },
        Case {
            what: "bad duration",
            text: Some(format!("{BASE}ssh:\n  connect_timeout: fast\n")),
            args: &[],
            expect: &["ssh.connect_timeout", "not a duration"],
            line: Some(14),
        },
        Case {
            what: "bad max_unhealthy",
            text: Some(format!("{BASE}health:\n  max_unhealthy: 120%\n")),
            args: &[],
            expect: &["health.max_unhealthy", "percentage"],
            line: Some(14),
        },
        Case {
            what: "output referencing a missing group",
            text: Some(format!(
                "{BASE}outputs:\n  ip: \"{{{{ groups.manager[0].private_ip }}}}\"\n"
            )),
            args: &[],
            expect: &["outputs.ip", "groups.manager"],
            line: Some(14),
        },
        Case {
            what: "required input without a value",
            text: Some(format!("inputs:\n  region: {{ type: string }}\n{BASE}")),
            args: &[],
            expect: &["inputs.region", "required input has no default"],
            line: Some(2),
        },
        Case {
            what: "wrong type for labels",
            text: with("    count: 2\n", "    count: 2\n    labels: [a, b]\n"),
            args: &[],
            expect: &["groups.workers.labels", "expected a map"],
            line: Some(13),
        },
    ]
}

#[test]
fn every_malformed_blueprint_exits_2_with_its_location() {
    let home = Home::new();
    let cases = cases();
    assert!(cases.len() >= 20);
    let mut failures = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let path = home.write(&format!("case{i}.yaml"), c.text.as_deref().unwrap_or(BASE));
        let mut args = vec!["validate", path.to_str().expect("utf8 path")];
        args.extend_from_slice(c.args);
        let out = home.run(&args);
        let err = stderr(&out);
        let mut problems = Vec::new();
        if out.status.code() != Some(2) {
            problems.push(format!("exit {:?}, want 2", out.status.code()));
        }
        for e in c.expect {
            if !err.contains(e) {
                problems.push(format!("missing `{e}`"));
            }
        }
        if let Some(line) = c.line {
            let want = format!("case{i}.yaml:{line}:");
            if !err.contains(&want) {
                problems.push(format!("missing location `{want}`"));
            }
        }
        if !problems.is_empty() {
            failures.push(format!(
                "case {i} ({}): {}\n    stderr: {}",
                c.what,
                problems.join(", "),
                err.trim().replace('\n', "\n            ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases wrong:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn several_problems_are_reported_together() {
    let home = Home::new();
    let text = BASE
        .replacen("count: 2", "count: -3", 1)
        .replacen("kind: swarm", "kind: swarmm", 1)
        .replacen(
            "groups:",
            "groups:\n  Bad_Group: {role: worker, count: 1}",
            1,
        );
    let p = home.write("multi.yaml", &text);
    let out = home.run(&["validate", p.to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.lines().count() >= 3, "one line per problem: {err}");
    assert!(
        err.contains("cluster.kind")
            && err.contains("groups.workers.count")
            && err.contains("groups.Bad_Group"),
        "{err}"
    );
}

#[test]
fn usage_errors_exit_2() {
    let home = Home::new();
    let valid = home.write("ok.yaml", BASE);
    for args in [
        vec!["up"],
        vec!["up", valid.to_str().expect("utf8"), "--wait-lock", "soon"],
        vec!["validate", "/nonexistent/blueprint.yaml"],
        vec!["down", "nothing-here"],
        vec!["down", "nothing-here", "--yes"],
        vec!["status", "nothing-here"],
        vec!["outputs", "nothing-here"],
        vec!["frobnicate"],
    ] {
        let out = home.run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn json_errors_carry_the_problem_list() {
    let home = Home::new();
    let p = home.write("bad.yaml", &BASE.replacen("count: 2", "count: -1", 1));
    let out = home.run(&["validate", p.to_str().expect("utf8"), "-o", "json"]);
    assert_eq!(out.status.code(), Some(2));
    let v = crate::common::json(&out);
    assert_eq!(v["error"]["kind"], "invalid_blueprint");
    assert_eq!(v["error"]["exit_code"], 2);
    assert_eq!(v["error"]["problems"][0]["field"], "groups.workers.count");
    assert_eq!(v["error"]["problems"][0]["line"], 12);
}

#[test]
fn shipped_blueprints_validate() {
    let home = Home::new();
    let dir = crate::common::repo_root().join("blueprints");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).expect("blueprints dir") {
        let p = e.expect("entry").path();
        if p.extension().and_then(|x| x.to_str()) != Some("yaml") {
            continue;
        }
        let out = home.run(&["validate", p.to_str().expect("utf8")]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}: {}",
            p.display(),
            stderr(&out)
        );
        n += 1;
    }
    assert!(n >= 1);
    // The blueprint on README's first screen is a real one too.
    let readme =
        std::fs::read_to_string(crate::common::repo_root().join("README.md")).expect("README");
    let block = readme
        .split_once("```yaml\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .map(|(yaml, _)| yaml)
        .expect("README shows a blueprint");
    let file = home.path().join("readme-blueprint.yaml");
    std::fs::write(&file, block).expect("write");
    let out = home.run(&["validate", file.to_str().expect("utf8")]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "README's blueprint: {}",
        stderr(&out)
    );
}
