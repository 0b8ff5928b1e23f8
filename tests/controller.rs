//! The controller in-process against kubesim and the AWS simulator: lifecycle through the
//! finalizer, conditions, Events, zero-write resyncs, crash-safety of the create path,
//! propagation and release windows, conflicts; backoff, kstatus conditions, behaviour
//! under AWS throttling and the client-side rate limit.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::ResourceExt;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use pod_identity_operator::aws::faults::{Fault, Service};
use pod_identity_operator::aws::ratelimit::Rate;
use pod_identity_operator::aws::sim::{AwsSim, SimConfig};
use pod_identity_operator::controller::Settings;
use pod_identity_operator::controller::status::Reason;
use pod_identity_operator::crd::PodIdentityBinding;
use pod_identity_operator::naming;
use serde_json::json;

const CLUSTER: &str = "prod";
/// The ARN the simulator gives the cluster `prod`.
const CLUSTER_ARN: &str = "arn:aws:eks:us-east-1:111122223333:cluster/prod";

mod support;

use support::{Env, NS, WAIT, ready};

/// The controller against a simulator holding the cluster, which authorizes its calls
/// against the operator's policy rendered for the cluster and the guardrails it runs
/// with.
async fn start(config: SimConfig, tune: impl FnOnce(&mut Settings)) -> (Env, Arc<AwsSim>) {
    let aws = Arc::new(AwsSim::new(config));
    assert_eq!(aws.add_cluster(CLUSTER).arn, CLUSTER_ARN);
    let env = Env::start(
        CLUSTER,
        aws.clone(),
        aws.clone(),
        support::under_rendered_policy(&aws, CLUSTER, tune),
    )
    .await;
    (env, aws)
}

fn owned_roles(aws: &AwsSim, name: &str) -> usize {
    aws.inventory()
        .roles
        .iter()
        .filter(|r| naming::owned_by(&r.role.tags, CLUSTER_ARN, NS, name))
        .count()
}

fn write_calls(aws: &AwsSim) -> u64 {
    support::write_calls(aws.knobs())
}

const READ_ONLY: &str = "arn:aws:iam::aws:policy/ReadOnlyAccess";

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

