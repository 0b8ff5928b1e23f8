//! The Flux and Argo CD files that install the chart, with values the chart accepts.

use std::collections::BTreeSet;

use serde_json::json;

use crate::files::{find, read, root, yaml, yaml_docs};
use crate::{CHART, NAMESPACE, RELEASE, strings, template, values_file};

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
