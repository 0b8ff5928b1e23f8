use super::*;
use crate::controller::fixtures::{binding, cluster};
use serde_json::json;

fn field_of(spec: Value) -> String {
    match desired(&binding(spec), &cluster()) {
        Err(Error::InvalidSpec { field, .. }) => field,
        other => panic!("expected InvalidSpec, got {other:?}"),
    }
}

#[test]
fn defaults_resolve_to_a_scoped_managed_role() {
    let d = desired(&binding(json!({})), &cluster()).expect("valid");
    assert_eq!(d.service_account.name, "app");
    assert!(d.service_account.create);
    let DesiredRole::Managed(m) = &d.role else {
        panic!("managed")
    };
    assert_eq!(
        m.name,
        naming::default_role_name(&cluster().arn, "team", "app")
    );
    assert!(m.name.starts_with("pi-prod-team-app-"));
    assert_eq!(
        m.arn,
        format!(
            "arn:aws:iam::111122223333:role/pod-identity/prod/{}",
            m.name
        )
    );
    assert!(naming::owned_by(&m.tags, &cluster().arn, "team", "app"));
    let cond = &m.trust_policy["Statement"][0]["Condition"]["StringEquals"];
    assert_eq!(cond["aws:RequestTag/kubernetes-service-account"], "app");
    assert_eq!(cond["aws:RequestTag/kubernetes-namespace"], "team");
    assert_eq!(d.association.tags.len(), 4);
    assert_eq!(
        d.association.tags.get(naming::TAG_CLUSTER_ARN),
        Some(&cluster().arn)
    );
    assert_eq!(d.deletion_policy, DeletionPolicy::Delete);
}

#[test]
fn target_role_adds_the_chaining_policy_and_session_tags_off_unscope_trust() {
    let d = desired(
        &binding(json!({"targetRoleArn": "arn:aws:iam::444455556666:role/t", "disableSessionTags": true})),
        &cluster(),
    )
    .expect("valid");
    let DesiredRole::Managed(m) = &d.role else {
        panic!("managed")
    };
    assert_eq!(
        m.inline_policies[TARGET_ROLE_POLICY]["Statement"][0]["Resource"],
        "arn:aws:iam::444455556666:role/t"
    );
    let cond = &m.trust_policy["Statement"][0]["Condition"];
    assert!(
        cond["StringEquals"]
            .get("aws:RequestTag/kubernetes-namespace")
            .is_none()
    );
    assert_eq!(cond["StringEquals"]["aws:SourceAccount"], "111122223333");
    assert_eq!(cond["ArnEquals"]["aws:SourceArn"], cluster().arn.as_str());
}

#[test]
fn more_managed_policies_than_the_quota_are_refused() {
    let arns: Vec<String> = (0..11)
        .map(|i| format!("arn:aws:iam::111122223333:policy/p{i}"))
        .collect();
    let b = binding(json!({"role": {"managedPolicyArns": arns}}));
    match check_managed_policy_count(&b, 10) {
        Err(Error::InvalidSpec { field, message }) => {
            assert_eq!(field, "role.managedPolicyArns");
            assert!(
                message.contains("11") && message.contains("10"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    check_managed_policy_count(&b, 20).expect("a raised quota");
    let ten = binding(json!({"role": {"managedPolicyArns": arns[..10]}}));
    check_managed_policy_count(&ten, 10).expect("at the quota");
}

#[test]
fn a_session_policy_over_2048_characters_is_refused() {
    let resources: Vec<String> = (0..120)
        .map(|i| format!("arn:aws:s3:::bucket-{i:04}/*"))
        .collect();
    let field = field_of(json!({
        "disableSessionTags": true,
        "sessionPolicy": {"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Action": "s3:GetObject", "Resource": resources}]},
    }));
    assert_eq!(field, "sessionPolicy");
}

#[test]
fn each_bad_field_is_named() {
    assert_eq!(
        field_of(json!({"serviceAccount": {"name": "Bad_Name"}})),
        "serviceAccount.name"
    );
    assert_eq!(
        field_of(json!({"role": {"name": "x".repeat(65)}})),
        "role.name"
    );
    assert_eq!(
        field_of(json!({"role": {"maxSessionDuration": 100}})),
        "role.maxSessionDuration"
    );
    assert_eq!(
        field_of(json!({"role": {"arn": "arn:aws:iam::111122223333:role/r", "name": "x"}})),
        "role.arn"
    );
    assert_eq!(
        field_of(json!({"role": {"arn": "arn:aws:iam::999999999999:role/r"}})),
        "role.arn"
    );
    assert_eq!(
        field_of(json!({"role": {"managedPolicyArns": ["nope"]}})),
        "role.managedPolicyArns[0]"
    );
    assert_eq!(
        field_of(json!({"role": {"inlinePolicies": {"p": {"Statement": []}}}})),
        "role.inlinePolicies.p"
    );
    assert_eq!(
        field_of(json!({"sessionPolicy": {"Version": "2012-10-17", "Statement": []}})),
        "sessionPolicy"
    );
    assert_eq!(field_of(json!({"tags": {"aws:x": "y"}})), "tags");
    assert_eq!(
        field_of(json!({"targetRoleArn": "arn:aws:s3:::bucket"})),
        "targetRoleArn"
    );
}

#[test]
fn a_guardrail_prefix_leads_the_name_and_the_identity_hash_ends_it() {
    let effects = Effects {
        role_name_prefix: Some("tenant-".into()),
        ..Effects::default()
    };
    let d = desired_with(&binding(json!({})), &cluster(), &effects).expect("valid");
    let plain = desired(&binding(json!({})), &cluster()).expect("valid");
    let name = d.role.name();
    assert!(name.starts_with("tenant-pi-prod-team-app-"), "{name}");
    let hash = &plain.role.name()[plain.role.name().len() - naming::ROLE_NAME_HASH_LEN..];
    assert!(name.ends_with(hash));
    // A name the spec gives is kept as it is.
    let named = desired_with(
        &binding(json!({"role": {"name": "tenant-mine"}})),
        &cluster(),
        &effects,
    )
    .expect("valid");
    assert_eq!(named.role.name(), "tenant-mine");
}

#[test]
fn cross_account_role_message_points_at_target_role_arn() {
    let err = desired(
        &binding(json!({"role": {"arn": "arn:aws:iam::999999999999:role/r"}})),
        &cluster(),
    )
    .expect_err("other account");
    assert!(err.to_string().contains("targetRoleArn"));
}
