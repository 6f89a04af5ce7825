//! Typed blueprint inputs: their declarations, `--set NAME=VALUE` overrides and the resolved values
//! the templates see as `inputs.NAME`.

use super::model::{InputSpec, INPUT_TYPES};
use super::problem::{expected_one_of, suggest, Problem};
use super::yaml_index::YamlIndex;
use serde_json::{Map, Value};

/// Checked declaration of one input.
#[derive(Debug, Clone)]
pub struct Input {
    pub name: String,
    pub ty: &'static str,
    pub default: Option<Value>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub allowed: Option<Vec<Value>>,
}

fn article(t: &str) -> String {
    if t.starts_with(['a', 'e', 'i', 'o', 'u']) {
        format!("an {t}")
    } else {
        format!("a {t}")
    }
}

fn type_name_of(v: &Value) -> &'static str {
    match v {
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Null => "null",
        Value::Array(_) => "list",
        Value::Object(_) => "map",
    }
}

fn fits(ty: &str, v: &Value) -> bool {
    matches!(
        (ty, v),
        ("string", Value::String(_)) | ("boolean", Value::Bool(_)) | ("number", Value::Number(_))
    ) || (ty == "integer" && (v.is_i64() || v.is_u64()))
}

/// Parses a `--set` value according to the declared type.
fn parse_as(ty: &str, raw: &str) -> Result<Value, String> {
    match ty {
        "string" => Ok(Value::String(raw.to_string())),
        "integer" => raw
            .trim()
            .parse::<i64>()
            .map(Value::from)
            .map_err(|_| format!("`{raw}` is not an integer")),
        "number" => raw
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| format!("`{raw}` is not a number")),
        "boolean" => match raw.trim() {
            "true" | "yes" | "on" | "1" => Ok(Value::Bool(true)),
            "false" | "no" | "off" | "0" => Ok(Value::Bool(false)),
            _ => Err(format!("`{raw}` is not a boolean (true/false)")),
        },
        _ => Err(format!("unsupported type {ty}")),
    }
}

fn bounds_problem(input: &Input, v: &Value) -> Option<String> {
    if let Some(allowed) = &input.allowed {
        if !allowed.contains(v) {
            let list: Vec<String> = allowed.iter().map(|a| a.to_string()).collect();
            return Some(format!(
                "{v} is not one of the allowed values {}",
                list.join(", ")
            ));
        }
    }
    let n = v.as_f64()?;
    if let Some(min) = input.min {
        if n < min {
            return Some(format!("{v} is below the minimum {min}"));
        }
    }
    if let Some(max) = input.max {
        if n > max {
            return Some(format!("{v} is above the maximum {max}"));
        }
    }
    None
}

fn valid_input_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Checks the `inputs:` block (already parsed to JSON) and returns the declarations.
pub fn declarations(
    file: &str,
    block: &Map<String, Value>,
    index: &YamlIndex,
    problems: &mut Vec<Problem>,
) -> Vec<Input> {
    let mut out = Vec::new();
    for (name, raw) in block {
        let field = format!("inputs.{name}");
        if !valid_input_name(name) {
            problems.push(Problem::new(
                file,
                index.key(&field),
                &field,
                "input names use lowercase letters, digits and `_`, starting with a letter (they become template variables)",
            ));
            continue;
        }
        // Shorthand: `env: dev` declares a string input with that default.
        let spec = match raw {
            Value::Object(_) => match serde_path_to_error::deserialize::<_, InputSpec>(raw.clone())
            {
                Ok(s) => s,
                Err(e) => {
                    let (path, msg) = super::load::serde_problem(&field, &e);
                    problems.push(Problem::new(file, index.key(&path), path, msg));
                    continue;
                }
            },
            other => InputSpec {
                ty: Some(type_name_of(other).to_string()),
                default: Some(other.clone()),
                min: None,
                max: None,
                allowed: None,
                description: None,
            },
        };
        let ty = match spec.ty.as_deref() {
            None => match &spec.default {
                Some(d) if INPUT_TYPES.contains(&type_name_of(d)) => type_name_of(d),
                _ => {
                    problems.push(Problem::new(
                        file,
                        index.key(&field),
                        format!("{field}.type"),
                        format!("missing; {}", expected_one_of("", INPUT_TYPES)),
                    ));
                    continue;
                }
            },
            Some(t) => match INPUT_TYPES.iter().find(|x| **x == t) {
                Some(x) => x,
                None => {
                    problems.push(Problem::new(
                        file,
                        index.value(&format!("{field}.type")),
                        format!("{field}.type"),
                        format!("unknown type `{t}`; {}", expected_one_of(t, INPUT_TYPES)),
                    ));
                    continue;
                }
            },
        };
        if (spec.min.is_some() || spec.max.is_some()) && !matches!(ty, "integer" | "number") {
            problems.push(Problem::new(
                file,
                index
                    .key(&format!("{field}.min"))
                    .or(index.key(&format!("{field}.max"))),
                &field,
                format!("min/max only apply to integer and number inputs, this one is {ty}"),
            ));
        }
        if let (Some(min), Some(max)) = (spec.min, spec.max) {
            if min > max {
                problems.push(Problem::new(
                    file,
                    index.value(&format!("{field}.min")),
                    format!("{field}.min"),
                    format!("min {min} is above max {max}"),
                ));
            }
        }
        let input = Input {
            name: name.clone(),
            ty,
            default: spec.default.clone(),
            min: spec.min,
            max: spec.max,
            allowed: spec.allowed.clone(),
        };
        if let Some(d) = &spec.default {
            let dfield = format!("{field}.default");
            if !fits(ty, d) {
                problems.push(Problem::new(
                    file,
                    index.value(&dfield),
                    &dfield,
                    format!(
                        "expected {}, found {} ({d})",
                        article(ty),
                        article(type_name_of(d))
                    ),
                ));
            } else if let Some(msg) = bounds_problem(&input, d) {
                problems.push(Problem::new(file, index.value(&dfield), &dfield, msg));
            }
        }
        out.push(input);
    }
    out
}

