//! How the client commands print an answer: the vault's JSON as it came (`--format json`), or
//! for a person (`--format table`): an object as aligned `field  value` lines, a list as
//! columns. Nothing here adds or drops a secret the vault chose to show (a token or secret
//! is shown once, by the vault's own answer).

use serde_json::Value;

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Table,
    Json,
}

impl Format {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "table" => Some(Self::Table),
            "json" => Some(Self::Json),
            _ => None,
        }
    }
}

/// What a command prints and how it exits: 0, or 1 when the vault answered that a
/// verification failed (scripts test `$?`).
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub text: String,
    pub exit: u8,
}

impl Output {
    pub fn ok(text: String) -> Self {
        Self { text, exit: 0 }
    }
}

/// A scalar as one cell: strings bare, `null` as `-`, objects and arrays as compact JSON.
fn cell(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        Value::Array(items) if items.iter().all(|i| matches!(i, Value::String(_))) => {
            items.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(",")
        }
        other => other.to_string(),
    }
}

/// An object as `field  value` lines, fields aligned, in the vault's order; `fields` limits
/// and orders them when not empty.
pub fn object(value: &Value, fields: &[&str]) -> String {
    let Some(map) = value.as_object() else {
        return format!("{}\n", cell(value));
    };
    let rows: Vec<(String, String)> = if fields.is_empty() {
        map.iter().map(|(k, v)| (k.clone(), cell(v))).collect()
    } else {
        fields
            .iter()
            .filter_map(|f| map.get(*f).map(|v| ((*f).to_owned(), cell(v))))
            .collect()
    };
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    rows.iter().map(|(k, v)| format!("{k:<width$}  {v}\n")).collect()
}

/// A list of objects as columns `fields`, a header line first.
pub fn columns(items: &[Value], fields: &[&str]) -> String {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|item| {
            fields
                .iter()
                .map(|f| cell(item.get(*f).unwrap_or(&Value::Null)))
                .collect()
        })
        .collect();
    let widths: Vec<usize> = fields
        .iter()
        .enumerate()
        .map(|(i, f)| {
            rows.iter()
                .filter_map(|r| r.get(i).map(String::len))
                .chain(std::iter::once(f.len()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| {
        let mut out = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ");
        out.truncate(out.trim_end().len());
        out.push('\n');
        out
    };
    let mut out = line(
        fields
            .iter()
            .map(|f| f.to_uppercase())
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect(),
    );
    for row in &rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// The answer in `format`: JSON as the vault sent it, or `table` made from it.
pub fn render(format: Format, value: &Value, table: impl FnOnce(&Value) -> String) -> String {
    match format {
        Format::Json => format!("{value}\n"),
        Format::Table => table(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn objects_align_their_fields_and_lists_make_columns() {
        let v = json!({"name": "k", "latest_version": 2, "tags": {"a": "b"}, "gone": null});
        assert_eq!(
            object(&v, &[]),
            "name            k\nlatest_version  2\ntags            {\"a\":\"b\"}\ngone            -\n"
        );
        assert_eq!(
            object(&v, &["latest_version", "name", "absent"]),
            "latest_version  2\nname            k\n"
        );
        let list = [
            json!({"name": "a", "state": "enabled"}),
            json!({"name": "longer", "state": "disabled"}),
        ];
        assert_eq!(
            columns(&list, &["name", "state"]),
            "NAME    STATE\na       enabled\nlonger  disabled\n"
        );
        assert_eq!(cell(&json!(["service", "admin"])), "service,admin");
    }
}
