//! kubesim against the real `kubectl` (1.32), through a kubeconfig kubesim wrote; the
//! same kubectl session also runs against a real kube-apiserver, with the same
//! assertions.
//!
//! kubectl and the real API server must be there; these tests fail (never skip) when
//! they are not.

#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/differential.rs"]
mod differential;
#[allow(dead_code)]
#[path = "support/kubectl.rs"]
mod kubectl;
use kubectl::kubectl_path;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::{Client, ResourceExt};
use pod_identity_operator::kubesim::KubeSim;
use serde_json::json;

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Color, type: string, jsonPath: .spec.color}
    - {name: Ready, type: string, jsonPath: '.status.conditions[?(@.type=="Ready")].status'}
    - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [color]
            properties:
              color: {type: string, enum: [red, blue, green]}
          status:
            type: object
            x-kubernetes-preserve-unknown-fields: true
"#;

fn objects(color: &str, data: &str) -> String {
    format!(
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {{name: w1}}\nspec: {{color: {color}}}\n---\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c1}}\ndata: {{a: \"{data}\"}}\n"
    )
}

struct Kubectl {
    bin: PathBuf,
    kubeconfig: PathBuf,
    cache: PathBuf,
    dir: PathBuf,
}

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Kubectl {
    async fn run(&self, args: &[&str]) -> Out {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args)
            .arg("--cache-dir")
            .arg(&self.cache)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", &self.dir)
            .current_dir(&self.dir);
        let shown = args.join(" ");
        let out = tokio::task::spawn_blocking(move || cmd.output())
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("running kubectl {shown}: {e}"));
        Out {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert!(
            out.ok,
            "kubectl {} failed:\n{}\n{}",
            args.join(" "),
            out.stdout,
            out.stderr
        );
        out.stdout
    }

    fn write(&self, name: &str, text: &str) -> String {
        let p = self.dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_string_lossy().into_owned()
    }
}

