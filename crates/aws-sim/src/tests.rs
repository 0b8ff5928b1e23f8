//! The simulator's own behaviour: windows under a paused clock, the knobs, the wrapper,
//! the inventory, and what the contract suite cannot set up on a wire server.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::*;
use crate::faults::{Fault, Faulty};
use pod_identity_aws::ErrorClass;
use pod_identity_aws::{CreateAssociation, CreateRole, EksApi, IamApi, UpdateAssociation};

mod knobs;
mod model;

fn trust() -> Value {
    json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"Service": "pods.eks.amazonaws.com"},
        "Action": ["sts:AssumeRole", "sts:TagSession"]}]})
}

/// The API's rules, as the account's administrator: every call is authorized against
/// [`administrator_policy`], which allows everything.
fn sim(config: SimConfig) -> Arc<AwsSim> {
    let sim = Arc::new(AwsSim::new(SimConfig {
        identity_policy: Some(administrator_policy()),
        ..config
    }));
    sim.add_cluster("c1");
    sim
}

async fn role(sim: &AwsSim, name: &str) -> Role {
    sim.create_role(&CreateRole {
        name: name.into(),
        path: "/".into(),
        assume_role_policy: trust(),
        ..CreateRole::default()
    })
    .await
    .unwrap()
}

fn assoc(role: &Role, ns: &str, sa: &str) -> CreateAssociation {
    CreateAssociation {
        cluster_name: "c1".into(),
        namespace: ns.into(),
        service_account: sa.into(),
        role_arn: role.arn.clone(),
        ..CreateAssociation::default()
    }
}

fn code<T: std::fmt::Debug>(r: pod_identity_aws::Result<T>) -> (String, ErrorClass) {
    let e = r.expect_err("an error");
    let a = e.aws().expect("an AWS error");
    (a.code.clone(), a.class)
}