/// For every write of the create path, failing it once (before it acts, or after it
/// acted with the answer lost) still ends with one role, one association and Ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failed_create_write_converges_to_exactly_one_of_each() {
    let create_path = [
        "CreateRole",
        "AttachRolePolicy",
        "PutRolePolicy",
        "CreatePodIdentityAssociation",
    ];
    let spec = json!({"role": {"managedPolicyArns": [READ_ONLY],
        "inlinePolicies": {"s3": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}}}});
    for (k, op) in create_path.iter().enumerate() {
        for after_effect in [false, true] {
            let (env, aws) = start(SimConfig::default(), |_| {}).await;
            let fault = if after_effect {
                Fault::timeout().after_effect()
            } else {
                Fault::timeout()
            };
            aws.knobs().fail_nth(op, 1, fault);
            env.apply("crashy", spec.clone()).await;
            env.wait_converged("crashy").await;
            let case = format!(
                "write {} ({op}) failed, after effect: {after_effect}",
                k + 1
            );
            // A write failed before acting is repeated; one that acted with its answer
            // lost is not (the next pass observes what it made).
            let expected_calls = if after_effect { 1 } else { 2 };
            assert_eq!(aws.knobs().calls_of(op), expected_calls, "{case}");
            let reasons = env.event_reasons().await;
            assert!(
                reasons
                    .iter()
                    .any(|(t, r)| t == "Warning" && r == "Retrying"),
                "{case}: the failure was not reported: {reasons:?}"
            );
            assert_eq!(owned_roles(&aws, "crashy"), 1, "{case}");
            let inv = aws.inventory();
            assert_eq!(inv.associations_for(NS, "crashy").len(), 1, "{case}");
            let role = inv
                .role(&naming::default_role_name(CLUSTER_ARN, NS, "crashy"))
                .expect("role");
            assert_eq!(role.attached_policy_arns, [READ_ONLY], "{case}");
            assert_eq!(role.inline_policies.len(), 1, "{case}");
            env.stop().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_not_yet_visible_to_eks_reports_role_propagating_then_ready() {
    let config = SimConfig {
        role_propagation: Duration::from_secs(2),
        ..SimConfig::default()
    };
    let (env, aws) = start(config, |_| {}).await;
    env.apply("fresh", json!({})).await;
    env.wait_warning("fresh", "RolePropagating").await;
    let b = env.wait_converged("fresh").await;
    assert_eq!(ready(&b).map(|c| c.reason.as_str()), Some("Reconciled"));
    assert_eq!(aws.inventory().associations_for(NS, "fresh").len(), 1);
    env.stop().await;
}

/// A role already gone when the operator's DeleteRole lands (an earlier DeleteRole whose
/// answer was lost and that the SDK sent again, or one a killed operator left in flight):
/// IAM authorizes a call on a role it does not find by `role/<name>`, outside the path
/// the operator's policy allows DeleteRole on, and answers AccessDenied. The operator
/// reads the role again, finds it gone, and lets the binding go in that same pass rather
/// than waiting out the slow retry of an AccessDenied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_gone_before_its_delete_lands_answers_access_denied_and_the_cleanup_ends() {
    let (env, aws) = start(SimConfig::default(), |s| {
        s.retry_slow = Duration::from_secs(3600);
    })
    .await;
    env.apply(
        "doomed",
        json!({"role": {"managedPolicyArns": [READ_ONLY]}}),
    )
    .await;
    env.wait_converged("doomed").await;
    let role = naming::default_role_name(CLUSTER_ARN, NS, "doomed");
    let arn = aws.inventory().role(&role).expect("role").role.arn.clone();
    aws.record_authorizations();
    aws.knobs()
        .set_operation_latency("DeleteRole", Duration::from_millis(500));
    env.delete("doomed").await;
    let deadline = Instant::now() + WAIT;
    while aws.knobs().writes_in_flight() == 0 || aws.knobs().calls_of("DeleteRole") == 0 {
        assert!(Instant::now() < deadline, "DeleteRole never sent");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The operator's DeleteRole waits out its latency; the role goes before it lands.
    aws.knobs()
        .set_operation_latency("DeleteRole", Duration::ZERO);
    AwsSim::as_admin(pod_identity_operator::aws::IamApi::delete_role(
        aws.as_ref(),
        &role,
    ))
    .await
    .expect("the role deleted under the operator");
    env.wait_gone("doomed").await;
    let bare = format!("arn:aws:iam::111122223333:role/{role}");
    let decided: Vec<_> = aws
        .authorizations()
        .into_iter()
        .filter(|(action, _, _)| action == "iam:DeleteRole")
        .map(|(_, resource, allowed)| (resource, allowed))
        .collect();
    assert_eq!(
        decided,
        [(bare, false)],
        "the operator's DeleteRole met the gone role as AccessDenied (the role was {arn})"
    );
    assert_eq!(owned_roles(&aws, "doomed"), 0);
    assert!(aws.inventory().associations_for(NS, "doomed").is_empty());
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_then_recreate_during_the_association_release_window_converges() {
    let config = SimConfig {
        association_release: Duration::from_secs(2),
        ..SimConfig::default()
    };
    let (env, aws) = start(config, |_| {}).await;
    env.apply("replaced", json!({})).await;
    env.wait_converged("replaced").await;
    env.delete("replaced").await;
    env.wait_gone("replaced").await;
    let b = env.apply("replaced", json!({})).await;
    let b2 = env.wait_converged("replaced").await;
    assert_eq!(b.uid(), b2.uid());
    let inv = aws.inventory();
    assert_eq!(inv.associations_for(NS, "replaced").len(), 1);
    assert_eq!(owned_roles(&aws, "replaced"), 1);
    assert!(
        aws.knobs().calls_of("CreatePodIdentityAssociation") >= 3,
        "the release window was not hit"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_older_binding_of_a_service_account_wins() {
    let (env, aws) = start(SimConfig::default(), |_| {}).await;
    env.apply("first", json!({"serviceAccount": {"name": "shared"}}))
        .await;
    env.wait_converged("first").await;
    env.apply("second", json!({"serviceAccount": {"name": "shared"}}))
        .await;
    let b = env
        .wait_ready("second", "AssociationConflict", |_, c| {
            c.reason == "AssociationConflict"
        })
        .await;
    assert!(ready(&b).is_some_and(|c| c.status == "False" && c.message.contains("first")));
    assert_eq!(
        owned_roles(&aws, "second"),
        0,
        "a blocked binding writes nothing"
    );
    let reasons = env.event_reasons().await;
    assert!(
        reasons
            .iter()
            .any(|(t, r)| t == "Warning" && r == "AssociationConflict")
    );
    // An older binding moving onto a younger one's ServiceAccount takes its
    // association over; the younger one then reports the conflict.
    env.apply("third", json!({"serviceAccount": {"name": "elsewhere"}}))
        .await;
    env.wait_converged("third").await;
    env.bindings()
        .patch(
            "first",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"serviceAccount": {"name": "elsewhere"}}})),
        )
        .await
        .expect("move first");
    env.wait_converged("first").await;
    env.wait_ready("third", "AssociationConflict", |_, c| {
        c.reason == "AssociationConflict"
    })
    .await;
    let inv = aws.inventory();
    let assocs = inv.associations_for(NS, "elsewhere");
    assert_eq!(assocs.len(), 1);
    assert!(naming::owned_by(&assocs[0].tags, CLUSTER_ARN, NS, "first"));
    assert!(
        assocs[0]
            .role_arn
            .ends_with(&naming::default_role_name(CLUSTER_ARN, NS, "first"))
    );
    env.bindings()
        .patch(
            "first",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"serviceAccount": {"name": "shared"}}})),
        )
        .await
        .expect("move first back");
    env.wait_converged("first").await;

    // When the older one goes, the newer one takes over.
    env.delete("first").await;
    env.wait_gone("first").await;
    env.wait_converged("second").await;
    let inv = aws.inventory();
    let assocs = inv.associations_for(NS, "shared");
    assert_eq!(assocs.len(), 1);
    assert!(naming::owned_by(&assocs[0].tags, CLUSTER_ARN, NS, "second"));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_role_is_a_conflict_and_an_invalid_spec_makes_no_aws_call() {
    let (env, aws) = start(SimConfig::default(), |_| {}).await;
    // A role of the derived name made by someone else.
    use pod_identity_operator::aws::{CreateRole, IamApi};
    AwsSim::as_admin(aws.create_role(&CreateRole {
        name: naming::default_role_name(CLUSTER_ARN, NS, "taken"),
        path: "/".into(),
        assume_role_policy: pod_identity_operator::policy::pod_identity_trust_policy(None),
        ..CreateRole::default()
    }))
    .await
    .expect("foreign role");
    env.apply("taken", json!({})).await;
    let b = env
        .wait_ready("taken", "RoleConflict", |_, c| c.reason == "RoleConflict")
        .await;
    let role_cond = b
        .status
        .as_ref()
        .expect("status")
        .conditions
        .iter()
        .find(|c| c.type_ == "RoleReady")
        .cloned();
    assert_eq!(role_cond.map(|c| c.status), Some("False".into()));
    assert!(aws.inventory().associations_for(NS, "taken").is_empty());

    // An invalid spec the schema lets through (a malformed policy document).
    let writes = write_calls(&aws);
    env.apply(
        "bad",
        json!({"role": {"inlinePolicies": {"p": {"Statement": "nope"}}}}),
    )
    .await;
    let b = env
        .wait_ready("bad", "InvalidSpec", |_, c| c.reason == "InvalidSpec")
        .await;
    assert!(ready(&b).is_some_and(|c| c.message.contains("role.inlinePolicies.p")));
    assert_eq!(write_calls(&aws), writes);

    // Deleting a binding that made nothing leaves the foreign role alone.
    env.delete("taken").await;
    env.wait_gone("taken").await;
    assert!(
        aws.inventory()
            .role(&naming::default_role_name(CLUSTER_ARN, NS, "taken"))
            .is_some()
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_crd_schema_and_cel_rules_reject_bad_bindings() {
    let (env, _aws) = start(SimConfig::default(), |_| {}).await;
    let bad = [
        json!({"role": {"arn": "arn:aws:iam::111122223333:role/x", "name": "y"}}),
        json!({"role": {"maxSessionDuration": 60}}),
        json!({"role": {"arn": "not-an-arn"}}),
        json!({"role": {"arn": "arn:aws-xx:iam::111122223333:role/x"}}),
        json!({"role": {"managedPolicyArns": ["arn:awsfoo:iam::aws:policy/ReadOnlyAccess"]}}),
        json!({"sessionPolicy": {"Version": "2012-10-17"}}),
        json!({"tags": {"aws:reserved": "x"}}),
        json!({"deletionPolicy": "Sometimes"}),
        json!({"serviceAccount": {"name": "Not_DNS"}}),
    ];
    let raw: Api<DynamicObject> = Api::namespaced_with(
        env.client.clone(),
        NS,
        &ApiResource::erase::<PodIdentityBinding>(&()),
    );
    for (i, spec) in bad.into_iter().enumerate() {
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "podidentity.dev/v1alpha1", "kind": "PodIdentityBinding",
            "metadata": {"name": format!("bad-{i}"), "namespace": NS}, "spec": spec.clone(),
        }))
        .expect("object");
        let err = raw
            .create(&PostParams::default(), &obj)
            .await
            .expect_err(&format!("{spec} must be refused"));
        assert!(
            matches!(err, kube::Error::Api(ref s) if s.code == 422),
            "{spec}: {err:?}"
        );
    }
    env.apply("good", json!({"sessionPolicy": {"Version": "2012-10-17", "Statement": []}, "disableSessionTags": true}))
        .await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_association_is_adopted_only_on_request_and_never_from_an_add_on() {
    use pod_identity_operator::aws::{CreateAssociation, EksApi};
    let (env, aws) = start(SimConfig::default(), |_| {}).await;
    let foreign = |sa: &str| CreateAssociation {
        cluster_name: CLUSTER.into(),
        namespace: NS.into(),
        service_account: sa.into(),
        role_arn: "arn:aws:iam::111122223333:role/legacy".into(),
        tags: [("made-by".to_string(), "terraform".to_string())].into(),
        ..CreateAssociation::default()
    };
    // The simulator checks that roles exist.
    use pod_identity_operator::aws::{CreateRole, IamApi};
    AwsSim::as_admin(aws.create_role(&CreateRole {
        name: "legacy".into(),
        path: "/".into(),
        assume_role_policy: pod_identity_operator::policy::pod_identity_trust_policy(None),
        ..CreateRole::default()
    }))
    .await
    .expect("legacy role");
    let made = AwsSim::as_admin(aws.create_pod_identity_association(&foreign("legacy")))
        .await
        .expect("foreign association");

    env.apply("legacy", json!({})).await;
    env.wait_ready("legacy", "AssociationConflict", |_, c| {
        c.reason == "AssociationConflict" && c.message.contains("adopt")
    })
    .await;
    env.bindings()
        .patch(
            "legacy",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"adopt": true}})),
        )
        .await
        .expect("patch adopt");
    let b = env.wait_converged("legacy").await;
    let st = b.status.expect("status");
    assert_eq!(
        st.association_id.as_deref(),
        Some(made.association_id.as_str())
    );
    let cond = st
        .conditions
        .iter()
        .find(|c| c.type_ == "AssociationReady")
        .expect("AssociationReady");
    assert_eq!(cond.reason, "AssociationAdopted");
    let inv = aws.inventory();
    let assocs = inv.associations_for(NS, "legacy");
    assert_eq!(assocs.len(), 1, "adopted, not duplicated");
    assert!(naming::owned_by(&assocs[0].tags, CLUSTER_ARN, NS, "legacy"));
    assert!(
        assocs[0]
            .role_arn
            .ends_with(&naming::default_role_name(CLUSTER_ARN, NS, "legacy"))
    );
    assert!(
        env.event_reasons()
            .await
            .iter()
            .any(|(_, r)| r == "AssociationAdopted")
    );

    // An association an EKS add-on owns is never adopted, adopt or not.
    let addon = AwsSim::as_admin(aws.create_pod_identity_association(&foreign("vpc-cni")))
        .await
        .expect("add-on association");
    assert!(aws.set_association_owner(
        CLUSTER,
        &addon.association_id,
        Some("arn:aws:eks:us-east-1:111122223333:addon/prod/vpc-cni/x")
    ));
    env.apply(
        "cni",
        json!({"serviceAccount": {"name": "vpc-cni"}, "adopt": true}),
    )
    .await;
    env.wait_ready("cni", "AssociationConflict", |_, c| {
        c.reason == "AssociationConflict" && c.message.contains("add-on")
    })
    .await;
    let kept = aws
        .peek_association(CLUSTER, &addon.association_id)
        .expect("still there");
    assert_eq!(kept.role_arn, "arn:aws:iam::111122223333:role/legacy");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_in_aws_is_repaired_on_resync() {
    use pod_identity_operator::aws::IamApi;
    let (env, aws) = start(SimConfig::default(), |s| {
        s.resync = Duration::from_millis(100)
    })
    .await;
    env.apply(
        "drifty",
        json!({"role": {"managedPolicyArns": [READ_ONLY]}, "targetRoleArn": "arn:aws:iam::444455556666:role/target"}),
    )
    .await;
    env.wait_converged("drifty").await;
    let name = naming::default_role_name(CLUSTER_ARN, NS, "drifty");
    let role = aws.inventory().role(&name).expect("role").clone();
    assert!(
        role.inline_policies.values().any(|d| d
            .to_string()
            .contains("arn:aws:iam::444455556666:role/target")),
        "the role may assume the target role"
    );
    // Someone loosens the trust policy and detaches the policy.
    AwsSim::as_admin(aws.update_assume_role_policy(
        &name,
        &pod_identity_operator::policy::pod_identity_trust_policy(None),
    ))
    .await
    .expect("tamper trust");
    AwsSim::as_admin(aws.detach_role_policy(&name, READ_ONLY))
        .await
        .expect("tamper policy");
    let deadline = Instant::now() + WAIT;
    loop {
        let now = aws.inventory().role(&name).expect("role").clone();
        if now.attached_policy_arns == [READ_ONLY]
            && pod_identity_operator::policy::documents_equivalent(
                &now.role.assume_role_policy,
                &role.role.assume_role_policy,
            )
        {
            break;
        }
        assert!(Instant::now() < deadline, "drift never repaired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(aws.knobs().calls_of("UpdateAssumeRolePolicy"), 2);
    assert_eq!(aws.knobs().calls_of("AttachRolePolicy"), 2);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renaming_the_service_account_or_role_moves_the_association() {
    let (env, aws) = start(SimConfig::default(), |_| {}).await;
    env.apply("mover", json!({})).await;
    env.wait_converged("mover").await;
    let sas: Api<ServiceAccount> = Api::namespaced(env.client.clone(), NS);

    env.bindings()
        .patch(
            "mover",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"serviceAccount": {"name": "moved"}}})),
        )
        .await
        .expect("rename sa");
    let b = env.wait_converged("mover").await;
    assert_eq!(
        b.status
            .as_ref()
            .and_then(|s| s.service_account.as_ref())
            .map(|s| s.name.as_str()),
        Some("moved")
    );
    let inv = aws.inventory();
    assert!(inv.associations_for(NS, "mover").is_empty());
    assert_eq!(inv.associations_for(NS, "moved").len(), 1);
    assert!(
        sas.get_opt("mover").await.expect("get").is_none(),
        "old ServiceAccount removed"
    );
    assert!(sas.get_opt("moved").await.expect("get").is_some());

    env.bindings()
        .patch(
            "mover",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"role": {"name": "mover-renamed"}}})),
        )
        .await
        .expect("rename role");
    env.wait_converged("mover").await;
    let inv = aws.inventory();
    assert!(
        inv.role(&naming::default_role_name(CLUSTER_ARN, NS, "mover"))
            .is_none()
    );
    assert!(inv.role("mover-renamed").is_some());
    let assocs = inv.associations_for(NS, "moved");
    assert_eq!(assocs.len(), 1);
    assert!(assocs[0].role_arn.ends_with("/mover-renamed"));
    assert_eq!(aws.knobs().calls_of("UpdatePodIdentityAssociation"), 1);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_role_is_checked_used_and_never_modified_or_deleted() {
    use pod_identity_operator::aws::{CreateRole, IamApi};
    let (env, aws) = start(SimConfig::default(), |_| {}).await;
    let untrusting = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]});
    AwsSim::as_admin(aws.create_role(&CreateRole {
        name: "byo".into(),
        path: "/".into(),
        assume_role_policy: untrusting,
        ..CreateRole::default()
    }))
    .await
    .expect("role");
    env.apply(
        "byo",
        json!({"role": {"arn": "arn:aws:iam::111122223333:role/byo"}, "serviceAccount": {"create": false}}),
    )
    .await;
    let b = env
        .wait_ready("byo", "RoleTrustMissing", |_, c| {
            c.reason == "RoleTrustMissing"
        })
        .await;
    assert!(ready(&b).is_some_and(|c| c.message.contains("pods.eks.amazonaws.com")));
    // The user fixes the trust; the operator never did.
    AwsSim::as_admin(aws.update_assume_role_policy(
        "byo",
        &pod_identity_operator::policy::pod_identity_trust_policy(None),
    ))
    .await
    .expect("fix trust");
    // With create: false and no ServiceAccount, the association is made but Ready
    // says what is missing.
    let b = env
        .wait_ready("byo", "ServiceAccountNotFound", |_, c| {
            c.reason == "ServiceAccountNotFound"
        })
        .await;
    assert_eq!(
        b.status.as_ref().and_then(|s| s.role_arn.as_deref()),
        Some("arn:aws:iam::111122223333:role/byo")
    );
    let sas: Api<ServiceAccount> = Api::namespaced(env.client.clone(), NS);
    let sa: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "byo", "namespace": NS}})).expect("sa");
    sas.create(&Default::default(), &sa)
        .await
        .expect("sa created");
    let b = env.wait_converged("byo").await;
    let cond = |t: &str| {
        b.status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == t).cloned())
            .expect("condition")
    };
    assert_eq!(cond("RoleReady").reason, "RoleExisting");
    assert_eq!(cond("ServiceAccountReady").reason, "ServiceAccountFound");
    assert_eq!(
        aws.knobs().calls_of("UpdateAssumeRolePolicy"),
        1,
        "only the user's fix"
    );
    assert_eq!(aws.knobs().calls_of("TagRole"), 0);

    env.delete("byo").await;
    env.wait_gone("byo").await;
    let inv = aws.inventory();
    assert!(
        inv.role("byo").is_some(),
        "an existing role is never deleted"
    );
    assert!(inv.associations_for(NS, "byo").is_empty());
    assert!(
        sas.get_opt("byo").await.expect("get").is_some(),
        "a found ServiceAccount stays"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_held_by_an_instance_profile_blocks_cleanup_until_released() {
    let (env, aws) = start(SimConfig::default(), |_| {}).await;
    env.apply("held", json!({})).await;
    env.wait_converged("held").await;
    let name = naming::default_role_name(CLUSTER_ARN, NS, "held");
    aws.add_instance_profile("stray-profile", &name)
        .expect("instance profile");
    env.delete("held").await;
    let b = env
        .wait_ready("held", "CleanupBlocked", |_, c| {
            c.reason == "CleanupBlocked"
        })
        .await;
    assert!(ready(&b).is_some_and(|c| c.message.contains("stray-profile")));
    assert!(
        aws.inventory().associations_for(NS, "held").is_empty(),
        "association went first"
    );
    aws.remove_instance_profile("stray-profile", &name);
    env.wait_gone("held").await;
    assert!(aws.inventory().role(&name).is_none());
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

/// Every file in `examples/` passes the CRD's schema and CEL rules, and the operator's
/// own validation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_is_accepted_by_the_schema_and_the_operator() {
    use k8s_openapi::api::core::v1::Namespace;
    use pod_identity_operator::aws::Cluster;
    use pod_identity_operator::controller::desired::desired;
    let kube = pod_identity_operator::kubesim::KubeSim::new();
    let client = kube.client();
    support::install_crd(&client).await;
    let cluster = Cluster {
        name: CLUSTER.into(),
        arn: format!("arn:aws:eks:us-east-1:111122223333:cluster/{CLUSTER}"),
        account_id: "111122223333".into(),
        status: None,
    };
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
    let mut seen = 0;
    let manifests = pod_identity_operator::sandbox::manifests::read_manifests(dir.as_ref())
        .expect("examples/ reads");
    for manifest in manifests
        .into_iter()
        .filter(|m| m.kind() == "PodIdentityBinding")
    {
        let path = manifest.file;
        let value = manifest.object;
        let ns = value["metadata"]["namespace"]
            .as_str()
            .expect("namespaced")
            .to_owned();
        let namespaces: Api<Namespace> = Api::all(client.clone());
        if namespaces.get_opt(&ns).await.expect("get ns").is_none() {
            let n: Namespace =
                serde_json::from_value(json!({"metadata": {"name": ns}})).expect("ns");
            namespaces
                .create(&PostParams::default(), &n)
                .await
                .expect("create ns");
        }
        let raw: Api<DynamicObject> = Api::namespaced_with(
            client.clone(),
            &ns,
            &ApiResource::erase::<PodIdentityBinding>(&()),
        );
        let obj: DynamicObject = serde_json::from_value(value.clone()).expect("object");
        let stored = raw
            .create(&PostParams::default(), &obj)
            .await
            .unwrap_or_else(|e| panic!("{}: refused by the schema: {e}", path.display()));
        let mut binding: PodIdentityBinding =
            serde_json::from_value(serde_json::to_value(&stored).expect("json"))
                .expect("typed binding");
        binding.metadata.uid.get_or_insert_with(|| "uid".into());
        desired(&binding, &cluster)
            .unwrap_or_else(|e| panic!("{}: refused by the operator: {e}", path.display()));
        seen += 1;
    }
    assert!(seen >= 6, "examples found: {seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_problems_are_reported_and_recovered_from() {
    // The cluster does not exist yet.
    let aws = Arc::new(AwsSim::new(SimConfig::default()));
    let env = Env::start(
        CLUSTER,
        aws.clone(),
        aws.clone(),
        support::under_rendered_policy(&aws, CLUSTER, |_| {}),
    )
    .await;
    env.apply("early", json!({})).await;
    let b = env
        .wait_ready("early", "ClusterNotFound", |_, c| {
            c.reason == "ClusterNotFound"
        })
        .await;
    assert!(ready(&b).is_some_and(|c| c.message.contains("--cluster-name")));
    assert_eq!(write_calls(&aws), 0);
    aws.add_cluster(CLUSTER);
    env.wait_converged("early").await;

    // A missing permission for a few calls, then granted.
    let next = aws.knobs().calls_of("CreateRole") + 1;
    for n in next..next + 3 {
        aws.knobs().fail_nth(
            "CreateRole",
            n,
            Fault::new(
                "AccessDenied",
                "User is not authorized to perform: iam:CreateRole",
            ),
        );
    }
    env.apply("denied", json!({})).await;
    let note = env.wait_warning("denied", "AccessDenied").await;
    assert!(note.contains("iam:CreateRole"), "{note}");
    env.wait_converged("denied").await;

    // A full quota.
    let next = aws.knobs().calls_of("CreatePodIdentityAssociation") + 1;
    for n in next..next + 3 {
        aws.knobs().fail_nth(
            "CreatePodIdentityAssociation",
            n,
            Fault::new("ServiceQuotaExceededException", "association quota reached"),
        );
    }
    env.apply("crowded", json!({})).await;
    env.wait_warning("crowded", "QuotaExceeded").await;
    env.wait_converged("crowded").await;
    let reasons = env.event_reasons().await;
    for wanted in ["ClusterNotFound", "AccessDenied", "QuotaExceeded"] {
        assert!(
            reasons.iter().any(|(t, r)| t == "Warning" && r == wanted),
            "no Warning {wanted} event"
        );
    }
    env.stop().await;
}

/// The kstatus conditions of a binding: (type, reason) of `Reconciling` and `Stalled`.
fn kstatus_of(b: &PodIdentityBinding) -> Vec<(String, String)> {
    b.status
        .iter()
        .flat_map(|s| &s.conditions)
        .filter(|c| c.type_ == "Reconciling" || c.type_ == "Stalled")
        .map(|c| (c.type_.clone(), c.reason.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_pass_waits_out_its_backoff_and_conditions_say_reconciling_or_stalled() {
    let (env, aws) = start(SimConfig::default(), |s| {
        s.retry_base = Duration::from_secs(1);
        s.retry_max = Duration::from_secs(2);
    })
    .await;
    // A server error on the first CreateRole. The same pass created the ServiceAccount
    // and wrote the status, both of which wake the binding; the retry still waits for
    // its backoff (at least half of retry_base, by the jitter).
    aws.knobs()
        .fail_nth("CreateRole", 1, Fault::server_error(Service::Iam));
    env.apply("flaky", json!({})).await;
    let calls = |n: u64| {
        let aws = aws.clone();
        async move {
            let deadline = Instant::now() + WAIT;
            while aws.knobs().calls_of("CreateRole") < n {
                assert!(Instant::now() < deadline, "CreateRole call {n} never came");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Instant::now()
        }
    };
    let first = calls(1).await;
    let b = env
        .wait_ready("flaky", "Retrying", |_, c| c.reason == "Retrying")
        .await;
    assert_eq!(
        kstatus_of(&b),
        [("Reconciling".to_owned(), "Retrying".to_owned())]
    );
    let second = calls(2).await;
    assert!(
        second - first >= Duration::from_millis(450),
        "retried after {:?}",
        second - first
    );
    let b = env.wait_converged("flaky").await;
    assert!(kstatus_of(&b).is_empty(), "{:?}", kstatus_of(&b));
    assert_eq!(aws.knobs().calls_of("CreateRole"), 2);
    assert_eq!(owned_roles(&aws, "flaky"), 1);

    // A problem that needs a person: Stalled, until it is fixed (every CreateRole is
    // denied until the faults are cleared).
    aws.knobs().fail_random(
        1,
        1.0,
        Fault::new("AccessDenied", "not authorized to perform: iam:CreateRole"),
        &["CreateRole"],
    );
    env.apply("denied", json!({})).await;
    let b = env
        .wait_ready("denied", "AccessDenied", |_, c| c.reason == "AccessDenied")
        .await;
    assert_eq!(
        kstatus_of(&b),
        [("Stalled".to_owned(), "AccessDenied".to_owned())]
    );
    let stalled = b
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Stalled"))
        .expect("Stalled");
    assert_eq!(stalled.observed_generation, Some(1));
    aws.knobs().clear_faults();
    let b = env.wait_converged("denied").await;
    assert!(kstatus_of(&b).is_empty());
    env.stop().await;
}

/// Every condition of the binding that is not True and reports an error.
fn errors_shown(b: &PodIdentityBinding) -> Vec<String> {
    b.status
        .iter()
        .flat_map(|s| &s.conditions)
        .filter(|c| c.status != "True")
        .filter(|c| {
            Reason::ALL
                .iter()
                .find(|r| r.as_str() == c.reason)
                .is_none_or(|r| r.is_error())
        })
        .map(|c| {
            format!(
                "{}: {}={} {}: {}",
                b.name_any(),
                c.type_,
                c.status,
                c.reason,
                c.message
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_hard_aws_throttling_every_binding_gets_ready_and_none_shows_a_failure() {
    // No client-side limit: the simulator's small buckets throttle the operator.
    let (env, aws) = start(SimConfig::default(), |s| {
        s.iam_rate = None;
        s.eks_rate = None;
        s.retry_base = Duration::from_millis(50);
        s.retry_max = Duration::from_secs(1);
        s.concurrency = 8;
    })
    .await;
    aws.knobs().set_throttle(Service::Iam, 3, 10.0);
    aws.knobs().set_throttle(Service::Eks, 2, 5.0);

    // Every state every binding goes through, as a watch sees it.
    let seen_errors = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen_reasons = Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
    let watch = {
        let (errors, reasons) = (seen_errors.clone(), seen_reasons.clone());
        let stream = watcher(env.bindings(), watcher::Config::default()).touched_objects();
        tokio::spawn(async move {
            futures::pin_mut!(stream);
            while let Some(Ok(b)) = stream.next().await {
                let found = errors_shown(&b);
                errors.lock().expect("lock").extend(found);
                for (type_, reason) in kstatus_of(&b) {
                    reasons
                        .lock()
                        .expect("lock")
                        .insert(format!("{type_}/{reason}"));
                }
            }
        })
    };

    let started = Instant::now();
    let names: Vec<String> = (0..20).map(|i| format!("busy-{i:02}")).collect();
    for n in &names {
        env.apply(n, json!({"role": {"managedPolicyArns": [READ_ONLY]}}))
            .await;
    }
    for n in &names {
        let b = env.wait_converged(n).await;
        assert!(kstatus_of(&b).is_empty(), "{n}: {:?}", kstatus_of(&b));
        assert_eq!(owned_roles(&aws, n), 1, "{n}: one role");
        assert_eq!(aws.inventory().associations_for(NS, n).len(), 1, "{n}");
    }
    let throttled = aws.knobs().throttled(Service::Iam) + aws.knobs().throttled(Service::Eks);
    assert!(
        throttled > 0,
        "the simulator never throttled: the test proves nothing"
    );
    eprintln!(
        "20 bindings Ready in {:.1}s; {} AWS calls, {throttled} throttled",
        started.elapsed().as_secs_f64(),
        aws.knobs().total_calls()
    );

    // EKS refuses everything for a while: more than the call retries absorb. The new
    // binding shows it as progress, then gets Ready once EKS answers again.
    aws.knobs().set_throttle(Service::Eks, 0, 0.0);
    env.apply("late", json!({})).await;
    let b = env
        .wait_ready("late", "Throttled", |_, c| c.reason == "Throttled")
        .await;
    assert_eq!(
        kstatus_of(&b),
        [("Reconciling".to_owned(), "Throttled".to_owned())]
    );
    aws.knobs().clear_throttle(Service::Eks);
    env.wait_converged("late").await;

    // Let the watch catch up with the last writes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    watch.abort();
    let errors = seen_errors.lock().expect("lock").clone();
    assert!(
        errors.is_empty(),
        "failures shown under throttling: {errors:#?}"
    );
    let warnings: Vec<(String, String)> = env
        .event_reasons()
        .await
        .into_iter()
        .filter(|(t, _)| t == "Warning")
        .collect();
    assert!(warnings.is_empty(), "Warning events: {warnings:?}");
    let reasons = seen_reasons.lock().expect("lock").clone();
    assert!(
        reasons.iter().all(|r| r == "Reconciling/Throttled"),
        "{reasons:?}"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_side_limit_paces_calls_to_each_service() {
    let iam = Rate {
        per_second: 20.0,
        burst: 4,
    };
    let eks = Rate {
        per_second: 10.0,
        burst: 2,
    };
    let (env, aws) = start(SimConfig::default(), |s| {
        s.iam_rate = Some(iam);
        s.eks_rate = Some(eks);
        s.concurrency = 8;
    })
    .await;
    // Samples of the calls counted so far, each between two clock readings.
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (aws, done) = (aws.clone(), done.clone());
        tokio::spawn(async move {
            let mut samples = Vec::new();
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let before = Instant::now();
                let counts = (
                    aws.knobs().calls_of_service(Service::Iam),
                    aws.knobs().calls_of_service(Service::Eks),
                );
                samples.push((before, counts, Instant::now()));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            samples
        })
    };
    let names: Vec<String> = (0..20).map(|i| format!("paced-{i:02}")).collect();
    for n in &names {
        env.apply(n, json!({"role": {"managedPolicyArns": [READ_ONLY]}}))
            .await;
    }
    for n in &names {
        env.wait_converged(n).await;
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let samples = sampler.await.expect("sampler");
    let (iam_total, eks_total) = samples.last().expect("samples").1;
    assert!(
        iam_total >= 50 && eks_total >= 30,
        "too few calls to measure: {iam_total} IAM, {eks_total} EKS"
    );
    // Between any two samples, no more calls than the bucket allows over the longest
    // time that can separate them (an upper bound only: a slow machine makes fewer).
    let mut worst = (0.0f64, 0.0f64);
    for (i, (before_i, (iam_i, eks_i), _)) in samples.iter().enumerate() {
        for (_, (iam_j, eks_j), after_j) in &samples[i + 1..] {
            let secs = (*after_j - *before_i).as_secs_f64();
            for (rate, calls, w) in [
                (iam, iam_j - iam_i, &mut worst.0),
                (eks, eks_j - eks_i, &mut worst.1),
            ] {
                let allowed = f64::from(rate.burst) + rate.per_second * secs + 1.0;
                assert!(
                    calls as f64 <= allowed,
                    "{calls} calls in {secs:.2}s, limit {rate:?}"
                );
                if secs >= 1.0 {
                    *w = w.max(calls as f64 / secs);
                }
            }
        }
    }
    eprintln!(
        "busiest rate over any second or more: IAM {:.1}/s (limit {}), EKS {:.1}/s (limit {})",
        worst.0, iam.per_second, worst.1, eks.per_second
    );
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

/// The policies of a role are read only when the operator made it (its cluster's path
/// and ownership tags): an existing role named by `role.arn` is only ever read with
/// GetRole, which is all the operator's IAM policy allows on it. Create, a switch to a
/// managed role and back, and delete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_role_is_only_ever_read_with_get_role() {
    let (env, aws) = start(SimConfig::default(), |_| {}).await;
    support::existing_role(&aws).await;
    let policy_reads = |aws: &AwsSim| -> u64 {
        [
            "ListAttachedRolePolicies",
            "ListRolePolicies",
            "GetRolePolicy",
        ]
        .iter()
        .map(|op| aws.knobs().calls_of(op))
        .sum()
    };
    env.apply("app", json!({"role": {"arn": support::EXISTING_ROLE_ARN}}))
        .await;
    env.wait_converged("app").await;
    assert_eq!(policy_reads(&aws), 0, "{:?}", aws.knobs().calls());

    // To a managed role (the existing one is the previous role) and back.
    env.patch_role(
        "app",
        json!({"arn": null, "managedPolicyArns": [READ_ONLY]}),
    )
    .await;
    let b = env.wait_converged("app").await;
    assert!(
        b.status
            .as_ref()
            .and_then(|s| s.role_arn.as_deref())
            .is_some_and(|arn| arn.contains(":role/pod-identity/")),
        "{:?}",
        b.status
    );
    assert!(aws.knobs().calls_of("GetRole") > 0, "calls are counted");
    env.patch_role(
        "app",
        json!({"arn": support::EXISTING_ROLE_ARN, "managedPolicyArns": null}),
    )
    .await;
    env.wait_converged("app").await;
    assert_eq!(owned_roles(&aws, "app"), 0, "the managed role was removed");

    // Deleting reads nothing but GetRole of the existing role; it stays untouched.
    let before = policy_reads(&aws);
    env.delete("app").await;
    env.wait_gone("app").await;
    assert_eq!(policy_reads(&aws), before, "{:?}", aws.knobs().calls());
    let role = aws
        .inventory()
        .role("deploy")
        .cloned()
        .expect("existing role kept");
    assert_eq!(role.attached_policy_arns, vec![READ_ONLY.to_owned()]);
    env.stop().await;
}
