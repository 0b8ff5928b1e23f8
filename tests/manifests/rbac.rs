//! RBAC: the ClusterRole and the leader-election Role grant exactly what the controller
//! uses, and every write the controller makes against kubesim and the AWS simulator while
//! a binding is created, moved to another ServiceAccount and deleted is one RBAC grants
//! (and every AWS call one the IAM policy allows).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use k8s_openapi::api::rbac::v1::ClusterRole;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use pod_identity_operator::aws::sim::{AwsSim, SimConfig};
use pod_identity_operator::controller::{self, Context, Settings};
use pod_identity_operator::crd::PodIdentityBinding;
use pod_identity_operator::kubesim::{KubeSim, Verb};
use serde_json::{Value, json};

use crate::files::{find, kustomize, only, read};
use crate::{NAMESPACE, allows, aws_apis, eks_resource, iam_policy};

/// What the ClusterRole grants, as (API group, resource, verbs). The controller's reads
/// are here by reading `crates/operator/src/controller/` (bindings: list/watch by the controller, list
/// in observe; ServiceAccounts: get in observe, list/watch by the watch that maps them
/// to bindings; `get` on bindings adds nothing `list` does not already read); its writes
/// are also checked by running it (`controller_writes_only_what_rbac_grants...`).
const CLUSTER_RULES: &[(&str, &str, &[&str])] = &[
    (
        "podidentity.dev",
        "podidentitybindings",
        &["get", "list", "watch", "patch"],
    ),
    ("podidentity.dev", "podidentitybindings/status", &["patch"]),
    // ownerReferences with blockOwnerDeletion on the ServiceAccounts it creates need
    // update on the owner's finalizers under OwnerReferencesPermissionEnforcement.
    (
        "podidentity.dev",
        "podidentitybindings/finalizers",
        &["update"],
    ),
    (
        "",
        "serviceaccounts",
        &["get", "list", "watch", "create", "patch", "delete"],
    ),
    // Guardrail rules may select namespaces by label: the binding's namespace is read.
    ("", "namespaces", &["get"]),
    // Whether the Pod Identity Agent runs: kube-system/eks-pod-identity-agent only.
    ("apps", "daemonsets", &["get"]),
    // Pods of a ServiceAccount that keep an old role's credentials, counted.
    ("", "pods", &["list"]),
    // kube-runtime's Recorder writes events.k8s.io/v1 Events only.
    ("events.k8s.io", "events", &["create", "patch"]),
];

/// The leader-election Role (kube-lease-manager gets, creates and patches its Lease).
const LEASE_RULES: &[(&str, &str, &[&str])] = &[(
    "coordination.k8s.io",
    "leases",
    &["get", "create", "update", "patch"],
)];

/// (group, resource, verb) triples a list of RBAC rules grants.
fn grants(rules: &Value) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for rule in rules.as_array().expect("rules is a list") {
        let strs = |k: &str| -> Vec<String> {
            rule[k]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|s| s.as_str().unwrap_or("").to_owned())
                        .collect()
                })
                .unwrap_or_default()
        };
        for g in strs("apiGroups") {
            for r in strs("resources") {
                for v in strs("verbs") {
                    out.insert((g.clone(), r.clone(), v));
                }
            }
        }
    }
    out
}

fn expected_grants(rules: &[(&str, &str, &[&str])]) -> BTreeSet<(String, String, String)> {
    rules
        .iter()
        .flat_map(|(g, r, verbs)| {
            verbs
                .iter()
                .map(move |v| ((*g).to_owned(), (*r).to_owned(), (*v).to_owned()))
        })
        .collect()
}

#[test]
fn rbac_grants_exactly_what_the_controller_uses() {
    let objs = kustomize("default");
    let sa = find(&objs, "ServiceAccount", "pod-identity-operator");
    let subject = json!([{
        "kind": "ServiceAccount",
        "name": sa["metadata"]["name"],
        "namespace": NAMESPACE,
    }]);

    let cr = only(&objs, "ClusterRole");
    let text = cr["rules"].to_string();
    assert!(
        !text.contains('*'),
        "no wildcard in the ClusterRole: {text}"
    );
    assert!(!text.contains("nonResourceURLs"));
    // resourceNames only where the controller reads one object by name.
    for rule in cr["rules"].as_array().expect("rules") {
        if let Some(names) = rule.get("resourceNames") {
            assert_eq!(rule["resources"], json!(["daemonsets"]), "{rule}");
            assert_eq!(names, &json!(["eks-pod-identity-agent"]), "{rule}");
            assert_eq!(rule["verbs"], json!(["get"]), "{rule}");
        }
    }
    assert_eq!(
        grants(&cr["rules"]),
        expected_grants(CLUSTER_RULES),
        "ClusterRole rules"
    );
    let crb = only(&objs, "ClusterRoleBinding");
    assert_eq!(crb["roleRef"]["kind"], "ClusterRole");
    assert_eq!(crb["roleRef"]["name"], cr["metadata"]["name"]);
    assert_eq!(crb["subjects"], subject);

    let role = only(&objs, "Role");
    assert_eq!(role["metadata"]["namespace"], NAMESPACE);
    assert!(!role["rules"].to_string().contains('*'));
    assert_eq!(grants(&role["rules"]), expected_grants(LEASE_RULES));
    let rb = only(&objs, "RoleBinding");
    assert_eq!(rb["metadata"]["namespace"], NAMESPACE);
    assert_eq!(rb["roleRef"]["kind"], "Role");
    assert_eq!(rb["roleRef"]["name"], role["metadata"]["name"]);
    assert_eq!(rb["subjects"], subject);
}

