//! Whose resources are whose: the older binding of a ServiceAccount wins, a foreign role
//! is a conflict, a foreign association is adopted only on request (never from an add-on),
//! and an existing role is checked and used, only ever read with GetRole, and never
//! modified or deleted.

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, Patch, PatchParams};
use pod_identity_operator::aws::sim::{AwsSim, SimConfig};
use pod_identity_operator::naming;
use serde_json::json;

use crate::support;
use crate::support::{NS, ready};
use crate::{CLUSTER, CLUSTER_ARN, READ_ONLY, owned_roles, start, write_calls};

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
