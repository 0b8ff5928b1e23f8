//! The Helm chart, `charts/pod-identity-operator`, with the helm pinned in
//! `tests/cluster/helm/go.mod` (built by `scripts/build-control-plane` into its cache
//! folder; `$PIO_CONTROL_PLANE` or `KUBEBUILDER_ASSETS` may name a folder holding it).
//! Without that helm every test here fails, saying how to get it.
//!
//! By scenario:
//! - `lint`: `helm lint`; the values schema refusing bad values, message by message;
//! - `rendered`: `helm template` against `kubectl kustomize config/default`, field by
//!   field, with the documented differences only; every value of `ci/full-values.yaml`
//!   reaching the objects; the chart's CRD and version;
//! - `values_table`: the README's values table (regenerated with `PIO_REGENERATE=1`);
//! - `gitops`: the Flux and Argo CD files that install the chart;
//! - `real_api_server`: on a real kube-apiserver (`support/cluster.rs`): install, the CRD
//!   served, upgrade, uninstall leaving the CRD and the bindings, and the README's command
//!   releasing bindings from the operator's finalizer.

#[path = "../support/cluster.rs"]
mod cluster;
#[path = "../support/files.rs"]
mod files;
#[allow(dead_code)]
#[path = "../support/kubectl.rs"]
mod kubectl;

mod gitops;
mod lint;
mod real_api_server;
mod rendered;
mod values_table;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::Value;

use crate::files::{read, root, yaml_docs};

// Shared by the scenarios: the chart's place and release, and the pinned helm.

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

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
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

/// A values file in a temporary folder.
fn values_file(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("values file written");
    p.display().to_string()
}
