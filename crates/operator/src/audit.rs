//! `pod-identity-operator audit`: a read-only report of a cluster's identity wiring, as
//! it stands before (and after) a move from IRSA and hand-made associations to
//! `PodIdentityBinding`s.
//!
//! [`observe`] reads what is there (Kubernetes: bindings, ServiceAccounts, the Pod
//! Identity Agent's DaemonSet; AWS: the cluster, its associations, its add-ons, the roles
//! under the operator's path and the roles the associations and IRSA annotations name),
//! with reads only. [`findings`] is a pure function of that observation, one
//! [`Finding`] per thing worth a platform team's attention, each with a [`Severity`];
//! `migrate` plans from the same observation.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::aws::{Addon, Association, EksApi, IamApi, Role, Tags};
use crate::cli::connection::{Connection, Output};
use crate::crd::PodIdentityBinding;
use crate::guardrails::IRSA_ROLE_ANNOTATION;
use crate::naming;
use crate::policy::{POD_IDENTITY_PRINCIPAL, trust_admits_pod_identity};
use crate::{Error, Result};

/// The EKS add-on, and the self-managed DaemonSet in `kube-system`, that run the EKS Pod
/// Identity Agent.
pub const AGENT_NAME: &str = "eks-pod-identity-agent";
pub const AGENT_NAMESPACE: &str = "kube-system";

/// Where the SDKs' default credential chain is documented to prefer web identity
/// (IRSA) over the container credential provider (EKS Pod Identity).
///
/// The EKS user guide's "Understand how EKS Pod Identity works" page: EKS Pod Identity
/// is in the container credential provider, one step of the default chain, and
/// "If your workloads currently use credentials that are earlier in the chain of
/// credentials, those credentials will continue to be used even if you configure an
/// EKS Pod Identity association for the same workload". The SDKs and Tools reference
/// guide's "Credential provider chain" page lists the chain, web identity ("Federate
/// with web identity or OpenID Connect") before the container provider; the SDK for
/// PHP's default-chain page, for one, checks `assumeRoleWithWebIdentity` before
/// `ecsCredentials`, and aws-config (Rust) checks web identity before ECS/EKS container
/// credentials.
pub const CREDENTIAL_CHAIN_DOCS: [&str; 2] = [
    "https://docs.aws.amazon.com/eks/latest/userguide/pod-id-how-it-works.html",
    "https://docs.aws.amazon.com/sdkref/latest/guide/standardized-credentials.html",
];

/// How much a finding matters; ordered, so `--fail-on` compares.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}

/// What a finding is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Kind {
    /// An association of the cluster that no binding manages.
    UnmanagedAssociation,
    /// A ServiceAccount with an IRSA annotation.
    IrsaServiceAccount,
    /// An IRSA role whose trust does not admit `pods.eks.amazonaws.com`.
    IrsaRoleWithoutPodIdentityTrust,
    /// A ServiceAccount with an IRSA annotation and an association.
    IrsaAndAssociation,
    /// An EKS add-on configured with IRSA (`serviceAccountRoleArn`).
    AddonUsesIrsa,
    /// A role under the operator's path that no binding owns.
    OrphanRole,
    /// A binding whose Ready condition is not True.
    BindingNotReady,
    /// An associated role's trust admits `pods.eks.amazonaws.com` without session tags.
    UnscopedPodIdentityTrust,
    /// The EKS Pod Identity Agent does not run.
    PodIdentityAgentMissing,
}

/// One thing worth attention.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub severity: Severity,
    pub kind: Kind,
    /// What it is about: `namespace/name` of a ServiceAccount or binding, a role or
    /// association ARN, an add-on name.
    pub subject: String,
    pub message: String,
}

/// Who made an association, as far as its `ownerArn` and tags tell.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type", content = "detail")]
pub enum Owner {
    /// An EKS add-on (its ARN): only the add-on may change it.
    Addon(String),
    /// Tagged by eksctl.
    Eksctl,
    /// Tagged by Terraform.
    Terraform,
    /// Tagged by this operator for a binding that does not exist (any more).
    ThisOperator,
    Unknown,
}

impl Owner {
    /// The owner of an association.
    pub fn of(a: &Association) -> Owner {
        if let Some(arn) = &a.owner_arn {
            return Owner::Addon(arn.clone());
        }
        let tagged = |pred: &dyn Fn(&str, &str) -> bool| a.tags.iter().any(|(k, v)| pred(k, v));
        if tagged(&|k, _| k.starts_with("alpha.eksctl.io/") || k.starts_with("eksctl.")) {
            Owner::Eksctl
        } else if tagged(&|k, v| {
            k.to_ascii_lowercase().contains("terraform") || v.eq_ignore_ascii_case("terraform")
        }) {
            Owner::Terraform
        } else if naming::has_ownership_tags(&a.tags) {
            Owner::ThisOperator
        } else {
            Owner::Unknown
        }
    }

