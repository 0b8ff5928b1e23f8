//! Bad input and guardrails through the real controller, against kubesim (its CRD
//! schema replaced by a permissive one, as on a cluster that ignores or predates it) and
//! the AWS simulator: every bad binding gets its reason and a message naming the field,
//! and the AWS account is left exactly as it was. Escalating policies are denied, and
//! allowed where the rule says so.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use kube::{Client, CustomResourceExt};
use pod_identity_operator::aws::faults::{Fault, Service};
use pod_identity_operator::aws::sim::{AwsSim, SimConfig};
use pod_identity_operator::crd::PodIdentityBinding;
use pod_identity_operator::guardrails::{GuardrailConfig, GuardrailSource};
use serde_json::{Value, json};

mod support;
use support::{Env, NS, WAIT, ready};

const CLUSTER: &str = "prod";
const BOUNDARY: &str = "arn:aws:iam::111122223333:policy/boundary";

const GUARDRAILS: &str = r#"
rules:
- name: apps
  namespaces: [default]
  allowedManagedPolicyArns: ["arn:aws:iam::aws:policy/ReadOnlyAccess", "arn:aws:iam::111122223333:policy/ok-*"]
  inlinePolicies: {allowed: true, maxSize: 500}
  sessionPolicies: {allowed: false}
  allowedExistingRoleArns: ["arn:aws:iam::111122223333:role/allowed-*", "arn:aws:iam::999999999999:role/allowed-*"]
  allowedTargetRoleArns: ["arn:aws:iam::444455556666:role/ok-*"]
  permissionsBoundaryArn: arn:aws:iam::111122223333:policy/boundary
  rolePath: tenants
  roleNamePrefix: t-
  maxSessionDuration: 7200
  deniedServiceAccounts: [default, "admin-*"]
- name: platform
  namespaces: [platform]
  allowedManagedPolicyArns: ["*"]
  inlinePolicies: {allowed: true}
  sessionPolicies: {allowed: true}
  allowEscalation: [anyAction, iamAll, passRoleAnyResource, assumeRoleAnyResource, iamWrite]
- name: labelled
  namespaceSelector: {matchLabels: {tier: sandbox}}
"#;

async fn namespace(client: &Client, name: &str, labels: Value) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": name, "labels": labels}}))
    .expect("namespace");
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .expect("namespace created");
}

/// Replaces the CRD's schema by one that accepts anything, so only the operator's own
/// validation stands between a bad spec and AWS.
async fn permissive_schema(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut crd = PodIdentityBinding::crd();
    let name = crd.metadata.name.clone().expect("CRD name");
    let current = crds.get(&name).await.expect("CRD installed");
    crd.metadata.resource_version = current.metadata.resource_version;
    for v in &mut crd.spec.versions {
        v.schema = Some(
            serde_json::from_value(json!({"openAPIV3Schema": {
                "type": "object", "x-kubernetes-preserve-unknown-fields": true}}))
            .expect("schema"),
        );
    }
    crds.replace(&name, &PostParams::default(), &crd)
        .await
        .expect("CRD replaced");
}

fn raw(client: &Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(
        client.clone(),
        ns,
        &ApiResource::erase::<PodIdentityBinding>(&()),
    )
}

async fn create(client: &Client, ns: &str, name: &str, spec: &Value) {
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "podidentity.dev/v1alpha1", "kind": "PodIdentityBinding",
        "metadata": {"name": name, "namespace": ns}, "spec": spec,
    }))
    .expect("object");
    raw(client, ns)
        .create(&PostParams::default(), &obj)
        .await
        .unwrap_or_else(|e| panic!("{name}: the permissive schema takes {spec}: {e}"));
}

