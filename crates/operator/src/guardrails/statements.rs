//! The statements of an IAM policy document and the string lists of their fields, as
//! the escalation analysis ([`super::escalation`]) and the role targets
//! ([`super::targets`]) read them.

use serde_json::Value;

/// A field that is one string or a list of them, as a list.
pub(super) fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// The statements of a document: its `Statement` list, or the one statement it holds.
pub(super) fn statements(doc: &Value) -> Vec<&Value> {
    match doc.get("Statement") {
        Some(Value::Array(list)) => list.iter().collect(),
        Some(one @ Value::Object(_)) => vec![one],
        _ => Vec::new(),
    }
}

/// True for an `Allow` statement.
pub(super) fn allows(st: &Value) -> bool {
    st.get("Effect").and_then(Value::as_str) == Some("Allow")
}