    /// The add-on's name, from an add-on ARN (`arn:...:addon/<cluster>/<name>/<uuid>`).
    pub fn addon_name(&self) -> Option<&str> {
        match self {
            Owner::Addon(arn) => arn.split('/').nth(2),
            _ => None,
        }
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Owner::Addon(arn) => write!(
                f,
                "EKS add-on {}",
                self.addon_name().unwrap_or(arn.as_str())
            ),
            Owner::Eksctl => f.write_str("eksctl (tags)"),
            Owner::Terraform => f.write_str("Terraform (tags)"),
            Owner::ThisOperator => f.write_str("this operator, for a binding that is gone"),
            Owner::Unknown => f.write_str("unknown (made by hand or untagged)"),
        }
    }
}

/// A ServiceAccount and its IRSA annotation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IrsaServiceAccount {
    pub namespace: String,
    pub name: String,
    pub role_arn: String,
    pub labels: BTreeMap<String, String>,
}

/// Everything [`findings`] and `migrate` work from.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    pub cluster_name: String,
    pub cluster_arn: String,
    pub account_id: String,
    pub bindings: Vec<PodIdentityBinding>,
    pub irsa_service_accounts: Vec<IrsaServiceAccount>,
    /// Every association of the cluster, described.
    pub associations: Vec<Association>,
    /// The cluster's add-ons, described.
    pub addons: Vec<Addon>,
    /// Roles under the operator's path for this cluster, with their tags.
    pub operator_path_roles: Vec<Role>,
    /// The roles the associations and IRSA annotations name, by ARN, as GetRole
    /// describes them (`None`: it does not exist; absent: not readable here, such as a
    /// role of another account).
    pub roles: BTreeMap<String, Option<Role>>,
    /// Whether `kube-system/eks-pod-identity-agent` exists as a DaemonSet.
    pub agent_daemonset: bool,
}

impl Observed {
    /// The association of one ServiceAccount, if any.
    pub fn association_for(&self, namespace: &str, service_account: &str) -> Option<&Association> {
        self.associations
            .iter()
            .find(|a| a.namespace == namespace && a.service_account == service_account)
    }

    /// The binding that manages an association: its status names the association, or
    /// the association carries its ownership tags.
    pub fn managing_binding(&self, a: &Association) -> Option<&PodIdentityBinding> {
        self.bindings.iter().find(|b| {
            let ns = b.namespace().unwrap_or_default();
            b.status.as_ref().and_then(|s| s.association_id.as_deref())
                == Some(a.association_id.as_str())
                || naming::owned_by(&a.tags, &self.cluster_arn, &ns, &b.name_any())
        })
    }

    /// The binding naming this ServiceAccount, if any.
    pub fn binding_for(
        &self,
        namespace: &str,
        service_account: &str,
    ) -> Option<&PodIdentityBinding> {
        self.bindings.iter().find(|b| {
            b.namespace().as_deref() == Some(namespace)
                && b.service_account_name() == service_account
        })
    }

    /// The add-on of this name, if the cluster has it.
    pub fn addon(&self, name: &str) -> Option<&Addon> {
        self.addons.iter().find(|a| a.name == name)
    }

    /// The role behind an ARN as observed: `Some(Some(role))` read, `Some(None)` does
    /// not exist, `None` not read.
    pub fn role(&self, arn: &str) -> Option<Option<&Role>> {
        self.roles.get(arn).map(Option::as_ref)
    }
}

/// Which ServiceAccounts to look at.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    pub namespace: Option<String>,
    /// A label selector, as `kubectl -l` takes it.
    pub selector: Option<String>,
}

