//! Standard output for every command: human text (lines and aligned tables) or, with the global
//! `--json` flag, JSON lines — one JSON object per line, each with a `"kind"` field naming what
//! it describes, so a reader can filter with `jq 'select(.kind == "batch")'`.
//!
//! A command writes each piece of output through one of [`Output::text`] (human mode only),
//! [`Output::object`] (JSON mode only) or [`Output::table`] (both), so the two modes cannot
//! drift apart by accident: a command decides per item what each mode shows.

use std::fmt::Display;
use std::io::{self, BufWriter, StdoutLock, Write};

use serde::Serialize;
use serde_json::{Map, Value};

use crate::exit::Failure;

/// Where a command's results go.
pub struct Output {
    json: bool,
    out: BufWriter<StdoutLock<'static>>,
}

impl Output {
    /// Output on standard output, human text unless `json`.
    pub fn stdout(json: bool) -> Output {
        Output {
            json,
            out: BufWriter::new(io::stdout().lock()),
        }
    }

    /// One line of human output; nothing in JSON mode.
    pub fn text(&mut self, line: impl Display) -> Result<(), Failure> {
        if self.json {
            return Ok(());
        }
        writeln!(self.out, "{line}").map_err(Failure::stdout)
    }

    /// One JSON object of kind `kind` (the `"kind"` field first, the others in key order);
    /// nothing in human mode. `fields` should serialize as an object (anything else becomes its
    /// `"value"`).
    pub fn object(&mut self, kind: &str, fields: &impl Serialize) -> Result<(), Failure> {
        if !self.json {
            return Ok(());
        }
        let line = json_line(kind, fields)?;
        writeln!(self.out, "{line}").map_err(Failure::stdout)
    }

    /// A table: aligned columns under a header line in human mode, one object of kind
    /// `table.kind` per row in JSON mode (keys are the column names).
    pub fn table(&mut self, table: &Table) -> Result<(), Failure> {
        if self.json {
            for row in &table.rows {
                let object: Map<String, Value> = table
                    .columns
                    .iter()
                    .map(|c| c.to_string())
                    .zip(row.iter().cloned())
                    .collect();
                self.object(table.kind, &object)?;
            }
            return Ok(());
        }
        for line in table.render() {
            self.text(line.trim_end())?;
        }
        Ok(())
    }

    /// Writes out what is buffered (before a command waits for something, and at the end).
    pub fn flush(&mut self) -> Result<(), Failure> {
        self.out.flush().map_err(Failure::stdout)
    }
}

/// One JSON object of kind `kind` on one line: `"kind"` first (a `Map` would sort it among the
/// others), then `fields`' keys in order.
fn json_line(kind: &str, fields: &impl Serialize) -> Result<String, Failure> {
    let encode = |e: serde_json::Error| Failure::Message(format!("encode JSON output: {e}"));
    let rest = match serde_json::to_value(fields).map_err(encode)? {
        Value::Object(rest) => rest,
        other => Map::from_iter([("value".to_string(), other)]),
    };
    let mut line = format!("{{\"kind\":{}", Value::from(kind));
    for (key, value) in rest.iter().filter(|(key, _)| *key != "kind") {
        line.push(',');
        line.push_str(&serde_json::to_string(key).map_err(encode)?);
        line.push(':');
        line.push_str(&serde_json::to_string(value).map_err(encode)?);
    }
    line.push('}');
    Ok(line)
}

/// Rows of values under named columns. Column names are snake_case: they are the JSON keys,
/// and the human header shows them with spaces.
#[derive(Debug, Clone)]
pub struct Table {
    kind: &'static str,
    columns: Vec<&'static str>,
    rows: Vec<Vec<Value>>,
}

impl Table {
    /// An empty table whose rows are JSON objects of kind `kind`.
    pub fn new(kind: &'static str, columns: &[&'static str]) -> Table {
        Table {
            kind,
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; it must have one value per column.
    pub fn row(&mut self, values: Vec<Value>) {
        debug_assert_eq!(values.len(), self.columns.len(), "a row per column");
        self.rows.push(values);
    }

    /// Whether the table has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The header and the rows as aligned text lines: numbers right-aligned, text left-aligned.
    fn render(&self) -> Vec<String> {
        let header: Vec<String> = self.columns.iter().map(|c| c.replace('_', " ")).collect();
        let cells: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|row| row.iter().map(cell).collect())
            .collect();
        let widths: Vec<usize> = (0..self.columns.len())
            .map(|i| {
                cells
                    .iter()
                    .filter_map(|row| row.get(i))
                    .chain(header.get(i))
                    .map(|s| s.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let numeric: Vec<bool> = (0..self.columns.len())
            .map(|i| {
                !self.rows.is_empty()
                    && self
                        .rows
                        .iter()
                        .all(|r| r.get(i).is_some_and(Value::is_number))
            })
            .collect();
        let line = |row: &[String]| {
            row.iter()
                .zip(&widths)
                .zip(&numeric)
                .map(|((s, &w), &right)| {
                    if right {
                        format!("{s:>w$}")
                    } else {
                        format!("{s:<w$}")
                    }
                })
                .collect::<Vec<_>>()
                .join("  ")
        };
        std::iter::once(line(&header))
            .chain(cells.iter().map(|row| line(row)))
            .collect()
    }
}

/// A value as a table cell: strings without quotes, null as `-`.
fn cell(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_align_numbers_right_and_text_left() {
        let mut t = Table::new("row", &["topic", "log_start"]);
        t.row(vec![json!("orders"), json!(5)]);
        t.row(vec![json!("a"), json!(1234)]);
        assert_eq!(
            t.render(),
            [
                "topic   log start",
                "orders          5",
                "a            1234"
            ]
        );
    }

    #[test]
    fn json_lines_start_with_their_kind() {
        let line = json_line("batch", &json!({"a": 1, "kind": "ignored", "z": [true]})).unwrap();
        assert_eq!(line, r#"{"kind":"batch","a":1,"z":[true]}"#);
        assert_eq!(json_line("n", &5).unwrap(), r#"{"kind":"n","value":5}"#);
    }

    #[test]
    fn null_cells_show_a_dash() {
        assert_eq!(cell(&Value::Null), "-");
        assert_eq!(cell(&json!("x")), "x");
        assert_eq!(cell(&json!(true)), "true");
    }
}
