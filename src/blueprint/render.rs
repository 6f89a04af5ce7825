//! Rendering with Tera for the blueprint loader: the blueprint and `services:` files (values as
//! placeholders, see `template.rs`), plain-text outputs, and turning Tera's errors into a
//! problem with a location.

use super::load::Ctx;
use super::model::Group;
use super::problem::Problem;
use super::yaml_index::{Loc, YamlIndex};
use serde_json::{Map, Value};

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

pub(super) fn check_outputs(
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
