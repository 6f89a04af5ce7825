//! Reading a blueprint: split out the `inputs:`/`outputs:` blocks, resolve inputs, render the rest
//! with tera, parse the YAML, and check every section, collecting all problems with locations.

use super::cluster::{check_cluster, check_managers};
use super::groups::{check_groups, check_health};
use super::inputs;
use super::model::*;
use super::problem::{expected_one_of, Problem, Problems};
use super::render::{check_outputs, render_document};
use super::sections::{
    check_docker, check_expires_after, check_name, check_provider, check_ssh, check_state,
};
use super::workloads::{check_containers, check_manager, check_services};
use super::yaml_index::{Loc, YamlIndex};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::Path;

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

pub(super) struct Ctx<'a> {
    pub(super) file: &'a str,
    pub(super) index: YamlIndex,
    pub(super) problems: Vec<Problem>,
    /// Whether files the blueprint names (image archives) must be readable now. Not for a
    /// blueprint recorded in the state: `down`, `status` and the manager's API must work after
    /// those files are gone or on another machine; the steps that read them still fail clearly.
    pub(super) check_files: bool,
}

impl Ctx<'_> {
    pub(super) fn push(
        &mut self,
        loc: Option<Loc>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.problems
            .push(Problem::new(self.file, loc, field, message));
    }

    /// A problem at a field, located at the field's value.
    pub(super) fn at(&mut self, field: impl Into<String>, message: impl Into<String>) {
        let field = field.into();
        let loc = self.index.value(&field);
        self.push(loc, field, message);
    }

    pub(super) fn section<T: DeserializeOwned>(&mut self, value: Value, prefix: &str) -> Option<T> {
        match serde_path_to_error::deserialize::<_, T>(value) {
            Ok(t) => Some(t),
            Err(e) => {
                self.serde_error(prefix, &e);
                None
            }
        }
    }

    /// A section that does not deserialize, reported at the field it names (an unknown field
    /// at its key, a wrong value at the value).
    pub(super) fn serde_error(
        &mut self,
        prefix: &str,
        e: &serde_path_to_error::Error<serde_json::Error>,
    ) {
        let (path, msg) = serde_problem(prefix, e);
        let loc = if msg.starts_with("unknown field") {
            self.index.key(&path)
        } else {
            self.index.value(&path)
        };
        self.push(loc, path, msg);
    }
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

    let name = check_name(ctx, take(root, "name"));
    let description = take(root, "description").and_then(|v| v.as_str().map(String::from));

    let provider = check_provider(ctx, take(root, "provider"));

    let ssh = check_ssh(ctx, take(root, "ssh"));
    let docker = check_docker(ctx, take(root, "docker"), path);

    // cluster
    let cluster_cfg: Option<ClusterConfig> = match take(root, "cluster") {
        Some(Value::Object(raw)) => check_cluster(ctx, raw),
        Some(_) => {
            ctx.at("cluster", "expected a map with `kind`");
            None
        }
        None => {
            ctx.push(
                Some(Loc { line: 1, col: 1 }),
                "cluster",
                format!(
                    "missing required section; kind is {}",
                    expected_one_of("", &crate::kinds::cluster_kinds())
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

    let state_backend = check_state(ctx, take(root, "state"));

    let expires_after = check_expires_after(ctx, take(root, "expires_after"));

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
        cluster_version: cluster_cfg.as_ref()?.version.clone(),
        cluster_settings: cluster_cfg?.settings,
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
        ctx.at(field, msg);
    }
    Some(bp)
}
