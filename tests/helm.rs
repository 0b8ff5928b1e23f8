//! The Helm chart, `charts/pod-identity-operator`, with the helm pinned in
//! `tests/cluster/helm/go.mod` (built by `scripts/build-control-plane` into its cache
//! folder; `$PIO_CONTROL_PLANE` or `KUBEBUILDER_ASSETS` may name a folder holding it).
//! Without that helm every test here fails, saying how to get it.
//!
//! Checked: `helm lint`; the values schema refusing bad values, message by message;
//! `helm template` against `kubectl kustomize config/default`, field by field, with the
//! documented differences only; every value of `ci/full-values.yaml` reaching the
//! objects; the chart's CRD and version; the README's values table (regenerated with
//! `PIO_REGENERATE=1`); the Flux and Argo CD files that install the chart; and on a real
//! kube-apiserver (`support/cluster.rs`): install, the CRD served, upgrade, uninstall
//! leaving the CRD and the bindings, and the README's command releasing bindings from the
//! operator's finalizer.

#[path = "support/cluster.rs"]
mod cluster;
#[allow(dead_code)]
#[path = "support/kubectl.rs"]
mod kubectl;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use kubectl::kubectl_path;
use pod_identity_operator::config::GuardrailConfig;
use pod_identity_operator::crd::FINALIZER;
use serde::Deserialize;
use serde_json::{Value, json};

const CHART: &str = "charts/pod-identity-operator";
/// The release and namespace that give the names of `config/default`.
const RELEASE: &str = "pod-identity-operator";
const NAMESPACE: &str = "pod-identity-system";
/// `config/manager/config.yaml`'s values, set when comparing with `config/default`.
const SETTINGS: &[&str] = &[
    "--set",
    "clusterName=my-cluster",
    "--set",
    "region=us-east-1",
];

/// What `helm template` (release `pod-identity-operator` in `pod-identity-system`, the
/// settings of `config/manager/config.yaml`) renders differently from `kubectl kustomize
/// config/default`, with the reason. Everything else must be equal, field by field;
/// [`strip_documented_differences`] removes exactly these (checking their values).
const DOCUMENTED_DIFFERENCES: &[(&str, &str)] = &[
    (
        "no Namespace object",
        "Helm does not own its release namespace: `helm install --create-namespace`, then \
         the restricted Pod Security label (chart README)",
    ),
    (
        "labels app.kubernetes.io/instance, app.kubernetes.io/version, \
         app.kubernetes.io/managed-by and helm.sh/chart on every object",
        "Helm's standard labels",
    ),
    (
        "app.kubernetes.io/instance in the Deployment's selector, pod labels and \
         anti-affinity selector",
        "two releases in one namespace select only their own pods",
    ),
    (
        "pod annotation checksum/config",
        "the pods read the settings ConfigMap at start: a changed one rolls them",
    ),
    (
        "the guardrails file compared parsed, not as text",
        "written from values: the same rules, without the comments of \
         config/manager/guardrails.yaml",
    ),
    (
        "the CRD from the chart's crds/ (helm template --include-crds)",
        "Helm's place for CRDs; the same file (chart_crd_is_the_generated_crd)",
    ),
];

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

fn yaml(text: &str) -> Value {
    serde_yaml::from_str(text).unwrap_or_else(|e| panic!("bad YAML: {e}\n{text}"))
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

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// The paths where `a` (kustomize) and `b` (the chart) differ, numbers compared by value.
fn diff(a: &Value, b: &Value, path: &str, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let p = format!("{path}/{k}");
                match (x.get(k), y.get(k)) {
                    (Some(v), Some(w)) => diff(v, w, &p, out),
                    (Some(v), None) => out.push(format!("{p}: only in config/default: {v}")),
                    (None, Some(w)) => out.push(format!("{p}: only in the chart: {w}")),
                    (None, None) => {}
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                diff(v, w, &format!("{path}/{i}"), out);
            }
        }
        (Value::Number(x), Value::Number(y)) if x.as_f64() == y.as_f64() => {}
        (x, y) if x == y => {}
        (x, y) => out.push(format!("{path}: config/default {x}, the chart {y}")),
    }
}

/// Every value of `want` is in `got` (objects key by key, lists item by item).
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

fn chart_yaml() -> Value {
    yaml(&read(&format!("{CHART}/Chart.yaml")))
}

/// The helm version `tests/cluster/helm/go.mod` pins.
fn pinned_helm() -> String {
    read("tests/cluster/helm/go.mod")
        .lines()
        .find_map(|l| l.trim().strip_prefix("helm.sh/helm/v4 "))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("tests/cluster/helm/go.mod requires helm.sh/helm/v4")
        .to_owned()
}

