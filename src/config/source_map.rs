//! Where each key of a TOML file is, so a problem can name its line.
//!
//! figment merges values but forgets positions; `toml_edit` keeps them.
//! We parse the file once more with `toml_edit`, walk it and record the
//! line of every field path (`devices[2].tags[5].address`).

use std::collections::HashMap;
use std::ops::Range;

use toml_edit::{ImDocument, Item, Table, Value};

/// Field path → 1-based line, for one TOML file.
#[derive(Debug, Default, Clone)]
pub struct SourceMap {
    lines: HashMap<String, usize>,
}

/// A TOML syntax error, with its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// 1-based line, when the parser knew it.
    pub line: Option<usize>,
    /// The parser's message, on one line.
    pub message: String,
}

impl SourceMap {
    /// Parses `text` and records the line of every key.
    pub fn parse(text: &str) -> Result<SourceMap, SyntaxError> {
        let doc = ImDocument::parse(text).map_err(|e| SyntaxError {
            line: e.span().map(|s| line_of(text, s.start)),
            message: first_line(e.message()),
        })?;
        let mut map = SourceMap::default();
        let lines = LineIndex::new(text);
        map.walk_table(&lines, "", doc.as_table());
        Ok(map)
    }

    /// Line of `path`, or of the nearest enclosing path the file has
    /// (a missing field is reported at the table that lacks it).
    pub fn line(&self, path: &str) -> Option<usize> {
        let mut p = path;
        loop {
            if let Some(line) = self.lines.get(p) {
                return Some(*line);
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }

    /// True when the file itself sets `path` (not a default or env value).
    pub fn contains(&self, path: &str) -> bool {
        self.lines.contains_key(path)
    }

    fn record(&mut self, text: &LineIndex, path: &str, span: Option<Range<usize>>) {
        if let Some(span) = span {
            self.lines
                .entry(path.to_string())
                .or_insert_with(|| text.line_of(span.start));
        }
    }

    fn walk_table(&mut self, text: &LineIndex, prefix: &str, table: &Table) {
        for (key, item) in table.iter() {
            let path = join(prefix, key);
            let span = table
                .key(key)
                .and_then(|k| k.span())
                .or_else(|| item.span());
            self.record(text, &path, span);
            self.walk_item(text, &path, item);
        }
    }

    fn walk_item(&mut self, text: &LineIndex, path: &str, item: &Item) {
        match item {
            Item::Table(t) => {
                self.record(text, path, t.span());
                self.walk_table(text, path, t);
            }
            Item::ArrayOfTables(array) => {
                for (i, t) in array.iter().enumerate() {
                    let p = format!("{path}[{i}]");
                    self.record(text, &p, t.span());
                    self.walk_table(text, &p, t);
                }
            }
            Item::Value(v) => self.walk_value(text, path, v),
            Item::None => {}
        }
    }

    fn walk_value(&mut self, text: &LineIndex, path: &str, value: &Value) {
        match value {
            Value::Array(array) => {
                for (i, v) in array.iter().enumerate() {
                    let p = format!("{path}[{i}]");
                    self.record(text, &p, v.span());
                    self.walk_value(text, &p, v);
                }
            }
            Value::InlineTable(t) => {
                for (key, v) in t.iter() {
                    let p = join(path, key);
                    let span = t.key(key).and_then(|k| k.span()).or_else(|| v.span());
                    self.record(text, &p, span);
                    self.walk_value(text, &p, v);
                }
            }
            _ => {}
        }
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// Where each line of a text starts, so that the line of a key is found
/// by a binary search: counting the newlines before every key would take
/// time growing with the square of the file (a plant of 1,000 devices
/// written by hand has 50,000 keys).
struct LineIndex {
    /// Byte offset of the start of each line after the first.
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> LineIndex {
        LineIndex {
            starts: text
                .bytes()
                .enumerate()
                .filter(|(_, b)| *b == b'\n')
                .map(|(i, _)| i + 1)
                .collect(),
        }
    }

    /// 1-based line of a byte offset.
    fn line_of(&self, offset: usize) -> usize {
        self.starts.partition_point(|start| *start <= offset) + 1
    }
}

/// 1-based line of a byte offset.
pub fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or("").trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"
[gateway]
id = "gw1"

[[devices]]
name = "a"
tags = [
  { name = "t1", address = 1 },
  { name = "t2", address = 2 },
]

[[devices]]
name = "b"
"#;

    #[test]
    fn finds_lines_of_nested_fields() {
        let map = SourceMap::parse(TEXT).unwrap();
        assert_eq!(map.line("gateway.id"), Some(3));
        assert_eq!(map.line("devices[0].name"), Some(6));
        assert_eq!(map.line("devices[0].tags[1].address"), Some(9));
        assert_eq!(map.line("devices[1]"), Some(12));
        // A missing field falls back to its table.
        assert_eq!(map.line("devices[1].unit"), Some(12));
    }

    #[test]
    fn the_line_index_agrees_with_counting() {
        let text = "a\n\nbc\nd";
        let index = LineIndex::new(text);
        for offset in 0..=text.len() + 2 {
            assert_eq!(index.line_of(offset), line_of(text, offset), "{offset}");
        }
    }

    #[test]
    fn syntax_error_has_a_line() {
        let err = SourceMap::parse("[gateway]\nid = \n").unwrap_err();
        assert_eq!(err.line, Some(2));
    }
}
