//! Bad input and guardrails through the real controller, against kubesim (its CRD
//! schema replaced by a permissive one, as on a cluster that ignores or predates it) and
//! the AWS simulator: every bad binding gets its reason and a message naming the field,
//! and the AWS account is left exactly as it was. Escalating policies are denied, and
//! allowed where the rule says so.
//!
//! By scenario: `bad_input` (every bad binding, its reason and field), `rules` (what the
//! guardrail file allows and denies, a changed file, no file at all), `logging` (what
//! failures log), and `unreadable` (deleting a binding the operator cannot read).

#[path = "../support/mod.rs"]
mod support;

mod bad_input;
mod logging;
mod rules;
mod unreadable;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use kube::{Client, CustomResourceExt};
use pod_identity_operator::aws::sim::{AwsSim, SimConfig};
use pod_identity_operator::crd::PodIdentityBinding;
use pod_identity_operator::guardrails::{GuardrailConfig, GuardrailSource};
use serde_json::{Value, json};

use support::{Env, WAIT};

// Shared by the scenarios: the guardrails, the controller started under them against a
// permissive schema, and the captured log.

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
