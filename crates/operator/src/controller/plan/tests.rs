use serde_json::json;

use super::*;
use crate::aws::Role;
use crate::controller::desired::desired;
use crate::controller::fixtures::{ACCOUNT, binding, cluster};

fn want(spec: Value) -> Desired {
    desired(&binding(spec), &cluster()).expect("valid spec")
}

fn managed(d: &Desired) -> &ManagedRole {
    match &d.role {
        DesiredRole::Managed(m) => m,
        DesiredRole::Existing { .. } => panic!("managed role expected"),
    }
}

/// The role exactly as `d` wants it.
fn role_as_wanted(d: &Desired) -> ObservedRole {
    let m = managed(d);
    ObservedRole {
        role: Role {
            name: m.name.clone(),
            arn: m.arn.clone(),
            role_id: "AROAEXAMPLE".into(),
            path: m.path.clone(),
            description: m.description.clone(),
            max_session_duration: m.max_session_duration,
            assume_role_policy: m.trust_policy.clone(),
            permissions_boundary_arn: m.permissions_boundary_arn.clone(),
            tags: m.tags.clone(),
            created: None,
        },
        attached: m.managed_policy_arns.clone(),
        inline: m.inline_policies.clone(),
    }
}

fn association_as_wanted(d: &Desired, sa: &str, id: &str) -> Association {
    Association {
        cluster_name: d.cluster_name.clone(),
        association_id: id.into(),
        association_arn: format!(
            "arn:aws:eks:us-east-1:{ACCOUNT}:podidentityassociation/prod/{id}"
        ),
        namespace: d.namespace.clone(),
        service_account: sa.into(),
        role_arn: d.association.role_arn.clone(),
        target_role_arn: d.association.target_role_arn.clone(),
        disable_session_tags: d.association.disable_session_tags,
        session_policy: d.association.session_policy.clone(),
        external_id: None,
        owner_arn: None,
        tags: d.association.tags.clone(),
        created_at: None,
        modified_at: None,
    }
}

fn sa(name: &str, owned: bool) -> ObservedServiceAccount {
    ObservedServiceAccount {
        name: name.into(),
        owned,
        ..ObservedServiceAccount::default()
    }
}

/// Everything in place for `d`.
fn converged(d: &Desired) -> Observed {
    Observed {
        service_account: Some(sa(&d.service_account.name, true)),
        role: Some(role_as_wanted(d)),
        association: Some(association_as_wanted(
            d,
            &d.service_account.name,
            "a-00000000000000001",
        )),
        ..Observed::default()
    }
}

fn kinds(actions: &[Action]) -> Vec<&'static str> {
    actions
        .iter()
        .map(|a| match a {
            Action::CreateServiceAccount { .. } => "CreateServiceAccount",
            Action::PatchServiceAccount { .. } => "PatchServiceAccount",
            Action::DeleteServiceAccount { .. } => "DeleteServiceAccount",
            Action::AdoptServiceAccount { .. } => "AdoptServiceAccount",
            Action::ReleaseServiceAccount { .. } => "ReleaseServiceAccount",
            Action::CreateRole(_) => "CreateRole",
            Action::UpdateAssumeRolePolicy { .. } => "UpdateAssumeRolePolicy",
            Action::UpdateRole { .. } => "UpdateRole",
            Action::PutPermissionsBoundary { .. } => "PutPermissionsBoundary",
            Action::DeletePermissionsBoundary { .. } => "DeletePermissionsBoundary",
            Action::AttachPolicy { .. } => "AttachPolicy",
            Action::DetachPolicy { .. } => "DetachPolicy",
            Action::PutInlinePolicy { .. } => "PutInlinePolicy",
            Action::DeleteInlinePolicy { .. } => "DeleteInlinePolicy",
            Action::TagRole { .. } => "TagRole",
            Action::UntagRole { .. } => "UntagRole",
            Action::DeleteRole { .. } => "DeleteRole",
            Action::CreateAssociation(_) => "CreateAssociation",
            Action::UpdateAssociation(_) => "UpdateAssociation",
            Action::TagAssociation { .. } => "TagAssociation",
            Action::UntagAssociation { .. } => "UntagAssociation",
            Action::DeleteAssociation { .. } => "DeleteAssociation",
        })
        .collect()
}

fn blocked_reason(p: &Plan) -> Reason {
    assert!(p.actions.is_empty(), "a blocked plan writes nothing");
    p.blocked.as_ref().expect("blocked").reason
}

const READ_ONLY: &str = "arn:aws:iam::aws:policy/ReadOnlyAccess";
const S3_READ: &str = "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess";