/// The pinned helm, from the control-plane folder (see the module doc). Panics, saying
/// how to get it, when it is missing or of another version.
fn helm_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let pinned = pinned_helm();
        let set = ["KUBEBUILDER_ASSETS", "PIO_CONTROL_PLANE"]
            .into_iter()
            .find(|v| std::env::var_os(v).is_some_and(|d| !d.is_empty()));
        let hint = match set {
            Some(var) => format!(
                "the chart tests need helm {pinned} in the folder {var} names: build it there \
                 (`cd tests/cluster/helm && GOTOOLCHAIN=local go build -ldflags \
                 '-X helm.sh/helm/v4/internal/version.version={pinned}' -o \"${var}/helm\" \
                 helm.sh/helm/v4/cmd/helm`), or unset {var} so that \
                 scripts/build-control-plane builds it into its cache folder"
            ),
            None => format!(
                "the chart tests need helm {pinned}: run `bash scripts/build-control-plane` \
                 (it builds it from tests/cluster/helm into its cache folder)"
            ),
        };
        let binaries = cluster::Binaries::locate()
            .unwrap_or_else(|e| panic!("no control-plane folder to find helm in: {e}\n{hint}"));
        let bin = binaries.path("helm");
        assert!(
            bin.is_file(),
            "no helm in {}.\n{hint}",
            binaries.dir.display()
        );
        let out = Command::new(&bin)
            .args(["version", "--template", "{{.Version}}"])
            .output()
            .unwrap_or_else(|e| panic!("{} does not run: {e}\n{hint}", bin.display()));
        let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        assert_eq!(
            version,
            pinned,
            "{} is not the pinned helm.\n{hint}",
            bin.display()
        );
        bin
    })
}

/// helm with its config, cache and data folders under the test target folder (not
/// `$HOME`), and `kubeconfig` when given.
fn helm_run(args: &[&str], kubeconfig: Option<&Path>) -> Output {
    let home = Path::new(env!("CARGO_TARGET_TMPDIR")).join("helm-home");
    let mut cmd = Command::new(helm_bin());
    cmd.args(args)
        .current_dir(root())
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_DATA_HOME", home.join("data"))
        .env_remove("HELM_NAMESPACE")
        .env_remove("HELM_KUBECONTEXT");
    match kubeconfig {
        Some(k) => cmd.env("KUBECONFIG", k),
        // Nothing offline may reach a cluster by accident.
        None => cmd.env("KUBECONFIG", home.join("no-cluster")),
    };
    cmd.output().expect("helm runs")
}

/// helm, which must succeed; its stdout.
fn helm_ok(args: &[&str], kubeconfig: Option<&Path>) -> String {
    let out = helm_run(args, kubeconfig);
    assert!(
        out.status.success(),
        "helm {} failed:\n{}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("helm prints UTF-8")
}

/// helm, which must fail; its stdout and stderr.
fn helm_err(args: &[&str], kubeconfig: Option<&Path>) -> String {
    let out = helm_run(args, kubeconfig);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success(),
        "helm {} succeeded, but should have failed:\n{text}",
        args.join(" ")
    );
    text
}

/// `helm template <release> charts/pod-identity-operator -n <namespace> --include-crds`.
fn template(release: &str, namespace: &str, args: &[&str]) -> Vec<Value> {
    let mut all = vec![
        "template",
        release,
        CHART,
        "--namespace",
        namespace,
        "--include-crds",
    ];
    all.extend_from_slice(args);
    yaml_docs(&helm_ok(&all, None))
}

