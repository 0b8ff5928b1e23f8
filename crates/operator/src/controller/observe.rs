//! Reading the world a binding acts on: its ServiceAccount(s), role(s), association(s)
//! and the other bindings of its namespace. Reads only; the result is plain data for
//! the planner.
//!
//! Besides what the spec names now, the names the status recorded (the previous
//! ServiceAccount, role and association) are observed too, so a rename can remove what
//! is no longer wanted.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, ListParams};
use kube::{Resource, ResourceExt};
use serde_json::Value;

use crate::Result;
use crate::aws::{Association, Cluster, EksApi, IamApi, Role};
use crate::crd::{DeletionPolicy, PodIdentityBinding};
use crate::naming;

use super::desired::{Desired, DesiredRole};
use super::typed::CachedBinding;

/// A ServiceAccount as far as the planner cares.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObservedServiceAccount {
    pub name: String,
    /// It carries an ownerReference to this binding: the operator created it.
    pub owned: bool,
    /// Its only owner is an earlier binding of the same name, now gone (a binding
    /// deleted and created again): the garbage collector would remove it.
    pub left_by_previous: bool,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// A role with what is attached to it.
#[derive(Clone, Debug, PartialEq)]
pub struct ObservedRole {
    pub role: Role,
    pub attached: BTreeSet<String>,
    pub inline: BTreeMap<String, Value>,
}

/// Everything the planner reads.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    pub service_account: Option<ObservedServiceAccount>,
    /// The ServiceAccount the status names, when the spec now names another.
    pub previous_service_account: Option<ObservedServiceAccount>,
    pub role: Option<ObservedRole>,
    /// The role the status names, when the spec now names another.
    pub previous_role: Option<ObservedRole>,
    /// The association of the desired ServiceAccount.
    pub association: Option<Association>,
    /// The association the status names, when it is not the one above.
    pub previous_association: Option<Association>,
    /// An older binding of the namespace on the same ServiceAccount.
    pub older_binding: Option<String>,
    /// The association carries the ownership tags of a younger binding of the namespace
    /// on the same ServiceAccount: this one, being older, takes it over.
    pub association_of_younger_binding: bool,
}

fn observed_sa(
    sa: &ServiceAccount,
    binding_uid: &str,
    binding_name: &str,
) -> ObservedServiceAccount {
    let refs = sa.owner_references();
    ObservedServiceAccount {
        name: sa.name_any(),
        owned: refs.iter().any(|o| o.uid == binding_uid),
        left_by_previous: !refs.is_empty()
            && refs.iter().all(|o| {
                o.kind == "PodIdentityBinding" && o.name == binding_name && o.uid != binding_uid
            }),
        labels: sa.labels().clone(),
        annotations: sa.annotations().clone(),
    }
}

/// True for a role the operator made for this cluster: under the cluster's path, with
/// ownership tags. Only such roles have their policies read; any other role (an existing
/// one named by `role.arn`, or one squatting a managed name) is read with GetRole alone,
/// which is all the operator's IAM policy allows on roles it does not own.
fn made_by_operator(role: &Role, cluster: &str) -> bool {
    role.path.starts_with(&naming::role_path(cluster)) && naming::has_ownership_tags(&role.tags)
}

/// GetRole, and for a role the operator made for `policies_of` (a cluster name) its
/// attached and inline policies.
pub(super) async fn get_role(
    iam: &dyn IamApi,
    name: &str,
    policies_of: Option<&str>,
) -> Result<Option<ObservedRole>> {
    let Some(role) = iam.get_role(name).await? else {
        return Ok(None);
    };
    let details = policies_of.is_some_and(|cluster| made_by_operator(&role, cluster));
    let mut observed = ObservedRole {
        role,
        attached: BTreeSet::new(),
        inline: BTreeMap::new(),
    };
    if details {
        observed.attached = iam
            .list_attached_role_policies(name)
            .await?
            .into_iter()
            .map(|p| p.arn)
            .collect();
        for policy in iam.list_role_policies(name).await? {
            if let Some(doc) = iam.get_role_policy(name, &policy).await? {
                observed.inline.insert(policy, doc);
            }
        }
    }
    Ok(Some(observed))
}

async fn association_for(
    eks: &dyn EksApi,
    cluster: &str,
    namespace: &str,
    service_account: &str,
) -> Result<Option<Association>> {
    let list = eks
        .list_pod_identity_associations(cluster, Some(namespace), Some(service_account))
        .await?;
    for summary in list {
        if let Some(a) = eks
            .describe_pod_identity_association(cluster, &summary.association_id)
            .await?
        {
            return Ok(Some(a));
        }
    }
    Ok(None)
}