fn doc(action: &str) -> Value {
    json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": action, "Resource": "*"}]})
}

#[test]
fn from_nothing_everything_is_created_in_order() {
    let d = want(json!({
        "serviceAccount": {"labels": {"team": "a"}},
        "role": {"managedPolicyArns": [READ_ONLY], "inlinePolicies": {"s3": doc("s3:GetObject")}},
    }));
    let p = plan(&d, &Observed::default());
    assert_eq!(
        kinds(&p.actions),
        [
            "CreateServiceAccount",
            "CreateRole",
            "AttachPolicy",
            "PutInlinePolicy",
            "CreateAssociation"
        ]
    );
    let Action::CreateRole(r) = &p.actions[1] else {
        unreachable!()
    };
    assert_eq!(r.path, "/pod-identity/prod/");
    assert!(naming::owned_by(&r.tags, &cluster().arn, "team", "app"));
    let Action::CreateAssociation(a) = &p.actions[4] else {
        unreachable!()
    };
    assert_eq!(a.role_arn, managed(&d).arn);
    assert!(naming::owned_by(&a.tags, &cluster().arn, "team", "app"));
    assert!(
        a.client_request_token
            .as_deref()
            .is_some_and(|t| t.starts_with(&d.uid))
    );
    let Action::CreateServiceAccount { labels, .. } = &p.actions[0] else {
        unreachable!()
    };
    assert_eq!(labels.get("team").map(String::as_str), Some("a"));
}

#[test]
fn converged_plans_nothing() {
    let d = want(
        json!({"role": {"managedPolicyArns": [READ_ONLY], "permissionsBoundaryArn": READ_ONLY,
        "inlinePolicies": {"s3": doc("s3:GetObject")}}, "tags": {"team": "a"}}),
    );
    let p = plan(&d, &converged(&d));
    assert_eq!(
        p,
        Plan {
            actions: vec![],
            blocked: None,
            adopting: false
        }
    );
}

/// One kind of drift each, repaired by its own narrowest call.
#[test]
fn each_kind_of_role_drift_gets_its_narrowest_call() {
    let d = want(
        json!({"role": {"managedPolicyArns": [READ_ONLY], "permissionsBoundaryArn": READ_ONLY,
        "description": "d", "inlinePolicies": {"s3": doc("s3:GetObject")}}, "tags": {"team": "a"}}),
    );
    type Drift = fn(&mut ObservedRole);
    let cases: Vec<(&str, Drift, Vec<&str>)> = vec![
        (
            "trust policy",
            |r| r.role.assume_role_policy = crate::policy::pod_identity_trust_policy(None),
            vec!["UpdateAssumeRolePolicy"],
        ),
        (
            "description",
            |r| r.role.description = Some("other".into()),
            vec!["UpdateRole"],
        ),
        (
            "session duration",
            |r| r.role.max_session_duration = 7200,
            vec!["UpdateRole"],
        ),
        (
            "boundary removed",
            |r| r.role.permissions_boundary_arn = None,
            vec!["PutPermissionsBoundary"],
        ),
        (
            "policy detached",
            |r| {
                r.attached.clear();
            },
            vec!["AttachPolicy"],
        ),
        (
            "extra policy",
            |r| {
                r.attached.insert(S3_READ.into());
            },
            vec!["DetachPolicy"],
        ),
        (
            "inline changed",
            |r| {
                r.inline.insert("s3".into(), doc("s3:*"));
            },
            vec!["PutInlinePolicy"],
        ),
        (
            "extra inline",
            |r| {
                r.inline.insert("x".into(), doc("s3:*"));
            },
            vec!["DeleteInlinePolicy"],
        ),
        (
            "tag changed",
            |r| {
                r.role.tags.insert("team".into(), "b".into());
            },
            vec!["TagRole"],
        ),
        (
            "extra tag",
            |r| {
                r.role.tags.insert("x".into(), "y".into());
            },
            vec!["UntagRole"],
        ),
    ];
    for (name, drift, expected) in cases {
        let mut o = converged(&d);
        drift(o.role.as_mut().expect("role"));
        assert_eq!(kinds(&plan(&d, &o).actions), expected, "{name}");
    }
    let update_role_only = {
        let mut o = converged(&d);
        o.role.as_mut().expect("role").role.max_session_duration = 7200;
        plan(&d, &o).actions
    };
    assert_eq!(
        update_role_only,
        [Action::UpdateRole {
            role: managed(&d).name.clone(),
            description: None,
            max_session_duration: Some(3600)
        }]
    );
    // A boundary the spec no longer names is removed.
    let d2 = want(
        json!({"role": {"managedPolicyArns": [READ_ONLY], "description": "d",
        "inlinePolicies": {"s3": doc("s3:GetObject")}}, "tags": {"team": "a"}}),
    );
    let mut o = converged(&d2);
    o.role.as_mut().expect("role").role.permissions_boundary_arn = Some(READ_ONLY.into());
    assert_eq!(kinds(&plan(&d2, &o).actions), ["DeletePermissionsBoundary"]);
}

