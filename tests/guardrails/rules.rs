//! What the guardrail rules decide: escalating policies converge where the rule allows
//! them, a changed guardrail file is applied to the bindings it denied, and without any
//! configuration every binding is denied before any AWS call.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::Api;
use pod_identity_operator::aws::sim::{AwsSim, SimConfig};
use pod_identity_operator::crd::PodIdentityBinding;
use pod_identity_operator::guardrails::{GuardrailConfig, GuardrailSource};
use serde_json::json;

use crate::support;
use crate::support::{Env, NS, WAIT, ready};
use crate::{CLUSTER, allow, create, inline, logs, namespace, start, verdict};

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
    support::files::replace_file(&path, &widened, 1_000);
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
