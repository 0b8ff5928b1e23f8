//! Every bad input, one binding each, gets its reason and a message naming the field, and
//! the AWS account is left exactly as it was.

use serde_json::{Value, json};

use crate::support;
use crate::support::NS;
use crate::{BOUNDARY, allow, create, doc, inline, namespace, start, verdict};

/// (spec, expected reason, fragment of the message). All in namespace `default`.
fn bad_inputs() -> Vec<(Value, &'static str, String)> {
    let invalid = "InvalidSpec";
    let denied = "PolicyDenied";
    let many_tags: serde_json::Map<String, Value> =
        (0..48).map(|i| (format!("k{i}"), json!("v"))).collect();
    let big_inline = allow(
        "s3:GetObject",
        &format!("arn:aws:s3:::{}", "b".repeat(11_000)),
    );
    let mid_inline = allow("s3:GetObject", &format!("arn:aws:s3:::{}", "b".repeat(600)));
    let s = |x: &str| x.to_owned();
    vec![
        // The operator's own validation.
        (
            json!({"serviceAccount": {"name": "Bad_Name"}}),
            invalid,
            s("spec.serviceAccount.name"),
        ),
        (
            json!({"serviceAccount": {"name": ""}}),
            invalid,
            s("spec.serviceAccount.name"),
        ),
        (
            json!({"serviceAccount": {"name": "a".repeat(254)}}),
            invalid,
            s("RFC 1123"),
        ),
        (
            json!({"serviceAccount": {"name": "-lead"}}),
            invalid,
            s("spec.serviceAccount.name"),
        ),
        (
            json!({"role": {"name": "x".repeat(65)}}),
            invalid,
            s("spec.role.name"),
        ),
        (
            json!({"role": {"name": "bad name"}}),
            invalid,
            s("not a valid IAM role name"),
        ),
        (
            json!({"role": {"maxSessionDuration": 90000}}),
            invalid,
            s("spec.role.maxSessionDuration: 90000 is above the IAM maximum of 43200 seconds"),
        ),
        (
            json!({"role": {"maxSessionDuration": 100}}),
            invalid,
            s("below the IAM minimum of 3600"),
        ),
        (
            json!({"role": {"arn": "arn:aws:iam::111122223333:role/allowed-x", "name": "y"}}),
            invalid,
            s("an existing role excludes"),
        ),
        (
            json!({"role": {"arn": "not-an-arn"}}),
            invalid,
            s("spec.role.arn"),
        ),
        (
            json!({"role": {"arn": "arn:aws:s3:::bucket"}}),
            invalid,
            s("not an IAM role ARN"),
        ),
        (
            json!({"role": {"arn": "arn:aws-xx:iam::111122223333:role/allowed-x"}}),
            invalid,
            s("not an IAM role ARN"),
        ),
        (
            json!({"role": {"arn": "arn:aws:iam::11112222333:role/allowed-x"}}),
            invalid,
            s("not an IAM role ARN"),
        ),
        (
            json!({"role": {"arn": "arn:aws:iam::999999999999:role/allowed-x"}}),
            invalid,
            s("targetRoleArn"),
        ),
        (
            json!({"role": {"managedPolicyArns": ["nope"]}}),
            invalid,
            s("spec.role.managedPolicyArns[0]"),
        ),
        (
            json!({"role": {"managedPolicyArns": ["arn:aws:iam::111122223333:role/x"]}}),
            invalid,
            s("not an IAM policy ARN"),
        ),
        (
            json!({"role": {"managedPolicyArns": ["arn:aws-foo:iam::aws:policy/ReadOnlyAccess"]}}),
            invalid,
            s("aws-us-gov"),
        ),
        (
            json!({"role": {"permissionsBoundaryArn": "boundary"}}),
            invalid,
            s("spec.role.permissionsBoundaryArn"),
        ),
        (
            inline(json!({"Version": "2012-10-17", "Statement": "nope"})),
            invalid,
            s("spec.role.inlinePolicies.p"),
        ),
        (
            inline(json!({"Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]})),
            invalid,
            s("Missing required field Version"),
        ),
        (
            inline(json!("a string")),
            invalid,
            s("spec.role.inlinePolicies.p"),
        ),
        (
            inline(doc(
                json!({"Effect": "Maybe", "Action": "s3:*", "Resource": "*"}),
            )),
            invalid,
            s("spec.role.inlinePolicies.p"),
        ),
        (
            inline(doc(
                json!({"Effect": "Allow", "Action": "s3:*", "NotAction": "s3:Get*", "Resource": "*"}),
            )),
            invalid,
            s("spec.role.inlinePolicies.p"),
        ),
        (
            inline(doc(
                json!({"Effect": "Allow", "Action": "s3:*", "Resource": "*", "Extra": 1}),
            )),
            invalid,
            s("Unknown field Extra"),
        ),
        (
            json!({"role": {"inlinePolicies": {"pod-identity-target-role": allow("s3:GetObject", "*")}}}),
            invalid,
            s("reserved for targetRoleArn"),
        ),
        (
            json!({"role": {"inlinePolicies": {"bad name!": allow("s3:GetObject", "*")}}}),
            invalid,
            s("inline policy names"),
        ),
        (inline(big_inline), invalid, s("IAM allows 10240 per role")),
        (
            json!({"sessionPolicy": allow("s3:GetObject", "*")}),
            invalid,
            s("requires disableSessionTags: true"),
        ),
        (
            json!({"disableSessionTags": true, "sessionPolicy": {"Version": "2012-10-17"}}),
            invalid,
            s("spec.sessionPolicy"),
        ),
        (json!({"tags": {"aws:x": "y"}}), invalid, s("reserved")),
        (
            json!({"tags": {"podidentity.dev/name": "y"}}),
            invalid,
            s("spec.tags"),
        ),
        (
            json!({"tags": {"k".repeat(129): "v"}}),
            invalid,
            s("keys are 1-128 characters"),
        ),
        (json!({"tags": many_tags}), invalid, s("at most 46 tags")),
        (
            json!({"tags": {"team": "a;b"}}),
            invalid,
            s("IAM allows letters, digits, spaces"),
        ),
        (
            json!({"targetRoleArn": "arn:aws:s3:::bucket"}),
            invalid,
            s("spec.targetRoleArn"),
        ),
        (
            json!({"role": {"description": "d".repeat(1001)}}),
            invalid,
            s("spec.role.description"),
        ),
        // The namespace's guardrail rule.
        (
            json!({"role": {"managedPolicyArns": ["arn:aws:iam::aws:policy/AdministratorAccess"]}}),
            denied,
            s("spec.role.managedPolicyArns[0] denied by guardrail rule \"apps\""),
        ),
        (
            json!({"role": {"managedPolicyArns": ["arn:aws:iam::aws:policy/ReadOnlyAccess", "arn:aws:iam::111122223333:policy/other"]}}),
            denied,
            s("spec.role.managedPolicyArns[1]"),
        ),
        (
            json!({"role": {"arn": "arn:aws:iam::111122223333:role/other"}}),
            denied,
            s("allowedExistingRoleArns"),
        ),
        (
            json!({"targetRoleArn": "arn:aws:iam::444455556666:role/admin"}),
            denied,
            s("allowedTargetRoleArns"),
        ),
        (
            json!({"role": {"permissionsBoundaryArn": "arn:aws:iam::111122223333:policy/other"}}),
            denied,
            format!("requires the boundary {BOUNDARY}"),
        ),
        (
            json!({"role": {"maxSessionDuration": 7201}}),
            denied,
            s("above this namespace's maximum of 7200"),
        ),
        (
            json!({"role": {"name": "noprefix"}}),
            denied,
            s("start with \"t-\""),
        ),
        (
            json!({"serviceAccount": {"name": "default"}}),
            denied,
            s("spec.serviceAccount.name"),
        ),
        (
            json!({"serviceAccount": {"name": "admin-tools"}}),
            denied,
            s("may not be bound"),
        ),
        (inline(mid_inline), denied, s("limit of 500")),
        (inline(allow("*", "*")), denied, s("anyAction")),
        (
            inline(allow("iam:*", "arn:aws:iam::111122223333:role/x")),
            denied,
            s("iamAll"),
        ),
        (
            inline(allow("iam:PassRole", "*")),
            denied,
            s("passRoleAnyResource"),
        ),
        (
            inline(allow("sts:AssumeRole", "*")),
            denied,
            s("assumeRoleAnyResource"),
        ),
        (
            inline(allow("iam:CreateUser", "arn:aws:iam::111122223333:user/x")),
            denied,
            s("iamWrite"),
        ),
        (
            inline(doc(
                json!({"Effect": "Allow", "NotAction": "s3:*", "Resource": "*"}),
            )),
            denied,
            s("spec.role.inlinePolicies.p.Statement[0]"),
        ),
        (
            json!({"disableSessionTags": true, "sessionPolicy": allow("s3:GetObject", "*")}),
            denied,
            s("sessionPolicies are not allowed"),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_input_gets_its_reason_and_field_and_aws_is_untouched() {
    let (env, aws) = start().await;
    let before = aws.inventory();
    let cases = bad_inputs();
    assert!(cases.len() >= 40, "{} cases", cases.len());
    for (i, (spec, _, _)) in cases.iter().enumerate() {
        create(&env.client, NS, &format!("bad-{i}"), spec).await;
    }
    namespace(&env.client, "unruled", json!({})).await;
    create(&env.client, "unruled", "anything", &json!({})).await;
    namespace(&env.client, "sandboxed", json!({"tier": "sandbox"})).await;
    let read_only =
        json!({"role": {"managedPolicyArns": ["arn:aws:iam::aws:policy/ReadOnlyAccess"]}});
    create(&env.client, "sandboxed", "reader", &read_only).await;

    // Objects the operator cannot even read as bindings.
    let malformed = [
        (json!({"role": "admin"}), "spec.role: cannot be read"),
        (
            json!({"role": {"maxSessionDuration": "long"}}),
            "spec.role.maxSessionDuration: cannot be read",
        ),
        (
            json!({"serviceAccount": {"create": "yes"}}),
            "spec.serviceAccount.create",
        ),
        (
            json!({"deletionPolicy": "Sometimes"}),
            "spec.deletionPolicy",
        ),
        (json!({"tags": ["a"]}), "spec.tags"),
    ];
    for (i, (spec, _)) in malformed.iter().enumerate() {
        create(&env.client, NS, &format!("malformed-{i}"), spec).await;
    }

    let mut wrong = Vec::new();
    for (i, (spec, fragment)) in malformed.iter().enumerate() {
        let (got, message) = verdict(&env.client, NS, &format!("malformed-{i}")).await;
        if got != "InvalidSpec" || !message.contains(fragment) {
            wrong.push(format!("malformed-{i} {spec}: got {got}: {message}"));
        }
    }
    let note = env.wait_warning("malformed-0", "InvalidSpec").await;
    assert!(note.contains("spec.role"), "{note}");
    for (i, (spec, reason, fragment)) in cases.iter().enumerate() {
        let (got, message) = verdict(&env.client, NS, &format!("bad-{i}")).await;
        if got != *reason || !message.contains(fragment.as_str()) {
            wrong.push(format!(
                "bad-{i} {spec}: want {reason} with {fragment:?}, got {got}: {message}"
            ));
        }
    }
    let (got, message) = verdict(&env.client, "unruled", "anything").await;
    if got != "PolicyDenied" || !message.contains("no guardrail rule matches namespace") {
        wrong.push(format!("unruled/anything: got {got}: {message}"));
    }
    let (got, message) = verdict(&env.client, "sandboxed", "reader").await;
    if got != "PolicyDenied" || !message.contains("guardrail rule \"labelled\"") {
        wrong.push(format!("sandboxed/reader: got {got}: {message}"));
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    let note = env.wait_warning("bad-41", "PolicyDenied").await;
    assert!(note.contains("maximum of 7200"), "{note}");
    assert_eq!(aws.inventory(), before, "no AWS resource made or changed");
    let writes: Vec<_> = aws
        .knobs()
        .calls()
        .into_iter()
        .filter(|(op, _)| !support::is_read(op))
        .collect();
    assert!(writes.is_empty(), "AWS writes: {writes:?}");

    // What the rule grants converges, with the rule's boundary, path and prefix.
    env.apply(
        "fine",
        json!({"role": {"managedPolicyArns": ["arn:aws:iam::aws:policy/ReadOnlyAccess"],
            "inlinePolicies": {"p": allow("s3:GetObject", "arn:aws:s3:::data/*")}}}),
    )
    .await;
    let b = env.wait_converged("fine").await;
    let arn = b.status.and_then(|s| s.role_arn).expect("role arn");
    assert!(
        arn.starts_with("arn:aws:iam::111122223333:role/pod-identity/prod/tenants/t-pi-prod-"),
        "{arn}"
    );
    let inv = aws.inventory();
    let role = inv
        .roles
        .iter()
        .find(|r| r.role.arn == arn)
        .expect("role made");
    assert_eq!(
        role.role.permissions_boundary_arn.as_deref(),
        Some(BOUNDARY)
    );
    env.stop().await;
}
