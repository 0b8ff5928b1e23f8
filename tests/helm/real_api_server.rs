//! The chart on a real kube-apiserver (`support/cluster.rs`): install, the CRD served,
//! upgrade, uninstall leaving the CRD and the bindings, and the README's command releasing
//! bindings from the operator's finalizer.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use pod_identity_operator::crd::FINALIZER;
use pod_identity_operator::guardrails::GuardrailConfig;
use serde_json::{Value, json};

use crate::cluster;
use crate::files::{contains, key, read, root};
use crate::kubectl;
use crate::kubectl::kubectl_path;
use crate::{
    CHART, NAMESPACE, RELEASE, SETTINGS, helm_bin, helm_err, helm_ok, template, values_file,
};

/// Polls `check` until it holds, for up to a minute; panics naming `what` otherwise.
fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(Instant::now() < deadline, "{what} within a minute");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// kubectl against the control plane: (success, stdout, stderr).
fn kubectl_try(kubeconfig: &Path, args: &[&str]) -> (bool, String, String) {
    let out = kubectl::kubectl_command(kubeconfig)
        .args(args)
        .output()
        .expect("kubectl runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn get_json(kubeconfig: &Path, args: &[&str]) -> Option<Value> {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json"]);
    let (ok, out, err) = kubectl_try(kubeconfig, &all);
    if !ok {
        assert!(
            err.contains("NotFound") || err.contains("not found"),
            "kubectl {all:?}: {err}"
        );
        return None;
    }
    Some(serde_json::from_str(&out).expect("kubectl prints JSON"))
}

/// The fenced `sh` block of the chart README that contains `needle`.
fn readme_block(needle: &str) -> String {
    let readme = read(&format!("{CHART}/README.md"));
    readme
        .split("```sh\n")
        .skip(1)
        .filter_map(|b| b.split_once("\n```").map(|(code, _)| code.to_owned()))
        .find(|code| code.contains(needle))
        .unwrap_or_else(|| panic!("the chart README has a sh block with {needle:?}"))
}

/// Runs a README block with bash, kubectl on PATH and the control plane's kubeconfig.
fn run_readme_block(code: &str, kubeconfig: &Path, home: &Path) -> String {
    let kubectl_dir = kubectl_path().parent().expect("a folder").to_owned();
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs = vec![kubectl_dir];
    dirs.extend(std::env::split_paths(&path));
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", code])
        .env("PATH", std::env::join_paths(dirs).expect("PATH"))
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", home)
        .output()
        .expect("bash runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the README's command failed:\n{code}\n{text}"
    );
    text
}

/// A sample binding in `default`, carrying `finalizers` as the operator would have left
/// them, then deleted: it stays, marked deleted, as long as a finalizer does.
fn create_held_binding(kubeconfig: &Path, sample: &str, name: &str, finalizers: &[&str]) {
    kubectl::kubectl(
        kubeconfig,
        &[
            "apply",
            "-n",
            "default",
            "-f",
            &root().join(sample).display().to_string(),
        ],
    );
    let patch = json!({"metadata": {"finalizers": finalizers}}).to_string();
    kubectl::kubectl(
        kubeconfig,
        &[
            "patch",
            "podidentitybinding",
            name,
            "-n",
            "default",
            "--type=merge",
            "-p",
            &patch,
        ],
    );
    kubectl::kubectl(
        kubeconfig,
        &[
            "delete",
            "podidentitybinding",
            name,
            "-n",
            "default",
            "--wait=false",
        ],
    );
    std::thread::sleep(Duration::from_millis(500));
    let b = get_json(kubeconfig, &["podidentitybinding", name, "-n", "default"])
        .unwrap_or_else(|| panic!("{name} is held by its finalizers"));
    assert!(
        b["metadata"]["deletionTimestamp"].is_string(),
        "{name} is marked deleted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_upgrade_uninstall_on_a_real_api_server() {
    helm_bin();
    let plane = cluster::ControlPlane::start(Default::default())
        .await
        .unwrap_or_else(|e| panic!("the real control plane did not start: {e}"));
    let kc = plane.kubeconfig().to_owned();
    tokio::task::block_in_place(|| on_the_api_server(&kc));
    drop(plane);
}

/// `helm install pod-identity-operator charts/pod-identity-operator -n
/// pod-identity-system --create-namespace <extra>`.
fn install_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "install",
        RELEASE,
        CHART,
        "--namespace",
        NAMESPACE,
        "--create-namespace",
    ];
    args.extend_from_slice(extra);
    args
}

