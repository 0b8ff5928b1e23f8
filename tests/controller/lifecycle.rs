//! A binding's lifecycle through the finalizer (conditions, Events, what AWS holds at each
//! step), resyncs that write nothing once converged and read nothing after a Ready pass
//! until something changes, `deletionPolicy: Retain`, and an operator watching one
//! namespace only.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use pod_identity_operator::aws::sim::SimConfig;
use pod_identity_operator::crd::PodIdentityBinding;
use pod_identity_operator::naming;
use serde_json::json;

use crate::support::{NS, WAIT, ready};
use crate::{CLUSTER, CLUSTER_ARN, READ_ONLY, start, write_calls};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_lifecycle_through_the_finalizer() {
    let (env, aws) = start(SimConfig::default(), |_| {}).await;
    env.apply(
        "web",
        json!({"serviceAccount": {"labels": {"team": "a"}}, "tags": {"env": "test"}}),
    )
    .await;
    let b = env.wait_converged("web").await;
    assert!(
        b.finalizers()
            .iter()
            .any(|f| f == "podidentity.dev/cleanup")
    );
    let st = b.status.clone().expect("status");
    let role_name = naming::default_role_name(CLUSTER_ARN, NS, "web");
    assert_eq!(
        st.role_arn.as_deref(),
        Some(format!("arn:aws:iam::111122223333:role/pod-identity/{CLUSTER}/{role_name}").as_str())
    );
    assert!(
        st.association_id
            .as_deref()
            .is_some_and(|id| id.starts_with("a-"))
    );
    assert_eq!(
        st.service_account
            .as_ref()
            .map(|s| (s.name.as_str(), s.created)),
        Some(("web", true))
    );
    let types: Vec<(&str, &str, Option<i64>)> = st
        .conditions
        .iter()
        .map(|c| (c.type_.as_str(), c.status.as_str(), c.observed_generation))
        .collect();
    assert_eq!(
        types,
        [
            ("Ready", "True", Some(1)),
            ("RoleReady", "True", Some(1)),
            ("ServiceAccountReady", "True", Some(1)),
            ("AssociationReady", "True", Some(1)),
        ]
    );
    assert!(
        st.conditions[1]
            .message
            .contains("trusted only by ServiceAccount default/web")
    );

    // AWS holds one role, scoped to the ServiceAccount, and one association, both ours.
    let inv = aws.inventory();
    let role = inv.role(&role_name).expect("role exists");
    assert_eq!(role.role.tags.get("env").map(String::as_str), Some("test"));
    let trust = role.role.assume_role_policy.to_string();
    assert!(trust.contains("kubernetes-service-account") && trust.contains("\"web\""));
    let assocs = inv.associations_for(NS, "web");
    assert_eq!(assocs.len(), 1);
    assert!(naming::owned_by(&assocs[0].tags, CLUSTER_ARN, NS, "web"));

    // The ServiceAccount was created with the labels and an ownerReference.
    let sas: Api<ServiceAccount> = Api::namespaced(env.client.clone(), NS);
    let sa = sas.get("web").await.expect("ServiceAccount created");
    assert_eq!(sa.labels().get("team").map(String::as_str), Some("a"));
    assert_eq!(sa.owner_references()[0].uid, b.uid().expect("uid"));

    let reasons = env.event_reasons().await;
    for wanted in ["ServiceAccountCreated", "RoleCreated", "AssociationCreated"] {
        assert!(
            reasons.iter().any(|(t, r)| t == "Normal" && r == wanted),
            "no {wanted} event in {reasons:?}"
        );
    }

    // An update: generation 2, a policy attached, observed in the conditions.
    env.bindings()
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"role": {"managedPolicyArns": [READ_ONLY]}}})),
        )
        .await
        .expect("patch spec");
    let b = env.wait_converged("web").await;
    assert_eq!(b.metadata.generation, Some(2));
    assert!(
        b.status
            .as_ref()
            .expect("status")
            .conditions
            .iter()
            .all(|c| c.observed_generation == Some(2))
    );
    let inv = aws.inventory();
    assert_eq!(
        inv.role(&role_name).expect("role").attached_policy_arns,
        [READ_ONLY]
    );

    // A deleted ServiceAccount is recreated.
    sas.delete("web", &DeleteParams::default())
        .await
        .expect("delete sa");
    let deadline = Instant::now() + WAIT;
    while sas.get_opt("web").await.expect("get").is_none() {
        assert!(Instant::now() < deadline, "ServiceAccount never recreated");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    // Delete: the finalizer runs cleanup; AWS holds nothing of the binding afterwards
    // and the ServiceAccount goes with its owner.
    env.delete("web").await;
    env.wait_gone("web").await;
    let inv = aws.inventory();
    assert!(inv.role(&role_name).is_none());
    assert!(inv.associations_for(NS, "web").is_empty());
    assert!(sas.get_opt("web").await.expect("get").is_none());
    let reasons = env.event_reasons().await;
    for wanted in ["AssociationDeleted", "RoleDeleted"] {
        assert!(
            reasons.iter().any(|(_, r)| r == wanted),
            "no {wanted} event"
        );
    }
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_converged_resync_writes_nothing() {
    let (env, aws) = start(SimConfig::default(), |s| {
        s.resync = Duration::from_millis(100)
    })
    .await;
    env.apply("quiet", json!({"role": {"managedPolicyArns": [READ_ONLY],
        "inlinePolicies": {"s3": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}}}}))
        .await;
    env.wait_converged("quiet").await;
    // Let the pass that reported Ready settle, then count from zero.
    tokio::time::sleep(Duration::from_millis(300)).await;
    env.kube().reset_write_counts();
    let aws_writes = write_calls(&aws);
    let reads_before = aws.knobs().calls_of("GetRole");
    // Several resyncs happen (each reads the role again)...
    let deadline = Instant::now() + WAIT;
    while aws.knobs().calls_of("GetRole") < reads_before + 5 {
        assert!(Instant::now() < deadline, "no resyncs happened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // ...and none of them writes to Kubernetes or AWS.
    let kube_writes: Vec<_> = env
        .kube()
        .write_counts()
        .iter()
        .map(|(r, v, n)| format!("{r} {v:?} {n}"))
        .collect();
    assert!(
        kube_writes.is_empty(),
        "Kubernetes writes during converged resyncs: {kube_writes:?}"
    );
    assert_eq!(
        write_calls(&aws),
        aws_writes,
        "AWS writes during converged resyncs: {:?}",
        aws.knobs().calls()
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retain_leaves_the_aws_resources_in_place() {
    let (env, aws) = start(SimConfig::default(), |_| {}).await;
    env.apply("kept", json!({"deletionPolicy": "Retain"})).await;
    env.wait_converged("kept").await;
    env.delete("kept").await;
    env.wait_gone("kept").await;
    let inv = aws.inventory();
    assert!(
        inv.role(&naming::default_role_name(CLUSTER_ARN, NS, "kept"))
            .is_some()
    );
    assert_eq!(inv.associations_for(NS, "kept").len(), 1);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_namespace_only_that_namespace_is_watched() {
    let (env, _aws) = start(SimConfig::default(), |s| {
        s.namespace = Some("kube-system".into())
    })
    .await;
    env.apply("outside", json!({})).await;
    let inside: Api<PodIdentityBinding> = Api::namespaced(env.client.clone(), "kube-system");
    let b: PodIdentityBinding = serde_json::from_value(json!({
        "apiVersion": "podidentity.dev/v1alpha1", "kind": "PodIdentityBinding",
        "metadata": {"name": "inside", "namespace": "kube-system"}, "spec": {},
    }))
    .expect("binding");
    inside
        .create(&PostParams::default(), &b)
        .await
        .expect("create");
    let deadline = Instant::now() + WAIT;
    loop {
        let b = inside.get("inside").await.expect("get");
        if ready(&b).is_some_and(|c| c.status == "True") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "binding in the watched namespace never Ready"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let outside = env.bindings().get("outside").await.expect("get");
    assert!(outside.status.is_none() && outside.finalizers().is_empty());
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_after_a_ready_pass_read_nothing_from_aws_until_something_changes() {
    let (env, aws) = start(SimConfig::default(), |_| {}).await;
    env.apply("once", json!({"role": {"managedPolicyArns": [READ_ONLY]}}))
        .await;
    env.wait_converged("once").await;
    // The pass's own status patch and ServiceAccount wake the binding again; those
    // passes read nothing from AWS.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let reads = |op: &str| aws.knobs().calls_of(op);
    assert_eq!(
        (reads("GetRole"), reads("ListAttachedRolePolicies")),
        (1, 0),
        "{:?}",
        aws.knobs().calls()
    );
    // A label on the binding is no new generation: still nothing.
    env.bindings()
        .patch(
            "once",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"touched": "yes"}}})),
        )
        .await
        .expect("label");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(reads("GetRole"), 1);
    // A changed ServiceAccount is looked at in full (and its labels restored).
    let sas: Api<ServiceAccount> = Api::namespaced(env.client.clone(), NS);
    sas.patch(
        "once",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"edited": "by-hand"}}})),
    )
    .await
    .expect("edit sa");
    let deadline = Instant::now() + WAIT;
    while reads("GetRole") < 2 {
        assert!(
            Instant::now() < deadline,
            "no full pass after the ServiceAccount changed"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // A new generation is a full pass too.
    env.bindings()
        .patch(
            "once",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"tags": {"env": "x"}}})),
        )
        .await
        .expect("patch spec");
    env.wait_converged("once").await;
    assert!(reads("GetRole") >= 3);
    assert_eq!(
        aws.inventory()
            .role(&naming::default_role_name(CLUSTER_ARN, NS, "once"))
            .and_then(|r| r.role.tags.get("env").cloned())
            .as_deref(),
        Some("x")
    );
    env.stop().await;
}