/// `kubectl kustomize config/default`.
fn kustomize_default() -> Vec<Value> {
    let out = Command::new(kubectl_path())
        .arg("kustomize")
        .arg(root().join("config/default"))
        .output()
        .expect("kubectl runs");
    assert!(
        out.status.success(),
        "kubectl kustomize config/default: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    yaml_docs(&String::from_utf8_lossy(&out.stdout))
}

/// A values file in a temporary folder.
fn values_file(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("values file written");
    p.display().to_string()
}

// ---------------------------------------------------------------------------------
// lint and schema

#[test]
fn chart_lints_with_default_and_full_values() {
    // clusterName and region have no default: with nothing else given, the schema
    // refuses the values, naming both.
    let bare = helm_err(&["lint", "--strict", CHART], None);
    assert!(
        bare.contains("missing properties 'clusterName', 'region'"),
        "{bare}"
    );
    // The defaults of every other value.
    let mut args = vec!["lint", "--strict", CHART];
    args.extend_from_slice(SETTINGS);
    let out = helm_ok(&args, None);
    assert!(
        out.contains("1 chart(s) linted, 0 chart(s) failed"),
        "{out}"
    );
    let full = format!("{CHART}/ci/full-values.yaml");
    let out = helm_ok(&["lint", "--strict", CHART, "-f", &full], None);
    assert!(
        out.contains("1 chart(s) linted, 0 chart(s) failed"),
        "{out}"
    );
}

#[test]
fn schema_refuses_bad_values_with_clear_messages() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let ok = "clusterName: my-cluster\nregion: us-east-1\n";
    // (values added to `ok`, the message helm must print)
    let cases: &[(&str, &str)] = &[
        ("", ""), // the valid base, rendered below
        (
            "clusterName: ''\n",
            "at '/clusterName': minLength: got 0, want 1",
        ),
        (
            "clusterName: 'my cluster'\n",
            "at '/clusterName': 'my cluster' does not match pattern",
        ),
        (
            "region: Ireland\n",
            "at '/region': 'Ireland' does not match pattern",
        ),
        (
            "replicaCount: 0\n",
            "at '/replicaCount': minimum: got 0, want 1",
        ),
        (
            "replicaCount: 1.5\n",
            "at '/replicaCount': got number, want integer",
        ),
        (
            "replicaCount: two\n",
            "at '/replicaCount': got string, want integer",
        ),
        (
            "leaderElection: {enabled: false}\n",
            "at '/replicaCount': maximum: got 2, want 1",
        ),
        (
            "replicas: 3\n",
            "at '': additional properties 'replicas' not allowed",
        ),
        (
            "image: {pullPolicy: Sometimes}\n",
            "at '/image/pullPolicy': value must be one of 'Always', 'IfNotPresent', 'Never'",
        ),
        (
            "extraArgs: [resync-interval=60]\n",
            "at '/extraArgs/0': 'resync-interval=60' does not match pattern '^--'",
        ),
        (
            "extraEnv: [{value: x}]\n",
            "at '/extraEnv/0': missing property 'name'",
        ),
        (
            "podDisruptionBudget: {enabled: true, minAvailable: half}\n",
            "at '/podDisruptionBudget/minAvailable': 'half' does not match pattern '^[0-9]+%$'",
        ),
        (
            "metrics: {serviceMonitor: {interval: 30}}\n",
            "at '/metrics/serviceMonitor/interval': got number, want string",
        ),
        (
            "guardrails: {rules: {platform: {}}}\n",
            "at '/guardrails/rules': got object, want array",
        ),
        (
            "guardrails: {rules: null}\n",
            "at '/guardrails': missing property 'rules'",
        ),
        (
            "guardrails: {rules: [{namespaces: [a]}]}\n",
            "at '/guardrails/rules/0': missing property 'name'",
        ),
        (
            "guardrails: {rules: [{name: a}]}\n",
            "at '/guardrails/rules/0': missing property 'namespaces'\n  - at '/guardrails/rules/0': missing property 'namespaceSelector'",
        ),
        (
            "guardrails: {rules: [{name: a, namespace: [a]}]}\n",
            "at '/guardrails/rules/0': additional properties 'namespace' not allowed",
        ),
        (
            "guardrails: {rules: [{name: a, namespaces: [a], allowEscalation: [everything]}]}\n",
            "at '/guardrails/rules/0/allowEscalation/0': value must be one of",
        ),
        (
            "guardrails: {rules: [{name: a, namespaces: [a], maxSessionDuration: 60}]}\n",
            "at '/guardrails/rules/0/maxSessionDuration': minimum: got 60, want 3,600",
        ),
    ];
    for (i, (extra, message)) in cases.iter().enumerate() {
        let file = values_file(
            tmp.path(),
            &format!("case{i}.yaml"),
            &format!("{ok}{extra}"),
        );
        let args = ["template", RELEASE, CHART, "-f", &file];
        if message.is_empty() {
            helm_ok(&args, None);
            continue;
        }
        let out = helm_err(&args, None);
        assert!(
            out.contains("values don't meet the specifications of the schema"),
            "{extra}: refused by the schema, not later:\n{out}"
        );
        assert!(
            out.contains(message),
            "{extra}: wanted {message:?} in:\n{out}"
        );
    }
    // `--set` alone, as people install.
    let out = helm_err(
        &["template", RELEASE, CHART, "--set", "region=us-east-1"],
        None,
    );
    assert!(out.contains("missing property 'clusterName'"), "{out}");
}

// ---------------------------------------------------------------------------------
// template

