//! Random specs, valid and not, through validation, guardrails and the planner.

use super::*;
use crate::controller::fixtures::{binding_of, cluster};
use crate::controller::observe::Observed;
use crate::controller::plan;
use crate::crd::PodIdentityBindingSpec;
use crate::guardrails::{GuardrailConfig, evaluate};
use proptest::prelude::*;
use serde_json::json;

fn text() -> impl Strategy<Value = Value> {
    prop_oneof![
        "[a-z0-9.-]{0,70}".prop_map(Value::from),
        "\\PC{0,30}".prop_map(Value::from),
        Just(json!("arn:aws:iam::111122223333:role/r")),
        Just(json!("arn:aws-cn:iam::111122223333:role/p/r")),
        Just(json!("arn:aws:iam::999999999999:role/r")),
        Just(json!("arn:aws:iam::aws:policy/ReadOnlyAccess")),
        Just(json!("arn:aws-us-gov:iam::111122223333:policy/x")),
        Just(json!("arn:aws:iam::111122223333:policy/")),
        Just(json!("arn:aws:s3:::b")),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        text(),
        Just(json!("*")),
        Just(json!("Allow")),
        Just(json!("2012-10-17")),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("Version".to_owned()),
                    Just("Statement".to_owned()),
                    Just("Effect".to_owned()),
                    Just("Action".to_owned()),
                    Just("NotAction".to_owned()),
                    Just("Resource".to_owned()),
                    Just("Condition".to_owned()),
                    "[a-zA-Z]{1,8}",
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn policy() -> impl Strategy<Value = Value> {
    prop_oneof![
        json_value(),
        (json_value(), json_value(), any::<bool>()).prop_map(|(a, r, allow)| json!({
            "Version": "2012-10-17",
            "Statement": [{"Effect": if allow {"Allow"} else {"Deny"}, "Action": a, "Resource": r}]
        })),
    ]
}

fn spec() -> impl Strategy<Value = Value> {
    (
        (
            prop::option::of(text()),
            prop::option::of(any::<bool>()),
            prop::option::of(text()),
            prop::option::of(text()),
            prop::option::of(any::<i32>()),
            prop::option::of(text()),
        ),
        (
            prop::collection::vec(text(), 0..3),
            prop::collection::btree_map("[a-zA-Z0-9+=,.@_ -]{0,12}", policy(), 0..3),
            prop::option::of(text()),
            prop::option::of(any::<bool>()),
            prop::option::of(policy()),
            prop::collection::btree_map("\\PC{0,10}", "\\PC{0,10}", 0..4),
        ),
    )
        .prop_map(
            |((sa, create, arn, name, msd, boundary), (mpa, inline, target, dst, sp, tags))| {
                let mut role = serde_json::Map::new();
                let mut put = |k: &str, v: Option<Value>| {
                    if let Some(v) = v {
                        role.insert(k.to_owned(), v);
                    }
                };
                put("arn", arn);
                put("name", name);
                put("maxSessionDuration", msd.map(Value::from));
                put("permissionsBoundaryArn", boundary);
                if !mpa.is_empty() {
                    role.insert("managedPolicyArns".into(), Value::from(mpa));
                }
                if !inline.is_empty() {
                    role.insert(
                        "inlinePolicies".into(),
                        Value::Object(inline.into_iter().collect()),
                    );
                }
                let mut spec = json!({"role": role, "tags": tags});
                let obj = spec.as_object_mut().expect("object literal");
                let mut sa_spec = serde_json::Map::new();
                if let Some(n) = sa {
                    sa_spec.insert("name".into(), n);
                }
                if let Some(c) = create {
                    sa_spec.insert("create".into(), c.into());
                }
                obj.insert("serviceAccount".into(), Value::Object(sa_spec));
                for (k, v) in [
                    ("targetRoleArn", target),
                    ("disableSessionTags", dst.map(Value::from)),
                    ("sessionPolicy", sp),
                ] {
                    if let Some(v) = v {
                        obj.insert(k.into(), v);
                    }
                }
                spec
            },
        )
}

proptest! {
#![proptest_config(ProptestConfig::with_cases(512))]

#[test]
fn random_specs_yield_a_plan_or_an_invalid_spec_naming_a_field(spec in spec()) {
    // A spec serde cannot read is the malformed-object path, not validation's.
    let Ok(spec) = serde_json::from_value::<PodIdentityBindingSpec>(spec) else {
        return Ok(());
    };
    let b = binding_of(spec);
    match desired(&b, &cluster()) {
        Ok(d) => {
            let p = plan::plan(&d, &Observed::default());
            prop_assert!(p.blocked.is_some() || !p.actions.is_empty());
            // Everything but escalation allowed, so policy documents reach the checks.
            let config = GuardrailConfig::parse(include_str!("../../../../../tests/e2e-guardrails.yaml"))
                .expect("tests/e2e-guardrails.yaml is valid");
            let effects = evaluate(&b, &BTreeMap::new(), &config);
            match effects {
                Ok(e) => { desired_with(&b, &cluster(), &e).map(|_| ()).or_else(|e| match e {
                    Error::InvalidSpec { field, .. } if !field.is_empty() => Ok(()),
                    other => Err(other),
                }).map_err(|e| TestCaseError::fail(e.to_string()))?; }
                Err(Error::PolicyDenied { field, rule, .. }) => {
                    prop_assert!(field.starts_with("spec.") && !rule.is_empty());
                }
                Err(other) => prop_assert!(false, "{other}"),
            }
        }
        Err(Error::InvalidSpec { field, message }) => {
            prop_assert!(!field.is_empty() && !message.is_empty());
            let known = ["serviceAccount.name", "tags", "sessionPolicy", "targetRoleArn", "role."];
            prop_assert!(known.iter().any(|k| field.starts_with(k)), "{field}");
        }
        Err(other) => prop_assert!(false, "not InvalidSpec: {other}"),
    }
}
}
