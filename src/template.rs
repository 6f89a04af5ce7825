//! Every Tera template flotilla renders goes through here, in one sandbox: no function that
//! reads the environment or files (`get_env` is replaced by an error), `range` bounded per
//! render, and every `{{ value }}` escaped for where it lands:
//!
//! * **scripts** (`render_script`): each value is shell-quoted (`'…'`), so a value can never
//!   add a command; templates write `{{ x }}` bare, never inside quotes of their own.
//! * **YAML configs** (`render_yaml_config`): each value becomes a double-quoted YAML scalar.
//! * **documents** (`render_document`, blueprints and `services:` files): each value becomes an
//!   opaque placeholder; the text is parsed as YAML first and the values are put into the parsed
//!   tree afterwards (`fill`), so an input or `--set` value is always one scalar and can never
//!   add or change a key, whatever it holds (newlines, `: `, `{`, quotes).
//!
//! Numbers and booleans are not strings and are written as they are (they cannot hold syntax).
//! `| safe` opts out of escaping; the script templates never use it (a unit test checks).
//!
//! Tera also escapes the operands of `{% if x %}` and `{% if x == "y" %}`, so every escape here
//! keeps what those ask: the empty string stays empty (falsy), and equal values escape equally
//! (placeholders are shared by equal values).

use serde_json::Value;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Items `range()` may produce in one render (all calls together): enough for any fleet
/// (groups hold at most 1,000 nodes), small enough that no template can exhaust memory.
pub const RANGE_BUDGET: usize = 10_000;
/// Largest rendered text, values included.
pub const OUTPUT_LIMIT: usize = 4 * 1024 * 1024;

/// Placeholder delimiters (Unicode private-use characters, kept as-is by YAML).
const OPEN: char = '\u{E000}';
const CLOSE: char = '\u{E001}';

struct BoundedRange {
    left: Arc<AtomicUsize>,
}

fn int_arg(args: &HashMap<String, Value>, name: &str) -> tera::Result<Option<i64>> {
    match args.get(name) {
        None => Ok(None),
        Some(v) => v
            .as_i64()
            .map(Some)
            .ok_or_else(|| tera::Error::msg(format!("range: `{name}` must be an integer"))),
    }
}

impl tera::Function for BoundedRange {
    fn call(&self, args: &HashMap<String, Value>) -> tera::Result<Value> {
        let start = int_arg(args, "start")?.unwrap_or(0);
        let end =
            int_arg(args, "end")?.ok_or_else(|| tera::Error::msg("range: `end` is required"))?;
        let step = int_arg(args, "step_by")?.unwrap_or(1);
        if step < 1 {
            return Err(tera::Error::msg("range: `step_by` must be at least 1"));
        }
        let count = if end > start {
            usize::try_from((end - start + step - 1) / step).unwrap_or(usize::MAX)
        } else {
            0
        };
        let taken = self
            .left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(count)
            });
        if taken.is_err() {
            return Err(tera::Error::msg(format!(
                "range: a template may produce at most {RANGE_BUDGET} items in all"
            )));
        }
        let items: Vec<Value> = (0..count as i64)
            .map(|i| Value::from(start + i * step))
            .collect();
        Ok(Value::Array(items))
    }
}

fn no_env(_: &HashMap<String, Value>) -> tera::Result<Value> {
    Err(tera::Error::msg(
        "get_env is not available: templates see only their inputs (declare an input and pass it with --set)",
    ))
}

/// A Tera instance with the sandbox's functions and the given escaping for every value.
fn sandbox(escape: fn(&str) -> String) -> tera::Tera {
    let mut tera = tera::Tera::default();
    tera.register_function("get_env", no_env);
    tera.register_function(
        "range",
        BoundedRange {
            left: Arc::new(AtomicUsize::new(RANGE_BUDGET)),
        },
    );
    // Every template name ends with "": every value is escaped.
    tera.autoescape_on(vec![""]);
    tera.set_escape_fn(escape);
    tera
}

