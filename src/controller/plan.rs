//! The planner: a pure function from what a binding wants and what exists to the
//! ordered writes that close the gap (DESIGN §3), or the reason it must not act.
//!
//! Order: ServiceAccount, role (create, then each kind of drift with its own narrowest
//! call), association (create, or one update with only the changed fields, then tags),
//! then what a rename left behind (old association, old ServiceAccount, old role).
//! Conflicts are found before any write, so a blocked binding writes nothing.
//!
//! Tags on the operator's own role and association are declarative: tags the spec does
//! not name are removed (keys starting with `aws:` excepted). A description removed from
//! the spec is left on the role as it is (IAM has no "unset"); a removed boundary is
//! deleted.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::aws::{Association, CreateAssociation, CreateRole, Tags, UpdateAssociation};
use crate::crd::DeletionPolicy;
use crate::naming;
use crate::policy::{self, documents_equivalent};

use super::desired::{Desired, DesiredRole, ManagedRole};
use super::observe::{Observed, ObservedRole, ObservedServiceAccount};
use super::status::Reason;

/// One write.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    CreateServiceAccount {
        name: String,
        labels: BTreeMap<String, String>,
        annotations: BTreeMap<String, String>,
    },
    /// Adds missing labels/annotations to a ServiceAccount the operator created.
    PatchServiceAccount {
        name: String,
        labels: BTreeMap<String, String>,
        annotations: BTreeMap<String, String>,
    },
    DeleteServiceAccount {
        name: String,
    },
    /// Removes the binding's ownerReference from a ServiceAccount it created, so the
    /// ServiceAccount outlives a binding deleted under `deletionPolicy: Retain`.
    ReleaseServiceAccount {
        name: String,
    },
    CreateRole(CreateRole),
    UpdateAssumeRolePolicy {
        role: String,
        document: Value,
    },
    UpdateRole {
        role: String,
        description: Option<String>,
        max_session_duration: Option<i32>,
    },
    PutPermissionsBoundary {
        role: String,
        policy_arn: String,
    },
    DeletePermissionsBoundary {
        role: String,
    },
    AttachPolicy {
        role: String,
        policy_arn: String,
    },
    DetachPolicy {
        role: String,
        policy_arn: String,
    },
    PutInlinePolicy {
        role: String,
        name: String,
        document: Value,
    },
    DeleteInlinePolicy {
        role: String,
        name: String,
    },
    TagRole {
        role: String,
        tags: Tags,
    },
    UntagRole {
        role: String,
        keys: Vec<String>,
    },
    DeleteRole {
        role: String,
    },
    CreateAssociation(CreateAssociation),
    UpdateAssociation(UpdateAssociation),
    TagAssociation {
        arn: String,
        tags: Tags,
        /// Taking over an association made elsewhere (`adopt: true`).
        adopting: bool,
    },
    UntagAssociation {
        arn: String,
        keys: Vec<String>,
    },
    DeleteAssociation {
        cluster: String,
        id: String,
    },
}

/// Why the planner refuses to act.
#[derive(Clone, Debug, PartialEq)]
pub struct Blocked {
    pub reason: Reason,
    pub message: String,
}

/// The planner's answer for a binding that is not being deleted.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub blocked: Option<Blocked>,
    /// True when the association in place was made elsewhere and is being adopted.
    pub adopting: bool,
}

fn blocked(reason: Reason, message: String) -> Plan {
    Plan {
        actions: Vec::new(),
        blocked: Some(Blocked { reason, message }),
        adopting: false,
    }
}

fn owns(d: &Desired, tags: &Tags) -> bool {
    naming::owned_by(tags, &d.cluster_arn, &d.namespace, &d.binding_name)
}