#[test]
fn each_kind_of_association_drift_is_one_update_with_only_that_field() {
    let d = want(
        json!({"targetRoleArn": "arn:aws:iam::444455556666:role/t", "disableSessionTags": true,
        "sessionPolicy": doc("s3:GetObject")}),
    );
    type Drift = fn(&mut Association);
    type Check = fn(&UpdateAssociation) -> bool;
    let cases: Vec<(&str, Drift, Check)> = vec![
        (
            "role",
            |a| a.role_arn = "arn:aws:iam::111122223333:role/old".into(),
            |u| u.role_arn.is_some() && u.target_role_arn.is_none(),
        ),
        (
            "target role",
            |a| a.target_role_arn = None,
            |u| u.target_role_arn.is_some() && u.role_arn.is_none(),
        ),
        (
            "session tags",
            |a| a.disable_session_tags = false,
            |u| u.disable_session_tags == Some(true) && u.session_policy.is_none(),
        ),
        (
            "session policy",
            |a| a.session_policy = Some(doc("s3:*")),
            |u| u.session_policy.is_some() && u.disable_session_tags.is_none(),
        ),
    ];
    for (name, drift, check) in cases {
        let mut o = converged(&d);
        drift(o.association.as_mut().expect("association"));
        let p = plan(&d, &o);
        assert_eq!(p.actions.len(), 1, "{name}");
        let Action::UpdateAssociation(u) = &p.actions[0] else {
            panic!("{name}: {:?}", p.actions)
        };
        assert!(check(u), "{name}: {u:?}");
    }
    let mut o = converged(&d);
    o.association
        .as_mut()
        .expect("a")
        .tags
        .insert("x".into(), "y".into());
    assert_eq!(kinds(&plan(&d, &o).actions), ["UntagAssociation"]);
}

#[test]
fn service_account_rename_moves_the_association_and_removes_the_old_ones() {
    let old = want(json!({}));
    let d = want(json!({"serviceAccount": {"name": "renamed"}}));
    let mut o = converged(&old);
    // Trust is scoped to the ServiceAccount, so it changes too.
    o.service_account = None;
    o.previous_service_account = Some(sa("app", true));
    o.previous_association = o.association.take();
    let p = plan(&d, &o);
    assert_eq!(
        kinds(&p.actions),
        [
            "CreateServiceAccount",
            "UpdateAssumeRolePolicy",
            "CreateAssociation",
            "DeleteAssociation",
            "DeleteServiceAccount"
        ]
    );
    // A previous ServiceAccount the operator did not create is left alone.
    o.previous_service_account = Some(sa("app", false));
    assert!(!kinds(&plan(&d, &o).actions).contains(&"DeleteServiceAccount"));
}

#[test]
fn role_rename_moves_the_association_then_deletes_the_old_role() {
    let old = want(json!({"role": {"managedPolicyArns": [READ_ONLY]}}));
    let d = want(json!({"role": {"name": "new-name", "managedPolicyArns": [READ_ONLY]}}));
    let mut o = converged(&old);
    o.previous_role = o.role.take();
    let p = plan(&d, &o);
    assert_eq!(
        kinds(&p.actions),
        [
            "CreateRole",
            "AttachPolicy",
            "UpdateAssociation",
            "DetachPolicy",
            "DeleteRole"
        ]
    );
    let Action::DeleteRole { role } = &p.actions[4] else {
        unreachable!()
    };
    assert_eq!(role, &managed(&old).name);
}

fn existing_role(trust: Value) -> ObservedRole {
    ObservedRole {
        role: Role {
            name: "existing".into(),
            arn: format!("arn:aws:iam::{ACCOUNT}:role/existing"),
            role_id: "AROA".into(),
            path: "/".into(),
            description: None,
            max_session_duration: 3600,
            assume_role_policy: trust,
            permissions_boundary_arn: None,
            tags: Tags::new(),
            created: None,
        },
        attached: Default::default(),
        inline: Default::default(),
    }
}

