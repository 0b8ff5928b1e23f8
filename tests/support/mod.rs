//! Shared harness of the controller suites: kubesim in-process with the CRD installed,
//! the controller running in a task against any IamApi/EksApi, and bounded waits.

#![allow(dead_code)]

pub mod apiserver;
pub mod aws_servers;
pub mod cluster;
pub mod files;
pub mod kubectl;
pub mod target;

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, CustomResourceExt};
use pod_identity_operator::aws::faults::Knobs;
use pod_identity_operator::aws::sim::{AwsSim, SimConfig};
use pod_identity_operator::aws::{CreateRole, EksApi, IamApi};
use pod_identity_operator::controller::{self, Context, Settings};
use pod_identity_operator::crd::{Condition, PodIdentityBinding};
use pod_identity_operator::guardrails::{GuardrailConfig, GuardrailSource};
use pod_identity_operator::kubesim::KubeSim;
use pod_identity_operator::operator_policy::{Installation, permissions};
use serde_json::{Value, json};
use tokio::sync::oneshot;

pub const NS: &str = "default";
pub const WAIT: Duration = Duration::from_secs(90);

/// Guardrails that let every namespace use everything but escalating policies: the
/// suites that are not about guardrails run under them (the same file the end-to-end
/// suite gives the operator binary).
pub fn permissive_guardrails() -> GuardrailConfig {
    GuardrailConfig::parse(include_str!("../e2e-guardrails.yaml"))
        .expect("tests/e2e-guardrails.yaml is a valid guardrail file")
}

/// The operator's IAM policy rendered for `cluster` in the simulator's default account
/// and region under `guardrails`, as `pod-identity-operator iam-policy` renders it.
pub fn rendered_policy(cluster: &str, guardrails: &GuardrailConfig) -> Value {
    let sim = SimConfig::default();
    permissions(
        &Installation::new(cluster, &sim.account_id, &sim.region),
        guardrails,
    )
}

/// From now on `aws` authorizes every call against the operator's policy rendered for
/// `cluster` in its account and region under `guardrails` (what an administrator set up
/// before goes unchecked, or runs in [`AwsSim::as_admin`]).
pub fn enforce_rendered(aws: &AwsSim, cluster: &str, guardrails: &GuardrailConfig) {
    let sim = aws.config();
    aws.enforce(Some(&permissions(
        &Installation::new(cluster, &sim.account_id, &sim.region),
        guardrails,
    )));
}

/// Controller settings tuned by `tune`, then `aws` enforcing the policy rendered for
/// `cluster` under the guardrails those settings hold when the controller starts: as the
/// `tune` of [`Env::start`], the controller's first call is already authorized by it.
pub fn under_rendered_policy<'a>(
    aws: &'a AwsSim,
    cluster: &'a str,
    tune: impl FnOnce(&mut Settings) + 'a,
) -> impl FnOnce(&mut Settings) + 'a {
    move |settings| {
        tune(settings);
        enforce_rendered(aws, cluster, &settings.guardrails.current());
    }
}

/// The AWS calls counted by `knobs` that change something (all but `Get*`, `List*` and
/// `Describe*`).
pub fn write_calls(knobs: &Knobs) -> u64 {
    knobs
        .calls()
        .into_iter()
        .filter(|(op, _)| !is_read(op))
        .map(|(_, n)| n)
        .sum()
}

/// True for AWS operations that only read.
pub fn is_read(operation: &str) -> bool {
    ["Get", "List", "Describe"]
        .iter()
        .any(|p| operation.starts_with(p))
}

/// The simulator's HTTP front on a free 127.0.0.1 port: its URL and the serving task.
pub async fn serve_simulator(
    sim: Arc<AwsSim>,
) -> (
    String,
    tokio::task::JoinHandle<pod_identity_operator::aws::Result<()>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let front = tokio::spawn(pod_identity_operator::aws::sim::http::serve(sim, listener));
    (url, front)
}

/// kubesim over TCP with the CRD installed, and a folder holding its `kubeconfig`.
pub async fn kubesim_over_tcp() -> (
    KubeSim,
    pod_identity_operator::kubesim::ServerHandle,
    tempfile::TempDir,
) {
    let kube = KubeSim::new();
    let server = kube
        .serve_tcp("127.0.0.1:0".parse().expect("literal address"))
        .await
        .expect("kubesim serves");
    let dir = tempfile::tempdir().expect("temp dir");
    server
        .write_kubeconfig(&dir.path().join("kubeconfig"))
        .expect("kubeconfig");
    install_crd(&kube.client()).await;
    (kube, server, dir)
}