/// The Ready condition's (reason, message) once it is False; read untyped, since a
/// malformed binding cannot be read as a `PodIdentityBinding`.
async fn verdict(client: &Client, ns: &str, name: &str) -> (String, String) {
    let api = raw(client, ns);
    let deadline = Instant::now() + WAIT;
    loop {
        let obj = api.get(name).await.expect("get binding");
        let ready = obj
            .data
            .pointer("/status/conditions")
            .and_then(|c| c.as_array())
            .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
            .cloned();
        if let Some(c) = ready
            && c["status"] == "False"
        {
            let text = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
            return (text("reason"), text("message"));
        }
        assert!(Instant::now() < deadline, "{ns}/{name} got no verdict");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn doc(statement: Value) -> Value {
    json!({"Version": "2012-10-17", "Statement": [statement]})
}

fn allow(action: &str, resource: &str) -> Value {
    doc(json!({"Effect": "Allow", "Action": action, "Resource": resource}))
}

fn inline(d: Value) -> Value {
    json!({"role": {"inlinePolicies": {"p": d}}})
}

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

/// Every log line of this test binary: the capturing subscriber is installed before any
/// test starts the controller (the harness's own `try_init` then does nothing).
fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
            .with_writer(move || Sink(sink.clone()))
            .try_init()
            .expect("the first subscriber of this binary");
        buf
    })
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logged() -> String {
    String::from_utf8_lossy(&logs().lock().unwrap_or_else(|e| e.into_inner())).into_owned()
}