#[test]
fn existing_role_is_used_when_its_trust_admits_pod_identity_and_never_modified() {
    let d = want(json!({"role": {"arn": format!("arn:aws:iam::{ACCOUNT}:role/existing")}}));
    let o = Observed {
        role: Some(existing_role(crate::policy::pod_identity_trust_policy(
            None,
        ))),
        ..Observed::default()
    };
    let p = plan(&d, &o);
    assert_eq!(
        kinds(&p.actions),
        ["CreateServiceAccount", "CreateAssociation"]
    );

    let wrong_trust = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]});
    let o = Observed {
        role: Some(existing_role(wrong_trust)),
        ..Observed::default()
    };
    let p = plan(&d, &o);
    assert_eq!(blocked_reason(&p), Reason::RoleTrustMissing);
    assert!(
        p.blocked
            .as_ref()
            .is_some_and(|b| b.message.contains("pods.eks.amazonaws.com"))
    );

    assert_eq!(
        blocked_reason(&plan(&d, &Observed::default())),
        Reason::RoleNotFound
    );
}

#[test]
fn a_foreign_role_of_the_same_name_is_a_conflict() {
    let d = want(json!({}));
    let mut o = Observed::default();
    let mut r = role_as_wanted(&d);
    r.role.tags = Tags::new();
    o.role = Some(r.clone());
    assert_eq!(blocked_reason(&plan(&d, &o)), Reason::RoleConflict);
    // Another binding's role is not ours either.
    r.role.tags = naming::ownership_tags(&cluster().arn, "team", "other");
    o.role = Some(r.clone());
    assert_eq!(blocked_reason(&plan(&d, &o)), Reason::RoleConflict);
    // Nor is the role of this binding's namesake in a cluster of the same name in
    // another region of the account.
    let west = "arn:aws:eks:us-west-2:111122223333:cluster/prod";
    r.role.tags = naming::ownership_tags(west, "team", "app");
    assert_eq!(r.role.tags.get(naming::TAG_CLUSTER), Some(&d.cluster_name));
    o.role = Some(r);
    let p = plan(&d, &o);
    assert_eq!(blocked_reason(&p), Reason::RoleConflict);
    assert!(
        p.blocked
            .as_ref()
            .is_some_and(|b| b.message.contains(&d.cluster_arn))
    );
}

#[test]
fn our_association_left_by_a_crash_or_replace_is_adopted_without_a_create() {
    let d = want(json!({}));
    let mut o = converged(&d);
    o.role = None;
    let p = plan(&d, &o);
    assert_eq!(kinds(&p.actions), ["CreateRole"]);
    assert!(!p.adopting);
}

#[test]
fn a_foreign_association_needs_adopt_true() {
    let d = want(json!({}));
    let mut o = converged(&d);
    let a = o.association.as_mut().expect("a");
    a.tags = [("made-by".to_string(), "eksctl".to_string())].into();
    a.role_arn = format!("arn:aws:iam::{ACCOUNT}:role/eksctl-made");
    assert_eq!(blocked_reason(&plan(&d, &o)), Reason::AssociationConflict);

    let d = want(json!({"adopt": true}));
    let p = plan(&d, &o);
    assert!(p.adopting);
    assert_eq!(
        kinds(&p.actions),
        ["TagAssociation", "UpdateAssociation", "UntagAssociation"]
    );
    assert!(matches!(
        p.actions[0],
        Action::TagAssociation { adopting: true, .. }
    ));
}

#[test]
fn an_add_on_owned_association_is_never_adopted() {
    let d = want(json!({"adopt": true}));
    let mut o = converged(&d);
    let a = o.association.as_mut().expect("a");
    a.tags = Tags::new();
    a.owner_arn = Some(format!(
        "arn:aws:eks:us-east-1:{ACCOUNT}:addon/prod/vpc-cni/x"
    ));
    let p = plan(&d, &o);
    assert_eq!(blocked_reason(&p), Reason::AssociationConflict);
    assert!(
        p.blocked
            .as_ref()
            .is_some_and(|b| b.message.contains("add-on"))
    );
}

#[test]
fn the_newer_of_two_bindings_on_one_service_account_is_blocked() {
    let d = want(json!({}));
    let o = Observed {
        older_binding: Some("first".into()),
        ..Observed::default()
    };
    let p = plan(&d, &o);
    assert_eq!(blocked_reason(&p), Reason::AssociationConflict);
    assert!(
        p.blocked
            .as_ref()
            .is_some_and(|b| b.message.contains("first"))
    );
}

#[test]
fn the_older_binding_takes_the_association_of_a_younger_one() {
    let d = want(json!({}));
    let mut o = converged(&d);
    let a = o.association.as_mut().expect("a");
    a.tags = naming::ownership_tags(&cluster().arn, "team", "younger");
    a.role_arn = format!("arn:aws:iam::{ACCOUNT}:role/younger");
    assert_eq!(blocked_reason(&plan(&d, &o)), Reason::AssociationConflict);
    o.association_of_younger_binding = true;
    let p = plan(&d, &o);
    assert_eq!(kinds(&p.actions), ["TagAssociation", "UpdateAssociation"]);
}