/// Removes from `chart` what [`DOCUMENTED_DIFFERENCES`] allows (checking its values),
/// and writes the guardrails file of both as parsed YAML.
fn strip_documented_differences(chart: &mut Value, kustomize: &mut Value) {
    let what = format!("{:?}", key(chart));
    let chart_version = chart_yaml()["version"]
        .as_str()
        .expect("Chart.yaml version")
        .to_owned();
    let is_crd = chart["kind"] == "CustomResourceDefinition";
    if let Some(labels) = chart
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        for (label, want) in [
            ("app.kubernetes.io/instance", RELEASE.to_owned()),
            (
                "app.kubernetes.io/version",
                env!("CARGO_PKG_VERSION").to_owned(),
            ),
            ("app.kubernetes.io/managed-by", "Helm".to_owned()),
            (
                "helm.sh/chart",
                format!("pod-identity-operator-{chart_version}"),
            ),
        ] {
            if is_crd {
                break;
            }
            let got = labels.remove(label);
            assert_eq!(got, Some(json!(want)), "{what}: label {label}");
        }
    }
    if chart["kind"] == "Deployment" {
        for p in [
            "/spec/selector/matchLabels",
            "/spec/template/metadata/labels",
            "/spec/template/spec/affinity/podAntiAffinity/preferredDuringSchedulingIgnoredDuringExecution/0/podAffinityTerm/labelSelector/matchLabels",
        ] {
            let labels = chart
                .pointer_mut(p)
                .and_then(Value::as_object_mut)
                .unwrap_or_else(|| panic!("{what}: {p}"));
            assert_eq!(
                labels.remove("app.kubernetes.io/instance"),
                Some(json!(RELEASE)),
                "{what}: {p}"
            );
        }
        let annotations = chart
            .pointer_mut("/spec/template/metadata/annotations")
            .and_then(Value::as_object_mut)
            .expect("pod annotations");
        let checksum = annotations
            .remove("checksum/config")
            .expect("checksum/config pod annotation");
        let checksum = checksum.as_str().expect("a string");
        assert!(
            checksum.len() == 64 && checksum.chars().all(|c| c.is_ascii_hexdigit()),
            "checksum/config is a sha256: {checksum}"
        );
    }
    if chart["kind"] == "ConfigMap"
        && chart["metadata"]["name"] == "pod-identity-operator-guardrails"
    {
        for o in [chart, kustomize] {
            let text = o["data"]["guardrails.yaml"]
                .as_str()
                .expect("guardrails.yaml")
                .to_owned();
            GuardrailConfig::parse(&text).expect("the guardrails parse");
            o["data"]["guardrails.yaml"] = yaml(&text);
        }
    }
}

#[test]
fn template_matches_config_default_but_for_documented_differences() {
    let chart = template(RELEASE, NAMESPACE, SETTINGS);
    let kustomize = kustomize_default();
    let documented: String = DOCUMENTED_DIFFERENCES
        .iter()
        .map(|(what, why)| format!("\n  - {what}: {why}"))
        .collect();

    let chart_keys: BTreeSet<_> = chart.iter().map(key).collect();
    let kustomize_keys: BTreeSet<_> = kustomize
        .iter()
        .filter(|o| o["kind"] != "Namespace")
        .map(key)
        .collect();
    assert_eq!(
        chart_keys, kustomize_keys,
        "the chart renders the objects of config/default; documented differences:{documented}"
    );
    assert_eq!(chart.len(), chart_keys.len(), "no object twice");

    let mut differences = Vec::new();
    for k in &kustomize {
        if k["kind"] == "Namespace" {
            continue;
        }
        let (kind, _, name) = key(k);
        let mut c = find(&chart, &kind, &name).clone();
        let mut k = k.clone();
        strip_documented_differences(&mut c, &mut k);
        diff(&k, &c, &format!("{kind} {name}"), &mut differences);
    }
    assert!(
        differences.is_empty(),
        "the chart differs from config/default beyond the documented differences:\n{}\n\
         documented:{documented}",
        differences.join("\n")
    );
}

