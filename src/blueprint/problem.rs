//! A validation problem: file, line/column where known, field path and what was expected.

use super::yaml_index::Loc;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    pub file: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
    /// Field path (`groups.workers.count`), `--set NAME` for flags, empty for whole-file problems.
    pub field: String,
    pub message: String,
}

impl Problem {
    pub fn new(
        file: &str,
        loc: Option<Loc>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            file: file.to_string(),
            line: loc.map(|l| l.line),
            column: loc.map(|l| l.col),
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.file.is_empty() {
            return if self.field.is_empty() {
                write!(f, "{}", self.message)
            } else {
                write!(f, "{}: {}", self.field, self.message)
            };
        }
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        if self.field.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": {}: {}", self.field, self.message)
        }
    }
}

/// Every problem found in one blueprint (validation never stops at the first).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", render(.0))]
pub struct Problems(pub Vec<Problem>);

fn render(p: &[Problem]) -> String {
    p.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// "did you mean" for a misspelt name (also used for group names on the command line).
pub use suggest as suggest_public;

/// "did you mean" for a misspelt name.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (c, strsim::jaro_winkler(word, c)))
        .filter(|(_, score)| *score >= 0.8)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(c, _)| c)
}

/// `one of a, b, c` plus a suggestion when one is close.
pub fn expected_one_of(word: &str, candidates: &[&str]) -> String {
    let list = candidates.join(", ");
    match suggest(word, candidates.iter().copied()) {
        Some(s) => format!("expected one of {list} (did you mean `{s}`?)"),
        None => format!("expected one of {list}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_has_file_line_col_field() {
        let p = Problem::new(
            "bp.yaml",
            Some(Loc { line: 3, col: 5 }),
            "groups.w.count",
            "must be >= 0",
        );
        assert_eq!(p.to_string(), "bp.yaml:3:5: groups.w.count: must be >= 0");
    }

    #[test]
    fn suggests_close_names() {
        assert_eq!(suggest("grups", ["name", "groups", "ssh"]), Some("groups"));
        assert_eq!(suggest("zzz", ["name", "groups"]), None);
    }
}
