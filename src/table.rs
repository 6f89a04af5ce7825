//! Tables for people (`status`, `list`, `ps`, `heal`, `state history`): each column as wide as
//! its content, no borders and no colour, so the text is the same on a terminal and in a pipe.
//! Cells may hold what a node or a label said: control characters are shown escaped, never
//! sent to the terminal.

use comfy_table::{presets, ContentArrangement};

pub struct Table {
    inner: comfy_table::Table,
    indent: usize,
}

impl Table {
    pub fn new(headers: &[&str]) -> Self {
        let mut inner = comfy_table::Table::new();
        inner
            .load_preset(presets::NOTHING)
            .set_content_arrangement(ContentArrangement::Disabled)
            .set_header(headers.to_vec());
        for c in inner.column_iter_mut() {
            c.set_padding((0, 2));
        }
        Self { inner, indent: 0 }
    }

    /// Spaces before every line.
    pub fn indent(mut self, n: usize) -> Self {
        self.indent = n;
        self
    }

    pub fn row<S: std::fmt::Display>(&mut self, cells: impl IntoIterator<Item = S>) {
        let row: Vec<String> = cells.into_iter().map(|c| clean(&c.to_string())).collect();
        self.inner.add_row(row);
    }

    /// The lines, without trailing blanks.
    pub fn lines(&self) -> Vec<String> {
        let pad = " ".repeat(self.indent);
        self.inner
            .lines()
            .map(|l| format!("{pad}{}", l.trim_end()))
            .collect()
    }

    pub fn print(&self) {
        for l in self.lines() {
            crate::say!("{l}");
        }
    }
}

/// Control characters (an escape sequence from a node's answer) shown as `\u{…}`.
fn clean(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_fit_their_content_and_escapes_are_shown() {
        let mut t = Table::new(&["NODE", "IMAGE"]).indent(2);
        t.row(["a-very-long-node-name-that-is-longer-than-sixteen", "x"]);
        t.row(["n", "evil\u{1b}[2J"]);
        let lines = t.lines();
        assert_eq!(lines.len(), 3, "{lines:?}");
        let col = lines[0].find("IMAGE").expect("header");
        assert_eq!(lines[1].rfind('x'), Some(col), "{lines:#?}");
        assert!(lines[2].contains("evil\\u{1b}[2J"), "{lines:?}");
        assert!(lines
            .iter()
            .all(|l| l.starts_with("  ") && !l.ends_with(' ')));
    }
}
