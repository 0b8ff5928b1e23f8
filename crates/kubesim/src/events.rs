//! The real server's rules for Events, which depend on the API a write comes through:
//! core/v1 checks little and lets updates change anything; events.k8s.io/v1 wants the
//! new fields on create and keeps all but `series` (and metadata) fixed afterwards.
//! Objects are in storage (core/v1) shape, so fields are named as core/v1 names them,
//! as the real server's messages do (`message`, not `note`).

use serde_json::Value;

use super::failure::Cause;
use super::kinds::NameRule;
use super::meta::{check_name, is_qualified_name};

const REPORTING_INSTANCE_LIMIT: usize = 128;
const ACTION_LIMIT: usize = 128;
const REASON_LIMIT: usize = 128;
const NOTE_LIMIT: usize = 1024;

const QUALIFIED_NAME_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";

/// Writes through core/v1.
pub fn check_core(new: &Value, _old: Option<&Value>) -> Vec<Cause> {
    legacy(new, "reportingComponent")
}

/// Writes through events.k8s.io/v1.
pub fn check_events_v1(new: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut causes = legacy(new, "reportingController");
    match old {
        None => {
            let name = new
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            causes.extend(check_name(NameRule::Subdomain, name, "metadata.name"));
            causes.extend(series(new));
            if is_zero(new.get("eventTime")) {
                causes.push(Cause::required("eventTime"));
            }
            let type_ = text(new, "type");
            if type_ != "Normal" && type_ != "Warning" {
                causes.push(Cause::invalid(
                    "type",
                    &Value::from(""),
                    &format!("has invalid value: {type_}"),
                ));
            }
            for unset in ["firstTimestamp", "lastTimestamp", "count", "source"] {
                if !is_zero(new.get(unset)) {
                    causes.push(Cause::invalid(unset, &Value::from(""), "needs to be unset"));
                }
            }
        }
        Some(old) => {
            if new.get("series") != old.get("series") {
                causes.extend(series(new));
            }
            for fixed in [
                "involvedObject",
                "reason",
                "message",
                "source",
                "firstTimestamp",
                "lastTimestamp",
                "count",
                "reason",
                "type",
                "eventTime",
                "action",
                "related",
                "reportingComponent",
                "reportingInstance",
            ] {
                let (now, before) = (new.get(fixed), old.get(fixed));
                if !(is_zero(now) && is_zero(before)) && now != before {
                    let shown = if fixed == "reportingComponent" {
                        "reportingController"
                    } else {
                        fixed
                    };
                    causes.push(Cause::invalid(
                        shown,
                        now.unwrap_or(&Value::Null),
                        "field is immutable",
                    ));
                }
            }
        }
    }
    causes
}

/// What every Event must satisfy, whichever API wrote it.
fn legacy(e: &Value, controller_field: &str) -> Vec<Cause> {
    let mut causes = Vec::new();
    let ns = e
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let involved_ns = e
        .pointer("/involvedObject/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mismatch = || {
        Cause::invalid(
            "involvedObject.namespace",
            &Value::from(involved_ns),
            "does not match event.namespace",
        )
    };
    if is_zero(e.get("eventTime")) {
        let agrees = if involved_ns.is_empty() {
            ns.is_empty() || ns == "default"
        } else {
            ns == involved_ns
        };
        if !agrees {
            causes.push(mismatch());
        }
        return causes;
    }
    if involved_ns.is_empty() && ns != "default" && ns != "kube-system" {
        causes.push(mismatch());
    }
    let controller = text(e, "reportingComponent");
    if controller.is_empty() {
        causes.push(Cause::required(controller_field));
    }
    if !is_qualified_name(controller) {
        causes.push(Cause::invalid(
            controller_field,
            &Value::from(controller),
            QUALIFIED_NAME_MSG,
        ));
    }
    for (field, limit) in [
        ("reportingInstance", REPORTING_INSTANCE_LIMIT),
        ("action", ACTION_LIMIT),
        ("reason", REASON_LIMIT),
    ] {
        let value = text(e, field);
        if value.is_empty() {
            causes.push(Cause::required(field));
        }
        if value.len() > limit {
            causes.push(Cause::invalid(
                field,
                &Value::from(""),
                &format!("can have at most {limit} characters"),
            ));
        }
    }
    if text(e, "message").len() > NOTE_LIMIT {
        causes.push(Cause::invalid(
            "message",
            &Value::from(""),
            &format!("can have at most {NOTE_LIMIT} characters"),
        ));
    }
    causes
}

fn series(e: &Value) -> Vec<Cause> {
    let Some(series) = e.get("series").filter(|s| !s.is_null()) else {
        return Vec::new();
    };
    let mut causes = Vec::new();
    if series.get("count").and_then(Value::as_i64).unwrap_or(0) < 2 {
        causes.push(Cause::invalid(
            "series.count",
            &Value::from(""),
            "should be at least 2",
        ));
    }
    if is_zero(series.get("lastObservedTime")) {
        causes.push(Cause::required("series.lastObservedTime"));
    }
    causes
}

fn text<'a>(e: &'a Value, field: &str) -> &'a str {
    e.get(field).and_then(Value::as_str).unwrap_or_default()
}

/// Absent, or the zero value the real server's types would hold instead.
fn is_zero(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Number(n)) => n.as_f64() == Some(0.0),
        Some(Value::Bool(b)) => !b,
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::Object(o)) => o.values().all(|v| is_zero(Some(v))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event() -> Value {
        json!({
            "metadata": {"name": "w.1", "namespace": "default"},
            "eventTime": "2026-01-01T00:00:00.000000Z",
            "reportingComponent": "ctl", "reportingInstance": "ctl-0",
            "action": "Reconcile", "reason": "Done", "type": "Normal", "message": "ok",
            "involvedObject": {"kind": "Widget", "name": "w", "namespace": "default"}
        })
    }

    #[test]
    fn events_v1_keeps_all_but_series_fixed() {
        let old = event();
        let mut new = old.clone();
        new["series"] = json!({"count": 2, "lastObservedTime": "2026-01-01T00:01:00.000000Z"});
        assert!(check_events_v1(&new, Some(&old)).is_empty());
        new["message"] = json!("changed");
        let causes = check_events_v1(&new, Some(&old));
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].field, "message");
        assert_eq!(
            causes[0].message,
            "Invalid value: \"changed\": field is immutable"
        );
        assert!(check_core(&new, Some(&old)).is_empty());
    }

    #[test]
    fn events_v1_create_wants_the_new_fields() {
        assert!(check_events_v1(&event(), None).is_empty());
        let mut e = event();
        e["type"] = json!("Odd");
        e["count"] = json!(3);
        e["series"] = json!({"count": 1});
        e.as_object_mut().unwrap().remove("action");
        let fields: Vec<String> = check_events_v1(&e, None)
            .into_iter()
            .map(|c| c.field)
            .collect();
        assert_eq!(
            fields,
            [
                "action",
                "series.count",
                "series.lastObservedTime",
                "type",
                "count"
            ]
        );
    }
}