fn widgets(client: &Client) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.com", "v1", "Widget"),
        "widgets",
    );
    Api::namespaced_with(client.clone(), "default", &ar)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_verbs_work_against_kubesim_and_the_real_server() {
    eprintln!("-- kubesim over TCP");
    let sim = KubeSim::new();
    let server = sim.serve_tcp("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let kubeconfig = tmp.path().join("kubeconfig");
    server.write_kubeconfig(&kubeconfig).unwrap();
    kubectl_session(tmp.path(), &kubeconfig, sim.client()).await;
    server.shutdown().await;

    eprintln!("-- real kube-apiserver");
    let plane = differential::start_real().await;
    let tmp = tempfile::tempdir().unwrap();
    let client = plane.admin_client().await.unwrap();
    kubectl_session(tmp.path(), plane.kubeconfig(), client).await;
}

/// kubectl verbs through `kubeconfig`, checked through `client` (the same server).
async fn kubectl_session(dir: &Path, kubeconfig: &Path, client: Client) {
    let k = Kubectl {
        bin: kubectl_path(),
        kubeconfig: kubeconfig.to_path_buf(),
        cache: dir.join("cache"),
        dir: dir.to_path_buf(),
    };
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());

    // apply (client-side validation is left to the server through the OpenAPI v3 document)
    let crd = k.write("crd.yaml", CRD);
    assert!(
        k.ok(&["apply", "-f", &crd])
            .await
            .contains("customresourcedefinition.apiextensions.k8s.io/widgets.example.com created")
    );
    // kubesim establishes a CRD within its create, the real server a moment later
    k.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/widgets.example.com",
        "--timeout=30s",
    ])
    .await;
    let objs = k.write("objs.yaml", &objects("red", "1"));
    let out = k.ok(&["apply", "-f", &objs]).await;
    assert!(
        out.contains("widget.example.com/w1 created") && out.contains("configmap/c1 created"),
        "{out}"
    );

    // get: a Table with the CRD's printer columns
    let table = k.ok(&["get", "widgets"]).await;
    let lines: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], vec!["NAME", "COLOR", "READY", "AGE"], "{table}");
    assert_eq!(&lines[1][..2], &["w1", "red"], "{table}");
    assert!(k.ok(&["get", "wd"]).await.contains("w1"), "short name");
    let ns_table = k.ok(&["get", "namespaces"]).await;
    assert!(
        ns_table
            .lines()
            .any(|l| l.split_whitespace().take(2).eq(["kube-system", "Active"])),
        "{ns_table}"
    );

    // get -o yaml
    let yaml: serde_yaml::Value =
        serde_yaml::from_str(&k.ok(&["get", "widget", "w1", "-o", "yaml"]).await).unwrap();
    assert_eq!(yaml["kind"], serde_yaml::Value::from("Widget"));
    assert_eq!(yaml["spec"]["color"], serde_yaml::Value::from("red"));
    assert!(
        yaml["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .is_string()
    );

    // apply again: strategic merge for the ConfigMap, merge patch for the widget
    let objs = k.write("objs.yaml", &objects("blue", "2"));
    let out = k.ok(&["apply", "-f", &objs]).await;
    assert!(
        out.contains("widget.example.com/w1 configured") && out.contains("configmap/c1 configured"),
        "{out}"
    );
    assert_eq!(cms.get("c1").await.unwrap().data.unwrap()["a"], "2");
    assert_eq!(
        widgets(&client).get("w1").await.unwrap().data["spec"]["color"],
        "blue"
    );
    assert!(
        k.ok(&["apply", "-f", &objs])
            .await
            .contains("widget.example.com/w1 unchanged")
    );

    // describe
    let described = k.ok(&["describe", "widget", "w1"]).await;
    for want in [
        "Name:",
        "w1",
        "Kind:         Widget",
        "Color:  blue",
        "Events:",
    ] {
        assert!(described.contains(want), "{want} missing in:\n{described}");
    }

    // label and patch --type=merge
    assert!(
        k.ok(&["label", "widget", "w1", "team=x"])
            .await
            .contains("widget.example.com/w1 labeled")
    );
    assert_eq!(
        widgets(&client).get("w1").await.unwrap().labels()["team"],
        "x"
    );
    let out = k
        .ok(&[
            "patch",
            "widget",
            "w1",
            "--type=merge",
            "-p",
            r#"{"spec":{"color":"green"}}"#,
        ])
        .await;
    assert!(out.contains("widget.example.com/w1 patched"), "{out}");
    assert_eq!(
        widgets(&client).get("w1").await.unwrap().data["spec"]["color"],
        "green"
    );

    // server-side errors come back as the real server words them
    let missing = k.run(&["get", "widget", "nope"]).await;
    assert!(!missing.ok);
    assert!(
        missing
            .stderr
            .contains(r#"Error from server (NotFound): widgets.example.com "nope" not found"#),
        "{}",
        missing.stderr
    );
    let bad = k.write(
        "bad.yaml",
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: bad}\nspec: {color: pink}\n",
    );
    let refused = k.run(&["apply", "-f", &bad]).await;
    assert!(!refused.ok);
    assert!(
        refused.stderr.contains(
            r#"The Widget "bad" is invalid: spec.color: Unsupported value: "pink": supported values: "red", "blue", "green""#
        ),
        "{}",
        refused.stderr
    );

    // wait --for=condition=Ready, the condition set a moment later by a controller
    let setter = {
        let client = client.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            widgets(&client)
                .patch_status(
                    "w1",
                    &PatchParams::apply("test-controller"),
                    &Patch::Apply(json!({"apiVersion": "example.com/v1", "kind": "Widget",
                        "status": {"conditions": [{"type": "Ready", "status": "True"}]}})),
                )
                .await
                .unwrap();
        })
    };
    let waited = k
        .ok(&[
            "wait",
            "--for=condition=Ready",
            "widget/w1",
            "--timeout=30s",
        ])
        .await;
    assert!(
        waited.contains("widget.example.com/w1 condition met"),
        "{waited}"
    );
    setter.await.unwrap();
    let table = k.ok(&["get", "widgets"]).await;
    assert!(
        table.lines().nth(1).unwrap().split_whitespace().nth(2) == Some("True"),
        "{table}"
    );

    // delete --wait returns only once the finalizer is gone and the object with it
    cms.patch(
        "c1",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": ["example.com/hold"]}})),
    )
    .await
    .unwrap();
    let releaser = {
        let cms = cms.clone();
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            while cms
                .get("c1")
                .await
                .unwrap()
                .metadata
                .deletion_timestamp
                .is_none()
            {
                assert!(tokio::time::Instant::now() < deadline);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            cms.patch(
                "c1",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"finalizers": null}})),
            )
            .await
            .unwrap();
        })
    };
    let out = k
        .ok(&["delete", "configmap", "c1", "--wait", "--timeout=30s"])
        .await;
    assert!(out.contains("configmap \"c1\" deleted"), "{out}");
    assert!(
        cms.get_opt("c1").await.unwrap().is_none(),
        "delete --wait returned before the object was gone"
    );
    releaser.await.unwrap();
    let out = k.ok(&["delete", "widget", "w1", "--wait"]).await;
    assert!(out.contains("widget.example.com \"w1\" deleted"), "{out}");
    assert!(k.ok(&["get", "widgets"]).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_serves_until_interrupted_with_a_kubeconfig_for_kubectl() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let bin = kubectl_path();
    let tmp = tempfile::tempdir().unwrap();
    let kubeconfig = tmp.path().join("kubeconfig");
    let mut server = Command::new(env!("CARGO_BIN_EXE_pod-identity-operator"))
        .args(["kubesim", "--port", "0", "--kubeconfig-out"])
        .arg(&kubeconfig)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the binary");
    let stdout = server.stdout.take().unwrap();
    let first = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    })
    .await
    .unwrap()
    .unwrap();
    assert!(
        first.starts_with("kubesim serving on http://127.0.0.1:"),
        "{first}"
    );
    let url = first.trim().rsplit(' ').next().unwrap().to_owned();
    assert!(
        std::fs::read_to_string(&kubeconfig)
            .unwrap()
            .contains(&format!("server: {url}"))
    );

    let k = Kubectl {
        bin,
        kubeconfig,
        cache: tmp.path().join("cache"),
        dir: tmp.path().to_path_buf(),
    };
    assert!(
        k.ok(&["get", "namespaces", "default"])
            .await
            .contains("Active")
    );

    let pid = server.id().to_string();
    let status = tokio::task::spawn_blocking(move || {
        let killed = Command::new("kill").args(["-INT", &pid]).status();
        assert!(
            killed.is_ok_and(|s| s.success()),
            "could not signal the server"
        );
        server.wait()
    })
    .await
    .unwrap()
    .unwrap();
    assert!(status.success(), "kubesim exited with {status}");
    let after = k.run(&["get", "namespaces", "--request-timeout=5s"]).await;
    assert!(!after.ok, "still serving after Ctrl-C");
}
