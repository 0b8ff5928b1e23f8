//! GitOps health: the Argo CD Lua health check classifies binding statuses, the
//! `argocd-cm` snippet embeds it, and the Flux example's CEL expressions wait on bindings
//! and agree with it.

use std::collections::BTreeSet;

use pod_identity_operator::controller::status::{self, Reason};
use serde_json::{Value, json};

use crate::files::{read, yaml_docs};

fn health_script() -> String {
    read("config/argocd/health.lua")
}

/// Runs the Argo CD health check on `obj`, as Argo CD does: the object as the global
/// `obj`, JSON nulls and absent fields as Lua nil. Returns (status, message).
fn argocd_health(obj: &Value) -> (String, String) {
    use mlua::LuaSerdeExt;
    let lua = mlua::Lua::new();
    let options = mlua::serde::ser::Options::new()
        .serialize_none_to_null(false)
        .serialize_unit_to_null(false)
        .set_array_metatable(false);
    let value = lua.to_value_with(obj, options).expect("object to Lua");
    lua.globals().set("obj", value).expect("obj set");
    let hs: mlua::Table = lua
        .load(health_script())
        .set_name("health.lua")
        .eval()
        .unwrap_or_else(|e| panic!("health.lua fails on {obj}: {e}"));
    (
        hs.get::<String>("status").expect("hs.status"),
        hs.get::<String>("message").expect("hs.message"),
    )
}

fn binding(generation: i64, status: Option<Value>) -> Value {
    let mut b = json!({
        "apiVersion": "podidentity.dev/v1alpha1",
        "kind": "PodIdentityBinding",
        "metadata": {"name": "app", "namespace": "default", "generation": generation},
        "spec": {"role": {}},
    });
    if let Some(s) = status {
        b["status"] = s;
    }
    b
}

fn cond(type_: &str, status: &str, reason: &str, generation: i64) -> Value {
    json!({
        "type": type_,
        "status": status,
        "reason": reason,
        "message": format!("{type_} is {status} because {reason}"),
        "lastTransitionTime": "2026-01-01T00:00:00Z",
        "observedGeneration": generation,
    })
}

fn status_with(generation: i64, conditions: Vec<Value>) -> Option<Value> {
    Some(json!({"observedGeneration": generation, "conditions": conditions}))
}

/// What Argo CD should show for a binding whose Ready condition is False with `reason`.
/// The match is exhaustive: a new reason does not compile until it is classified here
/// (and in health.lua and the Flux example).
fn expected_for_not_ready(reason: Reason) -> &'static str {
    use Reason::*;
    match reason {
        InvalidSpec
        | PolicyDenied
        | RoleConflict
        | AssociationConflict
        | RoleNotFound
        | RoleTrustMissing
        | ServiceAccountNotFound
        | CleanupBlocked
        | AccessDenied
        | ClusterNotFound
        | QuotaExceeded => "Degraded",
        Waiting | Retrying | Throttled | RolePropagating => "Progressing",
        // Reasons of True conditions; never on a False Ready, so not Degraded.
        Reconciled
        | RoleCreated
        | RoleExisting
        | ServiceAccountCreated
        | ServiceAccountFound
        | AssociationCreated
        | AssociationAdopted => "Progressing",
    }
}

fn degraded_reasons() -> BTreeSet<String> {
    Reason::ALL
        .iter()
        .filter(|r| expected_for_not_ready(**r) == "Degraded")
        .map(|r| r.as_str().to_owned())
        .collect()
}

/// (case, object, expected Argo CD status)
fn health_cases() -> Vec<(String, Value, &'static str)> {
    let mut cases = vec![
        ("no status yet".to_owned(), binding(1, None), "Progressing"),
        (
            "status without conditions".into(),
            binding(1, Some(json!({}))),
            "Progressing",
        ),
        (
            "ready at the current generation".into(),
            binding(
                3,
                status_with(3, vec![cond("Ready", "True", "Reconciled", 3)]),
            ),
            "Healthy",
        ),
        (
            "ready, but an older generation".into(),
            binding(
                4,
                status_with(3, vec![cond("Ready", "True", "Reconciled", 3)]),
            ),
            "Progressing",
        ),
        (
            "failed at an older generation, spec since changed".into(),
            binding(
                5,
                status_with(4, vec![cond("Ready", "False", "InvalidSpec", 4)]),
            ),
            "Progressing",
        ),
        (
            "other conditions only".into(),
            binding(
                1,
                status_with(1, vec![cond("RoleReady", "True", "RoleCreated", 1)]),
            ),
            "Progressing",
        ),
        (
            "ready and still reconciling".into(),
            binding(
                2,
                status_with(
                    2,
                    vec![
                        cond("Ready", "True", "Reconciled", 2),
                        cond("Reconciling", "True", "Progressing", 2),
                    ],
                ),
            ),
            "Progressing",
        ),
        (
            "stalled".into(),
            binding(
                2,
                status_with(
                    2,
                    vec![
                        cond("Ready", "False", "Retrying", 2),
                        cond("Stalled", "True", "RetriesExhausted", 2),
                    ],
                ),
            ),
            "Degraded",
        ),
        (
            "unknown".into(),
            binding(
                1,
                status_with(1, vec![cond("Ready", "Unknown", "Waiting", 1)]),
            ),
            "Progressing",
        ),
    ];
    // Statuses as the operator writes them, kstatus conditions included.
    for r in Reason::ALL {
        let conditions = status::merge(
            &[],
            &status::Conditions {
                ready: status::State::failed(*r, "why"),
                role: status::State::unknown(),
                service_account: status::State::unknown(),
                association: status::State::unknown(),
            },
            Some(2),
        );
        cases.push((
            format!("as written, not ready with {}", r.as_str()),
            binding(
                2,
                Some(json!({"observedGeneration": 2, "conditions": conditions})),
            ),
            expected_for_not_ready(*r),
        ));
    }
    for r in Reason::ALL {
        cases.push((
            format!("Ready=False {}", r.as_str()),
            binding(
                2,
                status_with(
                    2,
                    vec![
                        cond("Ready", "False", r.as_str(), 2),
                        cond("RoleReady", "Unknown", "Waiting", 2),
                    ],
                ),
            ),
            expected_for_not_ready(*r),
        ));
    }
    cases
}