/// The older of two bindings: earlier creation, then name.
fn is_older(a: &PodIdentityBinding, b: &PodIdentityBinding) -> bool {
    let key = |x: &PodIdentityBinding| (x.metadata.creation_timestamp.clone(), x.name_any());
    key(a) < key(b)
}

/// Observes what `desired` concerns. `details` also reads a managed role's policies.
pub async fn observe(
    client: &kube::Client,
    iam: &dyn IamApi,
    eks: &dyn EksApi,
    binding: &PodIdentityBinding,
    desired: &Desired,
    cached_competitors: Option<Vec<Arc<CachedBinding>>>,
) -> Result<Observed> {
    let ns = &desired.namespace;
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    // Listed as the cache keeps them: a malformed binding of the namespace must not
    // fail this one.
    let bindings: Api<CachedBinding> = Api::namespaced(client.clone(), ns);
    let status = binding.status.clone().unwrap_or_default();
    let mut observed = Observed {
        service_account: sas
            .get_opt(&desired.service_account.name)
            .await?
            .map(|sa| observed_sa(&sa, &desired.uid, &desired.binding_name)),
        ..Observed::default()
    };
    if let Some(prev) = status.service_account.as_ref().map(|s| &s.name)
        && *prev != desired.service_account.name
    {
        observed.previous_service_account = sas
            .get_opt(prev)
            .await?
            .map(|sa| observed_sa(&sa, &desired.uid, &desired.binding_name));
    }

    let managed = matches!(desired.role, DesiredRole::Managed(_));
    let cluster = desired.cluster_name.as_str();
    observed.role = get_role(iam, desired.role.name(), managed.then_some(cluster)).await?;
    if let Some(prev) = status.role_arn.as_deref().and_then(naming::parse_role_arn)
        && !prev.name.eq_ignore_ascii_case(desired.role.name())
    {
        observed.previous_role = get_role(iam, &prev.name, Some(cluster)).await?;
    }

    observed.association = association_for(
        eks,
        &desired.cluster_name,
        ns,
        &desired.service_account.name,
    )
    .await?;
    if let Some(prev_id) = &status.association_id
        && observed.association.as_ref().map(|a| &a.association_id) != Some(prev_id)
    {
        observed.previous_association = eks
            .describe_pod_identity_association(&desired.cluster_name, prev_id)
            .await?;
    }

    // The bindings naming the same ServiceAccount, from the controller's cache when it
    // runs (its index of ServiceAccounts names them: a pass of each of N bindings
    // listing or scanning its namespace would cost N²). A competitor the cache has not
    // seen yet wakes this binding when it arrives.
    let held: Vec<Arc<CachedBinding>> = match cached_competitors {
        Some(cached) => cached,
        None => bindings
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .map(Arc::new)
            .collect(),
    };
    let others: Vec<&PodIdentityBinding> = held
        .iter()
        .filter_map(|o| match o.as_ref() {
            CachedBinding::Typed(b) if b.service_account_name() == desired.service_account.name => {
                Some(b)
            }
            _ => None,
        })
        .collect();
    observed.older_binding = others
        .iter()
        .filter(|o| o.uid() != binding.uid() && o.meta().deletion_timestamp.is_none())
        .filter(|o| o.service_account_name() == desired.service_account.name)
        .filter(|o| is_older(o, binding))
        .map(|o| o.name_any())
        .min();
    if let Some(a) = &observed.association
        && a.tags.get(naming::TAG_CLUSTER_ARN) == Some(&desired.cluster_arn)
        && a.tags.get(naming::TAG_NAMESPACE) == Some(ns)
    {
        let holder = a.tags.get(naming::TAG_NAME);
        observed.association_of_younger_binding = others.iter().any(|o| {
            Some(&o.name_any()) == holder
                && o.uid() != binding.uid()
                && o.service_account_name() == desired.service_account.name
                && is_older(binding, o)
        });
    }
    Ok(observed)
}

/// What cleanup reads.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ForCleanup {
    /// The cluster's ARN, as the ownership tags carry it; `None` when it cannot be
    /// known (the cluster is gone and no role of the binding names it).
    pub cluster_arn: Option<String>,
    pub roles: Vec<ObservedRole>,
    pub associations: Vec<Association>,
    /// The ServiceAccounts the spec and the status name (read under `Retain` only).
    pub service_accounts: Vec<ObservedServiceAccount>,
}

