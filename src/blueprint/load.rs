//! Reading a blueprint: split out the `inputs:`/`outputs:` blocks, resolve inputs, render the rest
//! with tera, parse the YAML, and check every section, collecting all problems with locations.

use super::inputs;
use super::model::*;
use super::problem::{expected_one_of, Problem, Problems};
use super::yaml_index::{Loc, YamlIndex};
use flotilla_provider_core::Role;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Line range (0-based, end exclusive) of a top-level block such as `inputs:`.
fn top_level_block(lines: &[&str], key: &str) -> Option<(usize, usize)> {
    let start = lines.iter().position(|l| {
        l.strip_prefix(key)
            .and_then(|rest| rest.trim_start().strip_prefix(':'))
            .is_some()
    })?;
    let end = lines
        .iter()
        .enumerate()
        .skip(start + 1)
        .find(|(_, l)| {
            let first = l.chars().next();
            matches!(first, Some(c) if !c.is_whitespace() && c != '#')
        })
        .map(|(i, _)| i)
        .unwrap_or(lines.len());
    Some((start, end))
}

/// Turns a serde_path_to_error failure into (field path, message), adding "did you mean".
pub fn serde_problem(
    prefix: &str,
    e: &serde_path_to_error::Error<serde_json::Error>,
) -> (String, String) {
    let mut path = prefix.to_string();
    for seg in e.path().iter() {
        match seg {
            serde_path_to_error::Segment::Seq { index } => path.push_str(&format!("[{index}]")),
            serde_path_to_error::Segment::Map { key } => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
            }
            serde_path_to_error::Segment::Enum { variant } => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(variant);
            }
            serde_path_to_error::Segment::Unknown => {}
        }
    }
    let msg = e.inner().to_string();
    // serde: "unknown field `x`, expected one of `a`, `b`" / "expected `a` or `b`"
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        if let Some((field, expected)) = rest.split_once('`') {
            let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
            if !path.ends_with(field) {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(field);
            }
            return (
                path,
                format!(
                    "unknown field `{field}`; {}",
                    expected_one_of(field, &candidates)
                ),
            );
        }
    }
    if let Some(rest) = msg.strip_prefix("unknown variant `") {
        if let Some((word, expected)) = rest.split_once('`') {
            let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
            return (
                path,
                format!(
                    "unknown value `{word}`; {}",
                    expected_one_of(word, &candidates)
                ),
            );
        }
    }
    let msg = msg
        .replace("invalid type: ", "wrong type: ")
        .replace(
            "data did not match any variant of untagged enum ImageSource",
            "expected `{repository: NAME, tag: TAG}` (tag defaults to latest) or `{src: PATH|URL, sha256: HASH}` (sha256 optional)",
        )
        .replace(", expected", "; expected");
    (path, msg)
}

struct Ctx<'a> {
    file: &'a str,
    index: YamlIndex,
    problems: Vec<Problem>,
    /// Whether files the blueprint names (image archives) must be readable now. Not for a
    /// blueprint recorded in the state: `down`, `status` and the manager's API must work after
    /// those files are gone or on another machine; the steps that read them still fail clearly.
    check_files: bool,
}

impl Ctx<'_> {
    fn push(&mut self, loc: Option<Loc>, field: impl Into<String>, message: impl Into<String>) {
        self.problems
            .push(Problem::new(self.file, loc, field, message));
    }

    fn section<T: DeserializeOwned>(&mut self, value: Value, prefix: &str) -> Option<T> {
        match serde_path_to_error::deserialize::<_, T>(value) {
            Ok(t) => Some(t),
            Err(e) => {
                let (path, msg) = serde_problem(prefix, &e);
                let loc = if msg.starts_with("unknown field") {
                    self.index.key(&path)
                } else {
                    self.index.value(&path)
                };
                self.push(loc, path, msg);
                None
            }
        }
    }
}

fn tera_message(e: &tera::Error) -> String {
    crate::util::error_chain(e)
}

/// Finds the line of the first `{{ ... }}`/`{% ... %}` that mentions `needle`.
fn locate_in_template(text: &str, needle: &str) -> Option<Loc> {
    text.lines().enumerate().find_map(|(i, l)| {
        let col = l.find(needle)?;
        (l.contains("{{") || l.contains("{%")).then_some(Loc {
            line: i + 1,
            col: col + 1,
        })
    })
}

fn undefined_variable(msg: &str) -> Option<&str> {
    let rest = msg.split("Variable `").nth(1)?;
    rest.split('`').next()
}

/// Where a Tera error happened in `template`, and what to say.
fn template_problem(template: &str, e: &tera::Error) -> (Option<Loc>, String) {
    let msg = tera_message(e);
    if msg.contains("Failed to parse") || msg.contains("-->") {
        // tera's parse errors carry " --> line:col".
        let loc = msg.split("--> ").nth(1).and_then(|s| {
            let mut it = s
                .split(|c: char| !c.is_ascii_digit())
                .filter(|x| !x.is_empty());
            Some(Loc {
                line: it.next()?.parse().ok()?,
                col: it.next()?.parse().ok()?,
            })
        });
        return (
            loc,
            format!(
                "template syntax error: {}",
                msg.lines().last().unwrap_or(&msg).trim()
            ),
        );
    }
    match undefined_variable(&msg) {
        Some(var) => (
            locate_in_template(template, var),
            if var.starts_with("inputs.") {
                format!("undefined template variable `{var}` (declare it under `inputs:` or fix the name)")
            } else {
                format!("undefined template variable `{var}` (templates see `inputs.*`; outputs also see `deployment` and `groups.<group>[i].private_ip|public_ip|name|ssh_address`)")
            },
        ),
        None => (None, format!("template error: {msg}")),
    }
}

/// Renders plain text (an output) in the template sandbox.
pub fn render_template(
    name: &str,
    template: &str,
    context: &tera::Context,
) -> Result<String, (Option<Loc>, String)> {
    crate::template::render_text(name, template, context)
        .map_err(|e| template_problem(template, &e))
}

