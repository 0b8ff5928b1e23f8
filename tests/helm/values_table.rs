//! The chart README's values table is the one `values.yaml` and its comments give
//! (regenerated in place with `PIO_REGENERATE=1`).

use std::collections::BTreeSet;

use serde_json::Value;

use crate::CHART;
use crate::files::{read, root, yaml};

const TABLE_START: &str = "<!-- values:start";
const TABLE_END: &str = "<!-- values:end -->";

/// One documented key of values.yaml.
struct Row {
    key: String,
    kind: String,
    default: String,
    description: String,
}

/// The `# --` comments of values.yaml: each documents the key on the line after it (or
/// on the commented line `# key: example` right after it, for a key with no default).
/// `# -- (type) text` names the type when the default does not show it.
fn values_rows(text: &str, values: &Value) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut doc: Option<Vec<String>> = None;
    let is_key = |s: &str| {
        s.split_once(':').is_some_and(|(k, rest)| {
            !k.is_empty()
                && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && (rest.is_empty() || rest.starts_with(' '))
        })
    };
    for line in text.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if let Some(c) = trimmed.strip_prefix("# --") {
            doc = Some(vec![c.trim().to_owned()]);
            continue;
        }
        if let Some(c) = trimmed.strip_prefix('#') {
            let c = c.trim();
            match doc.as_mut() {
                Some(lines) if is_key(c) => {
                    // A key with no default, shown commented out with an example.
                    let (k, example) = c.split_once(':').expect("a key");
                    let path = path_of(&stack, indent, k);
                    let example: Value = yaml(example.trim());
                    rows.push(row(&path, &example, lines, true));
                    doc = None;
                }
                Some(lines) => lines.push(c.to_owned()),
                None => {}
            }
            continue;
        }
        if trimmed.is_empty() || trimmed.starts_with('-') || !is_key(trimmed) {
            doc = None;
            continue;
        }
        let k = trimmed.split_once(':').expect("a key").0;
        while stack.last().is_some_and(|(i, _)| *i >= indent) {
            stack.pop();
        }
        let path = path_of(&stack, indent, k);
        stack.push((indent, k.to_owned()));
        if let Some(lines) = doc.take() {
            let pointer = format!("/{}", path.replace('.', "/"));
            let value = values
                .pointer(&pointer)
                .unwrap_or_else(|| panic!("values.yaml has {path}"));
            rows.push(row(&path, value, &lines, false));
        }
    }
    rows
}

fn path_of(stack: &[(usize, String)], indent: usize, key: &str) -> String {
    stack
        .iter()
        .filter(|(i, _)| *i < indent)
        .map(|(_, k)| k.as_str())
        .chain([key])
        .collect::<Vec<_>>()
        .join(".")
}

fn row(path: &str, value: &Value, lines: &[String], required: bool) -> Row {
    let mut description = lines.join(" ").trim().to_owned();
    let mut kind = match value {
        Value::String(_) => "string",
        Value::Number(n) if n.is_i64() || n.is_u64() => "int",
        Value::Number(_) => "number",
        Value::Bool(_) => "bool",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
        Value::Null => "null",
    }
    .to_owned();
    if let Some(rest) = description.strip_prefix('(')
        && let Some((t, text)) = rest.split_once(')')
    {
        kind = t.to_owned();
        description = text.trim().to_owned();
    }
    let default = if required {
        format!("required, e.g. `{}`", value_text(value))
    } else {
        format!("`{}`", value_text(value))
    };
    Row {
        key: path.to_owned(),
        kind,
        default,
        description,
    }
}

fn value_text(v: &Value) -> String {
    v.to_string()
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

fn values_table() -> String {
    let text = read(&format!("{CHART}/values.yaml"));
    let values = yaml(&text);
    let rows = values_rows(&text, &values);

    // Every value is documented, itself or through a documented parent.
    let documented: BTreeSet<&str> = rows.iter().map(|r| r.key.as_str()).collect();
    let mut leaves = Vec::new();
    collect_leaves(&values, "", &mut leaves);
    let undocumented: Vec<&String> = leaves
        .iter()
        .filter(|leaf| {
            !documented
                .iter()
                .any(|d| leaf.as_str() == *d || leaf.starts_with(&format!("{d}.")))
        })
        .collect();
    assert!(
        undocumented.is_empty(),
        "values.yaml keys without a `# --` comment: {undocumented:?}"
    );

    let mut out = String::from("| Key | Type | Default | Description |\n|---|---|---|---|\n");
    for r in &rows {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            r.key,
            cell(&r.kind),
            cell(&r.default),
            cell(&r.description)
        ));
    }
    out
}

fn collect_leaves(v: &Value, path: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                collect_leaves(v, &p, out);
            }
        }
        _ => out.push(path.to_owned()),
    }
}

#[test]
fn chart_readme_values_table_is_current() {
    let path = root().join(CHART).join("README.md");
    let readme = read(&format!("{CHART}/README.md"));
    let start = readme
        .find(TABLE_START)
        .expect("README has the values:start marker");
    let body = start + readme[start..].find('\n').expect("a line end") + 1;
    let end = readme
        .find(TABLE_END)
        .expect("README has the values:end marker");
    let table = values_table();
    if readme[body..end] == table {
        return;
    }
    if std::env::var_os("PIO_REGENERATE").is_some_and(|v| v == "1") {
        let new = format!("{}{table}{}", &readme[..body], &readme[end..]);
        std::fs::write(&path, new).expect("README written");
        return;
    }
    panic!(
        "{} has a stale values table: run `PIO_REGENERATE=1 cargo test --test helm chart_readme`",
        path.display()
    );
}
