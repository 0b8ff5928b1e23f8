//! The guardrails govern what a binding may take over, turn off or annotate, and take
//! access away when they tighten: through the real controller and the AWS simulator
//! (authorizing every call against the operator's shipped IAM policy), each case on
//! kubesim and on a real kube-apiserver.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::api::{Api, PostParams};
use pod_identity_operator::aws::sim::{AwsSim, SimConfig};
use pod_identity_operator::aws::{CreateAssociation, EksApi};
use pod_identity_operator::controller::Settings;
use pod_identity_operator::guardrails::{GuardrailConfig, GuardrailSource};
use serde_json::json;

mod support;
use support::cluster::ControlPlane;
use support::{Env, READ_ONLY};

const CLUSTER: &str = "prod";

fn inline() -> serde_json::Value {
    json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::data/*"}]})
}

/// Rewrites the guardrail file with a later modification time, so its poll sees it.
fn rewrite(path: &std::path::Path, text: &str, generation: u64) {
    support::files::replace_file(path, text, 1_000 * generation);
}

/// The Kubernetes side of a case.
enum Kube {
    Sim,
    /// A real control plane (kept running for the case) and its admin client.
    Real {
        _plane: Box<ControlPlane>,
        client: Client,
    },
}

impl Kube {
    async fn real() -> Kube {
        let plane = ControlPlane::start(Default::default())
            .await
            .unwrap_or_else(|e| panic!("the real control plane did not start: {e}"));
        let client = plane.admin_client().await.expect("admin client");
        support::install_crd(&client).await;
        support::apiserver::served(&client).await;
        Kube::Real {
            _plane: Box::new(plane),
            client,
        }
    }

    /// The controller over namespace `ns` (made here on the real server, where each
    /// phase of a case gets its own).
    async fn env(&self, ns: &str, aws: &Arc<AwsSim>, tune: impl FnOnce(&mut Settings)) -> Env {
        match self {
            Kube::Sim => Env::start(CLUSTER, aws.clone(), aws.clone(), tune).await,
            Kube::Real { client, .. } => {
                let namespace: Namespace =
                    serde_json::from_value(json!({"metadata": {"name": ns}})).expect("namespace");
                Api::<Namespace>::all(client.clone())
                    .create(&PostParams::default(), &namespace)
                    .await
                    .expect("create namespace");
                Env::start_on(
                    client.clone(),
                    None,
                    ns,
                    CLUSTER,
                    aws.clone(),
                    aws.clone(),
                    tune,
                )
                .await
            }
        }
    }

    /// The namespace a phase named `ns` runs in: kubesim's Env always uses its own.
    fn ns<'a>(&self, ns: &'a str) -> &'a str {
        match self {
            Kube::Sim => support::NS,
            Kube::Real { .. } => ns,
        }
    }
}

async fn sim() -> Arc<AwsSim> {
    let aws = Arc::new(AwsSim::new(SimConfig::default()));
    aws.add_cluster(CLUSTER);
    aws
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopt_disabled_session_tags_and_annotations_need_the_rule_to_allow_them() {
    adopt_session_tags_and_annotations(Kube::Sim).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopt_disabled_session_tags_and_annotations_need_the_rule_to_allow_them_on_a_real_apiserver()
 {
    adopt_session_tags_and_annotations(Kube::real().await).await;
}

async fn adopt_session_tags_and_annotations(kube: Kube) {
    let aws = sim().await;
    let ns = kube.ns("strict");
    let strict = GuardrailConfig::parse(&format!(
        "rules:\n- name: apps\n  namespaces: [{ns}]\n  allowedManagedPolicyArns: [\"*\"]\n  allowedServiceAccountAnnotations: [\"*\"]\n",
    ))
    .expect("guardrails");
    let env = kube
        .env(ns, &aws, |s| {
            s.guardrails = Arc::new(GuardrailSource::fixed(strict));
        })
        .await;
    let cases = [
        ("adopter", json!({"adopt": true}), "spec.adopt"),
        (
            "untagged",
            json!({"disableSessionTags": true}),
            "spec.disableSessionTags",
        ),
        (
            "irsa",
            json!({"serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::111122223333:role/admin"}}}),
            "spec.serviceAccount.annotations[\"eks.amazonaws.com/role-arn\"]",
        ),
    ];
    for (name, spec, _) in &cases {
        env.apply(name, spec.clone()).await;
    }
    env.apply(
        "annotated",
        json!({"serviceAccount": {"annotations": {"example.com/team": "a"}}}),
    )
    .await;
    for (name, _, field) in &cases {
        let note = env.wait_warning(name, "PolicyDenied").await;
        assert!(note.contains(field), "{name}: {note}");
    }
    env.wait_converged("annotated").await;
    AwsSim::as_admin(async {
        let inv = aws.inventory();
        assert_eq!(inv.associations.len(), 1, "only the annotated binding's");
    })
    .await;
    env.stop().await;

    // Where the rule allows them, the same bindings converge.
    let aws = sim().await;
    let ns = kube.ns("open");
    let open = GuardrailConfig::parse(&format!(
        "rules:\n- name: apps\n  namespaces: [{ns}]\n  allowAdopt: true\n  allowDisableSessionTags: true\n  allowedServiceAccountAnnotations: [\"eks.amazonaws.com/role-arn\"]\n",
    ))
    .expect("guardrails");
    support::existing_role(&aws).await;
    AwsSim::as_admin(aws.create_pod_identity_association(&CreateAssociation {
        cluster_name: CLUSTER.into(),
        namespace: ns.into(),
        service_account: "adopter".into(),
        role_arn: support::EXISTING_ROLE_ARN.into(),
        ..CreateAssociation::default()
    }))
    .await
    .expect("an association made by someone else");
    let env = kube
        .env(ns, &aws, |s| {
            s.guardrails = Arc::new(GuardrailSource::fixed(open));
        })
        .await;
    for (name, spec, _) in &cases {
        env.apply(name, spec.clone()).await;
    }
    for (name, _, _) in &cases {
        env.wait_converged(name).await;
    }
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tightened_rule_takes_granted_access_away_unless_it_keeps_it() {
    tightened_rule(Kube::Sim).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tightened_rule_takes_granted_access_away_unless_it_keeps_it_on_a_real_apiserver() {
    tightened_rule(Kube::real().await).await;
}

async fn tightened_rule(kube: Kube) {
    let ns = kube.ns("tightened");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("guardrails.yaml");
    let rules = |policies: &str, when: &str| {
        format!(
            "rules:\n- name: apps\n  namespaces: [{ns}]\n  allowedManagedPolicyArns: [{policies}]\n  inlinePolicies: {{allowed: true}}\n  whenDenied: {when}\n"
        )
    };
    let allow = format!("{READ_ONLY:?}");
    rewrite(&path, &rules(&allow, "Revoke"), 1);
    let source = Arc::new(GuardrailSource::from_file(&path).expect("load"));
    let aws = sim().await;
    let env = kube
        .env(ns, &aws, |s| {
            s.guardrails = source;
        })
        .await;
    let spec =
        json!({"role": {"managedPolicyArns": [READ_ONLY], "inlinePolicies": {"read": inline()}}});
    env.apply("reader", spec.clone()).await;
    env.wait_converged("reader").await;
    let granted = |aws: &AwsSim| {
        let inv = aws.inventory();
        let role = inv.roles.first().map(|r| {
            (
                r.attached_policy_arns.len(),
                r.inline_policies.len(),
                r.role.name.clone(),
            )
        });
        (inv.associations.len(), role)
    };
    let (associations, role) = granted(&aws);
    assert_eq!(associations, 1);
    let (attached, inline_count, role_name) = role.expect("a role");
    assert_eq!((attached, inline_count), (1, 1));

    // The rule keeps what was granted: nothing moves.
    rewrite(&path, &rules("", "Keep"), 2);
    let note = env.wait_warning("reader", "PolicyDenied").await;
    assert!(note.contains("spec.role.managedPolicyArns[0]"), "{note}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        granted(&aws),
        (1, Some((1, 1, role_name.clone()))),
        "Keep keeps the association and the role's policies"
    );
    assert!(
        !env.event_reasons()
            .await
            .iter()
            .any(|(_, r)| r == "AccessRevoked")
    );

    // The default revokes: the association goes and the role's policies are removed,
    // the role stays.
    rewrite(&path, &rules("", "Revoke"), 3);
    let note = env.wait_warning("reader", "AccessRevoked").await;
    assert!(
        note.contains("association") && note.contains("2 policies"),
        "{note}"
    );
    assert_eq!(granted(&aws), (0, Some((0, 0, role_name.clone()))));
    // The status written after the Event drops the association it no longer has.
    let b = env
        .wait_ready("reader", "the association gone from its status", |b, c| {
            b.status
                .as_ref()
                .is_some_and(|s| s.association_id.is_none())
                && (c.status.as_str(), c.reason.as_str()) == ("False", "PolicyDenied")
        })
        .await;
    assert_eq!(b.status.and_then(|s| s.association_arn), None);

    // Allowed again, the binding gets everything back.
    rewrite(&path, &rules(&allow, "Revoke"), 4);
    env.wait_converged("reader").await;
    assert_eq!(granted(&aws), (1, Some((1, 1, role_name))));
    env.stop().await;
}
