//! The kustomize bases: every kustomization renders the objects expected of it, the CRD
//! base is the generated CRD, and the Deployment is locked down, probed, and given the
//! flags and environment `run` reads.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_json::{Value, json};

use crate::NAMESPACE;
use crate::files::{find, key, kustomize, read, root, same, yaml_docs};

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
        let got: BTreeSet<_> = kustomize(base).iter().map(key).collect();
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
    let rendered = kustomize("crd");
    assert!(
        same(&Value::from(rendered), &Value::from(generated.clone())),
        "{hint}"
    );
    let in_default = find(
        &kustomize("default"),
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
    let objs = kustomize("default");
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
    let config = pod_identity_operator::guardrails::GuardrailConfig::parse(text)
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
    let objs = kustomize("default");
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