/// The cluster ARN a role's ownership tags name, when it is a cluster called
/// `cluster_name` in the role's own account: how a binding's cluster is known once the
/// cluster itself is gone.
fn cluster_arn_of_role(role: &Role, cluster_name: &str) -> Option<String> {
    let arn = role.tags.get(naming::TAG_CLUSTER_ARN)?;
    let account = naming::parse_role_arn(&role.arn)?.account_id;
    (naming::cluster_name_of(arn) == cluster_name
        && arn.split(':').nth(4) == Some(account.as_str()))
    .then(|| arn.clone())
}

/// What cleanup needs under `policy`. Under `Delete`: the roles the binding may have
/// made, by every name it can have had (the name the spec gives, or the derived name
/// bare and under each role name prefix of the guardrails in force, and the role the
/// status recorded) and the associations of its ServiceAccounts and the one the status
/// recorded; only those carrying its ownership tags are removed. Under `Retain`: the
/// ServiceAccounts only. `cluster` is `None` when the cluster no longer exists.
pub async fn observe_for_cleanup(
    ctx: &super::context::Context,
    binding: &PodIdentityBinding,
    cluster: Option<&Cluster>,
    policy: DeletionPolicy,
) -> Result<ForCleanup> {
    let (iam, eks) = (ctx.iam.as_ref(), ctx.eks.as_ref());
    let cluster_name = ctx.settings.cluster_name.as_str();
    let ns = binding.namespace().unwrap_or_default();
    let status = binding.status.clone().unwrap_or_default();
    let mut sa_names = vec![binding.service_account_name()];
    if let Some(s) = &status.service_account
        && !sa_names.contains(&s.name)
    {
        sa_names.push(s.name.clone());
    }
    let mut found = ForCleanup {
        cluster_arn: cluster.map(|c| c.arn.clone()),
        ..ForCleanup::default()
    };
    if policy == DeletionPolicy::Retain {
        let sas: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), &ns);
        let uid = binding.uid().unwrap_or_default();
        for name in &sa_names {
            if let Some(sa) = sas.get_opt(name).await? {
                found
                    .service_accounts
                    .push(observed_sa(&sa, &uid, &binding.name_any()));
            }
        }
        return Ok(found);
    }

    let recorded = match status.role_arn.as_deref().and_then(naming::parse_role_arn) {
        Some(prev) => get_role(iam, &prev.name, Some(cluster_name)).await?,
        None => None,
    };
    if found.cluster_arn.is_none() {
        found.cluster_arn = recorded
            .as_ref()
            .and_then(|r| cluster_arn_of_role(&r.role, cluster_name));
    }
    let mut role_names: Vec<String> = Vec::new();
    if binding.spec.role.arn.is_none() {
        match (&binding.spec.role.name, &found.cluster_arn) {
            (Some(n), _) => role_names.push(n.clone()),
            (None, Some(arn)) => {
                let name = binding.name_any();
                let config = ctx.settings.guardrails.current();
                let prefixes = config
                    .rules
                    .iter()
                    .filter_map(|r| r.role_name_prefix.as_deref());
                role_names.extend(
                    std::iter::once("")
                        .chain(prefixes)
                        .map(|p| naming::prefixed_role_name(p, arn, &ns, &name)),
                );
            }
            (None, None) => {}
        }
    }
    let mut roles: Vec<ObservedRole> = recorded.into_iter().collect();
    // A name IAM would refuse was never created; asking for it would only fail.
    let mut asked: Vec<String> = roles.iter().map(|r| r.role.name.clone()).collect();
    for name in role_names
        .into_iter()
        .filter(|n| naming::valid_role_name(n))
    {
        if asked.iter().any(|a| a.eq_ignore_ascii_case(&name)) {
            continue;
        }
        asked.push(name.clone());
        if let Some(r) = get_role(iam, &name, Some(cluster_name)).await? {
            roles.push(r);
        }
    }
    found.roles = roles;
    if cluster.is_none() {
        return Ok(found);
    }
    for sa in sa_names {
        if let Some(a) = association_for(eks, cluster_name, &ns, &sa).await? {
            found.associations.push(a);
        }
    }
    if let Some(id) = &status.association_id
        && !found.associations.iter().any(|a| &a.association_id == id)
        && let Some(a) = eks
            .describe_pod_identity_association(cluster_name, id)
            .await?
    {
        found.associations.push(a);
    }
    Ok(found)
}
