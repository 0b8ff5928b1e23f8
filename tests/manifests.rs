//! The deployable packaging: `config/` (kustomize bases, IAM policy, Argo CD and Flux
//! health checks) and the Dockerfile.
//!
//! Every kustomization is rendered with the real `kubectl kustomize` (kubectl must be
//! installed; the tests fail, never skip, without it). Checked: the objects each base
//! yields; the Deployment's security settings, probes and flags (against `run --help`);
//! the CRD base against `crds/`; RBAC against the requests the controller makes (a
//! static list of its reads, and every write it makes while a binding is created,
//! moved to another ServiceAccount and deleted against kubesim and the AWS simulator);
//! the IAM policy against every API the AWS traits map to and every call the simulator
//! saw; `default/` and `samples/` applied with `kubectl apply` to kubesim and to a real
//! kube-apiserver (`support/cluster.rs`) (client-side
//! from the rendered text, and server-side with `-k`); the Argo CD
//! Lua health check on sample statuses, and the Flux CEL expressions agreeing with it.

#[allow(dead_code)]
#[path = "support/kubectl.rs"]
mod kubectl;
use kubectl::kubectl_path;
#[path = "support/cluster.rs"]
mod cluster;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use k8s_openapi::api::rbac::v1::ClusterRole;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::discovery::Discovery;
use kube::{Client, ResourceExt};
use pod_identity_operator::aws::sim::{AwsSim, SimConfig};
use pod_identity_operator::controller::status::{self, Reason};
use pod_identity_operator::controller::{self, Context, Settings};
use pod_identity_operator::crd::PodIdentityBinding;
use pod_identity_operator::kubesim::{KubeSim, Verb};
use pod_identity_operator::policy::{self, DocumentKind};
use serde::Deserialize;
use serde_json::{Value, json};

const NAMESPACE: &str = "pod-identity-system";

/// What the ClusterRole grants, as (API group, resource, verbs). The controller's reads
/// are here by reading `src/controller/` (bindings: list/watch by the controller, list
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

// ---------------------------------------------------------------------------------
// helpers

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    let p = root().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

/// Parses a multi-document YAML stream into JSON values (empty documents dropped).
fn yaml_docs(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("bad YAML: {e}\n{text}")))
        .filter(|v| !v.is_null())
        .collect()
}

/// `kubectl kustomize config/<base>`, as text.
fn render_text(base: &str) -> String {
    let dir = root().join("config").join(base);
    let out = Command::new(kubectl_path())
        .arg("kustomize")
        .arg(&dir)
        .output()
        .unwrap_or_else(|e| panic!("running kubectl kustomize {}: {e}", dir.display()));
    assert!(
        out.status.success(),
        "kubectl kustomize {} failed:\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("kubectl prints UTF-8")
}

fn render(base: &str) -> Vec<Value> {
    yaml_docs(&render_text(base))
}

fn key(o: &Value) -> (String, String, String) {
    let s = |p: &str| {
        o.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    (s("/kind"), s("/metadata/namespace"), s("/metadata/name"))
}

fn find<'a>(objs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objs.iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| {
            panic!(
                "no {kind} {name} in {:?}",
                objs.iter().map(key).collect::<Vec<_>>()
            )
        })
}

fn only<'a>(objs: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = objs.iter().filter(|o| o["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "expected one {kind}");
    found[0]
}

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

/// Every value of `want` is in `got` (objects compared key by key, lists item by item).
fn contains(got: &Value, want: &Value) -> bool {
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => w
            .iter()
            .all(|(k, wv)| g.get(k).is_some_and(|gv| contains(gv, wv))),
        (Value::Array(g), Value::Array(w)) => {
            g.len() == w.len() && g.iter().zip(w).all(|(a, b)| contains(a, b))
        }
        (Value::Number(g), Value::Number(w)) => g.as_f64() == w.as_f64(),
        (g, w) => g == w,
    }
}

/// Equal as JSON values, numbers compared by value (kustomize writes `43200` where a
/// YAML parser may read `43200.0`).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| same(v, w))
        }
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (x, y) => x == y,
    }
}

// ---------------------------------------------------------------------------------
// kustomize bases