/// Reads everything the audit needs; only reads.
pub async fn observe(
    client: &Client,
    iam: &dyn IamApi,
    eks: &dyn EksApi,
    cluster_name: &str,
    selection: &Selection,
) -> Result<Observed> {
    let cluster = eks
        .describe_cluster(cluster_name)
        .await?
        .ok_or_else(|| Error::AwsAnswer {
            operation: "DescribeCluster".into(),
            message: format!("no EKS cluster named {cluster_name} in this account and region"),
        })?;
    let bindings: Api<PodIdentityBinding> = Api::all(client.clone());
    let bindings = bindings.list(&ListParams::default()).await?.items;

    let sas: Api<ServiceAccount> = match &selection.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let mut params = ListParams::default();
    if let Some(sel) = &selection.selector {
        params = params.labels(sel);
    }
    let irsa_service_accounts: Vec<IrsaServiceAccount> = sas
        .list(&params)
        .await?
        .items
        .into_iter()
        .filter_map(|sa| {
            let role_arn = sa
                .annotations()
                .get(IRSA_ROLE_ANNOTATION)?
                .trim()
                .to_owned();
            Some(IrsaServiceAccount {
                namespace: sa.namespace().unwrap_or_default(),
                name: sa.name_any(),
                role_arn,
                labels: sa.labels().clone(),
            })
        })
        .collect();

    let daemonsets: Api<DaemonSet> = Api::namespaced(client.clone(), AGENT_NAMESPACE);
    let agent_daemonset = match daemonsets.get_opt(AGENT_NAME).await {
        Ok(found) => found.is_some(),
        // A server without DaemonSets, or a caller not allowed to read them, shows
        // none; the add-on may still run the agent.
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 403 => false,
        Err(e) => return Err(e.into()),
    };

    let mut associations = Vec::new();
    for row in eks
        .list_pod_identity_associations(cluster_name, None, None)
        .await?
    {
        if let Some(a) = eks
            .describe_pod_identity_association(cluster_name, &row.association_id)
            .await?
        {
            associations.push(a);
        }
    }

    let mut addons = Vec::new();
    for name in eks.list_addons(cluster_name).await? {
        if let Some(a) = eks.describe_addon(cluster_name, &name).await? {
            addons.push(a);
        }
    }

    let mut operator_path_roles = iam.list_roles(&naming::role_path(cluster_name)).await?;
    for role in &mut operator_path_roles {
        role.tags = iam.list_role_tags(&role.name).await?;
    }

    let wanted: BTreeSet<String> = associations
        .iter()
        .map(|a| a.role_arn.clone())
        .chain(irsa_service_accounts.iter().map(|s| s.role_arn.clone()))
        .chain(
            addons
                .iter()
                .filter_map(|a| a.service_account_role_arn.clone()),
        )
        .collect();
    let mut roles = BTreeMap::new();
    for arn in wanted {
        let Some(parsed) = naming::parse_role_arn(&arn) else {
            continue;
        };
        if parsed.account_id != cluster.account_id {
            continue;
        }
        let role = iam.get_role(&parsed.name).await?;
        // A role of that name on another path is not the role the ARN names.
        roles.insert(arn.clone(), role.filter(|r| r.arn == arn));
    }

    Ok(Observed {
        cluster_name: cluster_name.to_owned(),
        cluster_arn: cluster.arn,
        account_id: cluster.account_id,
        bindings,
        irsa_service_accounts,
        associations,
        addons,
        operator_path_roles,
        roles,
        agent_daemonset,
    })
}

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
    let mut out = Vec::new();
    let mut push = |severity, kind, subject: String, message: String| {
        out.push(Finding {
            severity,
            kind,
            subject,
            message,
        })
    };

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
        push(
            severity,
            Kind::UnmanagedAssociation,
            a.association_arn.clone(),
            format!(
                "association of {sa} to {} is managed by no binding; made by {owner}; {what_to_do}",
                a.role_arn
            ),
        );
    }

    for sa in &o.irsa_service_accounts {
        let subject = format!("{}/{}", sa.namespace, sa.name);
        let addon_managed = o
            .addons
            .iter()
            .find(|ad| ad.service_account_role_arn.as_deref() == Some(sa.role_arn.as_str()));
        push(
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
            Some(None) => push(
                Severity::Error,
                Kind::IrsaRoleWithoutPodIdentityTrust,
                subject.clone(),
                format!("the IRSA role {} does not exist", sa.role_arn),
            ),
            Some(Some(role)) if !trust_admits_pod_identity(&role.assume_role_policy) => push(
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
            push(
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

    for ad in &o.addons {
        if let Some(role) = &ad.service_account_role_arn {
            let sa = o
                .irsa_service_accounts
                .iter()
                .find(|s| &s.role_arn == role)
                .map_or("<its ServiceAccount>".to_owned(), |s| s.name.clone());
            push(
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
            push(
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
            push(
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

    for b in &o.bindings {
        let subject = format!("{}/{}", b.namespace().unwrap_or_default(), b.name_any());
        let ready = b
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"));
        match ready {
            Some(c) if c.status == "True" => {}
            Some(c) => push(
                if c.status == "False" {
                    Severity::Error
                } else {
                    Severity::Warning
                },
                Kind::BindingNotReady,
                subject,
                format!("Ready={} {}: {}", c.status, c.reason, c.message),
            ),
            None => push(
                Severity::Warning,
                Kind::BindingNotReady,
                subject,
                "no Ready condition yet: the operator has not reconciled it (is it running?)"
                    .into(),
            ),
        }
    }

    let associated: BTreeSet<&str> = o.associations.iter().map(|a| a.role_arn.as_str()).collect();
    for arn in associated {
        if let Some(Some(role)) = o.role(arn) {
            let n = unscoped_pod_identity_statements(&role.assume_role_policy);
            if n > 0 {
                push(
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

    match o.addon(AGENT_NAME) {
        Some(ad) if ad.status.as_deref() == Some("ACTIVE") => {}
        Some(ad) => push(
            Severity::Error,
            Kind::PodIdentityAgentMissing,
            AGENT_NAME.into(),
            format!(
                "the {AGENT_NAME} add-on is {}: pods may get no Pod Identity credentials",
                ad.status.as_deref().unwrap_or("in an unknown state")
            ),
        ),
        None if o.agent_daemonset => {}
        None => push(
            Severity::Error,
            Kind::PodIdentityAgentMissing,
            AGENT_NAME.into(),
            format!(
                "neither the {AGENT_NAME} add-on nor a DaemonSet {AGENT_NAMESPACE}/{AGENT_NAME} runs the EKS Pod Identity Agent: associations give pods no credentials (aws eks create-addon --cluster-name {} --addon-name {AGENT_NAME})",
                o.cluster_name
            ),
        ),
    }

    out.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(a.kind.cmp(&b.kind))
            .then(a.subject.cmp(&b.subject))
    });
    out
}

fn tag_pair(tags: &Tags) -> (String, String) {
    (
        tags.get(naming::TAG_NAMESPACE).cloned().unwrap_or_default(),
        tags.get(naming::TAG_NAME).cloned().unwrap_or_default(),
    )
}

/// The audit's answer for scripts (`-o json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub cluster: String,
    pub findings: Vec<Finding>,
}

impl Report {
    /// True when a finding is at or above `fail_on`.
    pub fn fails(&self, fail_on: Severity) -> bool {
        self.findings.iter().any(|f| f.severity >= fail_on)
    }
}

/// Rows as an aligned text table with a header.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut s = String::new();
        for (i, c) in cells.into_iter().enumerate() {
            if i == last {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        s.trim_end().to_owned() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out += &line(row.iter().map(String::as_str).collect());
    }
    out
}

/// The report for people: one row per finding, and a count per severity.
pub fn render_table(report: &Report) -> String {
    if report.findings.is_empty() {
        return format!("cluster {}: no findings\n", report.cluster);
    }
    let rows: Vec<Vec<String>> = report
        .findings
        .iter()
        .map(|f| {
            vec![
                f.severity.to_string().to_uppercase(),
                format!("{:?}", f.kind),
                f.subject.clone(),
                f.message.clone(),
            ]
        })
        .collect();
    let count = |s| report.findings.iter().filter(|f| f.severity == s).count();
    format!(
        "{}\ncluster {}: {} error(s), {} warning(s), {} info\n",
        table(&["SEVERITY", "KIND", "SUBJECT", "MESSAGE"], &rows),
        report.cluster,
        count(Severity::Error),
        count(Severity::Warning),
        count(Severity::Info)
    )
}

/// Observes and reports.
pub async fn audit(
    client: &Client,
    iam: &dyn IamApi,
    eks: &dyn EksApi,
    cluster_name: &str,
) -> Result<Report> {
    let o = observe(client, iam, eks, cluster_name, &Selection::default()).await?;
    Ok(Report {
        cluster: cluster_name.to_owned(),
        findings: findings(&o),
    })
}

/// The clients of a [`Connection`]: Kubernetes, IAM and EKS through the SDK.
pub struct Clients {
    pub kube: Client,
    pub iam: crate::aws::iam::SdkIam,
    pub eks: crate::aws::eks::SdkEks,
}

impl Clients {
    /// The clients the connection flags of `audit` and `migrate` name.
    pub async fn connect(connection: &Connection) -> Result<Clients> {
        use crate::aws::config::{AwsSettings, load_sdk_config};
        // kube's TLS needs a process-wide rustls provider; one already installed is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let sdk = load_sdk_config(&AwsSettings {
            region: connection.region.clone(),
            endpoint_url: connection.aws_endpoint_url.clone(),
            ..AwsSettings::default()
        })
        .await?;
        Ok(Clients {
            kube: Client::try_default().await?,
            iam: crate::aws::iam::SdkIam::new(&sdk),
            eks: crate::aws::eks::SdkEks::new(&sdk),
        })
    }
}

/// Runs `audit`: prints the report and returns whether it fails `fail_on`.
pub async fn run(connection: &Connection, output: Output, fail_on: Severity) -> Result<bool> {
    let c = Clients::connect(connection).await?;
    let report = audit(&c.kube, &c.iam, &c.eks, &connection.cluster_name).await?;
    match output {
        Output::Table => print!("{}", render_table(&report)),
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(report.fails(fail_on))
}

#[cfg(test)]
mod tests;