async fn start() -> (Env, Arc<AwsSim>) {
    logs();
    let aws = Arc::new(AwsSim::new(SimConfig::default()));
    aws.add_cluster(CLUSTER);
    aws.add_managed_policy(BOUNDARY);
    let config = GuardrailConfig::parse(GUARDRAILS).expect("guardrails");
    let env = Env::start(
        CLUSTER,
        aws.clone(),
        aws.clone(),
        support::under_rendered_policy(&aws, CLUSTER, |s| {
            s.guardrails = Arc::new(GuardrailSource::fixed(config));
        }),
    )
    .await;
    permissive_schema(&env.client).await;
    (env, aws)
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalating_policies_converge_where_the_rule_allows_them() {
    let (env, aws) = start().await;
    let patterns = [
        allow("*", "*"),
        allow("iam:*", "*"),
        allow("iam:PassRole", "*"),
        allow("sts:AssumeRole", "*"),
        allow("iam:CreateUser", "arn:aws:iam::111122223333:user/x"),
    ];
    namespace(&env.client, "platform", json!({})).await;
    let api: Api<PodIdentityBinding> = Api::namespaced(env.client.clone(), "platform");
    for (i, d) in patterns.iter().enumerate() {
        create(
            &env.client,
            "platform",
            &format!("esc-{i}"),
            &inline(d.clone()),
        )
        .await;
        // The same policy in the namespace whose rule does not allow it is denied.
        create(&env.client, NS, &format!("esc-{i}"), &inline(d.clone())).await;
    }
    for i in 0..patterns.len() {
        let name = format!("esc-{i}");
        let deadline = Instant::now() + WAIT;
        loop {
            let b = api.get_opt(&name).await.expect("get").expect("exists");
            if ready(&b).is_some_and(|c| c.status == "True") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "platform/{name} never converged: {:?}",
                b.status
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let (reason, _) = verdict(&env.client, NS, &name).await;
        assert_eq!(reason, "PolicyDenied", "default/{name}");
    }
    let roles = aws.inventory().roles;
    assert_eq!(roles.len(), patterns.len(), "one role per allowed binding");
    assert!(roles.iter().all(|r| r.role.path == "/pod-identity/prod/"));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_logged_with_request_ids_and_without_policy_bodies() {
    let (env, aws) = start().await;
    let secret = "arn:aws:s3:::private-bucket-7f3a/confidential/*";
    aws.knobs()
        .fail_next("PutRolePolicy", Fault::server_error(Service::Iam));
    env.apply(
        "logged",
        json!({"role": {"inlinePolicies": {"p": allow("s3:GetObject", secret)}},
            "tags": {"owner": "team"}}),
    )
    .await;
    env.wait_converged("logged").await;
    let logs = logged();
    let failure = logs
        .lines()
        .find(|l| l.contains("PutRolePolicy failed"))
        .unwrap_or_else(|| panic!("the failed call is logged:\n{logs}"));
    assert!(failure.contains("request id "), "{failure}");
    assert!(
        !logs.contains("private-bucket-7f3a"),
        "a policy body was logged:\n{logs}"
    );
    assert!(
        !logs.contains("\"Statement\""),
        "a policy document was logged:\n{logs}"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_guardrail_file_is_applied_to_denied_bindings() {
    logs();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("guardrails.yaml");
    let rule = |policies: &str| {
        format!(
            "rules:\n- name: apps\n  namespaces: [default]\n  allowedManagedPolicyArns: [{policies}]\n"
        )
    };
    std::fs::write(&path, rule("")).expect("write");
    let source = Arc::new(GuardrailSource::from_file(&path).expect("load"));
    let aws = Arc::new(AwsSim::new(SimConfig::default()));
    aws.add_cluster(CLUSTER);
    let env = Env::start(
        CLUSTER,
        aws.clone(),
        aws.clone(),
        support::under_rendered_policy(&aws, CLUSTER, |s| s.guardrails = source),
    )
    .await;
    env.apply(
        "reader",
        json!({"role": {"managedPolicyArns": ["arn:aws:iam::aws:policy/ReadOnlyAccess"]}}),
    )
    .await;
    let (reason, message) = verdict(&env.client, NS, "reader").await;
    assert_eq!(reason, "PolicyDenied", "{message}");
    assert!(aws.inventory().roles.is_empty());

    // The administrator renders the policy for the new guardrails first: IAM would
    // refuse the attachment they now allow until then.
    let widened = rule("\"arn:aws:iam::aws:policy/*\"");
    support::enforce_rendered(
        &aws,
        CLUSTER,
        &GuardrailConfig::parse(&widened).expect("guardrails"),
    );
    std::fs::write(&path, widened).expect("write");
    let f = std::fs::File::options()
        .write(true)
        .open(&path)
        .expect("open");
    f.set_modified(std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_000))
        .expect("mtime");
    env.wait_converged("reader").await;
    assert_eq!(aws.inventory().roles.len(), 1);
    env.stop().await;
}

/// The operator started without `--config`: every binding is denied with the way out,
/// and AWS is not called at all (not even to look the cluster up).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_configuration_every_binding_is_denied_before_any_aws_call() {
    logs();
    let aws = Arc::new(AwsSim::new(SimConfig::default()));
    aws.add_cluster(CLUSTER);
    let env = Env::start(
        CLUSTER,
        aws.clone(),
        aws.clone(),
        support::under_rendered_policy(&aws, CLUSTER, |s| {
            s.guardrails = Arc::new(GuardrailSource::unconfigured());
        }),
    )
    .await;
    namespace(&env.client, "platform", json!({})).await;
    env.apply(
        "reader",
        json!({"role": {"managedPolicyArns": ["arn:aws:iam::aws:policy/ReadOnlyAccess"]}}),
    )
    .await;
    create(&env.client, "platform", "controller", &json!({})).await;
    for (ns, name) in [(NS, "reader"), ("platform", "controller")] {
        let (reason, message) = verdict(&env.client, ns, name).await;
        assert_eq!(reason, "PolicyDenied", "{ns}/{name}: {message}");
        for fragment in [
            "no guardrail configuration is loaded",
            "--config FILE",
            "config/guardrails.example.yaml",
        ] {
            assert!(message.contains(fragment), "{fragment:?} in {message}");
        }
    }
    let note = env.wait_warning("reader", "PolicyDenied").await;
    assert!(note.contains("--config"), "{note}");
    assert!(
        aws.knobs().calls().is_empty(),
        "no AWS call at all: {:?}",
        aws.knobs().calls()
    );
    assert!(aws.inventory().roles.is_empty());
    env.stop().await;
}

/// (roles, associations) in AWS carrying the ownership tags of binding `name`.
fn owned(aws: &AwsSim, name: &str) -> (usize, usize) {
    let tag = pod_identity_operator::naming::TAG_NAME;
    let inv = aws.inventory();
    let mine = |tags: &std::collections::BTreeMap<String, String>| {
        tags.get(tag).map(String::as_str) == Some(name)
    };
    (
        inv.roles.iter().filter(|r| mine(&r.role.tags)).count(),
        inv.associations.iter().filter(|a| mine(&a.tags)).count(),
    )
}

/// Waits for a Ready condition whose reason is `reason` and returns its message.
async fn wait_reason(client: &Client, ns: &str, name: &str, reason: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let (got, message) = verdict(client, ns, name).await;
        if got == reason {
            return message;
        }
        assert!(
            Instant::now() < deadline,
            "{ns}/{name}: still {got}: {message}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits until the (possibly unreadable) binding is gone.
async fn wait_gone(client: &Client, name: &str) {
    let deadline = Instant::now() + WAIT;
    while raw(client, NS).get_opt(name).await.expect("get").is_some() {
        assert!(Instant::now() < deadline, "{name} never went away");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn spoil(client: &Client, name: &str, spec: Value) {
    raw(client, NS)
        .patch(
            name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({ "spec": spec })),
        )
        .await
        .expect("spec patched");
}

/// A binding that became unreadable and is then deleted: what can be known from its
/// name, namespace, readable fields, status and ownership tags is removed and the
/// finalizer goes; what cannot be known keeps the finalizer, with the fix in the status
/// and an Event, until the spec is fixed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_unreadable_binding_cleans_what_can_be_known() {
    let (env, aws) = start().await;
    let spec = json!({"role": {"managedPolicyArns": ["arn:aws:iam::aws:policy/ReadOnlyAccess"]}});
    for name in ["readable-role", "unreadable-role", "unreadable-policy"] {
        env.apply(name, spec.clone()).await;
    }
    for name in ["readable-role", "unreadable-role", "unreadable-policy"] {
        env.wait_converged(name).await;
        assert_eq!(owned(&aws, name), (1, 1), "{name}");
    }
    // Unreadable elsewhere than the role (derived name, prefixed by the rule): fully
    // cleaned, finalizer removed.
    spoil(
        &env.client,
        "readable-role",
        json!({"serviceAccount": {"create": "yes"}}),
    )
    .await;
    // The role's name cannot be read; the association can still be found by its tags.
    spoil(&env.client, "unreadable-role", json!({"role": "admin"})).await;
    // Whether to delete at all cannot be known.
    spoil(
        &env.client,
        "unreadable-policy",
        json!({"deletionPolicy": "Sometimes"}),
    )
    .await;
    for name in ["readable-role", "unreadable-role", "unreadable-policy"] {
        wait_reason(&env.client, NS, name, "InvalidSpec").await;
        raw(&env.client, NS)
            .delete(name, &kube::api::DeleteParams::default())
            .await
            .expect("delete");
    }

    wait_gone(&env.client, "readable-role").await;
    assert_eq!(owned(&aws, "readable-role"), (0, 0));

    let message = wait_reason(&env.client, NS, "unreadable-role", "CleanupBlocked").await;
    for fragment in [
        "spec.role cannot be read",
        "kubectl edit podidentitybinding unreadable-role -n default",
        "podidentity.dev/cleanup",
    ] {
        assert!(message.contains(fragment), "{fragment:?} in {message}");
    }
    let note = env.wait_warning("unreadable-role", "CleanupBlocked").await;
    assert!(note.contains("spec.role cannot be read"), "{note}");
    // The association (found by its tags) and the role status.roleArn names are gone;
    // the finalizer stays for a role the unreadable field may name.
    let deadline = Instant::now() + WAIT;
    while owned(&aws, "unreadable-role") != (0, 0) {
        assert!(
            Instant::now() < deadline,
            "{:?}",
            owned(&aws, "unreadable-role")
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    let message = wait_reason(&env.client, NS, "unreadable-policy", "CleanupBlocked").await;
    assert!(
        message.contains("spec.deletionPolicy cannot be read")
            && message.contains("Delete or Retain"),
        "{message}"
    );
    assert_eq!(owned(&aws, "unreadable-policy"), (1, 1), "nothing removed");
    for name in ["unreadable-role", "unreadable-policy"] {
        let obj = raw(&env.client, NS).get(name).await.expect("still there");
        assert!(
            obj.metadata
                .finalizers
                .unwrap_or_default()
                .contains(&"podidentity.dev/cleanup".to_owned())
        );
    }

    // The fixes the messages give unblock the cleanup.
    spoil(&env.client, "unreadable-role", json!({"role": {}})).await;
    spoil(
        &env.client,
        "unreadable-policy",
        json!({"deletionPolicy": "Delete"}),
    )
    .await;
    for name in ["unreadable-role", "unreadable-policy"] {
        wait_gone(&env.client, name).await;
        assert_eq!(owned(&aws, name), (0, 0), "{name}");
    }
    env.stop().await;
}