/// Writes that make `tags` equal `want`: a tag call with what is missing or different,
/// an untag call with what is extra.
fn tag_diff(have: &Tags, want: &Tags) -> (Tags, Vec<String>) {
    let set: Tags = want
        .iter()
        .filter(|(k, v)| have.get(*k) != Some(v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let unset = have
        .keys()
        .filter(|k| !want.contains_key(*k) && !k.starts_with("aws:"))
        .cloned()
        .collect();
    (set, unset)
}

fn role_drift(m: &ManagedRole, o: &ObservedRole, actions: &mut Vec<Action>) {
    let role = &m.name;
    if !documents_equivalent(&o.role.assume_role_policy, &m.trust_policy) {
        actions.push(Action::UpdateAssumeRolePolicy {
            role: role.clone(),
            document: m.trust_policy.clone(),
        });
    }
    let description = m
        .description
        .clone()
        .filter(|d| o.role.description.as_deref().unwrap_or("") != d);
    let duration =
        (o.role.max_session_duration != m.max_session_duration).then_some(m.max_session_duration);
    if description.is_some() || duration.is_some() {
        actions.push(Action::UpdateRole {
            role: role.clone(),
            description,
            max_session_duration: duration,
        });
    }
    match (
        &m.permissions_boundary_arn,
        &o.role.permissions_boundary_arn,
    ) {
        (Some(want), have) if have.as_ref() != Some(want) => {
            actions.push(Action::PutPermissionsBoundary {
                role: role.clone(),
                policy_arn: want.clone(),
            })
        }
        (None, Some(_)) => actions.push(Action::DeletePermissionsBoundary { role: role.clone() }),
        _ => {}
    }
    for arn in m.managed_policy_arns.difference(&o.attached) {
        actions.push(Action::AttachPolicy {
            role: role.clone(),
            policy_arn: arn.clone(),
        });
    }
    for arn in o.attached.difference(&m.managed_policy_arns) {
        actions.push(Action::DetachPolicy {
            role: role.clone(),
            policy_arn: arn.clone(),
        });
    }
    for (name, doc) in &m.inline_policies {
        let same = o
            .inline
            .get(name)
            .is_some_and(|have| documents_equivalent(have, doc));
        if !same {
            actions.push(Action::PutInlinePolicy {
                role: role.clone(),
                name: name.clone(),
                document: doc.clone(),
            });
        }
    }
    for name in o
        .inline
        .keys()
        .filter(|n| !m.inline_policies.contains_key(*n))
    {
        actions.push(Action::DeleteInlinePolicy {
            role: role.clone(),
            name: name.clone(),
        });
    }
    let (set, unset) = tag_diff(&o.role.tags, &m.tags);
    if !set.is_empty() {
        actions.push(Action::TagRole {
            role: role.clone(),
            tags: set,
        });
    }
    if !unset.is_empty() {
        actions.push(Action::UntagRole {
            role: role.clone(),
            keys: unset,
        });
    }
}

fn create_role(m: &ManagedRole, actions: &mut Vec<Action>) {
    actions.push(Action::CreateRole(CreateRole {
        name: m.name.clone(),
        path: m.path.clone(),
        assume_role_policy: m.trust_policy.clone(),
        description: m.description.clone(),
        max_session_duration: Some(m.max_session_duration),
        permissions_boundary_arn: m.permissions_boundary_arn.clone(),
        tags: m.tags.clone(),
    }));
    for arn in &m.managed_policy_arns {
        actions.push(Action::AttachPolicy {
            role: m.name.clone(),
            policy_arn: arn.clone(),
        });
    }
    for (name, doc) in &m.inline_policies {
        actions.push(Action::PutInlinePolicy {
            role: m.name.clone(),
            name: name.clone(),
            document: doc.clone(),
        });
    }
}

/// Every write that removes a role: its inline policies, attached policies, the role.
fn delete_role(o: &ObservedRole, actions: &mut Vec<Action>) {
    let role = &o.role.name;
    for name in o.inline.keys() {
        actions.push(Action::DeleteInlinePolicy {
            role: role.clone(),
            name: name.clone(),
        });
    }
    for arn in &o.attached {
        actions.push(Action::DetachPolicy {
            role: role.clone(),
            policy_arn: arn.clone(),
        });
    }
    actions.push(Action::DeleteRole { role: role.clone() });
}

fn association_drift(d: &Desired, a: &Association, actions: &mut Vec<Action>) {
    let want = &d.association;
    let mut update = UpdateAssociation {
        cluster_name: d.cluster_name.clone(),
        association_id: a.association_id.clone(),
        ..UpdateAssociation::default()
    };
    let mut changed = false;
    if a.role_arn != want.role_arn {
        update.role_arn = Some(want.role_arn.clone());
        changed = true;
    }
    if a.target_role_arn != want.target_role_arn {
        update.target_role_arn = Some(want.target_role_arn.clone());
        changed = true;
    }
    if a.disable_session_tags != want.disable_session_tags {
        update.disable_session_tags = Some(want.disable_session_tags);
        changed = true;
    }
    let same_policy = match (&a.session_policy, &want.session_policy) {
        (None, None) => true,
        (Some(x), Some(y)) => documents_equivalent(x, y),
        _ => false,
    };
    if !same_policy {
        update.session_policy = Some(want.session_policy.clone());
        changed = true;
    }
    if changed {
        actions.push(Action::UpdateAssociation(update));
    }
}

/// What to do for a binding that is not being deleted.
pub fn plan(d: &Desired, o: &Observed) -> Plan {
    // Conflicts first: a blocked binding writes nothing.
    if let Some(older) = &o.older_binding {
        return blocked(
            Reason::AssociationConflict,
            format!(
                "ServiceAccount {} is already bound by the older PodIdentityBinding {older}; EKS allows one association per ServiceAccount: delete one of the two bindings or point this one at another ServiceAccount",
                d.service_account.name
            ),
        );
    }
    match (&d.role, &o.role) {
        (DesiredRole::Existing { arn, .. }, None) => {
            return blocked(
                Reason::RoleNotFound,
                format!(
                    "role {arn} does not exist: create it, or remove role.arn to let the operator manage a role"
                ),
            );
        }
        (DesiredRole::Existing { arn, .. }, Some(r))
            if !policy::trust_admits_pod_identity(&r.role.assume_role_policy) =>
        {
            return blocked(
                Reason::RoleTrustMissing,
                format!(
                    "the trust policy of role {arn} does not admit EKS Pod Identity: add a statement allowing Principal {{\"Service\": \"{}\"}} the actions sts:AssumeRole and sts:TagSession",
                    policy::POD_IDENTITY_PRINCIPAL
                ),
            );
        }
        (DesiredRole::Managed(m), Some(r)) if !owns(d, &r.role.tags) => {
            return blocked(
                Reason::RoleConflict,
                format!(
                    "role {} exists and was not made by this binding (ownership tags {}={}, {}={}, {}={} missing): the operator never modifies it; set role.name to another name, or role.arn to use that role as it is",
                    m.name,
                    naming::TAG_CLUSTER_ARN,
                    d.cluster_arn,
                    naming::TAG_NAMESPACE,
                    d.namespace,
                    naming::TAG_NAME,
                    d.binding_name
                ),
            );
        }
        _ => {}
    }
    let mut adopting = false;
    if let Some(a) = &o.association
        && !owns(d, &a.tags)
    {
        if let Some(owner) = &a.owner_arn {
            return blocked(
                Reason::AssociationConflict,
                format!(
                    "association {} for ServiceAccount {} is owned by {owner} (an EKS add-on) and is never adopted: configure the identity through the add-on, or use another ServiceAccount",
                    a.association_id, d.service_account.name
                ),
            );
        }
        if !d.adopt && !o.association_of_younger_binding {
            return blocked(
                Reason::AssociationConflict,
                format!(
                    "association {} for ServiceAccount {} was made elsewhere (eksctl, Terraform, another tool): set spec.adopt: true to take it over, or delete it",
                    a.association_id, d.service_account.name
                ),
            );
        }
        adopting = true;
    }

    let mut actions = Vec::new();

    let sa = &d.service_account;
    match &o.service_account {
        None if sa.create => actions.push(Action::CreateServiceAccount {
            name: sa.name.clone(),
            labels: sa.labels.clone(),
            annotations: sa.annotations.clone(),
        }),
        Some(have) if have.owned => {
            let missing = |want: &BTreeMap<String, String>, got: &BTreeMap<String, String>| {
                want.iter()
                    .filter(|(k, v)| got.get(*k) != Some(v))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect::<BTreeMap<_, _>>()
            };
            let labels = missing(&sa.labels, &have.labels);
            let annotations = missing(&sa.annotations, &have.annotations);
            if !labels.is_empty() || !annotations.is_empty() {
                actions.push(Action::PatchServiceAccount {
                    name: sa.name.clone(),
                    labels,
                    annotations,
                });
            }
        }
        _ => {}
    }

    if let DesiredRole::Managed(m) = &d.role {
        match &o.role {
            None => create_role(m, &mut actions),
            Some(r) => role_drift(m, r, &mut actions),
        }
    }

    match &o.association {
        None => actions.push(Action::CreateAssociation(CreateAssociation {
            cluster_name: d.cluster_name.clone(),
            namespace: d.namespace.clone(),
            service_account: sa.name.clone(),
            role_arn: d.association.role_arn.clone(),
            target_role_arn: d.association.target_role_arn.clone(),
            disable_session_tags: d.association.disable_session_tags,
            session_policy: d.association.session_policy.clone(),
            tags: d.association.tags.clone(),
            client_request_token: Some(naming::association_token(&d.uid, &d.namespace, &sa.name)),
        })),
        Some(a) => {
            if adopting {
                // Ownership first, so a crash after this point finds the association ours.
                actions.push(Action::TagAssociation {
                    arn: a.association_arn.clone(),
                    tags: d.association.tags.clone(),
                    adopting: true,
                });
            }
            association_drift(d, a, &mut actions);
            let have = if adopting {
                let mut t = a.tags.clone();
                t.extend(d.association.tags.clone());
                t
            } else {
                a.tags.clone()
            };
            let (set, unset) = tag_diff(&have, &d.association.tags);
            if !set.is_empty() {
                actions.push(Action::TagAssociation {
                    arn: a.association_arn.clone(),
                    tags: set,
                    adopting: false,
                });
            }
            if !unset.is_empty() {
                actions.push(Action::UntagAssociation {
                    arn: a.association_arn.clone(),
                    keys: unset,
                });
            }
        }
    }

    // What a rename left behind, once the new association is in place.
    if let Some(prev) = &o.previous_association
        && owns(d, &prev.tags)
        && prev.owner_arn.is_none()
    {
        actions.push(Action::DeleteAssociation {
            cluster: d.cluster_name.clone(),
            id: prev.association_id.clone(),
        });
    }
    if let Some(prev) = &o.previous_service_account
        && prev.owned
    {
        actions.push(Action::DeleteServiceAccount {
            name: prev.name.clone(),
        });
    }
    if let Some(prev) = &o.previous_role
        && owns(d, &prev.role.tags)
    {
        delete_role(prev, &mut actions);
    }

    Plan {
        actions,
        blocked: None,
        adopting,
    }
}

/// The binding whose resources cleanup removes, and the cluster it belongs to.
#[derive(Clone, Copy, Debug)]
pub struct Owner<'a> {
    pub cluster: &'a str,
    /// The cluster's ARN, as the ownership tags carry it; `None` when it cannot be known,
    /// and then nothing in AWS is recognised as the binding's.
    pub cluster_arn: Option<&'a str>,
    pub namespace: &'a str,
    pub binding: &'a str,
}

impl Owner<'_> {
    fn owns(&self, tags: &Tags) -> bool {
        self.cluster_arn
            .is_some_and(|arn| naming::owned_by(tags, arn, self.namespace, self.binding))
    }
}