/// Renders a YAML document (a blueprint, a `services:` file) with placeholders for its values:
/// parse `text`, then `fill` the values into the parsed tree.
pub fn render_document(
    name: &str,
    template: &str,
    context: &tera::Context,
) -> Result<crate::template::Rendered, (Option<Loc>, String)> {
    crate::template::render_document(name, template, context)
        .map_err(|e| template_problem(template, &e))
}

/// Loads, renders and validates a blueprint file. No network is touched.
pub fn load(path: &Path, sets: &[String]) -> Result<Blueprint, Problems> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        Problems(vec![Problem::new(
            &file,
            None,
            "",
            format!("cannot read the blueprint: {e}"),
        )])
    })?;
    load_str(&text, path, sets)
}

pub fn load_str(text: &str, path: &Path, sets: &[String]) -> Result<Blueprint, Problems> {
    load_checked(text, path, sets, true)
}

fn load_checked(
    text: &str,
    path: &Path,
    sets: &[String],
    check_files: bool,
) -> Result<Blueprint, Problems> {
    let file = path.display().to_string();
    let lines: Vec<&str> = text.lines().collect();
    let mut problems = Vec::new();

    // 1. inputs (never templated) and outputs (rendered after bring-up) are cut out, leaving blank
    //    lines so line numbers stay those of the file.
    let mut template_lines: Vec<&str> = lines.clone();
    let mut block = |key: &str| -> Option<(usize, Value, YamlIndex)> {
        let (start, end) = top_level_block(&lines, key)?;
        let block_text = lines[start..end].join("\n");
        for l in &mut template_lines[start..end] {
            *l = "";
        }
        let index = YamlIndex::build(&block_text, start);
        match serde_saphyr::from_str::<Value>(&block_text) {
            Ok(v) => Some((start, v.get(key).cloned().unwrap_or(Value::Null), index)),
            Err(e) => {
                let loc = e.location().map(|l| Loc {
                    line: l.line() as usize + start,
                    col: l.column() as usize,
                });
                problems.push(Problem::new(
                    &file,
                    loc,
                    key,
                    format!("YAML syntax error: {}", first_line(&e.to_string())),
                ));
                None
            }
        }
    };
    let inputs_block = block("inputs");
    let outputs_block = block("outputs");
    let template_text = template_lines.join("\n");

    // 2. inputs
    let (decls, input_index) = match &inputs_block {
        Some((_, Value::Object(map), idx)) => (
            inputs::declarations(&file, map, idx, &mut problems),
            Some(idx),
        ),
        Some((start, Value::Null, _)) => (Vec::new(), None).tap_none(*start),
        Some((start, _, idx)) => {
            problems.push(Problem::new(
                &file,
                Some(Loc {
                    line: start + 1,
                    col: 1,
                }),
                "inputs",
                "expected a map of input declarations",
            ));
            (Vec::new(), Some(idx))
        }
        None => (Vec::new(), None),
    };
    let empty_index = YamlIndex::default();
    let values = inputs::resolve(
        &file,
        &decls,
        sets,
        input_index.unwrap_or(&empty_index),
        &mut problems,
    );
    if !problems.is_empty() {
        return Err(Problems(problems));
    }

    // 3. render: values become placeholders, filled into the parsed tree (never pasted).
    let mut context = tera::Context::new();
    context.insert("inputs", &values);
    let rendered = match render_document(&file, &template_text, &context) {
        Ok(r) => r,
        Err((loc, msg)) => {
            problems.push(Problem::new(&file, loc, "", msg));
            return Err(Problems(problems));
        }
    };

    // 4. parse
    let mut ctx = Ctx {
        file: &file,
        index: YamlIndex::build(&rendered.text, 0),
        problems,
        check_files,
    };
    let Some(root) = parse_root(&mut ctx, &rendered.text) else {
        return Err(Problems(ctx.problems));
    };
    let mut root = match rendered.fill(Value::Object(root)) {
        Ok(Value::Object(m)) => m,
        Ok(_) => return Err(Problems(ctx.problems)),
        Err(msg) => {
            ctx.push(None, "", msg);
            return Err(Problems(ctx.problems));
        }
    };
    let outputs = outputs_block.map(|(_, v, idx)| (v, idx));
    let recorded = recorded_text(&root, outputs.as_ref().map(|(v, _)| v));
    let bp = check(&mut ctx, &mut root, path, values, outputs, recorded);
    match bp {
        Some(bp) if ctx.problems.is_empty() => Ok(bp),
        _ => Err(Problems(ctx.problems)),
    }
}

/// The YAML map at the top of a (rendered or recorded) blueprint, or the problems why not.
fn parse_root(ctx: &mut Ctx, text: &str) -> Option<Map<String, Value>> {
    for d in ctx.index.duplicates.clone() {
        ctx.push(
            Some(d.second),
            d.path.clone(),
            format!(
                "defined twice (first at line {}); names must be unique",
                d.first.line
            ),
        );
    }
    if !ctx.problems.is_empty() {
        return None;
    }
    let root: Value = match serde_saphyr::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let loc = e.location().map(|l| Loc {
                line: l.line() as usize,
                col: l.column() as usize,
            });
            ctx.push(
                loc,
                "",
                format!("YAML syntax error: {}", first_line(&e.to_string())),
            );
            return None;
        }
    };
    match root {
        Value::Object(m) => Some(m),
        _ => {
            ctx.push(
                Some(Loc { line: 1, col: 1 }),
                "",
                "a blueprint is a YAML map with name, provider, cluster and groups",
            );
            None
        }
    }
}