fn render_with(
    escape: fn(&str) -> String,
    templates: &[(&str, &str)],
    entry: &str,
    ctx: &tera::Context,
) -> tera::Result<String> {
    let mut tera = sandbox(escape);
    tera.add_raw_templates(templates.iter().copied())?;
    let out = tera.render(entry, ctx)?;
    if out.len() > OUTPUT_LIMIT {
        return Err(tera::Error::msg(format!(
            "the rendered text is larger than {} MiB",
            OUTPUT_LIMIT / (1024 * 1024)
        )));
    }
    Ok(out)
}

fn shell_escape(s: &str) -> String {
    if s.is_empty() {
        String::new()
    } else {
        crate::ssh::shell_quote(s)
    }
}

/// A shell script: every value single-quoted. `templates` may include each other.
pub fn render_script(
    templates: &[(&str, &str)],
    entry: &str,
    ctx: &tera::Context,
) -> Result<String, String> {
    render_with(shell_escape, templates, entry, ctx)
        .map_err(|e| format!("template {entry}: {}", chain(&e)))
}

fn as_is(s: &str) -> String {
    s.to_string()
}

/// Plain text shown to people or programs as a value (`outputs:`): nothing parses it again,
/// so values are not escaped; the sandbox still applies.
pub fn render_text(name: &str, template: &str, ctx: &tera::Context) -> tera::Result<String> {
    render_with(as_is, &[(name, template)], name, ctx)
}

/// A YAML double-quoted scalar (JSON string syntax is valid YAML); empty stays empty.
pub fn yaml_quote(s: &str) -> String {
    if s.is_empty() {
        return String::new();
    }
    serde_json::to_string(s).unwrap_or_default()
}

/// A YAML file (kubeadm configuration): every value a double-quoted scalar.
pub fn render_yaml_config(
    entry: &str,
    template: &str,
    ctx: &tera::Context,
) -> Result<String, String> {
    render_with(yaml_quote, &[(entry, template)], entry, ctx)
        .map_err(|e| format!("template {entry}: {}", chain(&e)))
}

/// The values of a document being rendered, by placeholder number (equal values share one).
#[derive(Default)]
struct Slots {
    values: Vec<String>,
    index: HashMap<String, usize>,
}

thread_local! {
    static SLOTS: RefCell<Option<Slots>> = const { RefCell::new(None) };
}

fn placeholder(s: &str) -> String {
    if s.is_empty() {
        return String::new();
    }
    SLOTS.with(|slots| match slots.borrow_mut().as_mut() {
        Some(slots) => {
            let n = match slots.index.get(s) {
                Some(n) => *n,
                None => {
                    slots.values.push(s.to_string());
                    slots.index.insert(s.to_string(), slots.values.len() - 1);
                    slots.values.len() - 1
                }
            };
            format!("{OPEN}{n}{CLOSE}")
        }
        // Only reachable outside `render_document`: never paste a value.
        None => String::new(),
    })
}

/// A document rendered with placeholders in place of its values.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// The text to parse (line numbers are the template's: placeholders hold no newline).
    pub text: String,
    values: Vec<String>,
}

/// Renders a blueprint or `services:` file; parse `text`, then `fill` the values in.
pub fn render_document(name: &str, template: &str, ctx: &tera::Context) -> tera::Result<Rendered> {
    SLOTS.with(|s| *s.borrow_mut() = Some(Slots::default()));
    let out = render_with(placeholder, &[(name, template)], name, ctx);
    let values = SLOTS
        .with(|s| s.borrow_mut().take())
        .unwrap_or_default()
        .values;
    let text = out?;
    if values.iter().map(String::len).sum::<usize>() + text.len() > OUTPUT_LIMIT {
        return Err(tera::Error::msg(format!(
            "the rendered text is larger than {} MiB",
            OUTPUT_LIMIT / (1024 * 1024)
        )));
    }
    Ok(Rendered { text, values })
}