#[test]
fn template_with_full_values_sets_every_option() {
    let values = yaml(&read(&format!("{CHART}/ci/full-values.yaml")));
    let full = format!("{CHART}/ci/full-values.yaml");
    let objs = template("r", "ops", &["-f", &full]);
    let keys: BTreeSet<_> = objs.iter().map(key).collect();
    let want: BTreeSet<(String, String, String)> = [
        (
            "CustomResourceDefinition",
            "",
            "podidentitybindings.podidentity.dev",
        ),
        ("ServiceAccount", "ops", "pio-controller"),
        ("ClusterRole", "", "platform-pio"),
        ("ClusterRoleBinding", "", "platform-pio"),
        ("Role", "ops", "platform-pio-leader-election"),
        ("RoleBinding", "ops", "platform-pio-leader-election"),
        ("ConfigMap", "ops", "platform-pio-config"),
        ("ConfigMap", "ops", "platform-pio-guardrails"),
        ("Deployment", "ops", "platform-pio"),
        ("PodDisruptionBudget", "ops", "platform-pio"),
        ("Service", "ops", "platform-pio-metrics"),
        ("ServiceMonitor", "ops", "platform-pio"),
    ]
    .iter()
    .map(|(k, n, m)| ((*k).to_owned(), (*n).to_owned(), (*m).to_owned()))
    .collect();
    assert_eq!(keys, want);
    for o in &objs {
        if o["kind"] != "CustomResourceDefinition" {
            assert_eq!(
                o["metadata"]["labels"]["app.kubernetes.io/name"], "pio",
                "nameOverride"
            );
            assert_eq!(o["metadata"]["labels"]["app.kubernetes.io/instance"], "r");
        }
    }

    // The operator's identity.
    let sa = find(&objs, "ServiceAccount", "pio-controller");
    assert_eq!(
        sa["metadata"]["annotations"],
        values["serviceAccount"]["annotations"]
    );
    let subject = json!([{"kind": "ServiceAccount", "name": "pio-controller", "namespace": "ops"}]);
    for (kind, name) in [
        ("ClusterRoleBinding", "platform-pio"),
        ("RoleBinding", "platform-pio-leader-election"),
    ] {
        assert_eq!(find(&objs, kind, name)["subjects"], subject, "{kind}");
    }

    // Settings and guardrails.
    let cm = find(&objs, "ConfigMap", "platform-pio-config");
    assert_eq!(
        cm["data"],
        json!({"clusterName": "prod-eu", "region": "eu-west-1", "logLevel": "debug,kube=info",
            "operatorRoleArn": "arn:aws:iam::111122223333:role/pod-identity-operator"})
    );
    let text = find(&objs, "ConfigMap", "platform-pio-guardrails")["data"]["guardrails.yaml"]
        .as_str()
        .expect("guardrails.yaml");
    let config = GuardrailConfig::parse(text).expect("the guardrails of the values parse");
    assert_eq!(config.rules.len(), 2);
    assert_eq!(yaml(text), values["guardrails"]);

    // The Deployment.
    let deploy = find(&objs, "Deployment", "platform-pio");
    assert_eq!(deploy["spec"]["replicas"], 3);
    let pod = &deploy["spec"]["template"];
    let spec = &pod["spec"];
    let selector = deploy["spec"]["selector"]["matchLabels"].clone();
    assert_eq!(
        selector,
        json!({"app.kubernetes.io/name": "pio", "app.kubernetes.io/component": "controller", "app.kubernetes.io/instance": "r"})
    );
    assert_eq!(pod["metadata"]["labels"]["example.com/tier"], "control");
    assert_eq!(
        pod["metadata"]["annotations"]["example.com/team"],
        "platform"
    );
    assert_eq!(
        pod["metadata"]["annotations"]["prometheus.io/scrape"],
        "true"
    );
    assert_eq!(spec["serviceAccountName"], "pio-controller");
    assert_eq!(spec["imagePullSecrets"], values["imagePullSecrets"]);
    assert_eq!(spec["priorityClassName"], "system-cluster-critical");
    assert_eq!(spec["nodeSelector"], values["nodeSelector"]);
    assert_eq!(spec["tolerations"], values["tolerations"]);
    assert_eq!(
        spec["affinity"], values["affinity"],
        "affinity replaces the default"
    );
    let c = &spec["containers"][0];
    assert_eq!(
        c["image"],
        "111122223333.dkr.ecr.eu-west-1.amazonaws.com/pod-identity-operator:0.1.0-rc.1"
    );
    assert_eq!(c["imagePullPolicy"], "Always");
    assert_eq!(c["resources"], values["resources"]);
    let args = strings(&c["args"]);
    assert_eq!(
        args,
        [
            "run",
            "--leader-elect",
            "--health-addr=0.0.0.0:8081",
            "--metrics-addr=0.0.0.0:8080",
            "--log-format=json",
            "--config=/etc/pod-identity-operator/guardrails.yaml",
            "--leader-election-name=platform-pio",
            "--resync-interval=600",
            "--concurrency=8",
        ]
    );
    let env = c["env"].as_array().expect("env");
    assert_eq!(
        env.last(),
        Some(&json!({"name": "PIO_IAM_RATE", "value": "5"}))
    );
    for e in &env[..3] {
        assert_eq!(
            e["valueFrom"]["configMapKeyRef"]["name"],
            "platform-pio-config"
        );
    }
    assert_eq!(
        spec["volumes"][1]["configMap"]["name"],
        "platform-pio-guardrails"
    );
    run_takes_flags_and_env(&args, env);

    // PodDisruptionBudget, metrics Service and ServiceMonitor.
    let pdb = find(&objs, "PodDisruptionBudget", "platform-pio");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    assert!(pdb["spec"].get("maxUnavailable").is_none());
    assert_eq!(pdb["spec"]["selector"]["matchLabels"], selector);
    let svc = find(&objs, "Service", "platform-pio-metrics");
    assert_eq!(
        svc["metadata"]["annotations"],
        values["metrics"]["service"]["annotations"]
    );
    assert_eq!(svc["spec"]["selector"], selector);
    assert_eq!(
        svc["spec"]["ports"],
        json!([{"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}])
    );
    let sm = find(&objs, "ServiceMonitor", "platform-pio");
    assert_eq!(sm["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(sm["metadata"]["labels"]["release"], "prometheus");
    assert!(contains(
        &svc["metadata"]["labels"],
        &sm["spec"]["selector"]["matchLabels"]
    ));
    assert_eq!(
        sm["spec"]["namespaceSelector"],
        json!({"matchNames": ["ops"]})
    );
    assert_eq!(
        sm["spec"]["endpoints"],
        json!([{"port": "metrics", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}])
    );

    // maxUnavailable replaces minAvailable; no leader election: one replica, no Lease
    // rights, no --leader-elect.
    let objs = template(
        RELEASE,
        NAMESPACE,
        &[
            "--set",
            "clusterName=c,region=us-east-1,replicaCount=1,leaderElection.enabled=false",
            "--set",
            "podDisruptionBudget.enabled=true,podDisruptionBudget.maxUnavailable=50%",
        ],
    );
    let pdb = find(&objs, "PodDisruptionBudget", RELEASE);
    assert_eq!(pdb["spec"]["maxUnavailable"], "50%");
    assert!(pdb["spec"].get("minAvailable").is_none());
    assert!(
        !objs
            .iter()
            .any(|o| o["kind"] == "Role" || o["kind"] == "RoleBinding")
    );
    let deploy = find(&objs, "Deployment", RELEASE);
    let args = strings(&deploy["spec"]["template"]["spec"]["containers"][0]["args"]);
    assert!(!args.iter().any(|a| a.starts_with("--leader")), "{args:?}");

    // An existing ServiceAccount.
    let objs = template(
        RELEASE,
        NAMESPACE,
        &[
            "--set",
            "clusterName=c,region=us-east-1,serviceAccount.create=false,serviceAccount.name=mine",
        ],
    );
    assert!(!objs.iter().any(|o| o["kind"] == "ServiceAccount"));
    assert_eq!(
        find(&objs, "Deployment", RELEASE)["spec"]["template"]["spec"]["serviceAccountName"],
        "mine"
    );
    let out = helm_err(
        &[
            "template",
            RELEASE,
            CHART,
            "--set",
            "clusterName=c,region=us-east-1,serviceAccount.create=false",
        ],
        None,
    );
    assert!(
        out.contains("serviceAccount.name is required when serviceAccount.create is false"),
        "{out}"
    );
}

/// Every flag the Deployment passes and every variable it sets is one `run` takes.
fn run_takes_flags_and_env(args: &[&str], env: &[Value]) {
    let out = Command::new(env!("CARGO_BIN_EXE_pod-identity-operator"))
        .args(["run", "--help"])
        .output()
        .expect("the operator binary runs");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout).into_owned();
    for arg in &args[1..] {
        let flag = arg.split('=').next().unwrap_or(arg);
        assert!(
            help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}\n")),
            "the chart passes {flag}, which `run` does not take"
        );
    }
    for e in env {
        let name = e["name"].as_str().expect("env name");
        assert!(
            name == "RUST_LOG" || help.contains(&format!("[env: {name}=")),
            "the chart sets {name}, which `run` does not read"
        );
    }
}

#[test]
fn chart_crd_is_the_generated_crd_and_versions_follow_the_crate() {
    assert_eq!(
        read(&format!("{CHART}/crds/podidentitybindings.yaml")),
        read("crds/podidentitybindings.yaml"),
        "the chart's CRD differs from crds/: run `cp crds/podidentitybindings.yaml {CHART}/crds/`"
    );
    let chart = chart_yaml();
    assert_eq!(chart["apiVersion"], "v2");
    assert_eq!(chart["name"], "pod-identity-operator");
    assert_eq!(
        chart["appVersion"],
        env!("CARGO_PKG_VERSION"),
        "Chart.yaml appVersion (the default image tag) follows the crate version"
    );
}

// ---------------------------------------------------------------------------------
// README values table

const TABLE_START: &str = "<!-- values:start";
const TABLE_END: &str = "<!-- values:end -->";

/// One documented key of values.yaml.
struct Row {
    key: String,
    kind: String,
    default: String,
    description: String,
}

/// The `# --` comments of values.yaml: each documents the key on the line after it (or
/// on the commented line `# key: example` right after it, for a key with no default).
/// `# -- (type) text` names the type when the default does not show it.
fn values_rows(text: &str, values: &Value) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut doc: Option<Vec<String>> = None;
    let is_key = |s: &str| {
        s.split_once(':').is_some_and(|(k, rest)| {
            !k.is_empty()
                && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && (rest.is_empty() || rest.starts_with(' '))
        })
    };
    for line in text.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if let Some(c) = trimmed.strip_prefix("# --") {
            doc = Some(vec![c.trim().to_owned()]);
            continue;
        }
        if let Some(c) = trimmed.strip_prefix('#') {
            let c = c.trim();
            match doc.as_mut() {
                Some(lines) if is_key(c) => {
                    // A key with no default, shown commented out with an example.
                    let (k, example) = c.split_once(':').expect("a key");
                    let path = path_of(&stack, indent, k);
                    let example: Value = yaml(example.trim());
                    rows.push(row(&path, &example, lines, true));
                    doc = None;
                }
                Some(lines) => lines.push(c.to_owned()),
                None => {}
            }
            continue;
        }
        if trimmed.is_empty() || trimmed.starts_with('-') || !is_key(trimmed) {
            doc = None;
            continue;
        }
        let k = trimmed.split_once(':').expect("a key").0;
        while stack.last().is_some_and(|(i, _)| *i >= indent) {
            stack.pop();
        }
        let path = path_of(&stack, indent, k);
        stack.push((indent, k.to_owned()));
        if let Some(lines) = doc.take() {
            let pointer = format!("/{}", path.replace('.', "/"));
            let value = values
                .pointer(&pointer)
                .unwrap_or_else(|| panic!("values.yaml has {path}"));
            rows.push(row(&path, value, &lines, false));
        }
    }
    rows
}

fn path_of(stack: &[(usize, String)], indent: usize, key: &str) -> String {
    stack
        .iter()
        .filter(|(i, _)| *i < indent)
        .map(|(_, k)| k.as_str())
        .chain([key])
        .collect::<Vec<_>>()
        .join(".")
}

fn row(path: &str, value: &Value, lines: &[String], required: bool) -> Row {
    let mut description = lines.join(" ").trim().to_owned();
    let mut kind = match value {
        Value::String(_) => "string",
        Value::Number(n) if n.is_i64() || n.is_u64() => "int",
        Value::Number(_) => "number",
        Value::Bool(_) => "bool",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
        Value::Null => "null",
    }
    .to_owned();
    if let Some(rest) = description.strip_prefix('(')
        && let Some((t, text)) = rest.split_once(')')
    {
        kind = t.to_owned();
        description = text.trim().to_owned();
    }
    let default = if required {
        format!("required, e.g. `{}`", value_text(value))
    } else {
        format!("`{}`", value_text(value))
    };
    Row {
        key: path.to_owned(),
        kind,
        default,
        description,
    }
}

fn value_text(v: &Value) -> String {
    v.to_string()
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

fn values_table() -> String {
    let text = read(&format!("{CHART}/values.yaml"));
    let values = yaml(&text);
    let rows = values_rows(&text, &values);

    // Every value is documented, itself or through a documented parent.
    let documented: BTreeSet<&str> = rows.iter().map(|r| r.key.as_str()).collect();
    let mut leaves = Vec::new();
    collect_leaves(&values, "", &mut leaves);
    let undocumented: Vec<&String> = leaves
        .iter()
        .filter(|leaf| {
            !documented
                .iter()
                .any(|d| leaf.as_str() == *d || leaf.starts_with(&format!("{d}.")))
        })
        .collect();
    assert!(
        undocumented.is_empty(),
        "values.yaml keys without a `# --` comment: {undocumented:?}"
    );

    let mut out = String::from("| Key | Type | Default | Description |\n|---|---|---|---|\n");
    for r in &rows {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            r.key,
            cell(&r.kind),
            cell(&r.default),
            cell(&r.description)
        ));
    }
    out
}