/// Applies defaults and `--set` overrides; every declared input ends up with a value or a problem.
pub fn resolve(
    file: &str,
    decls: &[Input],
    sets: &[String],
    index: &YamlIndex,
    problems: &mut Vec<Problem>,
) -> Map<String, Value> {
    let mut values = Map::new();
    for d in decls {
        if let Some(v) = &d.default {
            values.insert(d.name.clone(), v.clone());
        }
    }
    for raw in sets {
        let Some((name, value)) = raw.split_once('=') else {
            problems.push(Problem::new(
                "--set",
                None,
                raw.as_str(),
                "expected NAME=VALUE",
            ));
            continue;
        };
        let name = name.trim();
        let field = format!("--set {name}");
        let Some(decl) = decls.iter().find(|d| d.name == name) else {
            let names: Vec<&str> = decls.iter().map(|d| d.name.as_str()).collect();
            let hint = match suggest(name, names.iter().copied()) {
                Some(s) => format!(" (did you mean `{s}`?)"),
                None if names.is_empty() => " (the blueprint declares no inputs)".to_string(),
                None => format!(" (declared: {})", names.join(", ")),
            };
            problems.push(Problem::new(
                "--set",
                None,
                field,
                format!("no input named `{name}` in {file}{hint}"),
            ));
            continue;
        };
        match parse_as(decl.ty, value) {
            Ok(v) => {
                if let Some(msg) = bounds_problem(decl, &v) {
                    problems.push(Problem::new("", None, field, msg));
                } else {
                    values.insert(decl.name.clone(), v);
                }
            }
            Err(msg) => problems.push(Problem::new(
                "--set",
                None,
                field,
                format!("{msg} (input `{name}` is {})", decl.ty),
            )),
        }
    }
    for d in decls {
        if !values.contains_key(&d.name) {
            let field = format!("inputs.{}", d.name);
            problems.push(Problem::new(
                file,
                index.key(&field),
                field,
                format!("required input has no default; pass --set {}=VALUE", d.name),
            ));
        }
    }
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_values_are_typed_and_bounded() {
        let decl = Input {
            name: "workers".into(),
            ty: "integer",
            default: Some(2.into()),
            min: Some(0.0),
            max: Some(5.0),
            allowed: None,
        };
        let idx = YamlIndex::default();
        let mut problems = Vec::new();
        let v = resolve(
            "bp",
            std::slice::from_ref(&decl),
            &["workers=4".into()],
            &idx,
            &mut problems,
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(v["workers"], Value::from(4));
        let _ = resolve(
            "bp",
            std::slice::from_ref(&decl),
            &["workers=9".into(), "workerz=1".into(), "workers=x".into()],
            &idx,
            &mut problems,
        );
        let msgs: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(msgs.len(), 3, "{msgs:?}");
        assert!(msgs[0].contains("above the maximum 5"));
        assert!(msgs[1].contains("did you mean `workers`"));
        assert!(msgs[2].contains("not an integer"));
    }
}