/// What a deployment records of its blueprint: the rendered tree with the values in place and
/// the `outputs:` templates, as JSON (valid YAML). `load_recorded` parses it and never renders
/// it again, so a literal `{{ }}` in it (a Docker log tag) stays literal.
fn recorded_text(root: &Map<String, Value>, outputs: Option<&Value>) -> String {
    let mut doc = root.clone();
    if let Some(o) = outputs {
        doc.insert("outputs".into(), o.clone());
    }
    serde_json::to_string_pretty(&Value::Object(doc)).unwrap_or_default()
}

/// A blueprint recorded in a deployment's state (see `recorded_text`; older states recorded
/// the rendered YAML without its outputs): parsed as it is, never templated, with the inputs
/// the deployment was made with. Files it names are not checked (`down`, `status` and the
/// manager's API must work after those files are gone or on another machine).
pub fn load_recorded(
    text: &str,
    path: &Path,
    inputs: &Map<String, Value>,
) -> Result<Blueprint, Problems> {
    let file = path.display().to_string();
    let mut ctx = Ctx {
        file: &file,
        index: YamlIndex::build(text, 0),
        problems: Vec::new(),
        check_files: false,
    };
    let Some(mut root) = parse_root(&mut ctx, text) else {
        return Err(Problems(ctx.problems));
    };
    let outputs = root
        .remove("outputs")
        .map(|v| (v, YamlIndex::build(text, 0)));
    let bp = check(
        &mut ctx,
        &mut root,
        path,
        inputs.clone(),
        outputs,
        text.to_string(),
    );
    match bp {
        Some(bp) if ctx.problems.is_empty() => Ok(bp),
        _ => Err(Problems(ctx.problems)),
    }
}