fn collect_leaves(v: &Value, path: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                collect_leaves(v, &p, out);
            }
        }
        _ => out.push(path.to_owned()),
    }
}

#[test]
fn chart_readme_values_table_is_current() {
    let path = root().join(CHART).join("README.md");
    let readme = read(&format!("{CHART}/README.md"));
    let start = readme
        .find(TABLE_START)
        .expect("README has the values:start marker");
    let body = start + readme[start..].find('\n').expect("a line end") + 1;
    let end = readme
        .find(TABLE_END)
        .expect("README has the values:end marker");
    let table = values_table();
    if readme[body..end] == table {
        return;
    }
    if std::env::var_os("PIO_REGENERATE").is_some_and(|v| v == "1") {
        let new = format!("{}{table}{}", &readme[..body], &readme[end..]);
        std::fs::write(&path, new).expect("README written");
        return;
    }
    panic!(
        "{} has a stale values table: run `PIO_REGENERATE=1 cargo test --test helm chart_readme`",
        path.display()
    );
}

// ---------------------------------------------------------------------------------
// GitOps

#[test]
fn flux_and_argocd_install_the_chart_with_valid_values() {
    let tmp = tempfile::tempdir().expect("temp dir");

    // Flux: a Kustomization applies config/flux/helm/ (the HelmRelease) and waits for
    // it; the bindings' Kustomization depends on it and keeps the health checks of the
    // kustomize example.
    let docs = yaml_docs(&read("config/flux/helm-release.yaml"));
    let kustomize_example = yaml_docs(&read("config/flux/pod-identity.yaml"));
    let source = find(&docs, "GitRepository", "pod-identity-operator");
    assert_eq!(
        source,
        find(&kustomize_example, "GitRepository", "pod-identity-operator"),
        "one GitRepository for both Flux examples"
    );
    let operator = docs
        .iter()
        .find(|d| d["kind"] == "Kustomization" && d["spec"]["path"] == "./config/flux/helm")
        .expect("a Kustomization applying config/flux/helm");
    assert_eq!(operator["spec"]["wait"], true);
    let bindings = find(&docs, "Kustomization", "pod-identity-bindings");
    assert_eq!(
        bindings["spec"]["dependsOn"],
        json!([{"name": operator["metadata"]["name"]}])
    );
    let kustomize_bindings = find(&kustomize_example, "Kustomization", "pod-identity-bindings");
    for field in ["path", "wait", "timeout", "healthCheckExprs"] {
        assert_eq!(
            bindings["spec"][field], kustomize_bindings["spec"][field],
            "the bindings' {field} as in config/flux/pod-identity.yaml"
        );
    }

    let helm_dir: BTreeSet<String> = std::fs::read_dir(root().join("config/flux/helm"))
        .expect("config/flux/helm")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        helm_dir,
        BTreeSet::from(["helmrelease.yaml".to_owned(), "namespace.yaml".to_owned()])
    );
    assert_eq!(
        yaml(&read("config/flux/helm/namespace.yaml")),
        yaml(&read("config/default/namespace.yaml")),
        "the namespace of config/default, with its Pod Security label"
    );
    let release = yaml(&read("config/flux/helm/helmrelease.yaml"));
    assert_eq!(release["apiVersion"], "helm.toolkit.fluxcd.io/v2");
    assert_eq!(release["kind"], "HelmRelease");
    assert_eq!(release["spec"]["releaseName"], RELEASE);
    assert_eq!(release["spec"]["targetNamespace"], NAMESPACE);
    assert_eq!(
        release["spec"]["chart"]["spec"]["chart"],
        format!("./{CHART}")
    );
    assert_eq!(
        release["spec"]["chart"]["spec"]["sourceRef"],
        json!({"kind": "GitRepository", "name": source["metadata"]["name"]})
    );
    assert_eq!(release["spec"]["upgrade"]["crds"], "CreateReplace");
    // The values after the operator Kustomization's patch, rendered by the chart.
    let patch = &operator["spec"]["patches"][0];
    assert_eq!(patch["target"]["kind"], "HelmRelease");
    assert_eq!(patch["target"]["name"], release["metadata"]["name"]);
    let ops: json_patch::Patch =
        serde_json::from_value(yaml(patch["patch"].as_str().expect("patch text")))
            .expect("a JSON6902 patch");
    let mut patched = release.clone();
    json_patch::patch(&mut patched, &ops).expect("the patch applies to the HelmRelease");
    let values = serde_json::to_string(&patched["spec"]["values"]).expect("JSON");
    let file = values_file(tmp.path(), "flux.yaml", &values);
    let objs = template(RELEASE, NAMESPACE, &["-f", &file]);
    assert_eq!(
        find(&objs, "ConfigMap", "pod-identity-operator-config")["data"]["clusterName"],
        "my-cluster"
    );

    // Argo CD: the chart's folder, the release name and namespace, values the chart takes.
    let app = yaml(&read("config/argocd/application.yaml"));
    assert_eq!(app["apiVersion"], "argoproj.io/v1alpha1");
    assert_eq!(app["kind"], "Application");
    assert_eq!(app["spec"]["source"]["path"], CHART);
    assert_eq!(app["spec"]["source"]["repoURL"], source["spec"]["url"]);
    assert_eq!(app["spec"]["source"]["helm"]["releaseName"], RELEASE);
    assert_eq!(app["spec"]["destination"]["namespace"], NAMESPACE);
    assert!(strings(&app["spec"]["syncPolicy"]["syncOptions"]).contains(&"CreateNamespace=true"));
    assert_eq!(
        app["spec"]["syncPolicy"]["managedNamespaceMetadata"]["labels"],
        yaml(&read("config/default/namespace.yaml"))["metadata"]["labels"]
            .as_object()
            .map(|l| json!({"pod-security.kubernetes.io/enforce": l["pod-security.kubernetes.io/enforce"]}))
            .expect("labels")
    );
    assert!(
        app["metadata"].get("finalizers").is_none(),
        "deleting the Application must not delete the CRD and every binding"
    );
    let values =
        serde_json::to_string(&app["spec"]["source"]["helm"]["valuesObject"]).expect("JSON");
    let file = values_file(tmp.path(), "argocd.yaml", &values);
    template(RELEASE, NAMESPACE, &["-f", &file]);
}

// ---------------------------------------------------------------------------------
// a real API server

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