#[test]
fn every_kustomization_renders_the_expected_objects() {
    let found: BTreeSet<String> = std::fs::read_dir(root().join("config"))
        .expect("config/ exists")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("kustomization.yaml").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let expected: BTreeMap<&str, Vec<(&str, &str, &str)>> = BTreeMap::from([
        (
            "crd",
            vec![(
                "CustomResourceDefinition",
                "",
                "podidentitybindings.podidentity.dev",
            )],
        ),
        (
            "rbac",
            vec![
                ("ServiceAccount", "", "pod-identity-operator"),
                ("ClusterRole", "", "pod-identity-operator"),
                ("ClusterRoleBinding", "", "pod-identity-operator"),
                ("Role", "", "pod-identity-operator-leader-election"),
                ("RoleBinding", "", "pod-identity-operator-leader-election"),
            ],
        ),
        (
            "manager",
            vec![
                ("ConfigMap", "", "pod-identity-operator-config"),
                ("ConfigMap", "", "pod-identity-operator-guardrails"),
                ("Deployment", "", "pod-identity-operator"),
            ],
        ),
        (
            "default",
            vec![
                ("Namespace", "", NAMESPACE),
                (
                    "CustomResourceDefinition",
                    "",
                    "podidentitybindings.podidentity.dev",
                ),
                ("ServiceAccount", NAMESPACE, "pod-identity-operator"),
                ("ClusterRole", "", "pod-identity-operator"),
                ("ClusterRoleBinding", "", "pod-identity-operator"),
                ("Role", NAMESPACE, "pod-identity-operator-leader-election"),
                (
                    "RoleBinding",
                    NAMESPACE,
                    "pod-identity-operator-leader-election",
                ),
                ("ConfigMap", NAMESPACE, "pod-identity-operator-config"),
                ("ConfigMap", NAMESPACE, "pod-identity-operator-guardrails"),
                ("Deployment", NAMESPACE, "pod-identity-operator"),
            ],
        ),
        (
            "monitoring",
            vec![
                ("PodMonitor", NAMESPACE, "pod-identity-operator"),
                ("PrometheusRule", NAMESPACE, "pod-identity-operator"),
                ("ConfigMap", NAMESPACE, "pod-identity-operator-dashboard"),
            ],
        ),
        (
            "samples",
            vec![
                ("PodIdentityBinding", "default", "s3-reader"),
                ("PodIdentityBinding", "default", "orders-table"),
                ("PodIdentityBinding", "default", "legacy-app"),
            ],
        ),
    ]);
    assert_eq!(
        found,
        expected.keys().map(|k| (*k).to_owned()).collect(),
        "the kustomize bases under config/"
    );
    for (base, want) in &expected {
        let got: BTreeSet<_> = render(base).iter().map(key).collect();
        let want: BTreeSet<_> = want
            .iter()
            .map(|(k, ns, n)| ((*k).to_owned(), (*ns).to_owned(), (*n).to_owned()))
            .collect();
        assert_eq!(got, want, "objects of config/{base}");
    }
}

#[test]
fn crd_base_is_the_generated_crd() {
    let generated = yaml_docs(&read("crds/podidentitybindings.yaml"));
    assert_eq!(generated.len(), 1);
    let hint = "config/crd differs from crds/: run `cp crds/podidentitybindings.yaml config/crd/`";
    let copy = yaml_docs(&read("config/crd/podidentitybindings.yaml"));
    assert!(
        same(&Value::from(copy), &Value::from(generated.clone())),
        "{hint}"
    );
    let rendered = render("crd");
    assert!(
        same(&Value::from(rendered), &Value::from(generated.clone())),
        "{hint}"
    );
    let in_default = find(
        &render("default"),
        "CustomResourceDefinition",
        "podidentitybindings.podidentity.dev",
    )
    .clone();
    assert!(
        same(&in_default, &generated[0]),
        "config/default changes the CRD"
    );
}

#[test]
fn deployment_is_locked_down_and_probed() {
    let objs = render("default");
    let deploy = find(&objs, "Deployment", "pod-identity-operator");
    let pod = &deploy["spec"]["template"]["spec"];
    assert_eq!(deploy["spec"]["replicas"], 2);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_ne!(pod["securityContext"]["runAsUser"], 0);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert_eq!(
        pod["serviceAccountName"],
        find(&objs, "ServiceAccount", "pod-identity-operator")["metadata"]["name"]
    );
    let containers = pod["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    assert_eq!(
        c["image"],
        format!("pod-identity-operator:{}", env!("CARGO_PKG_VERSION")),
        "the image tag in config/default follows the crate version"
    );
    let sc = &c["securityContext"];
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    assert!(sc["capabilities"].get("add").is_none());
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    for kind in ["requests", "limits"] {
        for res in ["cpu", "memory"] {
            assert!(
                c["resources"][kind][res].is_string(),
                "resources.{kind}.{res} is set"
            );
        }
    }

    // Probes on the named health port, which the --health-addr flag serves.
    let args: Vec<&str> = c["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("string arg"))
        .collect();
    assert_eq!(args.first(), Some(&"run"));
    assert!(
        args.contains(&"--leader-elect"),
        "2 replicas need leader election"
    );
    let port_of = |name: &str| -> i64 {
        c["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .find(|p| p["name"] == name)
            .and_then(|p| p["containerPort"].as_i64())
            .unwrap_or_else(|| panic!("no container port named {name}"))
    };
    let flag_port = |flag: &str| -> i64 {
        args.iter()
            .find_map(|a| a.strip_prefix(&format!("{flag}=")))
            .and_then(|addr| addr.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("{flag}=<host>:<port> is passed"))
    };
    assert_eq!(port_of("health"), flag_port("--health-addr"));
    assert_eq!(port_of("metrics"), flag_port("--metrics-addr"));
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        assert_eq!(c[probe]["httpGet"]["path"], path, "{probe}");
        assert_eq!(c[probe]["httpGet"]["port"], "health", "{probe}");
    }

    // A writable /tmp, since the root filesystem is read-only.
    assert!(
        c["volumeMounts"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["mountPath"] == "/tmp"))
    );

    // The guardrails ConfigMap, mounted as a directory (updates reach it), is the file
    // --config names; it ships valid and with no rules (deny-all).
    let config_path = args
        .iter()
        .find_map(|a| a.strip_prefix("--config="))
        .expect("--config=<file> is passed");
    let guardrails = find(&objs, "ConfigMap", "pod-identity-operator-guardrails");
    let volume = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["configMap"]["name"] == guardrails["metadata"]["name"])
        .expect("a volume of the guardrails ConfigMap");
    let mount = c["volumeMounts"]
        .as_array()
        .expect("volumeMounts")
        .iter()
        .find(|m| m["name"] == volume["name"])
        .expect("the guardrails volume is mounted");
    assert!(
        mount.get("subPath").is_none(),
        "a subPath never sees updates"
    );
    let (dir, file) = config_path.rsplit_once('/').expect("an absolute path");
    assert_eq!(mount["mountPath"], dir);
    let text = guardrails["data"][file]
        .as_str()
        .unwrap_or_else(|| panic!("the ConfigMap has the key {file}"));
    let config = pod_identity_operator::config::GuardrailConfig::parse(text)
        .expect("the shipped guardrails parse");
    assert!(config.rules.is_empty(), "shipped deny-all");

    // Cluster name and region from the ConfigMap, through the variables `run` reads.
    let cm = find(&objs, "ConfigMap", "pod-identity-operator-config");
    let env = c["env"].as_array().expect("env");
    for var in ["PIO_CLUSTER_NAME", "PIO_REGION"] {
        let e = env
            .iter()
            .find(|e| e["name"] == var)
            .unwrap_or_else(|| panic!("{var} is set"));
        let r = &e["valueFrom"]["configMapKeyRef"];
        assert_eq!(r["name"], cm["metadata"]["name"], "{var}");
        assert!(
            r.get("optional").is_none_or(|o| o == false),
            "{var} is required"
        );
        let k = r["key"].as_str().expect("key");
        assert!(
            cm["data"][k].as_str().is_some_and(|v| !v.is_empty()),
            "ConfigMap has {k}"
        );
    }
}

