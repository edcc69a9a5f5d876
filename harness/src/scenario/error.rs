//! Scenario errors say where: `file:line:col: field.path: message`, so an author can jump to the
//! mistake from any terminal or editor.

use std::ops::Range;

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{}", self.render())]
pub struct ScenarioError {
    /// The file as given, or the scenario name when it did not come from a file.
    pub file: String,
    /// 1-based line and column (in characters); `None` when the scenario was not parsed from
    /// text (generated scenarios) or the problem is the file as a whole.
    pub pos: Option<(usize, usize)>,
    /// Where in the document: `actors.user.steps[2]`, empty for the document.
    pub path: String,
    pub message: String,
}

impl ScenarioError {
    fn render(&self) -> String {
        let mut s = self.file.clone();
        if let Some((line, col)) = self.pos {
            s.push_str(&format!(":{line}:{col}"));
        }
        s.push_str(": ");
        if !self.path.is_empty() {
            s.push_str(&self.path);
            s.push_str(": ");
        }
        s.push_str(&self.message);
        s
    }
}

/// An error found while reading a document, before it is tied to a file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Located {
    pub span: Option<Range<usize>>,
    pub path: String,
    pub message: String,
}

impl Located {
    pub fn new(
        span: Option<Range<usize>>,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Located {
            span,
            path: path.into(),
            message: message.into(),
        }
    }

    pub fn into_error(self, file: &str, text: Option<&str>) -> ScenarioError {
        let pos = match (&self.span, text) {
            (Some(span), Some(text)) => Some(line_col(text, span.start)),
            _ => None,
        };
        ScenarioError {
            file: file.to_string(),
            pos,
            path: self.path,
            message: self.message,
        }
    }
}

/// 1-based line and column of a byte offset; columns count characters, as editors do.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = text[line_start..offset].chars().count() + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_table() {
        let text = "ab\ncdé\nf";
        let table = [
            (0, (1, 1)),
            (1, (1, 2)),
            (3, (2, 1)),
            (5, (2, 3)),
            (7, (2, 4)),
            (8, (3, 1)),
            (99, (3, 2)),
        ];
        for (offset, want) in table {
            assert_eq!(line_col(text, offset), want, "offset {offset}");
        }
    }

    #[test]
    fn display_forms() {
        let e = ScenarioError {
            file: "s/a.toml".into(),
            pos: Some((14, 3)),
            path: "actors.user.steps[2]".into(),
            message: "unknown field \"handel\"".into(),
        };
        assert_eq!(
            e.to_string(),
            "s/a.toml:14:3: actors.user.steps[2]: unknown field \"handel\""
        );
        let e = ScenarioError {
            pos: None,
            path: String::new(),
            ..e
        };
        assert_eq!(e.to_string(), "s/a.toml: unknown field \"handel\"");
    }
}
