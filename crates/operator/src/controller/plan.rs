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
    /// Makes the binding the owner of a ServiceAccount left by an earlier binding of the
    /// same name, before the garbage collector removes it from under the association.
    AdoptServiceAccount {
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
    let adopting = match conflicts(d, o) {
        Ok(adopting) => adopting,
        Err(blocked) => return blocked,
    };
    let mut actions = Vec::new();
    service_account(d, o, &mut actions);
    if let DesiredRole::Managed(m) = &d.role {
        match &o.role {
            None => create_role(m, &mut actions),
            Some(r) => role_drift(m, r, &mut actions),
        }
    }
    association(d, o, adopting, &mut actions);
    rename_leftovers(d, o, &mut actions);
    Plan {
        actions,
        blocked: None,
        adopting,
    }
}

/// Why the binding must not act, as a blocked plan; otherwise whether it takes over an
/// association made elsewhere.
fn conflicts(d: &Desired, o: &Observed) -> Result<bool, Plan> {
    if let Some(older) = &o.older_binding {
        return Err(blocked(
            Reason::AssociationConflict,
            format!(
                "ServiceAccount {} is already bound by the older PodIdentityBinding {older}; EKS allows one association per ServiceAccount: delete one of the two bindings or point this one at another ServiceAccount",
                d.service_account.name
            ),
        ));
    }
    match (&d.role, &o.role) {
        (DesiredRole::Existing { arn, .. }, None) => {
            return Err(blocked(
                Reason::RoleNotFound,
                format!(
                    "role {arn} does not exist: create it, or remove role.arn to let the operator manage a role"
                ),
            ));
        }
        (DesiredRole::Existing { arn, .. }, Some(r))
            if !policy::trust_admits_pod_identity(&r.role.assume_role_policy) =>
        {
            return Err(blocked(
                Reason::RoleTrustMissing,
                format!(
                    "the trust policy of role {arn} does not admit EKS Pod Identity: add a statement allowing Principal {{\"Service\": \"{}\"}} the actions sts:AssumeRole and sts:TagSession",
                    policy::POD_IDENTITY_PRINCIPAL
                ),
            ));
        }
        (DesiredRole::Managed(m), Some(r)) if !owns(d, &r.role.tags) => {
            return Err(blocked(
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
            ));
        }
        _ => {}
    }
    let Some(a) = &o.association else {
        return Ok(false);
    };
    if owns(d, &a.tags) {
        return Ok(false);
    }
    if let Some(owner) = &a.owner_arn {
        return Err(blocked(
            Reason::AssociationConflict,
            format!(
                "association {} for ServiceAccount {} is owned by {owner} (an EKS add-on) and is never adopted: configure the identity through the add-on, or use another ServiceAccount",
                a.association_id, d.service_account.name
            ),
        ));
    }
    if !d.adopt && !o.association_of_younger_binding {
        return Err(blocked(
            Reason::AssociationConflict,
            format!(
                "association {} for ServiceAccount {} was made elsewhere (eksctl, Terraform, another tool): set spec.adopt: true to take it over, or delete it",
                a.association_id, d.service_account.name
            ),
        ));
    }
    Ok(true)
}

/// The ServiceAccount: created when missing and the spec asks for it; taken over from
/// an earlier binding of the same name; the labels and annotations the spec names
/// added to one the operator owns.
fn service_account(d: &Desired, o: &Observed, actions: &mut Vec<Action>) {
    let sa = &d.service_account;
    match &o.service_account {
        None if sa.create => actions.push(Action::CreateServiceAccount {
            name: sa.name.clone(),
            labels: sa.labels.clone(),
            annotations: sa.annotations.clone(),
        }),
        Some(have) if have.owned || have.left_by_previous => {
            if have.left_by_previous {
                actions.push(Action::AdoptServiceAccount {
                    name: sa.name.clone(),
                });
            }
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
}

/// The association: created when missing; otherwise taken over (`adopting`), updated
/// where it drifted, and its tags made the spec's.
fn association(d: &Desired, o: &Observed, adopting: bool, actions: &mut Vec<Action>) {
    let Some(a) = &o.association else {
        actions.push(Action::CreateAssociation(CreateAssociation {
            cluster_name: d.cluster_name.clone(),
            namespace: d.namespace.clone(),
            service_account: d.service_account.name.clone(),
            role_arn: d.association.role_arn.clone(),
            target_role_arn: d.association.target_role_arn.clone(),
            disable_session_tags: d.association.disable_session_tags,
            session_policy: d.association.session_policy.clone(),
            tags: d.association.tags.clone(),
            client_request_token: Some(naming::association_token(
                &d.uid,
                &d.namespace,
                &d.service_account.name,
            )),
        }));
        return;
    };
    if adopting {
        // Ownership first, so a crash after this point finds the association ours.
        actions.push(Action::TagAssociation {
            arn: a.association_arn.clone(),
            tags: d.association.tags.clone(),
            adopting: true,
        });
    }
    association_drift(d, a, actions);
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

/// What a rename left behind, once the new association is in place: the old
/// association, ServiceAccount and role, where they are the binding's.
fn rename_leftovers(d: &Desired, o: &Observed, actions: &mut Vec<Action>) {
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
        delete_role(prev, actions);
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
mod tests;
