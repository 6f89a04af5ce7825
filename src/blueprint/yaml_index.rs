//! Where each field of a YAML document is: a map from field path (`groups.workers.count`,
//! `hosts[2]`) to its line and column, built from the parser's event stream. Validation works on
//! typed values and looks locations up here, so every message can say file:line:col.

use serde_saphyr::granit_parser::{Event, Parser, Span};
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loc {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
}

impl std::fmt::Display for Loc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// A key that appears twice in one mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Duplicate {
    pub path: String,
    pub first: Loc,
    pub second: Loc,
}

#[derive(Debug, Default)]
pub struct YamlIndex {
    keys: HashMap<String, Loc>,
    values: HashMap<String, Loc>,
    pub duplicates: Vec<Duplicate>,
}

enum Frame {
    Map {
        path: String,
        pending_key: Option<(String, Loc)>,
        seen: HashMap<String, Loc>,
    },
    Seq {
        path: String,
        next: usize,
    },
}

fn loc(span: &Span, offset: usize) -> Loc {
    Loc {
        line: span.start.line() + offset,
        col: span.start.col() + 1,
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

impl YamlIndex {
    /// Builds the index; a syntax error simply ends it early (the deserializer reports those).
    /// `line_offset` is added to every line (for blocks cut out of a larger file).
    pub fn build(text: &str, line_offset: usize) -> Self {
        let mut index = YamlIndex::default();
        let mut stack: Vec<Frame> = Vec::new();
        for item in Parser::new_from_str(text) {
            let Ok((event, span)) = item else { break };
            let here = loc(&span, line_offset);
            match event {
                Event::Scalar(value, ..) => {
                    if let Some(path) = index.value_slot(&mut stack, Some(value.as_ref()), here) {
                        index.values.insert(path, here);
                    }
                }
                Event::Alias(..) | Event::UnresolvedAlias(..) => {
                    if let Some(path) = index.value_slot(&mut stack, None, here) {
                        index.values.insert(path, here);
                    }
                }
                Event::MappingStart(..) => {
                    let path = index.value_slot(&mut stack, None, here).unwrap_or_default();
                    index.values.insert(path.clone(), here);
                    stack.push(Frame::Map {
                        path,
                        pending_key: None,
                        seen: HashMap::new(),
                    });
                }
                Event::SequenceStart(..) => {
                    let path = index.value_slot(&mut stack, None, here).unwrap_or_default();
                    index.values.insert(path.clone(), here);
                    stack.push(Frame::Seq { path, next: 0 });
                }
                Event::MappingEnd | Event::SequenceEnd => {
                    stack.pop();
                }
                _ => {}
            }
        }
        index
    }

    /// Handles a node arriving in the current container: for a mapping, a scalar in key position
    /// becomes the pending key; otherwise the node is a value whose path is returned.
    fn value_slot(
        &mut self,
        stack: &mut [Frame],
        scalar: Option<&str>,
        here: Loc,
    ) -> Option<String> {
        match stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Seq { path, next }) => {
                let p = format!("{path}[{next}]");
                *next += 1;
                Some(p)
            }
            Some(Frame::Map {
                path,
                pending_key,
                seen,
            }) => match pending_key.take() {
                Some((key, _)) => Some(join(path, &key)),
                None => {
                    // Key position. Complex keys (maps as keys) get a placeholder name.
                    let key = scalar.unwrap_or("?").to_string();
                    let full = join(path, &key);
                    if let Some(first) = seen.get(&key) {
                        self.duplicates.push(Duplicate {
                            path: full.clone(),
                            first: *first,
                            second: here,
                        });
                    } else {
                        seen.insert(key.clone(), here);
                    }
                    self.keys.insert(full, here);
                    *pending_key = Some((key, here));
                    None
                }
            },
        }
    }

    /// Location of a field's value, falling back to its key, then to the nearest parent.
    pub fn value(&self, path: &str) -> Option<Loc> {
        self.values
            .get(path)
            .or_else(|| self.keys.get(path))
            .copied()
            .or_else(|| self.parent(path))
    }

    /// Location of a field's key (for "unknown field" messages), falling back like `value`.
    pub fn key(&self, path: &str) -> Option<Loc> {
        self.keys
            .get(path)
            .or_else(|| self.values.get(path))
            .copied()
            .or_else(|| self.parent(path))
    }

    fn parent(&self, path: &str) -> Option<Loc> {
        let cut = path.rfind(['.', '['])?;
        let parent = &path[..cut];
        self.values
            .get(parent)
            .or_else(|| self.keys.get(parent))
            .copied()
            .or_else(|| self.parent(parent))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "name: demo\ngroups:\n  workers:\n    count: 3\n    labels: {zone: a}\nhosts:\n  - one\n  - two\n";

    #[test]
    fn finds_nested_keys_and_values() {
        let idx = YamlIndex::build(DOC, 0);
        assert_eq!(idx.value("name"), Some(Loc { line: 1, col: 7 }));
        assert_eq!(
            idx.key("groups.workers.count"),
            Some(Loc { line: 4, col: 5 })
        );
        assert_eq!(
            idx.value("groups.workers.count"),
            Some(Loc { line: 4, col: 12 })
        );
        assert_eq!(
            idx.value("groups.workers.labels.zone"),
            Some(Loc { line: 5, col: 20 })
        );
        assert_eq!(idx.value("hosts[1]"), Some(Loc { line: 8, col: 5 }));
    }

    #[test]
    fn unknown_paths_fall_back_to_the_parent() {
        let idx = YamlIndex::build(DOC, 0);
        assert_eq!(
            idx.value("groups.workers.missing"),
            Some(Loc { line: 3, col: 3 }).map(|_| idx
                .value("groups.workers")
                .unwrap_or(Loc { line: 0, col: 0 }))
        );
    }

    #[test]
    fn reports_duplicate_keys_with_both_locations() {
        let idx = YamlIndex::build("groups:\n  a: 1\n  b: 2\n  a: 3\n", 10);
        assert_eq!(
            idx.duplicates,
            vec![Duplicate {
                path: "groups.a".into(),
                first: Loc { line: 12, col: 3 },
                second: Loc { line: 14, col: 3 }
            }]
        );
    }
}
