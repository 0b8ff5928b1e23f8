//! The differential harness of the kubesim suites: every scenario runs on kubesim
//! in-process, on kubesim over TCP, and on a real control plane (etcd, kube-apiserver
//! and kube-controller-manager from `cluster.rs`, one per scenario), with the same
//! assertions. A scenario that needs kubesim's own instrumentation (faults, forced
//! compaction, write counters, options) reaches it through [`Server::sim`] and guards
//! it, or runs through [`on_kubesim`] only.
//!
//! The real server is never optional: when it cannot start, the test fails with the
//! reason.

#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use pod_identity_operator::kubesim::{KubeSim, Options};
use serde_json::{Value, json};

use super::cluster::{self, ControlPlane};

/// How long anything asynchronous (the real garbage collector, namespace and CRD
/// controllers, watches) may take.
pub const WAIT: Duration = Duration::from_secs(30);

/// Which server a scenario is running on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    InProcess,
    Tcp,
    Real,
}

/// The server a scenario talks to.
#[derive(Clone)]
pub struct Server {
    pub client: Client,
    pub kind: Kind,
    sim: Option<KubeSim>,
}

impl Server {
    pub fn is_real(&self) -> bool {
        self.kind == Kind::Real
    }

    /// kubesim's instrumentation; `None` on the real server.
    pub fn sim(&self) -> Option<&KubeSim> {
        self.sim.as_ref()
    }
}

/// Runs `scenario` on a fresh kubesim in-process, another over TCP, then on a fresh
/// real control plane.
pub async fn on_all<F, Fut>(scenario: F)
where
    F: Fn(Server) -> Fut,
    Fut: Future<Output = ()>,
{
    on_all_with(Options::default(), scenario).await;
}

/// [`on_all`] with kubesim started with `options` (the real server has its own).
pub async fn on_all_with<F, Fut>(options: Options, scenario: F)
where
    F: Fn(Server) -> Fut,
    Fut: Future<Output = ()>,
{
    on_kubesim_with(options, &scenario).await;
    on_real(&scenario).await;
}

/// Runs `scenario` on kubesim only (in-process, then over TCP): for what only kubesim's
/// instrumentation can make happen.
pub async fn on_kubesim<F, Fut>(scenario: F)
where
    F: Fn(Server) -> Fut,
    Fut: Future<Output = ()>,
{
    on_kubesim_with(Options::default(), scenario).await;
}

pub async fn on_kubesim_with<F, Fut>(options: Options, scenario: F)
where
    F: Fn(Server) -> Fut,
    Fut: Future<Output = ()>,
{
    eprintln!("-- kubesim in-process");
    let sim = KubeSim::with_options(options.clone());
    scenario(Server {
        client: sim.client(),
        kind: Kind::InProcess,
        sim: Some(sim.clone()),
    })
    .await;

    eprintln!("-- kubesim over TCP");
    let sim = KubeSim::with_options(options);
    let server = sim
        .serve_tcp("127.0.0.1:0".parse().unwrap())
        .await
        .expect("bind loopback");
    let client = server.client().await.expect("client from kubeconfig");
    scenario(Server {
        client: client.clone(),
        kind: Kind::Tcp,
        sim: Some(sim.clone()),
    })
    .await;
    // this server's own mark: its namespace default's uid (the port may be taken by
    // another test's server once it is free)
    let nss: Api<Namespace> = Api::all(client);
    let mark = nss.get("default").await.unwrap().metadata.uid;
    server.shutdown().await;
    let after = nss.get("default").await.ok().and_then(|n| n.metadata.uid);
    assert_ne!(after, mark, "the server still answers after shutdown");
}

/// Runs `scenario` on a fresh real control plane.
pub async fn on_real<F, Fut>(scenario: F)
where
    F: Fn(Server) -> Fut,
    Fut: Future<Output = ()>,
{
    eprintln!("-- real kube-apiserver");
    let plane = start_real().await;
    let client = plane
        .admin_client()
        .await
        .unwrap_or_else(|e| panic!("admin client of the real API server: {e}"));
    scenario(Server {
        client,
        kind: Kind::Real,
        sim: None,
    })
    .await;
    drop(plane);
}

/// A real control plane; the test fails with the reason when it cannot start.
pub async fn start_real() -> ControlPlane {
    ControlPlane::start(cluster::Options::default())
        .await
        .unwrap_or_else(|e| panic!("the real API server is needed by this test: {e}"))
}

/// Polls `check` until it answers `Some`, failing with `what` after [`WAIT`].
pub async fn eventually<T, Fut>(what: &str, mut check: impl FnMut() -> Fut) -> T
where
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Code, reason and message of an API error.
pub fn api_error(e: kube::Error) -> (u16, String, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.reason.clone(), s.message.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

pub fn cm(name: &str, labels: Value) -> ConfigMap {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "data": {"k": "v"}
    }))
    .unwrap()
}

/// Names and resourceVersions of the ConfigMaps in `api`: unchanged when nothing was
/// written.
pub async fn configmap_versions(api: &Api<ConfigMap>) -> Vec<(String, String)> {
    api.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|c| (c.name_any(), c.resource_version().unwrap_or_default()))
        .collect()
}

/// A resourceVersion as a number: kubesim's and the real server's are both (the real
/// server documents them as comparable integers).
pub fn rv(o: &impl ResourceExt) -> u64 {
    o.resource_version()
        .expect("a resourceVersion")
        .parse()
        .expect("a numeric resourceVersion")
}
