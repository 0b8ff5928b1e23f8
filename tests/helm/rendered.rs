//! `helm template` against `kubectl kustomize config/default`, field by field, with the
//! documented differences only; every value of `ci/full-values.yaml` reaching the objects
//! (the operator's flags and environment checked against what `run` reads); the chart's
//! CRD is the generated one and its versions follow the crate's.

use std::collections::BTreeSet;
use std::process::Command;

use pod_identity_operator::guardrails::GuardrailConfig;
use serde_json::{Value, json};

use crate::files::{contains, find, key, kustomize, read, yaml};
use crate::{CHART, NAMESPACE, RELEASE, SETTINGS, helm_err, strings, template};

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

fn chart_yaml() -> Value {
    yaml(&read(&format!("{CHART}/Chart.yaml")))
}

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
    let kustomize = kustomize("default");
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