/// Polls `check` for up to a minute; false when it never held.
async fn wait_for<F, Fut>(what: &str, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !check().await {
        if tokio::time::Instant::now() >= deadline {
            eprintln!("timed out waiting for {what}");
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

fn ready(b: &PodIdentityBinding) -> bool {
    b.status.as_ref().is_some_and(|s| {
        s.observed_generation == b.metadata.generation
            && s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

/// RBAC's name of a kubesim write counter's resource: (group, resource[/sub]).
fn rbac_resource(counted: &str) -> (String, String) {
    let (gr, sub) = match counted.split_once('/') {
        Some((gr, sub)) => (gr, Some(sub)),
        None => (counted, None),
    };
    let (resource, group) = gr.split_once('.').unwrap_or((gr, ""));
    let resource = match sub {
        Some(s) => format!("{resource}/{s}"),
        None => resource.to_owned(),
    };
    (group.to_owned(), resource)
}

fn rbac_verb(v: Verb) -> &'static str {
    match v {
        Verb::Create => "create",
        Verb::Update => "update",
        Verb::Patch => "patch",
        Verb::Delete => "delete",
        Verb::DeleteCollection => "deletecollection",
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_writes_only_what_rbac_grants_and_calls_only_what_iam_allows() {
    let sim = KubeSim::new();
    let client = sim.client();
    let crd: CustomResourceDefinition =
        serde_yaml::from_str(&read("crds/podidentitybindings.yaml")).expect("CRD parses");
    Api::<CustomResourceDefinition>::all(client.clone())
        .create(&PostParams::default(), &crd)
        .await
        .expect("CRD installs");
    let aws = Arc::new(AwsSim::new(SimConfig::default()));
    aws.add_cluster("prod");
    // The controller's requests are authorized by the shipped ClusterRole only.
    let role: ClusterRole =
        serde_yaml::from_str(&read("config/rbac/cluster_role.yaml")).expect("ClusterRole parses");
    let operator = sim.client_with_rules(
        "system:serviceaccount:pod-identity-system:pod-identity-operator",
        role.rules.unwrap_or_default(),
    );
    let forbidden = Api::<ConfigMap>::namespaced(operator.clone(), "default")
        .list(&ListParams::default())
        .await
        .expect_err("ConfigMaps are not granted");
    assert!(
        matches!(forbidden, kube::Error::Api(ref s) if s.code == 403),
        "{forbidden:?}"
    );
    let mut settings = Settings::new("prod");
    settings.guardrails = Arc::new(pod_identity_operator::guardrails::GuardrailSource::fixed(
        pod_identity_operator::guardrails::GuardrailConfig::parse(&read(
            "tests/e2e-guardrails.yaml",
        ))
        .expect("tests/e2e-guardrails.yaml"),
    ));
    let ctx = Context::new(operator, aws.clone(), aws.clone(), settings);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(controller::run(ctx, async {
        let _ = stopped.await;
    }));
    sim.reset_write_counts();

    // The test's own writes, subtracted below.
    let bindings: Api<PodIdentityBinding> = Api::namespaced(client.clone(), "default");
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    let binding: PodIdentityBinding = serde_json::from_value(json!({
        "apiVersion": "podidentity.dev/v1alpha1",
        "kind": "PodIdentityBinding",
        "metadata": {"name": "app", "namespace": "default"},
        "spec": {
            "serviceAccount": {"name": "app-v1", "labels": {"team": "a"}},
            "role": {
                "managedPolicyArns": ["arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"],
                "inlinePolicies": {"queue": {
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": "*"}]
                }}
            },
            "tags": {"team": "a"}
        }
    }))
    .expect("binding");
    bindings
        .create(&PostParams::default(), &binding)
        .await
        .expect("binding created");
    let became_ready = wait_for("the binding to be Ready", || async {
        bindings.get("app").await.is_ok_and(|b| ready(&b))
    })
    .await;
    assert!(
        became_ready,
        "the binding never became Ready: {:?}",
        bindings.get("app").await.map(|b| b.status)
    );
    let role_arn = bindings
        .get("app")
        .await
        .expect("binding")
        .status
        .and_then(|s| s.role_arn)
        .expect("roleArn reported");
    assert!(sas.get_opt("app-v1").await.expect("get").is_some());

    // Another ServiceAccount: the association moves, the old ServiceAccount goes.
    bindings
        .patch(
            "app",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"serviceAccount": {"name": "app-v2"}}})),
        )
        .await
        .expect("spec patched");
    let moved = wait_for("the binding to move to app-v2", || async {
        let moved = bindings.get("app").await.is_ok_and(|b| {
            ready(&b)
                && b.status
                    .and_then(|s| s.service_account)
                    .is_some_and(|s| s.name == "app-v2")
        });
        moved && sas.get_opt("app-v1").await.is_ok_and(|s| s.is_none())
    })
    .await;
    assert!(
        moved,
        "the binding did not move to app-v2: {:?}",
        bindings.get("app").await.map(|b| b.status)
    );

    bindings
        .delete("app", &DeleteParams::default())
        .await
        .expect("delete requested");
    let gone = wait_for("the binding to be gone", || async {
        bindings.get_opt("app").await.is_ok_and(|b| b.is_none())
    })
    .await;
    assert!(
        gone,
        "the binding was not removed: {:?}",
        bindings.get("app").await
    );
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .expect("the controller stops")
        .expect("the controller does not panic");

    // Kubernetes writes, minus the test's own (create, one spec patch, delete).
    let mine: BTreeMap<(String, Verb), u64> = BTreeMap::from([
        (
            ("podidentitybindings.podidentity.dev".into(), Verb::Create),
            1,
        ),
        (
            ("podidentitybindings.podidentity.dev".into(), Verb::Patch),
            1,
        ),
        (
            ("podidentitybindings.podidentity.dev".into(), Verb::Delete),
            1,
        ),
    ]);
    let granted: BTreeSet<_> = expected_grants(CLUSTER_RULES)
        .union(&expected_grants(LEASE_RULES))
        .cloned()
        .collect();
    assert_eq!(
        granted,
        grants(&only(&kustomize("default"), "ClusterRole")["rules"])
            .union(&grants(&only(&kustomize("default"), "Role")["rules"]))
            .cloned()
            .collect(),
        "CLUSTER_RULES and LEASE_RULES are what config/rbac grants"
    );
    let mut used = BTreeSet::new();
    for (resource, verb, n) in sim.write_counts().iter() {
        let n = n - mine.get(&(resource.to_owned(), verb)).copied().unwrap_or(0);
        if n == 0 {
            continue;
        }
        let (group, res) = rbac_resource(resource);
        let triple = (group, res, rbac_verb(verb).to_owned());
        assert!(
            granted.contains(&triple),
            "the controller made {n} {verb:?} writes to {resource}, which RBAC does not grant"
        );
        used.insert(triple);
    }
    // The lifecycle did exercise the writes that matter.
    for (g, r, v) in [
        ("", "serviceaccounts", "create"),
        ("", "serviceaccounts", "delete"),
        ("podidentity.dev", "podidentitybindings", "patch"),
        ("podidentity.dev", "podidentitybindings/status", "patch"),
        ("events.k8s.io", "events", "create"),
    ] {
        assert!(
            used.contains(&(g.into(), r.into(), v.into())),
            "the controller never made {v} on {g}/{r}: {used:?}"
        );
    }

    // AWS calls: each one the simulator saw is allowed by the operator's IAM policy, on
    // the role it made, which sits under the policy's path.
    let doc = iam_policy();
    let (iam_apis, eks_apis) = aws_apis();
    let cluster_arn = "arn:aws:eks:us-east-1:111122223333:cluster/prod";
    let assoc_arn =
        "arn:aws:eks:us-east-1:111122223333:podidentityassociation/prod/a-0123456789abcdefg";
    let calls = aws.knobs().calls();
    assert!(calls.get("CreateRole").is_some_and(|n| *n > 0), "{calls:?}");
    assert!(
        calls
            .get("CreatePodIdentityAssociation")
            .is_some_and(|n| *n > 0),
        "{calls:?}"
    );
    for (op, n) in &calls {
        if *n == 0 {
            continue;
        }
        let (action, resource) = if iam_apis.contains(op) {
            (format!("iam:{op}"), role_arn.as_str())
        } else if eks_apis.contains(op) {
            (
                format!("eks:{op}"),
                eks_resource(op, cluster_arn, assoc_arn),
            )
        } else {
            panic!("the simulator saw {op}, which no AWS trait method names");
        };
        assert!(
            allows(&doc, &action, resource, &[]),
            "the IAM policy does not allow {action} on {resource}"
        );
    }
}
