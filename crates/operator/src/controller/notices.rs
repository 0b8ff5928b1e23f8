//! Warnings a full pass finds beside the binding's AWS state, which `Ready` does not
//! depend on: the Pod Identity Agent not running, an IRSA annotation on the binding's
//! ServiceAccount, and running pods still holding credentials of the role the
//! association left. They go to `status.warnings`; a newly raised one is also a Warning
//! Event (see [`super::report::write_status`]).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use tokio::time::Instant;

use crate::crd::StatusWarning;
use crate::{Error, Result};

/// Where EKS and self-managed installs run the agent: the EKS add-on
/// `eks-pod-identity-agent` installs a DaemonSet of that name in `kube-system` too.
pub const AGENT_NAMESPACE: &str = "kube-system";
pub const AGENT_NAME: &str = "eks-pod-identity-agent";
/// The annotation IRSA reads.
pub const IRSA_ANNOTATION: &str = "eks.amazonaws.com/role-arn";

pub const AGENT_MISSING: &str = "PodIdentityAgentMissing";
pub const IRSA_AND_POD_IDENTITY: &str = "IrsaAnnotation";
pub const OLD_ROLE_CREDENTIALS: &str = "PodsHoldOldRoleCredentials";

/// The last answer to "does the agent run", shared by all passes and asked again once
/// it is older than the resync interval.
#[derive(Default)]
pub struct AgentCheck {
    last: tokio::sync::Mutex<Option<(Instant, Option<bool>)>>,
}

impl AgentCheck {
    /// Whether the agent's DaemonSet exists; `None` when the API server did not say
    /// (the operator may not read it, or the request failed).
    pub async fn running(&self, client: &kube::Client, max_age: Duration) -> Option<bool> {
        let mut last = self.last.lock().await;
        if let Some((at, answer)) = *last
            && at.elapsed() < max_age
        {
            return answer;
        }
        let daemonsets: Api<DaemonSet> = Api::namespaced(client.clone(), AGENT_NAMESPACE);
        let answer = match daemonsets.get_opt(AGENT_NAME).await {
            Ok(found) => Some(found.is_some()),
            Err(e) => {
                tracing::warn!(error = %e, "cannot tell whether the EKS Pod Identity Agent runs");
                None
            }
        };
        *last = Some((Instant::now(), answer));
        answer
    }
}

pub fn agent_missing() -> StatusWarning {
    StatusWarning {
        reason: AGENT_MISSING.into(),
        message: format!(
            "no DaemonSet {AGENT_NAMESPACE}/{AGENT_NAME} runs the EKS Pod Identity Agent, so pods get no credentials from the association; install the {AGENT_NAME} add-on (aws eks create-addon --addon-name {AGENT_NAME} --cluster-name <cluster>)"
        ),
        since: None,
    }
}

/// The warning for an IRSA annotation on the binding's ServiceAccount.
pub fn irsa(
    namespace: &str,
    service_account: &str,
    annotations: &BTreeMap<String, String>,
) -> Option<StatusWarning> {
    let irsa_role = annotations.get(IRSA_ANNOTATION)?;
    Some(StatusWarning {
        reason: IRSA_AND_POD_IDENTITY.into(),
        message: format!(
            "ServiceAccount {namespace}/{service_account} also carries the IRSA annotation {IRSA_ANNOTATION}: {irsa_role}; the AWS SDKs' default credential chain reads IRSA's web identity token before the Pod Identity container credentials, so pods use {irsa_role}, not this binding's role: remove the annotation once the binding is Ready"
        ),
        since: None,
    })
}

/// Pods of `service_account` in `namespace` created before `since`: they started with
/// credentials of the role the association had then.
pub async fn pods_started_before(
    client: &kube::Client,
    namespace: &str,
    service_account: &str,
    since: DateTime<Utc>,
) -> Result<Vec<String>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let mut names: Vec<String> = pods
        .list(&ListParams::default())
        .await
        .map_err(Error::Kube)?
        .items
        .into_iter()
        .filter(|p| {
            let spec = p.spec.as_ref();
            let sa = spec
                .and_then(|s| s.service_account_name.as_deref())
                .unwrap_or("default");
            sa == service_account
                && p.metadata
                    .creation_timestamp
                    .as_ref()
                    .is_some_and(|t| t.0.as_millisecond() < since.timestamp_millis())
        })
        .filter_map(|p| p.metadata.name)
        .collect();
    names.sort();
    Ok(names)
}

/// The warning for pods that keep the credentials of `from` after the association moved
/// to `to` at `since`.
pub fn old_role_credentials(
    namespace: &str,
    service_account: &str,
    from: &str,
    to: &str,
    pods: &[String],
    since: DateTime<Utc>,
) -> StatusWarning {
    StatusWarning {
        reason: OLD_ROLE_CREDENTIALS.into(),
        message: format!(
            "the association of ServiceAccount {namespace}/{service_account} moved from role {from} to {to}; {} running pod(s) of it ({}) keep credentials of {from} until they refresh them (the agent caches credentials for hours): roll them, e.g. kubectl rollout restart deployment -n {namespace} <name>",
            pods.len(),
            pods.join(", ")
        ),
        since: Some(since.to_rfc3339_opts(SecondsFormat::Secs, true)),
    }
}

/// When a warning of the old status says the association moved: its `since`.
pub fn moved_at(old: &[StatusWarning]) -> Option<(DateTime<Utc>, &StatusWarning)> {
    old.iter()
        .filter(|w| w.reason == OLD_ROLE_CREDENTIALS)
        .find_map(|w| {
            let at = DateTime::parse_from_rfc3339(w.since.as_deref()?).ok()?;
            Some((at.with_timezone(&Utc), w))
        })
}

/// The roles named in an [`old_role_credentials`] message, read back.
pub fn moved_roles(w: &StatusWarning) -> Option<(String, String)> {
    let rest = w.message.split(" moved from role ").nth(1)?;
    let (from, rest) = rest.split_once(" to ")?;
    let to = rest.split(';').next()?;
    Some((from.to_owned(), to.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn irsa_warning_only_with_the_annotation_and_names_the_role() {
        assert_eq!(irsa("ns", "sa", &BTreeMap::new()), None);
        let w = irsa(
            "ns",
            "sa",
            &BTreeMap::from([(
                IRSA_ANNOTATION.to_owned(),
                "arn:aws:iam::1:role/r".to_owned(),
            )]),
        )
        .expect("a warning");
        assert_eq!(w.reason, IRSA_AND_POD_IDENTITY);
        assert!(w.message.contains("ns/sa") && w.message.contains("arn:aws:iam::1:role/r"));
    }

    #[test]
    fn a_moved_association_warning_reads_back_its_time_and_roles() {
        let at = DateTime::parse_from_rfc3339("2026-12-05T08:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let w = old_role_credentials("ns", "sa", "arn:a", "arn:b", &["p1".into()], at);
        assert!(w.message.contains("1 running pod(s) of it (p1)"));
        let old = [w.clone()];
        let (since, found) = moved_at(&old).expect("moved");
        assert_eq!(since, at);
        assert_eq!(
            moved_roles(found),
            Some(("arn:a".to_owned(), "arn:b".to_owned()))
        );
        assert_eq!(moved_at(&[agent_missing()]), None);
    }
}