/// What to do when the binding is deleted. Under `Delete`: its associations (those
/// carrying its tags and not owned by an add-on), then its roles (inline policies,
/// attached policies, role); its ServiceAccounts are left to the garbage collector
/// through their ownerReference. Under `Retain`: AWS is left as it is, and the
/// ServiceAccounts it created are released from their ownerReference, so the retained
/// association does not name a ServiceAccount the garbage collector removed.
pub fn cleanup(
    owner: &Owner,
    policy: DeletionPolicy,
    roles: &[ObservedRole],
    associations: &[Association],
    service_accounts: &[ObservedServiceAccount],
) -> Vec<Action> {
    let mut actions = Vec::new();
    if policy == DeletionPolicy::Retain {
        for sa in service_accounts.iter().filter(|sa| sa.owned) {
            actions.push(Action::ReleaseServiceAccount {
                name: sa.name.clone(),
            });
        }
        return actions;
    }
    for a in associations {
        if a.owner_arn.is_none() && owner.owns(&a.tags) {
            actions.push(Action::DeleteAssociation {
                cluster: owner.cluster.to_owned(),
                id: a.association_id.clone(),
            });
        }
    }
    for r in roles {
        if owner.owns(&r.role.tags) {
            delete_role(r, &mut actions);
        }
    }
    actions
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::aws::{Cluster, Role};
    use crate::controller::desired::desired;
    use crate::crd::{PodIdentityBinding, PodIdentityBindingSpec};

    const ACCOUNT: &str = "111122223333";

    fn cluster() -> Cluster {
        Cluster {
            name: "prod".into(),
            arn: format!("arn:aws:eks:us-east-1:{ACCOUNT}:cluster/prod"),
            account_id: ACCOUNT.into(),
            status: None,
        }
    }

    fn want(spec: Value) -> Desired {
        let spec: PodIdentityBindingSpec = serde_json::from_value(spec).expect("spec");
        let mut b = PodIdentityBinding::new("app", spec);
        b.metadata.namespace = Some("team".into());
        b.metadata.uid = Some("8d2a6f1e-0000-0000-0000-000000000001".into());
        desired(&b, &cluster()).expect("valid spec")
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

    /// Carries out an action on the observed state, as AWS and Kubernetes would.
    fn act(o: &mut Observed, a: &Action) {
        fn role_named<'a>(o: &'a mut Observed, name: &str) -> &'a mut ObservedRole {
            [o.role.as_mut(), o.previous_role.as_mut()]
                .into_iter()
                .flatten()
                .find(|r| r.role.name == name)
                .expect("the role acted on exists")
        }
        match a {
            Action::CreateServiceAccount {
                name,
                labels,
                annotations,
            } => {
                o.service_account = Some(ObservedServiceAccount {
                    name: name.clone(),
                    owned: true,
                    labels: labels.clone(),
                    annotations: annotations.clone(),
                })
            }
            Action::PatchServiceAccount {
                labels,
                annotations,
                ..
            } => {
                let sa = o.service_account.as_mut().expect("sa");
                sa.labels.extend(labels.clone());
                sa.annotations.extend(annotations.clone());
            }
            Action::DeleteServiceAccount { .. } => o.previous_service_account = None,
            Action::ReleaseServiceAccount { name } => {
                for sa in [
                    o.service_account.as_mut(),
                    o.previous_service_account.as_mut(),
                ]
                .into_iter()
                .flatten()
                .filter(|sa| &sa.name == name)
                {
                    sa.owned = false;
                }
            }
            Action::CreateRole(c) => {
                o.role = Some(ObservedRole {
                    role: Role {
                        name: c.name.clone(),
                        arn: format!("arn:aws:iam::{ACCOUNT}:role{}{}", c.path, c.name),
                        role_id: "AROA".into(),
                        path: c.path.clone(),
                        description: c.description.clone(),
                        max_session_duration: c.max_session_duration.unwrap_or(3600),
                        assume_role_policy: c.assume_role_policy.clone(),
                        permissions_boundary_arn: c.permissions_boundary_arn.clone(),
                        tags: c.tags.clone(),
                        created: None,
                    },
                    attached: Default::default(),
                    inline: Default::default(),
                })
            }
            Action::UpdateAssumeRolePolicy { role, document } => {
                role_named(o, role).role.assume_role_policy = document.clone()
            }
            Action::UpdateRole {
                role,
                description,
                max_session_duration,
            } => {
                let r = role_named(o, role);
                if let Some(d) = description {
                    r.role.description = Some(d.clone());
                }
                if let Some(m) = max_session_duration {
                    r.role.max_session_duration = *m;
                }
            }
            Action::PutPermissionsBoundary { role, policy_arn } => {
                role_named(o, role).role.permissions_boundary_arn = Some(policy_arn.clone())
            }
            Action::DeletePermissionsBoundary { role } => {
                role_named(o, role).role.permissions_boundary_arn = None
            }
            Action::AttachPolicy { role, policy_arn } => {
                role_named(o, role).attached.insert(policy_arn.clone());
            }
            Action::DetachPolicy { role, policy_arn } => {
                role_named(o, role).attached.remove(policy_arn);
            }
            Action::PutInlinePolicy {
                role,
                name,
                document,
            } => {
                role_named(o, role)
                    .inline
                    .insert(name.clone(), document.clone());
            }
            Action::DeleteInlinePolicy { role, name } => {
                role_named(o, role).inline.remove(name);
            }
            Action::TagRole { role, tags } => role_named(o, role).role.tags.extend(tags.clone()),
            Action::UntagRole { role, keys } => {
                let r = role_named(o, role);
                keys.iter().for_each(|k| {
                    r.role.tags.remove(k);
                });
            }
            Action::DeleteRole { role } => {
                if o.previous_role
                    .as_ref()
                    .is_some_and(|r| &r.role.name == role)
                {
                    o.previous_role = None;
                } else {
                    o.role = None;
                }
            }
            Action::CreateAssociation(c) => {
                let d_tags = c.tags.clone();
                o.association = Some(Association {
                    cluster_name: c.cluster_name.clone(),
                    association_id: "a-new".into(),
                    association_arn: "arn:new".into(),
                    namespace: c.namespace.clone(),
                    service_account: c.service_account.clone(),
                    role_arn: c.role_arn.clone(),
                    target_role_arn: c.target_role_arn.clone(),
                    disable_session_tags: c.disable_session_tags,
                    session_policy: c.session_policy.clone(),
                    external_id: None,
                    owner_arn: None,
                    tags: d_tags,
                    created_at: None,
                    modified_at: None,
                })
            }
            Action::UpdateAssociation(u) => {
                let a = o.association.as_mut().expect("association");
                if let Some(r) = &u.role_arn {
                    a.role_arn = r.clone();
                }
                if let Some(t) = &u.target_role_arn {
                    a.target_role_arn = t.clone();
                }
                if let Some(x) = u.disable_session_tags {
                    a.disable_session_tags = x;
                }
                if let Some(p) = &u.session_policy {
                    a.session_policy = p.clone();
                }
            }
            Action::TagAssociation { tags, .. } => o
                .association
                .as_mut()
                .expect("association")
                .tags
                .extend(tags.clone()),
            Action::UntagAssociation { keys, .. } => {
                let a = o.association.as_mut().expect("association");
                keys.iter().for_each(|k| {
                    a.tags.remove(k);
                });
            }
            Action::DeleteAssociation { .. } => o.previous_association = None,
        }
    }

    fn spec_strategy() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let policies = proptest::sample::subsequence(
            vec![
                READ_ONLY,
                S3_READ,
                "arn:aws:iam::aws:policy/IAMReadOnlyAccess",
            ],
            0..=3,
        );
        let inline = proptest::sample::subsequence(vec!["a", "b"], 0..=2);
        let tags = proptest::sample::subsequence(vec!["team", "env"], 0..=2);
        (
            policies,
            inline,
            tags,
            proptest::option::of("[a-z]{1,8}"),
            prop_oneof![Just(3600), Just(7200)],
            proptest::option::of(Just(READ_ONLY)),
            any::<bool>(),
            proptest::option::of(Just("arn:aws:iam::444455556666:role/t")),
        )
            .prop_map(|(p, i, t, desc, dur, boundary, no_tags, target)| {
                let mut role = json!({"managedPolicyArns": p, "maxSessionDuration": dur,
                    "inlinePolicies": i.iter().map(|n| (n.to_string(), doc(&format!("s3:{n}*")))).collect::<serde_json::Map<_, _>>()});
                if let Some(d) = desc {
                    role["description"] = json!(d);
                }
                if let Some(b) = boundary {
                    role["permissionsBoundaryArn"] = json!(b);
                }
                let mut spec = json!({"role": role,
                    "tags": t.iter().map(|k| (k.to_string(), json!(format!("{k}-v")))).collect::<serde_json::Map<_, _>>()});
                if no_tags {
                    spec["disableSessionTags"] = json!(true);
                    spec["sessionPolicy"] = doc("s3:GetObject");
                }
                if let Some(t) = target {
                    spec["targetRoleArn"] = json!(t);
                }
                spec
            })
    }

    proptest::proptest! {
        /// From any earlier state of the binding (or nothing), carrying out the plan
        /// leaves nothing to do.
        #[test]
        fn carrying_out_a_plan_converges_in_one_pass(
            before in spec_strategy(),
            after in spec_strategy(),
            has_role in proptest::bool::ANY,
            has_association in proptest::bool::ANY,
            has_sa in proptest::bool::ANY,
        ) {
            let old = want(before);
            let d = want(after);
            let mut o = converged(&old);
            if !has_role { o.role = None; }
            if !has_association { o.association = None; }
            if !has_sa { o.service_account = None; }
            let first = plan(&d, &o);
            proptest::prop_assert!(first.blocked.is_none());
            for a in &first.actions {
                act(&mut o, a);
            }
            let second = plan(&d, &o);
            proptest::prop_assert_eq!(second.actions, vec![]);
        }
    }
}