fn on_the_api_server(kc: &Path) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let k = Some(kc);
    // Refused by the schema. Helm installs crds/ before it reads the values, so the CRD
    // is there already (the chart README says so); nothing else is.
    let out = helm_err(&install_args(&["--set", "region=us-east-1"]), k);
    assert!(out.contains("missing property 'clusterName'"), "{out}");
    assert!(get_json(kc, &["crd", "podidentitybindings.podidentity.dev"]).is_some());
    assert!(
        get_json(kc, &["namespace", NAMESPACE]).is_none(),
        "no namespace made by a refused install"
    );
    let releases = helm_ok(
        &["list", "-A", "-q", "--deployed", "--failed", "--pending"],
        k,
    );
    assert_eq!(releases.trim(), "", "no release made by a refused install");

    // Install: every rendered object accepted as rendered, the CRD served.
    let out = helm_ok(&install_args(SETTINGS), k);
    assert!(out.contains("STATUS: deployed"), "{out}");
    let rendered = template(RELEASE, NAMESPACE, SETTINGS);
    for o in &rendered {
        let (kind, ns, name) = key(o);
        let mut args = vec![kind.as_str(), name.as_str()];
        if !ns.is_empty() {
            args.extend_from_slice(&["-n", ns.as_str()]);
        }
        let got = get_json(kc, &args).unwrap_or_else(|| panic!("{kind} {ns}/{name} installed"));
        assert!(
            contains(&got, o),
            "{kind} {ns}/{name} on the server differs from the chart:\n{got:#}\nrendered:\n{o:#}"
        );
    }
    kubectl::kubectl(
        kc,
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/podidentitybindings.podidentity.dev",
        ],
    );
    // RBAC: the operator's ServiceAccount may do what the controller does, no more.
    let user = format!("--as=system:serviceaccount:{NAMESPACE}:{RELEASE}");
    for (verb, resource, subresource, ns, allowed) in [
        (
            "watch",
            "podidentitybindings.podidentity.dev",
            "",
            "default",
            true,
        ),
        (
            "patch",
            "podidentitybindings.podidentity.dev",
            "status",
            "default",
            true,
        ),
        (
            "update",
            "podidentitybindings.podidentity.dev",
            "finalizers",
            "default",
            true,
        ),
        ("create", "serviceaccounts", "", "team-a", true),
        ("patch", "leases.coordination.k8s.io", "", NAMESPACE, true),
        ("create", "events.events.k8s.io", "", "default", true),
        (
            "delete",
            "podidentitybindings.podidentity.dev",
            "",
            "default",
            false,
        ),
        (
            "update",
            "podidentitybindings.podidentity.dev",
            "status",
            "default",
            false,
        ),
        ("get", "secrets", "", "default", false),
        ("patch", "leases.coordination.k8s.io", "", "default", false),
    ] {
        let sub = format!("--subresource={subresource}");
        let mut args = vec!["auth", "can-i", verb, resource, "-n", ns, &user];
        if !subresource.is_empty() {
            args.push(&sub);
        }
        let (ok, out, _) = kubectl_try(kc, &args);
        assert_eq!(ok, allowed, "{args:?}: {out}");
    }
    kubectl::kubectl(
        kc,
        &[
            "apply",
            "-n",
            "default",
            "-f",
            &root()
                .join("config/samples/s3_reader.yaml")
                .display()
                .to_string(),
        ],
    );
    let binding = get_json(kc, &["podidentitybinding", "s3-reader", "-n", "default"])
        .expect("a binding created through the chart's CRD");
    assert_eq!(binding["spec"]["tags"]["team"], "platform");

    // Upgrade with changed values: the ConfigMaps, the Deployment (rolled by the
    // checksum), and a PodDisruptionBudget and metrics Service now rendered.
    let deploy_before =
        get_json(kc, &["deployment", RELEASE, "-n", NAMESPACE]).expect("Deployment");
    let guardrails = values_file(
        tmp.path(),
        "guardrails.yaml",
        "guardrails:\n  rules:\n    - name: default-apps\n      namespaces: [default]\n      allowedManagedPolicyArns: [\"arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess\"]\n",
    );
    let out = helm_ok(
        &[
            "upgrade",
            RELEASE,
            CHART,
            "-n",
            NAMESPACE,
            "--reuse-values",
            "-f",
            &guardrails,
            "--set",
            "region=eu-west-1,logLevel=debug,replicaCount=3",
            "--set",
            "podDisruptionBudget.enabled=true,metrics.service.enabled=true",
        ],
        k,
    );
    assert!(out.contains("REVISION: 2"), "{out}");
    let cm = get_json(
        kc,
        &["configmap", "pod-identity-operator-config", "-n", NAMESPACE],
    )
    .expect("ConfigMap");
    assert_eq!(
        cm["data"],
        json!({"clusterName": "my-cluster", "region": "eu-west-1", "logLevel": "debug",
            "operatorRoleArn": ""})
    );
    let rules = get_json(
        kc,
        &[
            "configmap",
            "pod-identity-operator-guardrails",
            "-n",
            NAMESPACE,
        ],
    )
    .expect("guardrails ConfigMap");
    let config = GuardrailConfig::parse(rules["data"]["guardrails.yaml"].as_str().expect("file"))
        .expect("the upgraded guardrails parse");
    assert_eq!(config.rules[0].name, "default-apps");
    let deploy = get_json(kc, &["deployment", RELEASE, "-n", NAMESPACE]).expect("Deployment");
    assert_eq!(deploy["spec"]["replicas"], 3);
    let checksum = "/spec/template/metadata/annotations/checksum~1config";
    assert_ne!(
        deploy.pointer(checksum),
        deploy_before.pointer(checksum),
        "the pods roll"
    );
    assert!(
        deploy["metadata"]["generation"].as_i64()
            > deploy_before["metadata"]["generation"].as_i64()
    );
    let pdb = get_json(kc, &["poddisruptionbudget", RELEASE, "-n", NAMESPACE]).expect("PDB");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    get_json(
        kc,
        &["service", "pod-identity-operator-metrics", "-n", NAMESPACE],
    )
    .expect("metrics Service");
    // Turned off again: Helm deletes what the chart no longer renders.
    helm_ok(
        &[
            "upgrade",
            RELEASE,
            CHART,
            "-n",
            NAMESPACE,
            "--reuse-values",
            "--set",
            "podDisruptionBudget.enabled=false",
        ],
        k,
    );
    assert!(get_json(kc, &["poddisruptionbudget", RELEASE, "-n", NAMESPACE]).is_none());

    // A second release with every value (a stand-in ServiceMonitor CRD, as Prometheus
    // Operator would install), beside the first one.
    let service_monitor_crd = values_file(
        tmp.path(),
        "servicemonitor-crd.yaml",
        r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: servicemonitors.monitoring.coreos.com}