impl Rendered {
    /// The parsed tree with every placeholder replaced by its value: in a string it is spliced
    /// in as text, in a key likewise (two keys that become equal are refused).
    pub fn fill(&self, v: Value) -> Result<Value, String> {
        Ok(match v {
            Value::String(s) => Value::String(self.text_of(&s)),
            Value::Array(items) => Value::Array(
                items
                    .into_iter()
                    .map(|i| self.fill(i))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(map) => {
                let mut out = serde_json::Map::new();
                for (k, v) in map {
                    let key = self.text_of(&k);
                    if out.contains_key(&key) {
                        return Err(format!(
                            "key {} appears twice once the values are filled in",
                            crate::names::shown(&key)
                        ));
                    }
                    out.insert(key, self.fill(v)?);
                }
                Value::Object(out)
            }
            other => other,
        })
    }

    /// `s` with its placeholders replaced (one pass: a value is never read as a placeholder).
    pub fn text_of(&self, s: &str) -> String {
        if !s.contains(OPEN) {
            return s.to_string();
        }
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while let Some(i) = rest.find(OPEN) {
            out.push_str(&rest[..i]);
            let after = &rest[i + OPEN.len_utf8()..];
            let value = after.find(CLOSE).and_then(|j| {
                let n: usize = after[..j].parse().ok()?;
                Some((self.values.get(n)?, j))
            });
            match value {
                Some((v, j)) => {
                    out.push_str(v);
                    rest = &after[j + CLOSE.len_utf8()..];
                }
                None => {
                    out.push(OPEN);
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        out
    }
}

fn chain(e: &tera::Error) -> String {
    crate::util::error_chain(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(pairs: &[(&str, Value)]) -> tera::Context {
        let mut c = tera::Context::new();
        for (k, v) in pairs {
            c.insert(*k, v);
        }
        c
    }

    #[test]
    fn get_env_is_gone_and_range_is_bounded() {
        std::env::set_var("FLOTILLA_TEST_SECRET", "s3cret");
        let c = ctx(&[]);
        let e = render_document("t", "x: {{ get_env(name=\"FLOTILLA_TEST_SECRET\") }}", &c)
            .expect_err("no env");
        assert!(chain(&e).contains("get_env is not available"), "{e}");
        let e = render_script(
            &[("t", "{% for i in range(end=1000000000) %}x{% endfor %}")],
            "t",
            &c,
        )
        .expect_err("bounded");
        assert!(e.contains("at most 10000"), "{e}");
        // Nested loops share one budget.
        let nested =
            "{% for i in range(end=200) %}{% for j in range(end=200) %}{% endfor %}{% endfor %}";
        assert!(render_script(&[("t", nested)], "t", &c).is_err());
        let ok = render_script(
            &[(
                "t",
                "{% for i in range(start=1, end=7, step_by=3) %}{{ i }},{% endfor %}",
            )],
            "t",
            &c,
        )
        .expect("small range");
        assert_eq!(ok, "1,4,");
    }

    #[test]
    fn script_values_are_single_quoted() {
        let c = ctx(&[
            ("v", Value::from("x'; touch /tmp/pwned; echo '")),
            ("n", Value::from(3)),
        ]);
        let out = render_script(&[("t", "echo {{ v }} {{ n }}")], "t", &c).expect("render");
        assert_eq!(out, r"echo 'x'\''; touch /tmp/pwned; echo '\''' 3");
        let run = std::process::Command::new("sh")
            .arg("-c")
            .arg(&out)
            .output()
            .expect("sh");
        assert_eq!(
            String::from_utf8_lossy(&run.stdout),
            "x'; touch /tmp/pwned; echo ' 3\n"
        );
    }

    #[test]
    fn yaml_config_values_stay_one_scalar() {
        let c = ctx(&[("node", Value::from("a\"\nkind: Evil\nx: \""))]);
        let out = render_yaml_config("t", "name: {{ node }}\nkind: Good\n", &c).expect("render");
        let v: Value = serde_saphyr::from_str(&out).expect("yaml");
        assert_eq!(v["kind"], "Good");
        assert_eq!(v["name"], "a\"\nkind: Evil\nx: \"");
    }

    #[test]
    fn document_values_never_add_keys() {
        let hostile = "dev\"\nprovider: {kind: static}\nx: \"";
        let c = ctx(&[("inputs", serde_json::json!({"env": hostile, "n": 2}))]);
        let r = render_document(
            "bp",
            "name: \"swarm-{{ inputs.env }}\"\ncount: {{ inputs.n }}\nplain: {{ inputs.env }}\n{{ inputs.env }}: k\n",
            &c,
        )
        .expect("render");
        let parsed: Value = serde_saphyr::from_str(&r.text).expect("parses with placeholders");
        let v = r.fill(parsed).expect("fill");
        let keys: Vec<&String> = v.as_object().expect("map").keys().collect();
        assert_eq!(keys.len(), 4, "{v}");
        assert!(v.get("provider").is_none());
        assert_eq!(v["name"], format!("swarm-{hostile}"));
        assert_eq!(v["plain"], hostile);
        assert_eq!(v["count"], 2);
        assert_eq!(v[hostile], "k");
    }

    /// The templates rely on the renderer's quoting: a `{{ value }}` inside quotes of the
    /// template's own, or marked `safe`, would undo it.
    #[test]
    fn shipped_templates_never_quote_or_mark_values_safe() {
        fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            for e in std::fs::read_dir(dir).expect("templates").flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, out);
                } else {
                    out.push(p);
                }
            }
        }
        let mut files = Vec::new();
        walk(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates"),
            &mut files,
        );
        assert!(files.len() >= 10, "{files:?}");
        for f in files {
            let text = std::fs::read_to_string(&f).expect("read");
            let text = text
                .split("{% raw %}")
                .map(|part| part.split("{% endraw %}").last().unwrap_or(""))
                .collect::<String>();
            for (i, line) in text.lines().enumerate() {
                let at = format!("{}:{}", f.display(), i + 1);
                assert!(!line.contains("safe"), "{at}: `safe` in a template: {line}");
                for q in ["'{{", "\"{{", "}}'", "}}\""] {
                    assert!(!line.contains(q), "{at}: a value inside quotes: {line}");
                }
            }
        }
    }

    /// Tera escapes the operands of conditions too: they must still mean what they say.
    #[test]
    fn conditions_and_comparisons_see_through_the_escaping() {
        let t = "{% if x %}set{% else %}unset{% endif %},{% if x == \"prod\" %}prod{% endif %},{% if x != \"prod\" %}other{% endif %}";
        for (x, want) in [
            ("", "unset,,other"),
            ("prod", "set,prod,"),
            ("dev", "set,,other"),
        ] {
            let c = ctx(&[("x", Value::from(x))]);
            assert_eq!(
                render_script(&[("t", t)], "t", &c).expect("script"),
                want,
                "{x:?}"
            );
            assert_eq!(render_yaml_config("t", t, &c).expect("yaml"), want, "{x:?}");
            let r = render_document("t", t, &c).expect("document");
            assert_eq!(r.text_of(&r.text), want, "{x:?}");
        }
    }

    #[test]
    fn keys_that_become_equal_are_refused() {
        // Different text before the values are filled in, the same key after.
        let c = ctx(&[("a", Value::from("a")), ("b", Value::from("b"))]);
        let r = render_document("t", "{{ a }}b: 1\na{{ b }}: 2\n", &c).expect("render");
        let parsed: Value = serde_saphyr::from_str(&r.text).expect("yaml");
        assert!(r.fill(parsed).is_err());
    }

    #[test]
    fn a_value_holding_placeholder_characters_is_not_expanded() {
        let c = ctx(&[
            ("a", Value::from(format!("{OPEN}1{CLOSE}"))),
            ("b", Value::from("secret")),
        ]);
        let r = render_document("t", "a: \"{{ a }}\"\nb: {{ b }}\n", &c).expect("render");
        let v = r
            .fill(serde_saphyr::from_str(&r.text).expect("yaml"))
            .expect("fill");
        assert_eq!(v["a"], format!("{OPEN}1{CLOSE}"));
    }
}
