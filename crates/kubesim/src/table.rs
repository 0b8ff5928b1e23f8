//! `meta.k8s.io/v1` Table output for `kubectl get`, from a resource's columns, and the
//! small JSONPath subset printer columns use (`.a.b`, `[0]`, `[*]`, `['key']`,
//! `[?(@.field=="value")]`).

use serde_json::{Value, json};

use super::resources::{CellSource, Column, ResourceDef};

#[derive(Debug, PartialEq)]
enum Step {
    Field(String),
    Index(usize),
    All,
    Filter(Vec<String>, String),
}

fn parse_path(path: &str) -> Option<Vec<Step>> {
    let p = path.trim().trim_start_matches('{').trim_end_matches('}');
    let p = p.strip_prefix('$').unwrap_or(p);
    let mut steps = Vec::new();
    let mut rest = p;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            if end > 0 {
                steps.push(Step::Field(r[..end].to_owned()));
            }
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            let inner = r[..end].trim();
            // a filter may contain ']' only inside quotes; printer columns never do
            rest = &r[end + 1..];
            if inner == "*" {
                steps.push(Step::All);
            } else if let Ok(i) = inner.parse() {
                steps.push(Step::Index(i));
            } else if let Some(f) = inner.strip_prefix("?(").and_then(|f| f.strip_suffix(')')) {
                let (lhs, rhs) = f.split_once("==")?;
                let field: Vec<String> = lhs
                    .trim()
                    .strip_prefix("@.")?
                    .split('.')
                    .map(str::to_owned)
                    .collect();
                let value = rhs
                    .trim()
                    .trim_matches(|c| c == '"' || c == '\'')
                    .to_owned();
                steps.push(Step::Filter(field, value));
            } else {
                steps.push(Step::Field(
                    inner.trim_matches(|c| c == '"' || c == '\'').to_owned(),
                ));
            }
        } else {
            return None;
        }
    }
    Some(steps)
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Every value `path` selects in `obj`.
pub fn select(obj: &Value, path: &str) -> Vec<Value> {
    let Some(steps) = parse_path(path) else {
        return Vec::new();
    };
    let mut cur = vec![obj.clone()];
    for step in steps {
        let mut next = Vec::new();
        for v in cur {
            match (&step, &v) {
                (Step::Field(f), Value::Object(m)) => next.extend(m.get(f).cloned()),
                (Step::Index(i), Value::Array(a)) => next.extend(a.get(*i).cloned()),
                (Step::All, Value::Array(a)) => next.extend(a.iter().cloned()),
                (Step::All, Value::Object(m)) => next.extend(m.values().cloned()),
                (Step::Filter(field, want), Value::Array(a)) => {
                    next.extend(
                        a.iter()
                            .filter(|item| {
                                let mut x = Some(*item);
                                for f in field {
                                    x = x.and_then(|x| x.get(f));
                                }
                                x.map(text).as_deref() == Some(want.as_str())
                            })
                            .cloned(),
                    );
                }
                _ => {}
            }
        }
        cur = next;
    }
    cur
}

/// How `kubectl` shows an age: `45s`, `3m20s`, `5h`, `2d3h`.
pub fn human_age(timestamp: &str) -> String {
    let Ok(t) = chrono::DateTime::parse_from_rfc3339(timestamp) else {
        return "<unknown>".into();
    };
    let secs = (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
        .num_seconds()
        .max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 600 => format!("{}m{}s", s / 60, s % 60),
        s if s < 3 * 3600 => format!("{}m", s / 60),
        s if s < 8 * 3600 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        s if s < 48 * 3600 => format!("{}h", s / 3600),
        s if s < 8 * 86400 => format!("{}d{}h", s / 86400, (s % 86400) / 3600),
        s => format!("{}d", s / 86400),
    }
}

fn cell(col: &Column, obj: &Value) -> Value {
    match &col.source {
        CellSource::Age => json!(human_age(
            obj.pointer("/metadata/creationTimestamp")
                .and_then(Value::as_str)
                .unwrap_or_default()
        )),
        CellSource::Count(fields) => json!(
            fields
                .iter()
                .filter_map(|f| obj.get(f))
                .map(|v| v
                    .as_object()
                    .map_or_else(|| v.as_array().map_or(0, Vec::len), |m| m.len()))
                .sum::<usize>()
        ),
        CellSource::PodReady => {
            let total = obj
                .pointer("/spec/containers")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            let ready = obj
                .pointer("/status/containerStatuses")
                .and_then(Value::as_array)
                .map_or(0, |a| {
                    a.iter()
                        .filter(|c| c.get("ready") == Some(&Value::Bool(true)))
                        .count()
                });
            json!(format!("{ready}/{total}"))
        }
        CellSource::JsonPath(path) => {
            let found = select(obj, path);
            match found.as_slice() {
                [] if col.type_ == "integer" && path.contains("restartCount") => json!(0),
                [] => Value::Null,
                [one] if col.type_ == "date" => {
                    one.as_str().map_or(Value::Null, |s| json!(human_age(s)))
                }
                [one] => one.clone(),
                many => json!(many.iter().map(text).collect::<Vec<_>>().join(",")),
            }
        }
    }
}

/// The Table for `objects` (already at the requested version).
pub fn table(def: &ResourceDef, version: &str, objects: &[Value], list_meta: Value) -> Value {
    let cols = def
        .version(version)
        .map(|v| v.columns.clone())
        .unwrap_or_default();
    let mut defs = vec![json!({
        "name": "Name", "type": "string", "format": "name", "priority": 0,
        "description": "Name must be unique within a namespace.",
    })];
    defs.extend(cols.iter().map(|c| {
        json!({"name": c.name, "type": if c.type_ == "date" { "string" } else { c.type_.as_str() },
               "format": c.format, "description": c.description, "priority": c.priority})
    }));
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let mut cells = vec![o.pointer("/metadata/name").cloned().unwrap_or(Value::Null)];
            cells.extend(cols.iter().map(|c| cell(c, o)));
            json!({
                "cells": cells,
                "object": {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": o.get("metadata").cloned().unwrap_or(json!({})),
                },
            })
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": defs,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printer_column_paths() {
        let obj = json!({"spec": {"a": {"b": 1}, "list": [{"n": "x"}, {"n": "y"}]},
                         "status": {"conditions": [{"type": "Synced", "status": "False"},
                                                   {"type": "Ready", "status": "True", "reason": "Ok"}]}});
        assert_eq!(select(&obj, ".spec.a.b"), vec![json!(1)]);
        assert_eq!(select(&obj, ".spec.list[1].n"), vec![json!("y")]);
        assert_eq!(
            select(&obj, ".spec.list[*].n"),
            vec![json!("x"), json!("y")]
        );
        assert_eq!(
            select(&obj, ".status.conditions[?(@.type==\"Ready\")].status"),
            vec![json!("True")]
        );
        assert_eq!(
            select(&obj, "{.status.conditions[?(@.type=='Ready')].reason}"),
            vec![json!("Ok")]
        );
        assert_eq!(select(&obj, ".spec['a'].b"), vec![json!(1)]);
        assert!(select(&obj, ".missing.x").is_empty());
    }

    #[test]
    fn ages_read_like_kubectl() {
        let t = (chrono::Utc::now() - chrono::Duration::seconds(200)).to_rfc3339();
        assert!(human_age(&t).starts_with("3m"), "{}", human_age(&t));
    }
}
