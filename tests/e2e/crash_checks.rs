//! What the crash-safety run checks after convergence, written out independently of
//! the operator.

use super::*;

/// What a live binding of the crash-safety run last asked for.
#[derive(Clone, Debug)]
pub(super) struct CrashSpec {
    /// Sorted.
    pub(super) managed: Vec<String>,
    pub(super) description: Option<String>,
    /// The binding's one inline policy, `read`.
    pub(super) inline: serde_json::Value,
}

/// The trust policy the managed role of binding `name` (its ServiceAccount of the same
/// name, session tags on) must hold, written out here from the EKS user guide's
/// "pod-id-role" page and the design's scoped trust, not taken from the operator:
/// `pods.eks.amazonaws.com` may `sts:AssumeRole` and `sts:TagSession` only with the
/// session tags EKS sets for that cluster, namespace and ServiceAccount, from the
/// cluster's account.
pub(super) fn crash_trust_policy(cluster_arn: &str, name: &str) -> serde_json::Value {
    json!({"Version": "2012-10-17", "Statement": [{
        "Sid": "AllowEksAuthToAssumeRoleForPodIdentity",
        "Effect": "Allow",
        "Principal": {"Service": "pods.eks.amazonaws.com"},
        "Action": ["sts:AssumeRole", "sts:TagSession"],
        "Condition": {"StringEquals": {
            "aws:SourceAccount": ACCOUNT_ID,
            "aws:RequestTag/eks-cluster-arn": cluster_arn,
            "aws:RequestTag/kubernetes-namespace": NS,
            "aws:RequestTag/kubernetes-service-account": name,
        }},
    }]})
}

/// The ownership tags of binding `name` of the crash-safety run's cluster, written out.
pub(super) fn crash_ownership_tags(
    cluster: &str,
    cluster_arn: &str,
    name: &str,
) -> BTreeMap<String, String> {
    [
        ("podidentity.dev/cluster", cluster),
        ("podidentity.dev/cluster-arn", cluster_arn),
        ("podidentity.dev/namespace", NS),
        ("podidentity.dev/name", name),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// The resourceVersions of the run's bindings and ServiceAccounts, and of the Events
/// about them: any Kubernetes write to them changes this.
pub(super) async fn crash_kube_versions(client: &kube::Client) -> BTreeMap<String, String> {
    use k8s_openapi::api::core::v1::ServiceAccount;
    use k8s_openapi::api::events::v1::Event;
    let rv = |kind: &str, m: &kube::api::ObjectMeta| {
        (
            format!("{kind}/{}", m.name.clone().unwrap_or_default()),
            m.resource_version.clone().unwrap_or_default(),
        )
    };
    let mut versions = BTreeMap::new();
    let bindings: Api<PodIdentityBinding> = Api::namespaced(client.clone(), NS);
    for b in bindings
        .list(&Default::default())
        .await
        .expect("list")
        .items
    {
        versions.extend([rv("binding", &b.metadata)]);
    }
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), NS);
    for sa in sas.list(&Default::default()).await.expect("list SAs").items {
        if sa
            .metadata
            .name
            .as_deref()
            .is_some_and(|n| n.starts_with("crash-"))
        {
            versions.extend([rv("serviceaccount", &sa.metadata)]);
        }
    }
    let events: Api<Event> = Api::namespaced(client.clone(), NS);
    for e in events
        .list(&Default::default())
        .await
        .expect("list events")
        .items
    {
        let about = e.regarding.as_ref().and_then(|r| r.kind.as_deref());
        if matches!(about, Some("PodIdentityBinding" | "ServiceAccount")) {
            versions.extend([rv("event", &e.metadata)]);
        }
    }
    versions
}

/// How EKS refused the operator's association creations during a crash-safety run, read
/// from the operator's log (its `write failed` lines).
#[derive(Debug, Default)]
pub(super) struct CrashEksAnswers {
    /// The role not yet visible to EKS: its propagation window.
    pub(super) propagating: usize,
    /// A created-again binding's ServiceAccount still held by the association its
    /// predecessor deleted: the release window.
    pub(super) released: usize,
    /// Any other `ResourceInUseException`: an association already there.
    pub(super) in_use: usize,
}

/// Counts [`CrashEksAnswers`] in `log`. `recreated` holds when each created-again binding
/// was created (its predecessor gone by then) and `associations` each live binding's
/// association id: a refusal naming another association, after the binding was created
/// again, names the predecessor's deleted one.
pub(super) fn crash_eks_answers(
    log: &str,
    recreated: &BTreeMap<String, chrono::DateTime<chrono::Utc>>,
    associations: &BTreeMap<String, String>,
) -> CrashEksAnswers {
    let mut answers = CrashEksAnswers::default();
    for line in log.lines() {
        let Ok(entry) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if entry["message"] != "write failed" {
            continue;
        }
        let error = entry["error"].as_str().unwrap_or_default();
        let binding = entry["binding"].as_str().unwrap_or_default();
        if error.contains("Role provided in the request does not exist") {
            answers.propagating += 1;
        } else if error.contains("ResourceInUseException") {
            let named = error
                .split("Association already exists: ")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next());
            let at = entry["timestamp"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
            let after_recreate = recreated
                .get(binding)
                .zip(at)
                .is_some_and(|(created, at)| at > *created);
            if after_recreate
                && named.is_some()
                && named != associations.get(binding).map(String::as_str)
            {
                answers.released += 1;
            } else {
                answers.in_use += 1;
            }
        }
    }
    answers
}