#[test]
fn a_service_account_left_by_an_earlier_binding_of_the_same_name_is_taken_over() {
    let mut d = want(json!({"serviceAccount": {"labels": {"team": "a"}}}));
    d.service_account.labels = BTreeMap::from([("team".into(), "a".into())]);
    let mut o = converged(&d);
    o.service_account = Some(ObservedServiceAccount {
        left_by_previous: true,
        ..sa(&d.service_account.name, false)
    });
    assert_eq!(
        kinds(&plan(&d, &o).actions),
        ["AdoptServiceAccount", "PatchServiceAccount"]
    );
    // Owned by anything else, it is left alone.
    o.service_account = Some(sa(&d.service_account.name, false));
    assert_eq!(kinds(&plan(&d, &o).actions), Vec::<&str>::new());
}

#[test]
fn service_accounts_not_created_by_the_operator_are_never_touched() {
    let d = want(json!({"serviceAccount": {"labels": {"a": "b"}}}));
    let mut o = converged(&d);
    o.service_account = Some(sa("app", false));
    assert!(plan(&d, &o).actions.is_empty());
    o.service_account = Some(sa("app", true));
    assert_eq!(kinds(&plan(&d, &o).actions), ["PatchServiceAccount"]);
    let d = want(json!({"serviceAccount": {"create": false}}));
    let mut o = converged(&d);
    o.service_account = None;
    assert!(plan(&d, &o).actions.is_empty());
}

const CLUSTER_ARN: &str = "arn:aws:eks:us-east-1:111122223333:cluster/prod";
const OWNER: Owner = Owner {
    cluster: "prod",
    cluster_arn: Some(CLUSTER_ARN),
    namespace: "team",
    binding: "app",
};

#[test]
fn cleanup_deletes_association_then_role_under_delete_and_releases_under_retain() {
    let d = want(
        json!({"role": {"managedPolicyArns": [READ_ONLY], "inlinePolicies": {"s3": doc("s3:GetObject")}}}),
    );
    assert_eq!(d.cluster_arn, CLUSTER_ARN);
    let o = converged(&d);
    let roles = [o.role.clone().expect("role")];
    let assocs = [o.association.clone().expect("a")];
    let sas = [sa("app", true), sa("found", false)];
    let actions = cleanup(&OWNER, DeletionPolicy::Delete, &roles, &assocs, &sas);
    assert_eq!(
        kinds(&actions),
        [
            "DeleteAssociation",
            "DeleteInlinePolicy",
            "DetachPolicy",
            "DeleteRole"
        ]
    );
    let retained = cleanup(&OWNER, DeletionPolicy::Retain, &roles, &assocs, &sas);
    assert_eq!(
        retained,
        [Action::ReleaseServiceAccount { name: "app".into() }]
    );
}

#[test]
fn cleanup_after_a_partial_create_removes_what_exists_and_only_what_is_ours() {
    let d = want(json!({}));
    let o = converged(&d);
    let roles = [o.role.clone().expect("role")];
    assert_eq!(
        kinds(&cleanup(&OWNER, DeletionPolicy::Delete, &roles, &[], &[])),
        ["DeleteRole"]
    );
    let mut foreign = o.association.clone().expect("a");
    foreign.tags = Tags::new();
    let mut add_on = o.association.clone().expect("a");
    add_on.owner_arn = Some("arn:aws:eks:::addon".into());
    let mut other_role = o.role.clone().expect("role");
    other_role.role.tags = naming::ownership_tags(CLUSTER_ARN, "team", "other");
    // The same binding's role of a cluster of the same name in another region.
    let mut namesake = o.role.clone().expect("role");
    namesake.role.tags = naming::ownership_tags(
        "arn:aws:eks:eu-west-1:111122223333:cluster/prod",
        "team",
        "app",
    );
    assert!(
        cleanup(
            &OWNER,
            DeletionPolicy::Delete,
            &[other_role, namesake],
            &[foreign, add_on],
            &[]
        )
        .is_empty()
    );
}

#[test]
fn cleanup_when_everything_is_already_gone_does_nothing() {
    assert!(cleanup(&OWNER, DeletionPolicy::Delete, &[], &[], &[]).is_empty());
    assert!(
        cleanup(
            &OWNER,
            DeletionPolicy::Retain,
            &[],
            &[],
            &[sa("app", false)]
        )
        .is_empty()
    );
}

mod properties;
