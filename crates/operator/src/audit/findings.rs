//! The findings of an observation (pure), and the trust-policy reading they rest on.

use std::collections::BTreeSet;

use kube::ResourceExt;
use serde_json::Value;

use crate::aws::Tags;
use crate::guardrails::IRSA_ROLE_ANNOTATION;
use crate::naming;
use crate::policy::{POD_IDENTITY_PRINCIPAL, trust_admits_pod_identity};

use super::model::{
    AGENT_NAME, AGENT_NAMESPACE, CREDENTIAL_CHAIN_DOCS, Finding, Kind, Observed, Owner, Severity,
};

/// The statements of a policy document.
fn statements(doc: &Value) -> Vec<&Value> {
    match doc.get("Statement") {
        Some(Value::Array(list)) => list.iter().collect(),
        Some(one) => vec![one],
        None => Vec::new(),
    }
}

fn strings(v: Option<&Value>) -> Vec<&str> {
    match v {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// True when a statement allows `pods.eks.amazonaws.com` in.
pub fn admits_pod_identity(st: &Value) -> bool {
    st.get("Effect").and_then(Value::as_str) == Some("Allow")
        && strings(st.get("Principal").and_then(|p| p.get("Service")))
            .contains(&POD_IDENTITY_PRINCIPAL)
}

/// True when a statement's conditions test a session tag EKS sets
/// (`aws:RequestTag/...`), which keeps the role to the pods those tags name.
pub fn scoped_by_session_tags(st: &Value) -> bool {
    st.get("Condition")
        .and_then(Value::as_object)
        .is_some_and(|ops| {
            ops.values().any(|keys| {
                keys.as_object().is_some_and(|k| {
                    k.keys()
                        .any(|key| key.to_ascii_lowercase().starts_with("aws:requesttag/"))
                })
            })
        })
}

/// The statements of a trust policy admitting `pods.eks.amazonaws.com` without any
/// session-tag condition.
pub fn unscoped_pod_identity_statements(trust: &Value) -> usize {
    statements(trust)
        .into_iter()
        .filter(|st| admits_pod_identity(st) && !scoped_by_session_tags(st))
        .count()
}

/// The `aws eks update-addon` step that gives an add-on's ServiceAccount a Pod Identity
/// association for `role_arn` (EKS then owns the association).
pub fn update_addon_step(
    cluster: &str,
    addon: &str,
    service_account: &str,
    role_arn: &str,
) -> String {
    format!(
        "aws eks update-addon --cluster-name {cluster} --addon-name {addon} --pod-identity-associations serviceAccount={service_account},roleArn={role_arn}"
    )
}

/// Every finding of an observation, most severe first.
pub fn findings(o: &Observed) -> Vec<Finding> {
    let mut found = Found::default();
    unmanaged_associations(o, &mut found);
    irsa_service_accounts(o, &mut found);
    addons_on_irsa(o, &mut found);
    orphan_roles(o, &mut found);
    bindings_not_ready(o, &mut found);
    unscoped_trusts(o, &mut found);
    agent_missing(o, &mut found);
    let Found(mut out) = found;
    out.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(a.kind.cmp(&b.kind))
            .then(a.subject.cmp(&b.subject))
    });
    out
}

/// The findings found so far.
#[derive(Default)]
struct Found(Vec<Finding>);

impl Found {
    fn push(&mut self, severity: Severity, kind: Kind, subject: String, message: String) {
        self.0.push(Finding {
            severity,
            kind,
            subject,
            message,
        });
    }
}

/// Associations no binding manages: adoptable, or the add-on's.
fn unmanaged_associations(o: &Observed, found: &mut Found) {
    for a in &o.associations {
        if o.managing_binding(a).is_some() {
            continue;
        }
        let owner = Owner::of(a);
        let sa = format!("{}/{}", a.namespace, a.service_account);
        let (severity, what_to_do) = match &owner {
            Owner::Addon(_) => (
                Severity::Info,
                "only the add-on changes it (aws eks update-addon); no binding may adopt it"
                    .to_owned(),
            ),
            _ => (
                Severity::Warning,
                "a PodIdentityBinding with adopt: true takes it over (pod-identity-operator migrate writes one)".to_owned(),
            ),
        };
        found.push(
            severity,
            Kind::UnmanagedAssociation,
            a.association_arn.clone(),
            format!(
                "association of {sa} to {} is managed by no binding; made by {owner}; {what_to_do}",
                a.role_arn
            ),
        );
    }
}