trait TapNone {
    fn tap_none(self, _start: usize) -> Self;
}
impl<A, B> TapNone for (Vec<A>, Option<B>) {
    fn tap_none(self, _start: usize) -> Self {
        self
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or(s).to_string()
}

fn take(root: &mut Map<String, Value>, key: &str) -> Option<Value> {
    root.remove(key).filter(|v| !v.is_null())
}

fn check(
    ctx: &mut Ctx,
    root: &mut Map<String, Value>,
    path: &Path,
    inputs: Map<String, Value>,
    outputs: Option<(Value, YamlIndex)>,
    rendered: String,
) -> Option<Blueprint> {
    // Unknown top-level fields.
    for key in root.keys() {
        if !TOP_LEVEL_FIELDS.contains(&key.as_str()) {
            let loc = ctx.index.key(key);
            ctx.push(
                loc,
                key.clone(),
                format!("unknown field; {}", expected_one_of(key, TOP_LEVEL_FIELDS)),
            );
        }
    }

    // name
    let name = match take(root, "name") {
        Some(Value::String(s)) => match crate::names::check(crate::names::NameKind::Deployment, &s)
        {
            Ok(()) => Some(s),
            Err(e) => {
                let loc = ctx.index.value("name");
                ctx.push(loc, "name", e.to_string());
                None
            }
        },
        Some(other) => {
            let loc = ctx.index.value("name");
            ctx.push(loc, "name", format!("expected a string, found {other}"));
            None
        }
        None => {
            ctx.push(
                Some(Loc { line: 1, col: 1 }),
                "name",
                "missing required field (the deployment name)",
            );
            None
        }
    };
    let description = take(root, "description").and_then(|v| v.as_str().map(String::from));

    // provider
    let provider = match take(root, "provider") {
        Some(Value::Object(mut p)) => {
            let kind = p.remove("kind");
            match kind.as_ref().and_then(Value::as_str) {
                None => {
                    let loc = ctx.index.value("provider");
                    ctx.push(
                        loc,
                        "provider.kind",
                        format!("missing; {}", expected_one_of("", PROVIDER_KINDS)),
                    );
                    None
                }
                Some(k) if !PROVIDER_KINDS.contains(&k) => {
                    let loc = ctx.index.value("provider.kind");
                    ctx.push(
                        loc,
                        "provider.kind",
                        format!(
                            "unknown provider `{k}`; {}",
                            expected_one_of(k, PROVIDER_KINDS)
                        ),
                    );
                    None
                }
                Some(k) if !PROVIDER_KINDS_AVAILABLE.contains(&k) => {
                    let loc = ctx.index.value("provider.kind");
                    ctx.push(loc, "provider.kind", format!(
                        "the `{k}` provider is not available in this version of flotilla yet; available: {}",
                        PROVIDER_KINDS_AVAILABLE.join(", ")
                    ));
                    None
                }
                Some("docker") => ctx
                    .section::<flotilla_provider_docker::DockerConfig>(Value::Object(p), "provider")
                    .and_then(|c| {
                        let extra = c.check();
                        for (field, msg) in &extra {
                            let loc = ctx.index.value(field);
                            ctx.push(loc, field.clone(), msg.clone());
                        }
                        extra.is_empty().then_some(ProviderConfig::Docker(c))
                    }),
                Some("ec2") => ctx
                    .section::<flotilla_provider_ec2::Ec2Config>(Value::Object(p), "provider")
                    .and_then(|c| {
                        let extra = c.check();
                        for (field, msg) in &extra {
                            let loc = ctx.index.value(field);
                            ctx.push(loc, field.clone(), msg.clone());
                        }
                        extra.is_empty().then(|| ProviderConfig::Ec2(Box::new(c)))
                    }),
                Some("openstack") => ctx
                    .section::<flotilla_provider_openstack::OpenStackConfig>(
                        Value::Object(p),
                        "provider",
                    )
                    .and_then(|c| {
                        let extra = c.check();
                        for (field, msg) in &extra {
                            let loc = ctx.index.value(field);
                            ctx.push(loc, field.clone(), msg.clone());
                        }
                        extra
                            .is_empty()
                            .then(|| ProviderConfig::OpenStack(Box::new(c)))
                    }),
                Some(_) => ctx
                    .section::<flotilla_provider_static::StaticConfig>(Value::Object(p), "provider")
                    .map(ProviderConfig::Static),
            }
        }
        Some(_) => {
            let loc = ctx.index.value("provider");
            ctx.push(loc, "provider", "expected a map with at least `kind`");
            None
        }
        None => {
            ctx.push(
                Some(Loc { line: 1, col: 1 }),
                "provider",
                format!(
                    "missing required section; kind is {}",
                    expected_one_of("", PROVIDER_KINDS)
                ),
            );
            None
        }
    };

    let ssh: Option<SshConfig> = match take(root, "ssh") {
        Some(v) => ctx.section(v, "ssh"),
        None => Some(SshConfig::default()),
    };
    if let Some(s) = &ssh {
        if s.host_key_policy == HostKeyPolicy::Strict && s.known_hosts.is_none() {
            let loc = ctx.index.value("ssh.host_key_policy");
            ctx.push(
                loc,
                "ssh.known_hosts",
                "host_key_policy: strict needs a known_hosts file",
            );
        }
        if s.parallelism == Some(0) {
            let loc = ctx.index.value("ssh.parallelism");
            ctx.push(loc, "ssh.parallelism", "must be at least 1");
        }
        // Values that reach the ssh command line.
        let argv = [
            s.user
                .as_deref()
                .map(|u| ("ssh.user", crate::ssh::argv::check_user("ssh.user", u))),
            s.jump
                .as_deref()
                .map(|j| ("ssh.jump", crate::ssh::argv::check_jump("ssh.jump", j))),
            s.port
                .map(|p| ("ssh.port", crate::ssh::argv::check_port("ssh.port", p))),
        ];
        for (field, result) in argv.into_iter().flatten() {
            if let Err(e) = result {
                let loc = ctx.index.value(field);
                ctx.push(
                    loc,
                    field,
                    format!("{} is not a valid {}: {}", e.shown, e.what, e.rule),
                );
            }
        }
    }
    let docker: Option<DockerInstallConfig> = match take(root, "docker") {
        Some(v) => ctx.section(v, "docker"),
        None => Some(DockerInstallConfig::default()),
    };
    if let Some(d) = &docker {
        if d.method == InstallMethod::Offline && d.packages.is_none() {
            let loc = ctx.index.value("docker.method");
            ctx.push(
                loc,
                "docker.packages",
                "method offline needs `packages`: a folder or tarball of .deb/.rpm/.apk files",
            );
        }
        if d.packages.is_some() && d.method != InstallMethod::Offline {
            let loc = ctx.index.value("docker.packages");
            ctx.push(loc, "docker.packages", "only used with `method: offline`");
        }
        for (i, p) in d.preload_images.iter().enumerate() {
            if !ctx.check_files {
                continue;
            }
            if let Err(e) = crate::docker::preload::read_archive(&resolve_from(path, p)) {
                let field = format!("docker.preload_images[{i}]");
                let loc = ctx.index.value(&field);
                ctx.push(
                    loc,
                    field,
                    format!("{e}; make one with `docker save -o images.tar repo:tag ...`"),
                );
            }
        }
    }

    // cluster
    let cluster_cfg: Option<ClusterConfig> = match take(root, "cluster") {
        Some(v @ Value::Object(_)) => match ctx.section::<RawCluster>(v, "cluster") {
            Some(raw) => check_cluster(ctx, raw),
            None => None,
        },
        Some(_) => {
            let loc = ctx.index.value("cluster");
            ctx.push(loc, "cluster", "expected a map with `kind`");
            None
        }
        None => {
            ctx.push(
                Some(Loc { line: 1, col: 1 }),
                "cluster",
                format!(
                    "missing required section; kind is {}",
                    expected_one_of("", CLUSTER_KINDS)
                ),
            );
            None
        }
    };
    let cluster = cluster_cfg.as_ref().map(|c| c.kind);

    // groups
    let groups = check_groups(ctx, take(root, "groups"), provider.as_ref(), path);
    if let (Some(groups), Some(cfg)) = (&groups, &cluster_cfg) {
        check_managers(ctx, groups, cfg);
    }

    let health = match take(root, "health") {
        Some(v) => ctx
            .section::<RawHealth>(v, "health")
            .and_then(|raw| check_health(ctx, raw)),
        None => Some(HealthConfig::default()),
    };

    let containers = match take(root, "containers") {
        Some(v) => ctx
            .section::<BTreeMap<String, ContainerSpec>>(v, "containers")
            .map(|c| check_containers(ctx, c, groups.as_deref().unwrap_or(&[]), path)),
        None => Some(BTreeMap::new()),
    };

    let services = match take(root, "services") {
        Some(v) => ctx
            .section::<BTreeMap<String, ServiceSpec>>(v, "services")
            .map(|s| check_services(ctx, s, cluster)),
        None => Some(BTreeMap::new()),
    };
    let manager = match take(root, "manager") {
        Some(Value::Null) => None,
        Some(v) => ctx
            .section::<ManagerSpec>(v, "manager")
            .map(|m| check_manager(ctx, m, groups.as_deref().unwrap_or(&[]))),
        None => None,
    };

    let state_backend = match take(root, "state") {
        Some(Value::Null) | None => None,
        Some(v) => ctx.section::<StateSpec>(v, "state").and_then(|st| {
            let b = st.backend.trim();
            let known = b == "file"
                || b.starts_with("file://")
                || b.starts_with("postgres://")
                || b.starts_with("postgresql://")
                || b.starts_with("etcd://");
            if !known {
                let loc = ctx.index.value("state.backend");
                ctx.push(
                    loc,
                    "state.backend",
                    format!(
                        "`{}`: expected file, postgres://user@host/db or etcd://host:2379/prefix",
                        crate::state::backend::redact(b)
                    ),
                );
                None
            } else {
                Some(b.to_string())
            }
        }),
    };

    let expires_after = match take(root, "expires_after") {
        Some(Value::Null) | None => None,
        Some(v) => {
            let loc = ctx.index.value("expires_after");
            match v.as_str().map(|s| humantime::parse_duration(s.trim())) {
                Some(Ok(d)) if d >= std::time::Duration::from_secs(60) => Some(d),
                Some(Ok(_)) => {
                    ctx.push(loc, "expires_after", "must be at least 1m".to_string());
                    None
                }
                Some(Err(e)) => {
                    ctx.push(
                        loc,
                        "expires_after",
                        format!("`{v}` is not a duration ({e}); write e.g. 6h, 90m or 2days"),
                    );
                    None
                }
                None => {
                    ctx.push(
                        loc,
                        "expires_after",
                        format!("expected a duration such as 6h, found {v}"),
                    );
                    None
                }
            }
        }
    };

    let outputs = check_outputs(ctx, outputs, groups.as_deref().unwrap_or(&[]), &inputs);

    let bp = Blueprint {
        source: path.to_path_buf(),
        name: name?,
        description,
        inputs,
        provider: provider?,
        ssh: ssh?,
        docker: docker?,
        cluster: cluster?,
        swarm: cluster_cfg.as_ref()?.swarm.clone(),
        cluster_version: cluster_cfg.as_ref()?.version.clone(),
        kubernetes: cluster_cfg.as_ref()?.kubernetes.clone(),
        mesos: cluster_cfg?.mesos,
        groups: groups?,
        health: health?,
        containers: containers?,
        services: services?,
        manager,
        state_backend,
        expires_after,
        outputs,
        rendered,
        recorded: !ctx.check_files,
        confine: None,
    };
    // Values that reach scripts on the nodes: strict patterns, with the field's location.
    for (field, msg) in super::values::problems(&bp) {
        let loc = ctx.index.value(&field);
        ctx.push(loc, field, msg);
    }
    Some(bp)
}

fn count_of(ctx: &mut Ctx, field: &str, v: &CountValue) -> Option<u32> {
    let n = match v {
        CountValue::Int(n) => Some(*n),
        CountValue::Text(t) => t.trim().parse::<i64>().ok(),
    };
    match n {
        Some(n) if n < 0 => {
            let loc = ctx.index.value(field);
            ctx.push(loc, field, format!("must be 0 or more, found {n}"));
            None
        }
        Some(n) if n > 1000 => {
            let loc = ctx.index.value(field);
            ctx.push(
                loc,
                field,
                format!("{n} nodes in one group is more than flotilla supports (1000)"),
            );
            None
        }
        Some(n) => u32::try_from(n).ok(),
        None => {
            let loc = ctx.index.value(field);
            let shown = match v {
                CountValue::Text(t) => t.clone(),
                CountValue::Int(n) => n.to_string(),
            };
            ctx.push(
                loc,
                field,
                format!("expected a whole number, found `{shown}`"),
            );
            None
        }
    }
}

fn check_groups(
    ctx: &mut Ctx,
    value: Option<Value>,
    provider: Option<&ProviderConfig>,
    path: &Path,
) -> Option<Vec<Group>> {
    let map = match value {
        Some(Value::Object(m)) if !m.is_empty() => m,
        Some(Value::Object(_)) | None => {
            let loc = ctx.index.value("groups").or(Some(Loc { line: 1, col: 1 }));
            ctx.push(
                loc,
                "groups",
                "at least one group is required, e.g. `managers: {role: manager, count: 1}`",
            );
            return None;
        }
        Some(_) => {
            let loc = ctx.index.value("groups");
            ctx.push(
                loc,
                "groups",
                "expected a map of group name -> {role, count}",
            );
            return None;
        }
    };
    let is_static = matches!(provider, Some(ProviderConfig::Static(_)));
    let inventory = match provider {
        Some(ProviderConfig::Static(s)) => match &s.inventory {
            Some(inv) => {
                let base = path.parent().unwrap_or(Path::new("."));
                let inv_path = resolve_relative(base, inv);
                match std::fs::read_to_string(&inv_path) {
                    Ok(t) => match flotilla_provider_static::parse_inventory(&t) {
                        Ok(g) => Some(g),
                        Err(e) => {
                            let loc = ctx.index.value("provider.inventory");
                            ctx.push(
                                loc,
                                "provider.inventory",
                                format!("{}: {e}", inv_path.display()),
                            );
                            None
                        }
                    },
                    Err(e) => {
                        let loc = ctx.index.value("provider.inventory");
                        ctx.push(
                            loc,
                            "provider.inventory",
                            format!("cannot read {}: {e}", inv_path.display()),
                        );
                        None
                    }
                }
            }
            None => None,
        },
        _ => None,
    };
    let mut out = Vec::new();
    let mut ok = true;
    for (gname, gval) in map {
        let field = format!("groups.{gname}");
        if !crate::names::is_valid(crate::names::NameKind::Group, &gname) {
            let loc = ctx.index.key(&field);
            ctx.push(
                loc,
                &field,
                "group names use 1-30 lowercase letters, digits and `-`, starting with a letter",
            );
            ok = false;
            continue;
        }
        let Some(raw) = ctx.section::<RawGroup>(gval, &field) else {
            ok = false;
            continue;
        };
        let role = match raw.role {
            Some(r) => r,
            None => {
                let loc = ctx.index.value(&field);
                ctx.push(
                    loc,
                    format!("{field}.role"),
                    "missing; expected one of manager, worker",
                );
                ok = false;
                continue;
            }
        };
        let mut hosts = raw.hosts.clone();
        if !hosts.is_empty() && !is_static {
            let loc = ctx.index.value(&format!("{field}.hosts"));
            ctx.push(
                loc,
                format!("{field}.hosts"),
                "host lists are only for `provider.kind: static`",
            );
            ok = false;
        }
        if is_static && hosts.is_empty() {
            if let Some(inv) = &inventory {
                hosts = inv
                    .get(&gname)
                    .map(|v| {
                        v.iter()
                            .map(|h| {
                                format!(
                                    "{}{}",
                                    h.user.as_ref().map(|u| format!("{u}@")).unwrap_or_default(),
                                    h.id()
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
            }
        }
        for (i, h) in hosts.iter().enumerate() {
            if let Err(e) = flotilla_provider_static::HostEntry::parse(h) {
                let hf = format!("{field}.hosts[{i}]");
                let loc = ctx.index.value(&hf);
                ctx.push(loc, hf, format!("{e}; expected [user@]host[:port]"));
                ok = false;
            }
        }
        let count = match &raw.count {
            Some(c) => count_of(ctx, &format!("{field}.count"), c),
            None if is_static => u32::try_from(hosts.len()).ok(),
            None => {
                let loc = ctx.index.value(&field);
                ctx.push(
                    loc,
                    format!("{field}.count"),
                    "missing; how many nodes this group has (0 or more)",
                );
                None
            }
        };
        let Some(count) = count else {
            ok = false;
            continue;
        };
        if is_static && count as usize != hosts.len() {
            let loc = ctx
                .index
                .value(&format!("{field}.count"))
                .or(ctx.index.value(&field));
            let msg = if hosts.is_empty() {
                "a static group needs hosts: list them under `hosts:` or in the inventory file's [group] section".to_string()
            } else {
                format!("count is {count} but the group lists {} hosts", hosts.len())
            };
            ctx.push(loc, format!("{field}.count"), msg);
            ok = false;
        }
        for key in raw.labels.keys() {
            if key.is_empty() || key.contains(char::is_whitespace) || key.contains('=') {
                let lf = format!("{field}.labels.{key}");
                let loc = ctx.index.key(&lf);
                ctx.push(
                    loc,
                    lf,
                    "label keys cannot be empty or contain spaces or `=`",
                );
                ok = false;
            }
        }
        out.push(Group {
            name: gname,
            role,
            count,
            labels: raw.labels,
            hosts,
        });
    }
    let total: u32 = out.iter().map(|g| g.count).sum();
    if ok && total == 0 {
        let loc = ctx.index.value("groups");
        ctx.push(
            loc,
            "groups",
            "the groups add up to 0 nodes; give at least one group a count of 1 or more",
        );
        ok = false;
    }
    ok.then_some(out)
}

fn resolve_relative(base: &Path, p: &str) -> PathBuf {
    let expanded = crate::util::expand_tilde(p);
    if expanded.is_absolute() {
        expanded
    } else {
        base.join(expanded)
    }
}

fn check_health(ctx: &mut Ctx, raw: RawHealth) -> Option<HealthConfig> {
    let mut h = HealthConfig::default();
    if let Some(m) = raw.max_unhealthy {
        let parsed = match &m {
            CountValue::Int(n) if *n >= 0 => u32::try_from(*n).ok().map(MaxUnhealthy::Count),
            CountValue::Text(t) => match t.trim().strip_suffix('%') {
                Some(p) => p
                    .trim()
                    .parse::<u32>()
                    .ok()
                    .filter(|p| *p <= 100)
                    .map(MaxUnhealthy::Percent),
                None => t.trim().parse::<u32>().ok().map(MaxUnhealthy::Count),
            },
            _ => None,
        };
        match parsed {
            Some(p) => h.max_unhealthy = p,
            None => {
                let loc = ctx.index.value("health.max_unhealthy");
                ctx.push(
                    loc,
                    "health.max_unhealthy",
                    "expected a node count (2) or a percentage (40%)",
                );
                return None;
            }
        }
    }
    if let Some(d) = raw.node_startup_timeout {
        h.node_startup_timeout = d;
    }
    if let Some(d) = raw.unhealthy_grace {
        h.unhealthy_grace = d;
    }
    if let Some(d) = raw.check_interval {
        h.check_interval = d;
    }
    if let Some(d) = raw.alert_cooldown {
        h.alert_cooldown = d;
    }
    Some(h)
}

/// Sample context for test-rendering outputs at validate time: every group with its nodes.
pub fn outputs_context(
    deployment: &str,
    inputs: &Map<String, Value>,
    groups: &Value,
) -> tera::Context {
    let mut c = tera::Context::new();
    c.insert("inputs", inputs);
    c.insert("groups", groups);
    c.insert("deployment", deployment);
    c
}

fn check_outputs(
    ctx: &mut Ctx,
    outputs: Option<(Value, YamlIndex)>,
    groups: &[Group],
    inputs: &Map<String, Value>,
) -> Vec<(String, String)> {
    let Some((value, index)) = outputs else {
        return Vec::new();
    };
    let map = match value {
        Value::Object(m) => m,
        Value::Null => return Vec::new(),
        _ => {
            ctx.problems.push(Problem::new(
                ctx.file,
                index.value("outputs"),
                "outputs",
                "expected a map of name -> template string",
            ));
            return Vec::new();
        }
    };
    // A sample of what `up` provides, so mistakes (`groups.manager[0]`) show at validate time.
    let mut sample = Map::new();
    for g in groups {
        let nodes: Vec<Value> = (1..=g.count.max(1))
            .map(|i| {
                serde_json::json!({
                    "name": format!("{}-{i}", g.name), "private_ip": "10.0.0.1", "public_ip": "10.0.0.1",
                    "ssh_address": "10.0.0.1", "ssh_port": 22, "ssh_user": "root", "role": g.role.as_str(), "group": g.name,
                })
            })
            .collect();
        sample.insert(g.name.clone(), Value::Array(nodes));
    }
    let context = outputs_context("sample", inputs, &Value::Object(sample));
    let mut out = Vec::new();
    for (name, v) in map {
        let field = format!("outputs.{name}");
        let Some(template) = v.as_str() else {
            ctx.problems.push(Problem::new(
                ctx.file,
                index.value(&field),
                &field,
                "expected a template string",
            ));
            continue;
        };
        if let Err((_, msg)) = render_template(&field, template, &context) {
            ctx.problems
                .push(Problem::new(ctx.file, index.value(&field), &field, msg));
            continue;
        }
        out.push((name, template.to_string()));
    }
    out
}

/// `cluster.kind`, its version (defaults applied) and the options that belong to it.
fn check_cluster(ctx: &mut Ctx, raw: RawCluster) -> Option<ClusterConfig> {
    let kind = match raw.kind.as_deref() {
        None => {
            let loc = ctx.index.value("cluster");
            ctx.push(
                loc,
                "cluster.kind",
                format!("missing; {}", expected_one_of("", CLUSTER_KINDS)),
            );
            return None;
        }
        Some("swarm") => ClusterKind::Swarm,
        Some("kubernetes") => ClusterKind::Kubernetes,
        Some("mesos") => ClusterKind::Mesos,
        Some("none") => ClusterKind::None,
        Some(k) => {
            let loc = ctx.index.value("cluster.kind");
            ctx.push(
                loc,
                "cluster.kind",
                format!(
                    "unknown cluster kind `{k}`; {}",
                    expected_one_of(k, CLUSTER_KINDS)
                ),
            );
            return None;
        }
    };
    let mut ok = true;
    let version = match kind {
        ClusterKind::Kubernetes => {
            let v = raw
                .version
                .clone()
                .unwrap_or_else(|| KUBERNETES_DEFAULT_VERSION.to_string());
            match crate::cluster::kubernetes::parse_version(&v) {
                Some((minor, _)) if minor >= KUBERNETES_MIN_MINOR => {}
                Some(_) => {
                    ok = false;
                    let loc = ctx.index.value("cluster.version");
                    ctx.push(loc, "cluster.version", format!(
                        "Kubernetes {v} is too old: 1.{KUBERNETES_MIN_MINOR} or newer (older releases need dockershim, which is gone, and their package repositories are frozen)"
                    ));
                }
                None => {
                    ok = false;
                    let loc = ctx.index.value("cluster.version");
                    ctx.push(
                        loc,
                        "cluster.version",
                        format!("`{v}` is not a Kubernetes version; write `1.31` or `1.31.2`"),
                    );
                }
            }
            Some(v)
        }
        ClusterKind::Mesos => {
            let v = raw
                .version
                .clone()
                .unwrap_or_else(|| MESOS_DEFAULT_VERSION.to_string());
            if !v
                .split('.')
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
            {
                ok = false;
                let loc = ctx.index.value("cluster.version");
                ctx.push(
                    loc,
                    "cluster.version",
                    format!("`{v}` is not a Mesos version; write e.g. `1.7.1`"),
                );
            }
            Some(v)
        }
        ClusterKind::Swarm | ClusterKind::None => {
            if raw.version.is_some() {
                let loc = ctx.index.value("cluster.version");
                ctx.push(
                    loc,
                    "cluster.version",
                    "only used with `kind: kubernetes` or `kind: mesos` (Swarm comes with the installed Docker)",
                );
                ok = false;
            }
            None
        }
    };
    if kind == ClusterKind::Kubernetes {
        if let Some(cni) = raw.kubernetes.cni.as_deref() {
            if !crate::cluster::kubernetes::CNI_CHOICES.contains(&cni)
                && !cni.starts_with("https://")
            {
                ok = false;
                let loc = ctx.index.value("cluster.kubernetes.cni");
                ctx.push(
                    loc,
                    "cluster.kubernetes.cni",
                    format!(
                        "`{cni}`: {} or the https:// URL of a manifest",
                        expected_one_of(cni, crate::cluster::kubernetes::CNI_CHOICES)
                    ),
                );
            }
        }
    }
    ok.then_some(ClusterConfig {
        kind,
        version,
        swarm: raw.swarm,
        kubernetes: raw.kubernetes,
        mesos: raw.mesos,
    })
}

/// Manager (control-plane, master) counts: at least one, odd so the quorum of raft / etcd /
/// ZooKeeper survives a failure, and Kubernetes HA needs an endpoint in front of them.
fn check_managers(ctx: &mut Ctx, groups: &[Group], cfg: &ClusterConfig) {
    let (what, quorum) = match cfg.kind {
        ClusterKind::Swarm => ("swarm managers", "the raft quorum"),
        ClusterKind::Kubernetes => ("control-plane nodes", "the etcd quorum"),
        ClusterKind::Mesos => ("Mesos masters", "the ZooKeeper and replicated-log quorum"),
        ClusterKind::None => return,
    };
    let managers: u32 = groups
        .iter()
        .filter(|g| g.role == Role::Manager)
        .map(|g| g.count)
        .sum();
    let loc = ctx.index.value("groups");
    if managers == 0 {
        ctx.push(
            loc,
            "groups",
            format!("a {} cluster needs at least one manager node (its {what}): a group with `role: manager` and count >= 1", cfg.kind.as_str()),
        );
    } else if managers.is_multiple_of(2) {
        ctx.push(
            loc,
            "groups",
            format!("{managers} {what}: use an odd number so {quorum} survives a failure"),
        );
    } else if managers > 1
        && cfg.kind == ClusterKind::Kubernetes
        && cfg.kubernetes.control_plane_endpoint.is_none()
    {
        let loc = ctx.index.value("cluster");
        ctx.push(
            loc,
            "cluster.kubernetes.control_plane_endpoint",
            format!("{managers} control-plane nodes need `control_plane_endpoint` (a load balancer or DNS name in front of them, `host[:port]`): kubeadm cannot add control-plane nodes without it"),
        );
    }
}

/// `services:` entries: one of `file`/`definition`, a name Swarm and Kubernetes accept, and a
/// cluster kind that has a scheduler to hand them to. Files are read when `up` deploys them (a
/// recorded blueprint must still load after the file is gone, for `down`).
fn check_services(
    ctx: &mut Ctx,
    services: BTreeMap<String, ServiceSpec>,
    cluster: Option<ClusterKind>,
) -> BTreeMap<String, ServiceSpec> {
    if !services.is_empty() && matches!(cluster, Some(ClusterKind::Mesos | ClusterKind::None)) {
        let loc = ctx.index.key("services");
        ctx.push(
            loc,
            "services",
            "Swarm stacks and Kubernetes manifests need cluster kind swarm or kubernetes; use `containers:` here",
        );
    }
    for (name, s) in &services {
        let at = format!("services.{name}");
        if !crate::names::is_valid(crate::names::NameKind::Service, name) {
            let loc = ctx.index.key(&at);
            ctx.push(
                loc,
                at.clone(),
                "service names start with a letter and use 1-40 lowercase letters, digits and `-`",
            );
        }
        if s.file.is_some() == s.definition.is_some() {
            let loc = ctx.index.key(&at);
            ctx.push(
                loc,
                at.clone(),
                "give exactly one of `file` (a compose/manifest file) or `definition` (inline)",
            );
        }
        if let Some(r) = &s.resolve_image {
            if cluster != Some(ClusterKind::Swarm)
                || !matches!(r.as_str(), "always" | "changed" | "never")
            {
                let field = format!("{at}.resolve_image");
                let loc = ctx.index.value(&field);
                ctx.push(loc, field, "Swarm only; one of always, changed, never");
            }
        }
    }
    services
}

/// `manager:`: a group that exists and a usable port.
fn check_manager(ctx: &mut Ctx, m: ManagerSpec, groups: &[Group]) -> ManagerSpec {
    if let Some(g) = &m.group {
        if !groups.iter().any(|x| &x.name == g) {
            let names: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
            let loc = ctx.index.value("manager.group");
            ctx.push(
                loc,
                "manager.group",
                format!("no group `{g}`; {}", expected_one_of(g, &names)),
            );
        }
    }
    if m.port == 0 {
        let loc = ctx.index.value("manager.port");
        ctx.push(loc, "manager.port", "must be 1-65535");
    }
    m
}

/// `containers:` entries: names usable as container names, groups that exist, a known restart
/// policy, port/volume syntax, and image tarballs that are `docker save` archives.
fn check_containers(
    ctx: &mut Ctx,
    containers: BTreeMap<String, ContainerSpec>,
    groups: &[Group],
    path: &Path,
) -> BTreeMap<String, ContainerSpec> {
    for (name, c) in &containers {
        let at = format!("containers.{name}");
        if name.is_empty()
            || name.len() > 40
            || !name
                .chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-')
        {
            let loc = ctx.index.key(&at);
            ctx.push(
                loc,
                at.clone(),
                "container names use 1-40 lowercase letters, digits and `-`",
            );
        }
        if c.groups.is_empty() {
            let loc = ctx.index.value(&format!("{at}.groups"));
            ctx.push(
                loc,
                format!("{at}.groups"),
                "name at least one group whose nodes run it",
            );
        }
        for (i, g) in c.groups.iter().enumerate() {
            if !groups.iter().any(|x| &x.name == g) {
                let field = format!("{at}.groups[{i}]");
                let loc = ctx.index.value(&field);
                let names: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
                ctx.push(
                    loc,
                    field,
                    format!("no group `{g}`; {}", expected_one_of(g, &names)),
                );
            }
        }
        if let Some(r) = &c.restart {
            let ok = matches!(
                r.as_str(),
                "no" | "always" | "unless-stopped" | "on-failure"
            ) || r
                .strip_prefix("on-failure:")
                .is_some_and(|n| n.parse::<u32>().is_ok());
            if !ok {
                let field = format!("{at}.restart");
                let loc = ctx.index.value(&field);
                ctx.push(
                    loc,
                    field,
                    format!("`{r}`: expected one of no, always, unless-stopped, on-failure[:N]"),
                );
            }
        }
        for (i, p) in c.ports.iter().enumerate() {
            let (body, proto) = p.split_once('/').unwrap_or((p.as_str(), "tcp"));
            let parts: Vec<&str> = body.split(':').collect();
            let ok = matches!(proto, "tcp" | "udp" | "sctp")
                && (2..=3).contains(&parts.len())
                && parts[parts.len() - 2..]
                    .iter()
                    .all(|x| x.parse::<u16>().is_ok_and(|n| n > 0));
            if !ok {
                let field = format!("{at}.ports[{i}]");
                let loc = ctx.index.value(&field);
                ctx.push(loc, field, format!("`{p}`: write `host_port:container_port[/tcp|udp]` (optionally `ip:` first)"));
            }
        }
        for (i, v) in c.volumes.iter().enumerate() {
            let parts: Vec<&str> = v.split(':').collect();
            let ok = (2..=3).contains(&parts.len())
                && !parts[0].is_empty()
                && parts[1].starts_with('/')
                && parts.get(2).is_none_or(|m| matches!(*m, "ro" | "rw"));
            if !ok {
                let field = format!("{at}.volumes[{i}]");
                let loc = ctx.index.value(&field);
                ctx.push(
                    loc,
                    field,
                    format!("`{v}`: write `volume_name:/path` or `/host/path:/path[:ro]`"),
                );
            }
        }
        if let ImageSource::Tarball { src, sha256 } = &c.image {
            let field = format!("{at}.image.src");
            if ctx.check_files && !src.starts_with("http://") && !src.starts_with("https://") {
                if let Err(e) = crate::docker::preload::read_archive(&resolve_from(path, src)) {
                    let loc = ctx.index.value(&field);
                    ctx.push(loc, field.clone(), e.to_string());
                }
            }
            if let Some(h) = sha256 {
                let hex = h.strip_prefix("sha256:").unwrap_or(h);
                if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                    let f = format!("{at}.image.sha256");
                    let loc = ctx.index.value(&f);
                    ctx.push(loc, f, "expected `sha256:` and 64 hex digits");
                }
            }
        }
    }
    containers
}