/// The role [`existing_role`] makes.
pub const EXISTING_ROLE_ARN: &str = "arn:aws:iam::111122223333:role/deploy";
pub const READ_ONLY: &str = "arn:aws:iam::aws:policy/ReadOnlyAccess";

/// A role outside the operator's path, as a platform team's deploy role would be, made
/// by an administrator: `deploy`, trusting EKS Pod Identity, with ReadOnlyAccess
/// attached and an inline policy `deploy`.
pub async fn existing_role(aws: &AwsSim) {
    AwsSim::as_admin(async {
        aws.create_role(&CreateRole {
            name: "deploy".into(),
            path: "/".into(),
            assume_role_policy: pod_identity_operator::policy::pod_identity_trust_policy(None),
            ..CreateRole::default()
        })
        .await
        .expect("role");
        aws.attach_role_policy("deploy", READ_ONLY)
            .await
            .expect("attach");
        aws.put_role_policy(
            "deploy",
            "deploy",
            &json!({"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}),
        )
        .await
        .expect("inline");
    })
    .await;
}

/// Installs the CRD into a kubesim.
pub async fn install_crd(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &PodIdentityBinding::crd())
        .await
        .expect("CRD installs");
}

pub struct Env {
    sim: Option<KubeSim>,
    pub client: Client,
    /// The namespace the helpers below work in.
    pub ns: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Env {
    pub async fn start(
        cluster: &str,
        iam: Arc<dyn IamApi>,
        eks: Arc<dyn EksApi>,
        tune: impl FnOnce(&mut Settings),
    ) -> Env {
        let kube = KubeSim::new();
        let client = kube.client();
        install_crd(&client).await;
        Env::start_on(client, Some(kube), NS, cluster, iam, eks, tune).await
    }

    /// The controller against `client` (the CRD already installed), watching `ns` only
    /// when `sim` is `None` (another cluster, shared with other tests).
    pub async fn start_on(
        client: Client,
        sim: Option<KubeSim>,
        ns: &str,
        cluster: &str,
        iam: Arc<dyn IamApi>,
        eks: Arc<dyn EksApi>,
        tune: impl FnOnce(&mut Settings),
    ) -> Env {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let mut settings = Settings::new(cluster);
        if sim.is_none() {
            settings.namespace = Some(ns.to_owned());
        }
        settings.resync = Duration::from_secs(3600);
        settings.retry_base = Duration::from_millis(20);
        settings.retry_max = Duration::from_millis(500);
        settings.retry_soon = Duration::from_millis(100);
        settings.retry_slow = Duration::from_millis(500);
        settings.guardrails = Arc::new(GuardrailSource::fixed(permissive_guardrails()));
        settings.guardrails_poll = Duration::from_millis(100);
        tune(&mut settings);
        // A cluster with the Pod Identity Agent, unless the client may not create it.
        if let Err(e) = install_agent(&client).await {
            tracing::info!(error = %e, "the agent's DaemonSet was not created");
        }
        let ctx = Context::new(client.clone(), iam, eks, settings);
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(controller::run(ctx, async {
            let _ = rx.await;
        }));
        Env {
            sim,
            client,
            ns: ns.to_owned(),
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// The in-process kubesim (tests that need its instrumentation).
    pub fn kube(&self) -> &KubeSim {
        self.sim
            .as_ref()
            .expect("this Env runs on kubesim (Env::start)")
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(WAIT, task).await;
        }
    }

    pub fn bindings(&self) -> Api<PodIdentityBinding> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    pub async fn apply(&self, name: &str, spec: Value) -> PodIdentityBinding {
        let b: PodIdentityBinding = serde_json::from_value(json!({
            "apiVersion": "podidentity.dev/v1alpha1", "kind": "PodIdentityBinding",
            "metadata": {"name": name, "namespace": self.ns}, "spec": spec,
        }))
        .expect("binding");
        self.bindings()
            .create(&PostParams::default(), &b)
            .await
            .expect("binding created")
    }

    /// Waits until `pred` holds for the binding's Ready condition and returns it.
    pub async fn wait_ready(
        &self,
        name: &str,
        what: &str,
        pred: impl Fn(&PodIdentityBinding, &Condition) -> bool,
    ) -> PodIdentityBinding {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(b) = self.bindings().get_opt(name).await.expect("get binding")
                && let Some(c) = ready(&b)
                && pred(&b, c)
            {
                return b;
            }
            assert!(
                Instant::now() < deadline,
                "binding {name} never got {what}: {:?}",
                self.bindings()
                    .get_opt(name)
                    .await
                    .ok()
                    .flatten()
                    .and_then(|b| b.status)
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Merge-patches the binding's `spec.role`.
    pub async fn patch_role(&self, name: &str, role: Value) {
        self.patch_spec(name, json!({"role": role})).await;
    }

    /// Merges `spec` into the binding's spec (JSON merge patch: `null` removes a field).
    pub async fn patch_spec(&self, name: &str, spec: Value) {
        self.bindings()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "spec": spec })),
            )
            .await
            .expect("patch spec");
    }

    pub async fn wait_converged(&self, name: &str) -> PodIdentityBinding {
        self.wait_ready(name, "Ready=True for its generation", |b, c| {
            c.status == "True"
                && c.observed_generation == b.metadata.generation
                && b.status.as_ref().and_then(|s| s.observed_generation) == b.metadata.generation
        })
        .await
    }

    pub async fn wait_gone(&self, name: &str) {
        let deadline = Instant::now() + WAIT;
        while self.bindings().get_opt(name).await.expect("get").is_some() {
            assert!(Instant::now() < deadline, "binding {name} never went away");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub async fn delete(&self, name: &str) {
        self.bindings()
            .delete(name, &DeleteParams::default())
            .await
            .expect("delete binding");
    }

    pub async fn event_reasons(&self) -> Vec<(String, String)> {
        let events: Api<Event> = Api::namespaced(self.client.clone(), &self.ns);
        events
            .list(&ListParams::default())
            .await
            .expect("events")
            .items
            .into_iter()
            .map(|e| (e.type_.unwrap_or_default(), e.reason.unwrap_or_default()))
            .collect()
    }

    /// Waits for a Warning Event with this reason about the binding `name` and returns
    /// its note. Events stay, so a state that passed quickly is still seen.
    pub async fn wait_warning(&self, name: &str, reason: &str) -> String {
        let events: Api<Event> = Api::namespaced(self.client.clone(), &self.ns);
        let deadline = Instant::now() + WAIT;
        loop {
            let found = events
                .list(&ListParams::default())
                .await
                .expect("events")
                .items
                .into_iter()
                .find(|e| {
                    e.type_.as_deref() == Some("Warning")
                        && e.reason.as_deref() == Some(reason)
                        && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
                });
            if let Some(e) = found {
                return e.note.unwrap_or_default();
            }
            assert!(
                Instant::now() < deadline,
                "no Warning {reason} event for {name}: {:?}",
                self.event_reasons().await
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

pub fn ready(b: &PodIdentityBinding) -> Option<&Condition> {
    b.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
}

/// The kstatus conditions of a binding: (type, reason) of `Reconciling` and `Stalled`.
pub fn kstatus_of(b: &PodIdentityBinding) -> Vec<(String, String)> {
    b.status
        .iter()
        .flat_map(|s| &s.conditions)
        .filter(|c| c.type_ == "Reconciling" || c.type_ == "Stalled")
        .map(|c| (c.type_.clone(), c.reason.clone()))
        .collect()
}

/// One HTTP/1.0 GET of `path` at `addr` (`host:port`): the status code and the body, or
/// `None` when there is no answer within ten seconds.
pub async fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut raw = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut raw))
        .await
        .ok()?
        .ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

/// Creates `kube-system/eks-pod-identity-agent`, the DaemonSet the EKS add-on installs
/// (one already there is fine).
pub async fn install_agent(client: &Client) -> kube::Result<()> {
    use k8s_openapi::api::apps::v1::DaemonSet;
    let daemonsets: Api<DaemonSet> = Api::namespaced(client.clone(), "kube-system");
    let ds: DaemonSet = serde_json::from_value(json!({
        "metadata": {"name": "eks-pod-identity-agent", "namespace": "kube-system"},
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/name": "eks-pod-identity-agent"}},
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/name": "eks-pod-identity-agent"}},
                "spec": {"containers": [{
                    "name": "eks-pod-identity-agent",
                    "image": "public.ecr.aws/eks/eks-pod-identity-agent:v0.1.29",
                }]},
            },
        },
    }))
    .expect("DaemonSet");
    match daemonsets.create(&PostParams::default(), &ds).await {
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        other => other.map(|_| ()),
    }
}

/// Deletes the agent's DaemonSet ([`install_agent`]).
pub async fn remove_agent(client: &Client) {
    use k8s_openapi::api::apps::v1::DaemonSet;
    let daemonsets: Api<DaemonSet> = Api::namespaced(client.clone(), "kube-system");
    daemonsets
        .delete("eks-pod-identity-agent", &DeleteParams::default())
        .await
        .expect("agent DaemonSet deleted");
}