#[test]
fn argocd_health_check_classifies_binding_statuses() {
    // Degraded is exactly what the operator reports as Stalled.
    for r in Reason::ALL {
        assert_eq!(
            expected_for_not_ready(*r) == "Degraded",
            r.stalls(),
            "{}",
            r.as_str()
        );
    }
    for (case, obj, want) in health_cases() {
        let (got, message) = argocd_health(&obj);
        assert_eq!(got, want, "{case}: {message}");
        assert!(!message.is_empty(), "{case}: a message");
    }
    // The message carries the operator's reason and explanation.
    let (_, message) = argocd_health(&binding(
        1,
        status_with(1, vec![cond("Ready", "False", "AccessDenied", 1)]),
    ));
    assert_eq!(message, "AccessDenied: Ready is False because AccessDenied");
}

#[test]
fn argocd_cm_snippet_embeds_the_health_check() {
    let cm = yaml_docs(&read("config/argocd/argocd-cm.yaml"));
    assert_eq!(cm.len(), 1);
    let data = cm[0]["data"].as_object().expect("data");
    assert_eq!(data.len(), 1);
    assert_eq!(
        data["resource.customizations.health.podidentity.dev_PodIdentityBinding"],
        health_script(),
        "config/argocd/argocd-cm.yaml holds config/argocd/health.lua verbatim"
    );
}

/// Flux's verdict from a Kustomization's healthCheckExprs: inProgress, then failed,
/// then current, with the object's top-level fields as variables.
fn flux_verdict(exprs: &Value, obj: &Value) -> &'static str {
    let mut ctx = cel::Context::default();
    for (k, v) in obj.as_object().expect("object") {
        ctx.add_variable_from_value(k.as_str(), cel::to_value(v).expect("JSON to CEL"));
    }
    let eval = |field: &str| -> bool {
        let src = exprs[field]
            .as_str()
            .unwrap_or_else(|| panic!("{field} expression"));
        let program = cel::Program::compile(src).unwrap_or_else(|e| panic!("{field}: {e:?}"));
        match program.execute(&ctx) {
            Ok(cel::Value::Bool(b)) => b,
            other => panic!("{field} on {obj}: {other:?}"),
        }
    };
    if eval("inProgress") {
        "Progressing"
    } else if eval("failed") {
        "Degraded"
    } else if eval("current") {
        "Healthy"
    } else {
        "Progressing"
    }
}

#[test]
fn flux_example_waits_on_bindings_and_agrees_with_argocd() {
    let docs = yaml_docs(&read("config/flux/pod-identity.yaml"));
    let kustomizations: Vec<&Value> = docs
        .iter()
        .filter(|d| d["kind"] == "Kustomization")
        .collect();
    assert_eq!(kustomizations.len(), 2);
    for k in &kustomizations {
        assert_eq!(k["spec"]["wait"], true, "{} waits", k["metadata"]["name"]);
        assert!(k["spec"]["timeout"].is_string());
    }
    let bindings = kustomizations
        .iter()
        .find(|k| k["spec"]["path"] == "./config/samples")
        .expect("a Kustomization applying the bindings");
    assert_eq!(
        bindings["spec"]["dependsOn"][0]["name"],
        kustomizations
            .iter()
            .find(|k| k["spec"]["path"] == "./config/default")
            .expect("a Kustomization installing the operator")["metadata"]["name"]
    );
    let exprs = &bindings["spec"]["healthCheckExprs"][0];
    assert_eq!(exprs["apiVersion"], "podidentity.dev/v1alpha1");
    assert_eq!(exprs["kind"], "PodIdentityBinding");

    // The failed expression lists exactly the reasons the Argo CD check calls Degraded.
    let failed = exprs["failed"].as_str().expect("failed");
    let listed: BTreeSet<String> = failed
        [failed.find('[').expect("[")..failed.find(']').expect("]")]
        .split(['[', ',', '\''])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    assert_eq!(listed, degraded_reasons());
    let script = health_script();
    for r in degraded_reasons() {
        assert!(
            script.contains(&format!("  {r} = true,")),
            "health.lua lists {r}"
        );
    }

    // Both agree on every sample status that has one (Flux reports a missing status
    // as an expression error and keeps waiting).
    for (case, obj, want) in health_cases() {
        if obj.pointer("/status/conditions").is_none() {
            continue;
        }
        if case.contains("Stalled") || case.contains("stalled") || case.contains("reconciling") {
            // kstatus conditions the operator does not set yet; Flux's expressions
            // read Ready only.
            continue;
        }
        assert_eq!(flux_verdict(exprs, &obj), want, "Flux on {case}");
    }
}