#[test]
fn deployment_flags_and_env_are_those_run_reads() {
    let out = Command::new(env!("CARGO_BIN_EXE_pod-identity-operator"))
        .args(["run", "--help"])
        .output()
        .expect("the operator binary runs");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout).into_owned();
    let objs = render("default");
    let c = &find(&objs, "Deployment", "pod-identity-operator")["spec"]["template"]["spec"]["containers"]
        [0];
    for arg in c["args"].as_array().expect("args").iter().skip(1) {
        let arg = arg.as_str().expect("string arg");
        let flag = arg.split('=').next().unwrap_or(arg);
        assert!(
            help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}\n")),
            "the Deployment passes {flag}, which `run` does not take"
        );
    }
    for e in c["env"].as_array().expect("env") {
        let name = e["name"].as_str().expect("env name");
        if name == "RUST_LOG" {
            continue; // tracing's filter, read by the subscriber
        }
        assert!(
            help.contains(&format!("[env: {name}=")),
            "the Deployment sets {name}, which `run` does not read"
        );
    }
}

// ---------------------------------------------------------------------------------
// RBAC

#[test]
fn rbac_grants_exactly_what_the_controller_uses() {
    let objs = render("default");
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
    settings.guardrails = Arc::new(pod_identity_operator::config::GuardrailSource::fixed(
        pod_identity_operator::config::GuardrailConfig::parse(&read("tests/e2e-guardrails.yaml"))
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
        grants(&only(&render("default"), "ClusterRole")["rules"])
            .union(&grants(&only(&render("default"), "Role")["rules"]))
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

// ---------------------------------------------------------------------------------
// IAM policy

fn iam_policy() -> Value {
    serde_json::from_str(&read("config/iam/operator-policy.json")).expect("policy is JSON")
}

/// The APIs the methods of `trait_name` map to: the first word of each method's doc.
fn trait_apis(src: &str, trait_name: &str) -> BTreeSet<String> {
    let start = src
        .find(&format!("pub trait {trait_name}"))
        .unwrap_or_else(|| panic!("{trait_name} in src/aws/mod.rs"));
    let body = &src[start..];
    let body = &body[..body.find("\n}\n").expect("end of trait")];
    let mut apis = BTreeSet::new();
    let mut methods = 0;
    let mut first_doc: Option<String> = None;
    let mut in_doc = false;
    for line in body.lines().map(str::trim) {
        if let Some(doc) = line.strip_prefix("///") {
            if !in_doc {
                first_doc = Some(doc.trim().to_owned());
            }
            in_doc = true;
            continue;
        }
        in_doc = false;
        if line.starts_with("async fn ") {
            methods += 1;
            let doc = first_doc
                .take()
                .unwrap_or_else(|| panic!("{trait_name}: `{line}` has no doc naming its API"));
            let api: String = doc
                .chars()
                .take_while(char::is_ascii_alphanumeric)
                .collect();
            assert!(
                api.len() > 3 && api.starts_with(|c: char| c.is_ascii_uppercase()),
                "{trait_name}: the doc of `{line}` starts with an API name: {doc}"
            );
            apis.insert(api);
        }
    }
    assert_eq!(apis.len(), methods, "{trait_name}: one API per method");
    apis
}

fn aws_apis() -> (BTreeSet<String>, BTreeSet<String>) {
    let src = read("src/aws/mod.rs");
    let operators = |apis: BTreeSet<String>| -> BTreeSet<String> {
        apis.into_iter()
            .filter(|api| !USER_ONLY_APIS.iter().any(|(a, _)| a == api))
            .collect()
    };
    (
        operators(trait_apis(&src, "IamApi")),
        operators(trait_apis(&src, "EksApi")),
    )
}

/// APIs of the traits that only `audit` and `migrate` call, with the credentials of the
/// user who runs them; the operator never does (the controller's sources name none of
/// their methods), so its policy does not allow them.
const USER_ONLY_APIS: [(&str, &str); 3] = [
    ("ListRoles", "list_roles"),
    ("DescribeAddon", "describe_addon"),
    ("ListAddons", "list_addons"),
];

#[test]
fn the_controller_calls_none_of_the_apis_left_to_audit_and_migrate() {
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/src/controller"))
        .expect("src/controller")
    {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("source");
        for (api, method) in USER_ONLY_APIS {
            assert!(
                !text.contains(&format!(".{method}(")),
                "{} calls {api}, which the operator's policy does not allow",
                path.display()
            );
        }
    }
}

/// The resource an EKS API is authorized on.
fn eks_resource<'a>(op: &str, cluster: &'a str, association: &'a str) -> &'a str {
    match op {
        "DescribeCluster" | "CreatePodIdentityAssociation" | "ListPodIdentityAssociations" => {
            cluster
        }
        _ => association,
    }
}

fn glob(pattern: &str, text: &str, case_insensitive: bool) -> bool {
    let (p, t) = if case_insensitive {
        (pattern.to_ascii_lowercase(), text.to_ascii_lowercase())
    } else {
        (pattern.to_owned(), text.to_owned())
    };
    fn go(p: &[u8], t: &[u8]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some((b'*', rest)) => (0..=t.len()).any(|i| go(rest, &t[i..])),
            Some((b'?', rest)) => !t.is_empty() && go(rest, &t[1..]),
            Some((c, rest)) => t.first() == Some(c) && go(rest, &t[1..]),
        }
    }
    go(p.as_bytes(), t.as_bytes())
}

fn strings(v: &Value) -> Vec<&str> {
    match v {
        Value::String(s) => vec![s.as_str()],
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    }
}

/// Whether `doc` allows `action` on `resource` in a request with these condition keys.
/// Conditions: `StringEquals` is evaluated; any other operator makes the statement not
/// apply (conservative for Allow).
fn allows(doc: &Value, action: &str, resource: &str, context: &[(&str, &str)]) -> bool {
    let applies = |s: &Value| {
        strings(&s["Action"]).iter().any(|a| glob(a, action, true))
            && strings(&s["Resource"])
                .iter()
                .any(|r| glob(r, resource, false))
            && s.get("Condition")
                .and_then(Value::as_object)
                .is_none_or(|conds| {
                    conds.iter().all(|(op, kv)| {
                        op == "StringEquals"
                            && kv.as_object().is_some_and(|kv| {
                                kv.iter().all(|(k, want)| {
                                    context.iter().any(|(ck, cv)| {
                                        ck.eq_ignore_ascii_case(k) && strings(want).contains(cv)
                                    })
                                })
                            })
                    })
                })
    };
    let statements = doc["Statement"].as_array().expect("Statement list");
    let allowed = statements
        .iter()
        .any(|s| s["Effect"] == "Allow" && applies(s));
    let denied = statements
        .iter()
        .any(|s| s["Effect"] == "Deny" && applies(s));
    allowed && !denied
}

#[test]
fn iam_policy_is_valid_and_allows_every_aws_api_the_operator_calls() {
    let doc = iam_policy();
    policy::validate(&doc, DocumentKind::Identity).expect("a valid identity policy");
    let (iam_apis, eks_apis) = aws_apis();
    assert!(iam_apis.contains("CreateRole") && eks_apis.contains("CreatePodIdentityAssociation"));

    // Nothing broader than needed: no action or resource wildcards beyond the ARN
    // patterns, and every action is one the operator calls (PassRole aside).
    for s in doc["Statement"].as_array().expect("statements") {
        assert_eq!(s["Effect"], "Allow");
        assert!(s.get("NotAction").is_none() && s.get("NotResource").is_none());
        for r in strings(&s["Resource"]) {
            assert_ne!(r, "*", "no statement on every resource");
        }
        for a in strings(&s["Action"]) {
            assert!(!a.contains('*'), "no action wildcard: {a}");
            let known = match a.split_once(':') {
                Some(("iam", op)) => iam_apis.contains(op) || op == "PassRole",
                Some(("eks", op)) => eks_apis.contains(op),
                _ => false,
            };
            assert!(known, "{a} is not an API the operator calls");
        }
    }

    let account = "111122223333";
    let managed = format!("arn:aws:iam::{account}:role/pod-identity/prod/pi-prod-default-app");
    let foreign = format!("arn:aws:iam::{account}:role/admin");
    for api in &iam_apis {
        let action = format!("iam:{api}");
        assert!(
            allows(&doc, &action, &managed, &[]),
            "{action} on a role under /pod-identity/"
        );
        // Outside the path only GetRole (existing roles named by bindings).
        assert_eq!(
            allows(&doc, &action, &foreign, &[]),
            api == "GetRole",
            "{action} on a role outside /pod-identity/"
        );
    }
    // CreateRole with tags needs TagRole; the association calls pass the role to EKS.
    assert!(iam_apis.contains("TagRole"));
    let to_pods = [("iam:PassedToService", "pods.eks.amazonaws.com")];
    for role in [&managed, &foreign] {
        assert!(
            allows(&doc, "iam:PassRole", role, &to_pods),
            "PassRole {role}"
        );
        assert!(
            !allows(
                &doc,
                "iam:PassRole",
                role,
                &[("iam:PassedToService", "ec2.amazonaws.com")]
            ),
            "PassRole to another service"
        );
        assert!(
            !allows(&doc, "iam:PassRole", role, &[]),
            "PassRole unconditioned"
        );
    }

    let cluster = format!("arn:aws:eks:eu-west-1:{account}:cluster/prod");
    let assoc =
        format!("arn:aws:eks:eu-west-1:{account}:podidentityassociation/prod/a-0123456789abcdefg");
    for api in &eks_apis {
        let action = format!("eks:{api}");
        let on = eks_resource(api, &cluster, &assoc);
        assert!(allows(&doc, &action, on, &[]), "{action} on {on}");
        let other = if on == cluster { &assoc } else { &cluster };
        assert!(
            !allows(&doc, &action, other, &[]),
            "{action} only on the resource it is authorized on, not {other}"
        );
        assert!(
            !allows(&doc, &action, &managed, &[]),
            "{action} on an IAM role ARN"
        );
    }
}

// ---------------------------------------------------------------------------------
// kubectl apply against kubesim

struct Kubectl {
    bin: PathBuf,
    kubeconfig: PathBuf,
    dir: PathBuf,
}

impl Kubectl {
    /// kubectl with this kubeconfig, its cache and home in the test's folder.
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--cache-dir")
            .arg(self.dir.join("cache"))
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", &self.dir)
            .current_dir(&self.dir);
        cmd
    }

    /// `kubectl wait` until the binding CRD is Established.
    fn wait_crd_established(&self) {
        let out = self
            .command()
            .args([
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                "crd/podidentitybindings.podidentity.dev",
            ])
            .output()
            .expect("kubectl runs");
        assert!(
            out.status.success(),
            "kubectl wait for the CRD: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn apply_stdin(&self, manifests: &str) -> String {
        self.apply(&["-f", "-"], manifests)
    }

    /// `kubectl apply <args>`, with `stdin` as its input.
    fn apply(&self, args: &[&str], stdin: &str) -> String {
        let mut child = self
            .command()
            .arg("apply")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl starts");
        child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(stdin.as_bytes())
            .expect("manifests written to kubectl");
        let out = child.wait_with_output().expect("kubectl finishes");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "kubectl apply {} failed:\n{stdout}\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }
}

/// Every rendered object exists on the server with every field it was given.
async fn assert_applied(client: &Client, discovery: &Discovery, objs: &[Value]) {
    for o in objs {
        let (kind, ns, name) = key(o);
        let api_version = o["apiVersion"].as_str().expect("apiVersion");
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let gvk = kube::api::GroupVersionKind::gvk(group, version, &kind);
        let (ar, caps) = discovery
            .resolve_gvk(&gvk)
            .unwrap_or_else(|| panic!("kubesim serves {api_version} {kind}"));
        let api: Api<DynamicObject> = match caps.scope {
            kube::discovery::Scope::Namespaced => Api::namespaced_with(client.clone(), &ns, &ar),
            kube::discovery::Scope::Cluster => Api::all_with(client.clone(), &ar),
        };
        let got = api
            .get(&name)
            .await
            .unwrap_or_else(|e| panic!("{kind} {ns}/{name} was applied: {e}"));
        let got = serde_json::to_value(&got).expect("object to JSON");
        let mut want = o.clone();
        // kubectl apply adds its last-applied annotation; the rest must be as rendered.
        if let Some(m) = want.as_object_mut() {
            m.remove("status");
        }
        assert!(
            contains(&got, &want),
            "{kind} {ns}/{name} on the server differs from what was applied:\n{got:#}\nwanted:\n{want:#}"
        );
    }
}

/// kubesim over TCP, and kubectl pointed at it from `dir`.
async fn kubesim_and_kubectl(
    dir: &std::path::Path,
) -> (pod_identity_operator::kubesim::ServerHandle, Kubectl) {
    let server = KubeSim::new()
        .serve_tcp("127.0.0.1:0".parse().expect("literal address"))
        .await
        .expect("kubesim serves");
    let kubeconfig = dir.join("kubeconfig");
    server.write_kubeconfig(&kubeconfig).expect("kubeconfig");
    let k = Kubectl {
        bin: kubectl_path(),
        kubeconfig,
        dir: dir.to_path_buf(),
    };
    (server, k)
}

/// A real control plane, kubectl pointed at it from `dir`, and an admin client.
async fn real_api_server_and_kubectl(
    dir: &std::path::Path,
) -> (cluster::ControlPlane, Kubectl, Client) {
    let plane = cluster::ControlPlane::start(Default::default())
        .await
        .unwrap_or_else(|e| panic!("the real control plane did not start: {e}"));
    let k = Kubectl {
        bin: kubectl_path(),
        kubeconfig: plane.kubeconfig().to_owned(),
        dir: dir.to_path_buf(),
    };
    let client = plane.admin_client().await.expect("admin client");
    (plane, k, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_and_samples_apply_to_kubesim_with_kubectl() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (server, k) = kubesim_and_kubectl(tmp.path()).await;
    let client = server.client().await.expect("client over TCP");
    default_and_samples_apply(&k, client).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_and_samples_apply_to_a_real_api_server_with_kubectl() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (_plane, k, client) = real_api_server_and_kubectl(tmp.path()).await;
    default_and_samples_apply(&k, client).await;
}

/// `kubectl apply` of the rendered default installation, then of the samples: every
/// object created with every field it was given, and a second apply changes nothing.
async fn default_and_samples_apply(k: &Kubectl, client: Client) {
    let default = render_text("default");
    let samples = render_text("samples");
    // kubectl blocks; the server runs on this runtime's other worker meanwhile.
    let default_out = tokio::task::block_in_place(|| k.apply_stdin(&default));
    // As a user would before applying instances: the new kind is served.
    tokio::task::block_in_place(|| k.wait_crd_established());
    let samples_out = tokio::task::block_in_place(|| k.apply_stdin(&samples));
    for line in [
        "namespace/pod-identity-system created",
        "customresourcedefinition.apiextensions.k8s.io/podidentitybindings.podidentity.dev created",
        "serviceaccount/pod-identity-operator created",
        "clusterrole.rbac.authorization.k8s.io/pod-identity-operator created",
        "clusterrolebinding.rbac.authorization.k8s.io/pod-identity-operator created",
        "role.rbac.authorization.k8s.io/pod-identity-operator-leader-election created",
        "rolebinding.rbac.authorization.k8s.io/pod-identity-operator-leader-election created",
        "configmap/pod-identity-operator-config created",
        "deployment.apps/pod-identity-operator created",
    ] {
        assert!(default_out.contains(line), "{line}:\n{default_out}");
    }
    for name in ["s3-reader", "orders-table", "legacy-app"] {
        let line = format!("podidentitybinding.podidentity.dev/{name} created");
        assert!(samples_out.contains(&line), "{line}:\n{samples_out}");
    }

    let discovery = Discovery::new(client.clone())
        .run()
        .await
        .expect("discovery");
    assert_applied(&client, &discovery, &yaml_docs(&default)).await;
    assert_applied(&client, &discovery, &yaml_docs(&samples)).await;
    let bindings: Api<PodIdentityBinding> = Api::namespaced(client.clone(), "default");
    let names: BTreeSet<String> = bindings
        .list(&Default::default())
        .await
        .expect("bindings list")
        .iter()
        .map(|b| b.name_any())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");

    // Applying again changes nothing.
    let again = tokio::task::block_in_place(|| k.apply_stdin(&default));
    assert!(
        again.lines().all(|l| l.ends_with(" unchanged")),
        "second apply:\n{again}"
    );
}

// ---------------------------------------------------------------------------------
// Argo CD and Flux health

fn health_script() -> String {
    read("config/argocd/health.lua")
}

/// Runs the Argo CD health check on `obj`, as Argo CD does: the object as the global
/// `obj`, JSON nulls and absent fields as Lua nil. Returns (status, message).
fn argocd_health(obj: &Value) -> (String, String) {
    use mlua::LuaSerdeExt;
    let lua = mlua::Lua::new();
    let options = mlua::serde::ser::Options::new()
        .serialize_none_to_null(false)
        .serialize_unit_to_null(false)
        .set_array_metatable(false);
    let value = lua.to_value_with(obj, options).expect("object to Lua");
    lua.globals().set("obj", value).expect("obj set");
    let hs: mlua::Table = lua
        .load(health_script())
        .set_name("health.lua")
        .eval()
        .unwrap_or_else(|e| panic!("health.lua fails on {obj}: {e}"));
    (
        hs.get::<String>("status").expect("hs.status"),
        hs.get::<String>("message").expect("hs.message"),
    )
}

fn binding(generation: i64, status: Option<Value>) -> Value {
    let mut b = json!({
        "apiVersion": "podidentity.dev/v1alpha1",
        "kind": "PodIdentityBinding",
        "metadata": {"name": "app", "namespace": "default", "generation": generation},
        "spec": {"role": {}},
    });
    if let Some(s) = status {
        b["status"] = s;
    }
    b
}

fn cond(type_: &str, status: &str, reason: &str, generation: i64) -> Value {
    json!({
        "type": type_,
        "status": status,
        "reason": reason,
        "message": format!("{type_} is {status} because {reason}"),
        "lastTransitionTime": "2026-01-01T00:00:00Z",
        "observedGeneration": generation,
    })
}

fn status_with(generation: i64, conditions: Vec<Value>) -> Option<Value> {
    Some(json!({"observedGeneration": generation, "conditions": conditions}))
}

/// What Argo CD should show for a binding whose Ready condition is False with `reason`.
/// The match is exhaustive: a new reason does not compile until it is classified here
/// (and in health.lua and the Flux example).
fn expected_for_not_ready(reason: Reason) -> &'static str {
    use Reason::*;
    match reason {
        InvalidSpec
        | PolicyDenied
        | RoleConflict
        | AssociationConflict
        | RoleNotFound
        | RoleTrustMissing
        | ServiceAccountNotFound
        | CleanupBlocked
        | AccessDenied
        | ClusterNotFound
        | QuotaExceeded => "Degraded",
        Waiting | Retrying | Throttled | RolePropagating => "Progressing",
        // Reasons of True conditions; never on a False Ready, so not Degraded.
        Reconciled
        | RoleCreated
        | RoleExisting
        | ServiceAccountCreated
        | ServiceAccountFound
        | AssociationCreated
        | AssociationAdopted => "Progressing",
    }
}

fn degraded_reasons() -> BTreeSet<String> {
    Reason::ALL
        .iter()
        .filter(|r| expected_for_not_ready(**r) == "Degraded")
        .map(|r| r.as_str().to_owned())
        .collect()
}

/// (case, object, expected Argo CD status)
fn health_cases() -> Vec<(String, Value, &'static str)> {
    let mut cases = vec![
        ("no status yet".to_owned(), binding(1, None), "Progressing"),
        (
            "status without conditions".into(),
            binding(1, Some(json!({}))),
            "Progressing",
        ),
        (
            "ready at the current generation".into(),
            binding(
                3,
                status_with(3, vec![cond("Ready", "True", "Reconciled", 3)]),
            ),
            "Healthy",
        ),
        (
            "ready, but an older generation".into(),
            binding(
                4,
                status_with(3, vec![cond("Ready", "True", "Reconciled", 3)]),
            ),
            "Progressing",
        ),
        (
            "failed at an older generation, spec since changed".into(),
            binding(
                5,
                status_with(4, vec![cond("Ready", "False", "InvalidSpec", 4)]),
            ),
            "Progressing",
        ),
        (
            "other conditions only".into(),
            binding(
                1,
                status_with(1, vec![cond("RoleReady", "True", "RoleCreated", 1)]),
            ),
            "Progressing",
        ),
        (
            "ready and still reconciling".into(),
            binding(
                2,
                status_with(
                    2,
                    vec![
                        cond("Ready", "True", "Reconciled", 2),
                        cond("Reconciling", "True", "Progressing", 2),
                    ],
                ),
            ),
            "Progressing",
        ),
        (
            "stalled".into(),
            binding(
                2,
                status_with(
                    2,
                    vec![
                        cond("Ready", "False", "Retrying", 2),
                        cond("Stalled", "True", "RetriesExhausted", 2),
                    ],
                ),
            ),
            "Degraded",
        ),
        (
            "unknown".into(),
            binding(
                1,
                status_with(1, vec![cond("Ready", "Unknown", "Waiting", 1)]),
            ),
            "Progressing",
        ),
    ];
    // Statuses as the operator writes them, kstatus conditions included.
    for r in Reason::ALL {
        let conditions = status::merge(
            &[],
            &status::Conditions {
                ready: status::State::failed(*r, "why"),
                role: status::State::unknown(),
                service_account: status::State::unknown(),
                association: status::State::unknown(),
            },
            Some(2),
        );
        cases.push((
            format!("as written, not ready with {}", r.as_str()),
            binding(
                2,
                Some(json!({"observedGeneration": 2, "conditions": conditions})),
            ),
            expected_for_not_ready(*r),
        ));
    }
    for r in Reason::ALL {
        cases.push((
            format!("Ready=False {}", r.as_str()),
            binding(
                2,
                status_with(
                    2,
                    vec![
                        cond("Ready", "False", r.as_str(), 2),
                        cond("RoleReady", "Unknown", "Waiting", 2),
                    ],
                ),
            ),
            expected_for_not_ready(*r),
        ));
    }
    cases
}

#[test]
fn argocd_health_check_classifies_binding_statuses() {
    // Degraded is exactly what the operator reports as Stalled.
    for r in Reason::ALL {
        assert_eq!(
            expected_for_not_ready(*r) == "Degraded",
            r.stalls(),
            "{}",
            r.as_str()
        );
    }
    for (case, obj, want) in health_cases() {
        let (got, message) = argocd_health(&obj);
        assert_eq!(got, want, "{case}: {message}");
        assert!(!message.is_empty(), "{case}: a message");
    }
    // The message carries the operator's reason and explanation.
    let (_, message) = argocd_health(&binding(
        1,
        status_with(1, vec![cond("Ready", "False", "AccessDenied", 1)]),
    ));
    assert_eq!(message, "AccessDenied: Ready is False because AccessDenied");
}

#[test]
fn argocd_cm_snippet_embeds_the_health_check() {
    let cm = yaml_docs(&read("config/argocd/argocd-cm.yaml"));
    assert_eq!(cm.len(), 1);
    let data = cm[0]["data"].as_object().expect("data");
    assert_eq!(data.len(), 1);
    assert_eq!(
        data["resource.customizations.health.podidentity.dev_PodIdentityBinding"],
        health_script(),
        "config/argocd/argocd-cm.yaml holds config/argocd/health.lua verbatim"
    );
}

/// Flux's verdict from a Kustomization's healthCheckExprs: inProgress, then failed,
/// then current, with the object's top-level fields as variables.
fn flux_verdict(exprs: &Value, obj: &Value) -> &'static str {
    let mut ctx = cel::Context::default();
    for (k, v) in obj.as_object().expect("object") {
        ctx.add_variable_from_value(k.as_str(), cel::to_value(v).expect("JSON to CEL"));
    }
    let eval = |field: &str| -> bool {
        let src = exprs[field]
            .as_str()
            .unwrap_or_else(|| panic!("{field} expression"));
        let program = cel::Program::compile(src).unwrap_or_else(|e| panic!("{field}: {e:?}"));
        match program.execute(&ctx) {
            Ok(cel::Value::Bool(b)) => b,
            other => panic!("{field} on {obj}: {other:?}"),
        }
    };
    if eval("inProgress") {
        "Progressing"
    } else if eval("failed") {
        "Degraded"
    } else if eval("current") {
        "Healthy"
    } else {
        "Progressing"
    }
}

#[test]
fn flux_example_waits_on_bindings_and_agrees_with_argocd() {
    let docs = yaml_docs(&read("config/flux/pod-identity.yaml"));
    let kustomizations: Vec<&Value> = docs
        .iter()
        .filter(|d| d["kind"] == "Kustomization")
        .collect();
    assert_eq!(kustomizations.len(), 2);
    for k in &kustomizations {
        assert_eq!(k["spec"]["wait"], true, "{} waits", k["metadata"]["name"]);
        assert!(k["spec"]["timeout"].is_string());
    }
    let bindings = kustomizations
        .iter()
        .find(|k| k["spec"]["path"] == "./config/samples")
        .expect("a Kustomization applying the bindings");
    assert_eq!(
        bindings["spec"]["dependsOn"][0]["name"],
        kustomizations
            .iter()
            .find(|k| k["spec"]["path"] == "./config/default")
            .expect("a Kustomization installing the operator")["metadata"]["name"]
    );
    let exprs = &bindings["spec"]["healthCheckExprs"][0];
    assert_eq!(exprs["apiVersion"], "podidentity.dev/v1alpha1");
    assert_eq!(exprs["kind"], "PodIdentityBinding");

    // The failed expression lists exactly the reasons the Argo CD check calls Degraded.
    let failed = exprs["failed"].as_str().expect("failed");
    let listed: BTreeSet<String> = failed
        [failed.find('[').expect("[")..failed.find(']').expect("]")]
        .split(['[', ',', '\''])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    assert_eq!(listed, degraded_reasons());
    let script = health_script();
    for r in degraded_reasons() {
        assert!(
            script.contains(&format!("  {r} = true,")),
            "health.lua lists {r}"
        );
    }

    // Both agree on every sample status that has one (Flux reports a missing status
    // as an expression error and keeps waiting).
    for (case, obj, want) in health_cases() {
        if obj.pointer("/status/conditions").is_none() {
            continue;
        }
        if case.contains("Stalled") || case.contains("stalled") || case.contains("reconciling") {
            // kstatus conditions the operator does not set yet; Flux's expressions
            // read Ready only.
            continue;
        }
        assert_eq!(flux_verdict(exprs, &obj), want, "Flux on {case}");
    }
}

// ---------------------------------------------------------------------------------
// Dockerfile

#[test]
fn dockerfile_builds_in_a_rust_stage_and_runs_distroless_nonroot() {
    let text = read("Dockerfile");
    let froms: Vec<&str> = text.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(froms.len(), 2, "multi-stage: {froms:?}");
    assert!(froms[0].starts_with("FROM rust:${RUST_VERSION}") && froms[0].ends_with(" AS builder"));
    assert!(
        froms[1].starts_with("FROM gcr.io/distroless/") && froms[1].ends_with(":nonroot"),
        "{}",
        froms[1]
    );
    let cargo = read("Cargo.toml");
    let rust_version = cargo
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .expect("rust-version in Cargo.toml")
        .trim_matches('"');
    assert!(
        text.contains(&format!("ARG RUST_VERSION={rust_version}\n")),
        "the builder uses the crate's rust-version {rust_version}"
    );
    let final_stage = &text[text.find(froms[1]).expect("final stage")..];
    assert!(final_stage.contains("ARG VERSION"));
    assert!(final_stage.contains("org.opencontainers.image.version=\"${VERSION}\""));
    assert!(final_stage.contains("USER 65532:65532"));
    assert!(final_stage.contains("ENTRYPOINT [\"/usr/local/bin/pod-identity-operator\"]"));
    // The production binary leaves out kubesim, the AWS simulator and `sandbox`.
    assert!(text.contains(
        "cargo build --release --locked --no-default-features --bin pod-identity-operator"
    ));
    // The Deployment runs as the image's user.
    let objs = render("manager");
    assert_eq!(
        find(&objs, "Deployment", "pod-identity-operator")["spec"]["template"]["spec"]["securityContext"]
            ["runAsUser"],
        65532
    );

    let ignore = read(".dockerignore");
    let lines: Vec<&str> = ignore.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(lines.first(), Some(&"*"), "everything is excluded first");
    // presets/ is compiled in; benches/ holds targets Cargo.toml names.
    for copied in ["Cargo.toml", "Cargo.lock", "src", "presets", "benches"] {
        assert!(text.contains(&format!("COPY {copied}")) || text.contains(&format!(" {copied} ")));
        assert!(
            lines
                .iter()
                .any(|l| l.trim_end_matches('/') == format!("!{copied}")),
            ".dockerignore lets {copied} in"
        );
    }
}

/// Server-side apply straight from the directories (`kubectl apply --server-side -k`),
/// as Flux and Argo CD's server-side mode apply them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_and_samples_apply_server_side_with_kustomize() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (server, k) = kubesim_and_kubectl(tmp.path()).await;
    let client = server.client().await.expect("client over TCP");
    apply_server_side_with_kustomize(&k, client).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_and_samples_apply_server_side_with_kustomize_to_a_real_api_server() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (_plane, k, client) = real_api_server_and_kubectl(tmp.path()).await;
    apply_server_side_with_kustomize(&k, client).await;
}

async fn apply_server_side_with_kustomize(k: &Kubectl, client: Client) {
    for base in ["default", "samples"] {
        let dir = root().join("config").join(base);
        let dir = dir.to_string_lossy().into_owned();
        let out = tokio::task::block_in_place(|| {
            k.apply(&["--server-side", "--field-manager=gitops", "-k", &dir], "")
        });
        let applied = out
            .lines()
            .filter(|l| l.ends_with(" serverside-applied"))
            .count();
        assert_eq!(applied, render(base).len(), "{base}:\n{out}");
        tokio::task::block_in_place(|| k.wait_crd_established());
    }
    let discovery = Discovery::new(client.clone())
        .run()
        .await
        .expect("discovery");
    assert_applied(&client, &discovery, &render("default")).await;
    assert_applied(&client, &discovery, &render("samples")).await;
}