/// ServiceAccounts on IRSA: their role's trust, and an association beside the annotation.
fn irsa_service_accounts(o: &Observed, found: &mut Found) {
    for sa in &o.irsa_service_accounts {
        let subject = format!("{}/{}", sa.namespace, sa.name);
        let addon_managed = o
            .addons
            .iter()
            .find(|ad| ad.service_account_role_arn.as_deref() == Some(sa.role_arn.as_str()));
        found.push(
            Severity::Info,
            Kind::IrsaServiceAccount,
            subject.clone(),
            match addon_managed {
                Some(ad) => format!(
                    "annotated {IRSA_ROLE_ANNOTATION}: {} by the EKS add-on {}",
                    sa.role_arn, ad.name
                ),
                None => format!(
                    "annotated {IRSA_ROLE_ANNOTATION}: {} (IRSA); pod-identity-operator migrate writes its binding",
                    sa.role_arn
                ),
            },
        );
        match o.role(&sa.role_arn) {
            None => {}
            Some(None) => found.push(
                Severity::Error,
                Kind::IrsaRoleWithoutPodIdentityTrust,
                subject.clone(),
                format!("the IRSA role {} does not exist", sa.role_arn),
            ),
            Some(Some(role)) if !trust_admits_pod_identity(&role.assume_role_policy) => found.push(
                Severity::Warning,
                Kind::IrsaRoleWithoutPodIdentityTrust,
                subject.clone(),
                format!(
                    "the IRSA role {} trusts only its OIDC provider, not {POD_IDENTITY_PRINCIPAL}: an association to it would give no credentials (pod-identity-operator migrate --apply --update-trust adds a scoped statement)",
                    sa.role_arn
                ),
            ),
            Some(Some(_)) => {}
        }
        if let Some(a) = o.association_for(&sa.namespace, &sa.name) {
            // The SDKs' default credential chain stops at the first source that has
            // credentials, and web identity (IRSA's AWS_ROLE_ARN and
            // AWS_WEB_IDENTITY_TOKEN_FILE) comes before the container credential
            // provider that EKS Pod Identity feeds: pods keep the IRSA role while the
            // annotation stays. See CREDENTIAL_CHAIN_DOCS.
            let same = a.role_arn == sa.role_arn;
            found.push(
                if same {
                    Severity::Warning
                } else {
                    Severity::Error
                },
                Kind::IrsaAndAssociation,
                subject.clone(),
                format!(
                    "both IRSA ({}) and a Pod Identity association ({}){}: the SDKs' default credential chain takes web identity (IRSA) before the container credential provider (EKS Pod Identity), so pods get the IRSA role's credentials until the annotation is removed and they restart (see {} and {})",
                    sa.role_arn,
                    a.role_arn,
                    if same { "" } else { " to different roles" },
                    CREDENTIAL_CHAIN_DOCS[0],
                    CREDENTIAL_CHAIN_DOCS[1]
                ),
            );
        }
    }
}

/// Add-ons configured with IRSA.
fn addons_on_irsa(o: &Observed, found: &mut Found) {
    for ad in &o.addons {
        if let Some(role) = &ad.service_account_role_arn {
            let sa = o
                .irsa_service_accounts
                .iter()
                .find(|s| &s.role_arn == role)
                .map_or("<its ServiceAccount>".to_owned(), |s| s.name.clone());
            found.push(
                Severity::Warning,
                Kind::AddonUsesIrsa,
                ad.name.clone(),
                format!(
                    "the add-on is configured with IRSA ({role}); move it with `{}` once the role trusts {POD_IDENTITY_PRINCIPAL}, then clear its service account role",
                    update_addon_step(&o.cluster_name, &ad.name, &sa, role)
                ),
            );
        }
    }
}

