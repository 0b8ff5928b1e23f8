//! `config/default` and `config/samples` applied with `kubectl apply` to kubesim and to a
//! real kube-apiserver: client-side from the rendered text, and server-side with `-k`.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use kube::api::{Api, DynamicObject};
use kube::discovery::Discovery;
use kube::{Client, ResourceExt};
use pod_identity_operator::crd::PodIdentityBinding;
use pod_identity_operator::kubesim::KubeSim;
use serde_json::Value;

use crate::cluster;
use crate::files::{contains, key, kustomize, kustomize_text, root, yaml_docs};
use crate::kubectl::kubectl_path;

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
    let default = kustomize_text("default");
    let samples = kustomize_text("samples");
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
        assert_eq!(applied, kustomize(base).len(), "{base}:\n{out}");
        tokio::task::block_in_place(|| k.wait_crd_established());
    }
    let discovery = Discovery::new(client.clone())
        .run()
        .await
        .expect("discovery");
    assert_applied(&client, &discovery, &kustomize("default")).await;
    assert_applied(&client, &discovery, &kustomize("samples")).await;
}