spec:
  group: monitoring.coreos.com
  names: {kind: ServiceMonitor, plural: servicemonitors, listKind: ServiceMonitorList, singular: servicemonitor}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
"#,
    );
    kubectl::kubectl(kc, &["apply", "-f", &service_monitor_crd]);
    kubectl::kubectl(
        kc,
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/servicemonitors.monitoring.coreos.com",
        ],
    );
    let full = format!("{CHART}/ci/full-values.yaml");
    let out = helm_ok(
        &[
            "install",
            "r",
            CHART,
            "-n",
            "ops",
            "--create-namespace",
            "-f",
            &full,
        ],
        k,
    );
    assert!(out.contains("STATUS: deployed"), "{out}");
    for o in template("r", "ops", &["-f", &full]) {
        let (kind, ns, name) = key(&o);
        let mut args = vec![kind.as_str(), name.as_str()];
        if !ns.is_empty() {
            args.extend_from_slice(&["-n", ns.as_str()]);
        }
        let got = get_json(kc, &args).unwrap_or_else(|| panic!("{kind} {ns}/{name} installed"));
        assert!(
            contains(&got, &o),
            "{kind} {ns}/{name}:\n{got:#}\nrendered:\n{o:#}"
        );
    }
    helm_ok(&["uninstall", "r", "-n", "ops", "--wait"], k);
    assert!(get_json(kc, &["clusterrole", "platform-pio"]).is_none());

    // Uninstall with bindings present: the release's objects go, the CRD (crds/) and the
    // bindings stay.
    create_held_binding(
        kc,
        "config/samples/inline_policy.yaml",
        "orders-table",
        &["example.com/keep", FINALIZER],
    );
    kubectl::kubectl(
        kc,
        &[
            "patch",
            "podidentitybinding",
            "s3-reader",
            "-n",
            "default",
            "--type=merge",
            "-p",
            &json!({"metadata": {"finalizers": [FINALIZER]}}).to_string(),
        ],
    );
    let out = helm_ok(&["uninstall", RELEASE, "-n", NAMESPACE, "--wait"], k);
    assert!(out.contains("uninstalled"), "{out}");
    for (kind, ns) in [
        ("deployment", NAMESPACE),
        ("configmap/pod-identity-operator-config", NAMESPACE),
        ("serviceaccount", NAMESPACE),
        ("role/pod-identity-operator-leader-election", NAMESPACE),
        ("clusterrole", ""),
        ("clusterrolebinding", ""),
    ] {
        let (kind, name) = kind.split_once('/').unwrap_or((kind, RELEASE));
        let mut args = vec![kind, name];
        if !ns.is_empty() {
            args.extend_from_slice(&["-n", ns]);
        }
        assert!(get_json(kc, &args).is_none(), "{kind} {name} uninstalled");
    }
    assert!(
        get_json(kc, &["crd", "podidentitybindings.podidentity.dev"]).is_some(),
        "helm uninstall leaves the CRD of crds/"
    );
    assert!(get_json(kc, &["podidentitybinding", "s3-reader", "-n", "default"]).is_some());

    // Without the operator a deleted binding waits on its finalizer...
    kubectl::kubectl(
        kc,
        &[
            "delete",
            "podidentitybinding",
            "s3-reader",
            "-n",
            "default",
            "--wait=false",
        ],
    );
    std::thread::sleep(Duration::from_secs(2));
    let held = get_json(kc, &["podidentitybinding", "s3-reader", "-n", "default"])
        .expect("a deleted binding waits for the operator's finalizer");
    assert!(held["metadata"]["deletionTimestamp"].is_string());

    // ...until the README's command releases it, removing the operator's finalizer only.
    let release_all = readme_block("while read -r ns name i");
    assert!(
        release_all.contains(FINALIZER),
        "the README names {FINALIZER}"
    );
    run_readme_block(&release_all, kc, tmp.path());
    wait_until("s3-reader gone once released", || {
        get_json(kc, &["podidentitybinding", "s3-reader", "-n", "default"]).is_none()
    });
    let other = get_json(kc, &["podidentitybinding", "orders-table", "-n", "default"])
        .expect("a binding another finalizer holds stays");
    assert_eq!(other["metadata"]["finalizers"], json!(["example.com/keep"]));
    kubectl::kubectl(
        kc,
        &[
            "patch",
            "podidentitybinding",
            "orders-table",
            "-n",
            "default",
            "--type=json",
            "-p",
            r#"[{"op": "remove", "path": "/metadata/finalizers"}]"#,
        ],
    );
    wait_until("orders-table gone", || {
        get_json(kc, &["podidentitybinding", "orders-table", "-n", "default"]).is_none()
    });
    // Released twice, or with nothing to release: nothing happens, nothing fails.
    run_readme_block(&release_all, kc, tmp.path());

    // The one-binding form.
    create_held_binding(
        kc,
        "config/samples/s3_reader.yaml",
        "s3-reader",
        &[FINALIZER],
    );
    let release_one = readme_block("kubectl patch podidentitybinding s3-reader");
    run_readme_block(&release_one, kc, tmp.path());
    wait_until(
        "s3-reader gone once released by the one-binding command",
        || get_json(kc, &["podidentitybinding", "s3-reader", "-n", "default"]).is_none(),
    );
}