#[tokio::test(start_paused = true)]
async fn new_role_is_invisible_to_eks_for_the_propagation_window() {
    let sim = sim(SimConfig {
        role_propagation: Duration::from_secs(10),
        ..SimConfig::default()
    });
    let r = role(&sim, "r").await;
    let (c, class) = code(
        sim.create_pod_identity_association(&assoc(&r, "ns", "sa"))
            .await,
    );
    assert_eq!(
        (c.as_str(), class),
        ("InvalidParameterException", ErrorClass::Propagation)
    );
    tokio::time::advance(Duration::from_secs(9)).await;
    assert!(
        sim.create_pod_identity_association(&assoc(&r, "ns", "sa"))
            .await
            .is_err()
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    sim.create_pod_identity_association(&assoc(&r, "ns", "sa"))
        .await
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn deleted_association_blocks_its_service_account_for_the_release_window() {
    let sim = sim(SimConfig {
        association_release: Duration::from_secs(30),
        ..SimConfig::default()
    });
    let r = role(&sim, "r").await;
    let a = sim
        .create_pod_identity_association(&assoc(&r, "ns", "sa"))
        .await
        .unwrap();
    sim.delete_pod_identity_association("c1", &a.association_id)
        .await
        .unwrap();
    let e = sim
        .create_pod_identity_association(&assoc(&r, "ns", "sa"))
        .await
        .unwrap_err();
    let e = e.aws().unwrap();
    assert_eq!(
        (e.code.as_str(), e.class),
        ("ResourceInUseException", ErrorClass::Conflict)
    );
    assert!(e.message.contains(&a.association_id), "{e}");
    // Other ServiceAccounts are free meanwhile.
    sim.create_pod_identity_association(&assoc(&r, "ns", "other"))
        .await
        .unwrap();
    tokio::time::advance(Duration::from_secs(30)).await;
    let b = sim
        .create_pod_identity_association(&assoc(&r, "ns", "sa"))
        .await
        .unwrap();
    assert_ne!(b.association_id, a.association_id);
}

#[tokio::test]
async fn instance_profile_blocks_role_deletion_and_is_listed() {
    let sim = sim(SimConfig::default());
    role(&sim, "held").await;
    sim.add_instance_profile("nodes", "HELD").unwrap();
    assert_eq!(
        sim.list_instance_profiles_for_role("held").await.unwrap(),
        ["nodes"]
    );
    let e = sim.delete_role("held").await.unwrap_err();
    let e = e.aws().unwrap();
    assert_eq!(
        (e.code.as_str(), e.class),
        ("DeleteConflict", ErrorClass::Conflict)
    );
    assert_eq!(
        e.message,
        "Cannot delete entity, must remove roles from instance profile first."
    );
    sim.remove_instance_profile("nodes", "held");
    sim.delete_role("held").await.unwrap();
    assert!(
        sim.add_instance_profile("nodes", "held").is_err(),
        "role is gone"
    );
}

#[tokio::test]
async fn associations_per_cluster_quota() {
    let sim = sim(SimConfig {
        max_associations_per_cluster: 2,
        ..SimConfig::default()
    });
    let r = role(&sim, "r").await;
    sim.create_pod_identity_association(&assoc(&r, "ns", "a"))
        .await
        .unwrap();
    sim.create_pod_identity_association(&assoc(&r, "ns", "b"))
        .await
        .unwrap();
    let (c, class) = code(
        sim.create_pod_identity_association(&assoc(&r, "ns", "c"))
            .await,
    );
    assert_eq!(
        (c.as_str(), class),
        ("ResourceLimitExceededException", ErrorClass::Quota)
    );
    assert_eq!(
        AwsSim::new(SimConfig::default())
            .config()
            .max_associations_per_cluster,
        5000
    );
}

#[tokio::test]
async fn token_reused_with_other_input_is_refused_and_spent_by_delete() {
    let sim = sim(SimConfig::default());
    let r = role(&sim, "r").await;
    let mut input = assoc(&r, "ns", "sa");
    input.client_request_token = Some("t1".into());
    let a = sim.create_pod_identity_association(&input).await.unwrap();
    let mut other = input.clone();
    other.service_account = "sb".into();
    let (c, _) = code(sim.create_pod_identity_association(&other).await);
    assert_eq!(c, "InvalidRequestException");
    sim.delete_pod_identity_association("c1", &a.association_id)
        .await
        .unwrap();
    let b = sim.create_pod_identity_association(&input).await.unwrap();
    assert_ne!(
        a.association_id, b.association_id,
        "a deleted association is not revived"
    );
}

#[tokio::test]
async fn inventory_holds_everything_and_serializes() {
    let sim = sim(SimConfig::default());
    let r = role(&sim, "Inv").await;
    sim.attach_role_policy("inv", DEFAULT_MANAGED_POLICIES[0])
        .await
        .unwrap();
    let doc = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Action": "s3:*", "Resource": "*"}]});
    sim.put_role_policy("inv", "p", &doc).await.unwrap();
    let a = sim
        .create_pod_identity_association(&assoc(&r, "ns", "sa"))
        .await
        .unwrap();
    sim.set_association_owner(
        "c1",
        &a.association_id,
        Some("arn:aws:eks:us-east-1:111122223333:addon/c1/x/y"),
    );

    let inv = sim.inventory();
    let ri = inv.role("INV").expect("found regardless of case");
    assert_eq!(ri.attached_policy_arns, [DEFAULT_MANAGED_POLICIES[0]]);
    assert_eq!(ri.inline_policies.get("p"), Some(&doc));
    assert_eq!(inv.clusters.len(), 1);
    assert_eq!(inv.associations_for("ns", "sa").len(), 1);
    assert!(inv.associations[0].owner_arn.is_some());
    let text = serde_json::to_string(&inv).unwrap();
    let back: Inventory = serde_json::from_str(&text).unwrap();
    assert_eq!(back, inv);

    let listed = sim
        .list_pod_identity_associations("c1", None, None)
        .await
        .unwrap();
    assert_eq!(listed[0].owner_arn, inv.associations[0].owner_arn);
}

#[tokio::test]
async fn update_checks_role_and_session_policy_rules() {
    let sim = sim(SimConfig::default());
    let r = role(&sim, "r").await;
    let a = sim
        .create_pod_identity_association(&assoc(&r, "ns", "sa"))
        .await
        .unwrap();
    let base = UpdateAssociation {
        cluster_name: "c1".into(),
        association_id: a.association_id.clone(),
        ..UpdateAssociation::default()
    };
    let cross = UpdateAssociation {
        role_arn: Some("arn:aws:iam::999999999999:role/x".into()),
        ..base.clone()
    };
    let (c, class) = code(sim.update_pod_identity_association(&cross).await);
    assert_eq!(
        (c.as_str(), class),
        ("InvalidParameterException", ErrorClass::UserInput)
    );
    let policy = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Action": "s3:*", "Resource": "*"}]});
    let with_tags = UpdateAssociation {
        session_policy: Some(Some(policy.clone())),
        ..base.clone()
    };
    assert!(
        sim.update_pod_identity_association(&with_tags)
            .await
            .is_err()
    );
    let ok = UpdateAssociation {
        session_policy: Some(Some(policy)),
        disable_session_tags: Some(true),
        target_role_arn: Some(Some("arn:aws:iam::999999999999:role/t".into())),
        ..base
    };
    let updated = sim.update_pod_identity_association(&ok).await.unwrap();
    assert!(
        updated.external_id.is_some(),
        "a target role gets an external id"
    );
    assert!(updated.modified_at >= updated.created_at);
}

#[tokio::test]
async fn ids_and_timestamps_look_like_aws() {
    let sim = sim(SimConfig::default());
    let r = role(&sim, "r").await;
    assert_eq!(r.role_id.len(), 21);
    assert!(r.role_id.starts_with("AROA"));
    assert!(r.created.is_some());
    let a = sim
        .create_pod_identity_association(&assoc(&r, "ns", "sa"))
        .await
        .unwrap();
    assert_eq!(
        a.association_arn,
        format!(
            "arn:aws:eks:us-east-1:111122223333:podidentityassociation/c1/{}",
            a.association_id
        )
    );
    assert!(a.created_at.is_some() && a.modified_at == a.created_at);
}

#[tokio::test]
async fn tags_on_missing_association_arn_are_not_found() {
    let sim = sim(SimConfig::default());
    let (c, class) = code(
        sim.tag_resource(
            "arn:aws:eks:us-east-1:111122223333:podidentityassociation/c1/a-x",
            &Default::default(),
        )
        .await,
    );
    assert_eq!(
        (c.as_str(), class),
        ("NotFoundException", ErrorClass::NotFound)
    );
}

#[tokio::test]
async fn after_effect_fault_acts_then_loses_the_answer() {
    let sim = sim(SimConfig::default());
    let r = role(&sim, "r").await;
    sim.knobs().fail_next(
        "CreatePodIdentityAssociation",
        Fault::timeout().after_effect(),
    );
    let e = sim
        .create_pod_identity_association(&assoc(&r, "ns", "sa"))
        .await
        .unwrap_err();
    let e = e.aws().unwrap();
    assert_eq!(
        (e.code.as_str(), e.class, e.http_status),
        ("Timeout", ErrorClass::Transient, None)
    );
    assert_eq!(
        sim.inventory().associations_for("ns", "sa").len(),
        1,
        "it took effect"
    );
    let (c, _) = code(
        sim.create_pod_identity_association(&assoc(&r, "ns", "sa"))
            .await,
    );
    assert_eq!(c, "ResourceInUseException");

    // Through the wrapper: the inner call runs, its answer is replaced.
    let knobs = crate::faults::Knobs::new();
    let wrapped = Faulty::wrap(sim.clone(), knobs.clone());
    knobs.fail_next("DeleteRole", Fault::timeout().after_effect());
    role(&sim, "gone").await;
    assert!(wrapped.delete_role("gone").await.is_err());
    assert!(
        sim.inventory().role("gone").is_none(),
        "deleted all the same"
    );
    // A failing call is not turned into success.
    knobs.fail_next("DeleteRole", Fault::timeout().after_effect());
    let (c, _) = code(wrapped.delete_role("gone").await);
    assert_eq!(c, "NoSuchEntity");
}

#[tokio::test]
async fn removed_cluster_is_not_found() {
    let sim = sim(SimConfig::default());
    let r = role(&sim, "r").await;
    sim.create_pod_identity_association(&assoc(&r, "ns", "sa"))
        .await
        .unwrap();
    assert!(sim.remove_cluster("c1"));
    assert!(!sim.remove_cluster("c1"));
    assert_eq!(sim.describe_cluster("c1").await.unwrap(), None);
    let (c, class) = code(sim.list_pod_identity_associations("c1", None, None).await);
    assert_eq!(
        (c.as_str(), class),
        ("ResourceNotFoundException", ErrorClass::NotFound)
    );
    assert!(sim.inventory().associations.is_empty());
}

#[tokio::test]
async fn raised_quotas_are_configurable() {
    let sim = sim(SimConfig {
        trust_policy_max_chars: 4096,
        managed_policies_per_role: 2,
        ..SimConfig::default()
    });
    role(&sim, "r").await;
    let mut big = trust();
    big["Statement"][0]["Condition"] =
        json!({"StringEquals": {"aws:PrincipalTag/x": "v".repeat(3000)}});
    sim.update_assume_role_policy("r", &big).await.unwrap();
    big["Statement"][0]["Condition"] =
        json!({"StringEquals": {"aws:PrincipalTag/x": "v".repeat(4000)}});
    let e = sim.update_assume_role_policy("r", &big).await.unwrap_err();
    assert_eq!(
        e.aws().unwrap().message,
        "Cannot exceed quota for ACLSizePerRole: 4096"
    );
    for arn in &DEFAULT_MANAGED_POLICIES[..2] {
        sim.attach_role_policy("r", arn).await.unwrap();
    }
    let e = sim
        .attach_role_policy("r", DEFAULT_MANAGED_POLICIES[2])
        .await
        .unwrap_err();
    assert_eq!(
        e.aws().unwrap().message,
        "Cannot exceed quota for PoliciesPerRole: 2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_never_duplicate() {
    let sim = sim(SimConfig::default());
    let r = role(&sim, "r").await;
    let mut tasks = Vec::new();
    for i in 0..32 {
        let sim = sim.clone();
        let r = r.clone();
        tasks.push(tokio::spawn(async move {
            let assoc_ok = sim
                .create_pod_identity_association(&assoc(&r, "ns", "sa"))
                .await
                .is_ok();
            let role_ok = sim
                .create_role(&CreateRole {
                    name: if i % 2 == 0 {
                        "same".into()
                    } else {
                        "SAME".into()
                    },
                    path: "/".into(),
                    assume_role_policy: trust(),
                    ..CreateRole::default()
                })
                .await
                .is_ok();
            (assoc_ok, role_ok)
        }));
    }
    let mut assoc_wins = 0;
    let mut role_wins = 0;
    for t in tasks {
        let (a, r) = t.await.unwrap();
        assoc_wins += usize::from(a);
        role_wins += usize::from(r);
    }
    assert_eq!((assoc_wins, role_wins), (1, 1));
    let inv = sim.inventory();
    assert_eq!(inv.associations_for("ns", "sa").len(), 1);
    assert_eq!(inv.roles.len(), 2, "r and one of same/SAME");
}

#[tokio::test]
async fn inventory_finds_by_tag() {
    let sim = sim(SimConfig::default());
    let mut input = CreateRole {
        name: "tagged".into(),
        path: "/".into(),
        assume_role_policy: trust(),
        ..CreateRole::default()
    };
    input
        .tags
        .insert("podidentity.dev/name".into(), "app".into());
    let r = sim.create_role(&input).await.unwrap();
    role(&sim, "plain").await;
    let mut a = assoc(&r, "ns", "sa");
    a.tags.insert("podidentity.dev/name".into(), "app".into());
    sim.create_pod_identity_association(&a).await.unwrap();
    sim.create_pod_identity_association(&assoc(&r, "ns", "other"))
        .await
        .unwrap();
    let inv = sim.inventory();
    let roles: Vec<&str> = inv
        .roles_tagged("podidentity.dev/name", "app")
        .iter()
        .map(|r| r.role.name.as_str())
        .collect();
    assert_eq!(roles, ["tagged"]);
    let assocs = inv.associations_tagged("podidentity.dev/name", "app");
    assert_eq!(assocs.len(), 1);
    assert_eq!(assocs[0].service_account, "sa");
}

#[tokio::test]
async fn default_quota_is_five_thousand_associations_per_cluster() {
    let sim = sim(SimConfig::default());
    let r = role(&sim, "r").await;
    for i in 0..5000 {
        sim.create_pod_identity_association(&assoc(&r, "ns", &format!("sa-{i}")))
            .await
            .unwrap();
    }
    let (c, _) = code(
        sim.create_pod_identity_association(&assoc(&r, "ns", "one-more"))
            .await,
    );
    assert_eq!(c, "ResourceLimitExceededException");
    // Another cluster has its own quota.
    sim.add_cluster("c2");
    let mut other = assoc(&r, "ns", "one-more");
    other.cluster_name = "c2".into();
    sim.create_pod_identity_association(&other).await.unwrap();
}

#[tokio::test]
async fn association_ids_must_have_nineteen_characters() {
    let sim = sim(SimConfig::default());
    let (c, class) = code(sim.describe_pod_identity_association("c1", "a-short").await);
    assert_eq!(
        (c.as_str(), class),
        ("InvalidParameterException", ErrorClass::UserInput)
    );
    let (c, _) = code(sim.delete_pod_identity_association("c1", "a-short").await);
    assert_eq!(c, "InvalidParameterException");
    assert_eq!(
        sim.describe_pod_identity_association("c1", "a-0123456789abcdefg")
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn an_explicit_deny_next_to_the_administrator_policy_fails_exactly_that_action() {
    let mut policy = administrator_policy();
    policy["Statement"]
        .as_array_mut()
        .expect("statements")
        .push(json!({"Effect": "Deny", "Action": "iam:TagRole", "Resource": "*"}));
    let sim = AwsSim::new(SimConfig {
        identity_policy: Some(policy),
        ..SimConfig::default()
    });
    role(&sim, "r").await;
    let tags: pod_identity_aws::Tags = [("team".to_owned(), "a".to_owned())].into_iter().collect();
    let e = sim
        .tag_role("r", &tags)
        .await
        .expect_err("TagRole is denied");
    let a = e.aws().expect("an AWS error");
    assert_eq!(
        (a.code.as_str(), a.class),
        ("AccessDenied", ErrorClass::AccessDenied)
    );
    assert!(a.message.contains("iam:TagRole"), "{}", a.message);
    assert!(
        sim.inventory()
            .role("r")
            .is_some_and(|r| r.role.tags.is_empty())
    );
    // Everything else is still allowed.
    assert!(sim.get_role("r").await.expect("GetRole").is_some());
    sim.untag_role("r", &["team".to_owned()])
        .await
        .expect("UntagRole");
    sim.put_role_policy(
        "r",
        "p",
        &json!({"Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}),
    )
    .await
    .expect("PutRolePolicy");
    // Without the Deny, the same call passes: the refusal came from evaluation.
    let admin = AwsSim::new(SimConfig {
        identity_policy: Some(administrator_policy()),
        ..SimConfig::default()
    });
    role(&admin, "r").await;
    admin
        .tag_role("r", &tags)
        .await
        .expect("TagRole as administrator");
}