/// Roles under the operator's path that no existing binding owns.
fn orphan_roles(o: &Observed, found: &mut Found) {
    let binding_names: BTreeSet<(String, String)> = o
        .bindings
        .iter()
        .map(|b| (b.namespace().unwrap_or_default(), b.name_any()))
        .collect();
    for role in &o.operator_path_roles {
        let ours = role.tags.get(naming::TAG_CLUSTER_ARN) == Some(&o.cluster_arn)
            || (!role.tags.contains_key(naming::TAG_CLUSTER_ARN)
                && role.tags.get(naming::TAG_CLUSTER) == Some(&o.cluster_name));
        if !naming::has_ownership_tags(&role.tags) {
            found.push(
                Severity::Warning,
                Kind::OrphanRole,
                role.arn.clone(),
                "a role under the operator's path without its ownership tags: no binding owns it, and the operator will neither use nor remove it".into(),
            );
            continue;
        }
        if !ours {
            continue;
        }
        let owner = tag_pair(&role.tags);
        if !binding_names.contains(&owner) {
            found.push(
                Severity::Warning,
                Kind::OrphanRole,
                role.arn.clone(),
                format!(
                    "made for the binding {}/{}, which does not exist: delete the role, or re-create the binding to take it back",
                    owner.0, owner.1
                ),
            );
        }
    }
}

/// Bindings that are not `Ready`.
fn bindings_not_ready(o: &Observed, found: &mut Found) {
    for b in &o.bindings {
        let subject = format!("{}/{}", b.namespace().unwrap_or_default(), b.name_any());
        let ready = b
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"));
        match ready {
            Some(c) if c.status == "True" => {}
            Some(c) => found.push(
                if c.status == "False" {
                    Severity::Error
                } else {
                    Severity::Warning
                },
                Kind::BindingNotReady,
                subject,
                format!("Ready={} {}: {}", c.status, c.reason, c.message),
            ),
            None => found.push(
                Severity::Warning,
                Kind::BindingNotReady,
                subject,
                "no Ready condition yet: the operator has not reconciled it (is it running?)"
                    .into(),
            ),
        }
    }
}

/// Associated roles whose trust admits Pod Identity without session-tag conditions.
fn unscoped_trusts(o: &Observed, found: &mut Found) {
    let associated: BTreeSet<&str> = o.associations.iter().map(|a| a.role_arn.as_str()).collect();
    for arn in associated {
        if let Some(Some(role)) = o.role(arn) {
            let n = unscoped_pod_identity_statements(&role.assume_role_policy);
            if n > 0 {
                found.push(
                    Severity::Warning,
                    Kind::UnscopedPodIdentityTrust,
                    arn.to_owned(),
                    format!(
                        "{n} trust statement(s) admit {POD_IDENTITY_PRINCIPAL} with no session-tag condition: any Pod Identity association of the account may use this role; add conditions on aws:RequestTag/eks-cluster-arn, aws:RequestTag/kubernetes-namespace and aws:RequestTag/kubernetes-service-account"
                    ),
                );
            }
        }
    }
}

/// The Pod Identity Agent, as an add-on or a DaemonSet, when it does not run.
fn agent_missing(o: &Observed, found: &mut Found) {
    match o.addon(AGENT_NAME) {
        Some(ad) if ad.status.as_deref() == Some("ACTIVE") => {}
        Some(ad) => found.push(
            Severity::Error,
            Kind::PodIdentityAgentMissing,
            AGENT_NAME.into(),
            format!(
                "the {AGENT_NAME} add-on is {}: pods may get no Pod Identity credentials",
                ad.status.as_deref().unwrap_or("in an unknown state")
            ),
        ),
        None if o.agent_daemonset => {}
        None => found.push(
            Severity::Error,
            Kind::PodIdentityAgentMissing,
            AGENT_NAME.into(),
            format!(
                "neither the {AGENT_NAME} add-on nor a DaemonSet {AGENT_NAMESPACE}/{AGENT_NAME} runs the EKS Pod Identity Agent: associations give pods no credentials (aws eks create-addon --cluster-name {} --addon-name {AGENT_NAME})",
                o.cluster_name
            ),
        ),
    }
}

fn tag_pair(tags: &Tags) -> (String, String) {
    (
        tags.get(naming::TAG_NAMESPACE).cloned().unwrap_or_default(),
        tags.get(naming::TAG_NAME).cloned().unwrap_or_default(),
    )
}
