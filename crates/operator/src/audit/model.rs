//! What the audit reads and what it finds: the observation, the findings with their
//! severity, and the owner of a role or association.

use std::collections::BTreeMap;
use std::fmt;

use kube::ResourceExt;
use serde::{Deserialize, Serialize};

use crate::aws::{Addon, Association, Role};
use crate::crd::PodIdentityBinding;
use crate::naming;

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
