//! What the benchmark runs against: the Kubernetes API server (kubesim over TCP, or a real
//! etcd and kube-apiserver), the AWS simulator's wire front, and the operator binary as a
//! child process; the bindings applied, and the Kubernetes writes counted.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, CustomResourceExt};
use pod_identity_operator::aws::faults::is_write;
use pod_identity_operator::aws::sim::{AwsSim, SimConfig};
use pod_identity_operator::crd::PodIdentityBinding;
use pod_identity_operator::guardrails::GuardrailConfig;
use pod_identity_operator::kubesim::KubeSim;
use pod_identity_operator::operator_policy::{Installation, permissions};
use serde_json::{Value, json};

use crate::cluster;
use crate::{CLUSTER, NAMESPACES, Plan, Res};

const REGION: &str = "us-east-1";

const GUARDRAILS: &str = "rules:\n- name: bench\n  namespaces: [\"*\"]\n  \
    allowedManagedPolicyArns: [\"*\"]\n  inlinePolicies: {allowed: true}\n";

/// The Kubernetes API server a row runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    Kubesim,
    /// etcd and kube-apiserver, as the tests start them.
    Apiserver,
}

impl Target {
    pub(crate) fn parse(name: &str) -> Res<Target> {
        match name {
            "kubesim" => Ok(Target::Kubesim),
            "apiserver" => {
                // Fail now, not after the kubesim rows: no silent skip.
                let set = |v: &str| std::env::var_os(v).is_some_and(|d| !d.is_empty());
                if !set("PIO_CONTROL_PLANE") && !set("KUBEBUILDER_ASSETS") {
                    return Err(
                        "target apiserver needs PIO_CONTROL_PLANE (a folder holding etcd and \
                         kube-apiserver, as `bash scripts/build-control-plane` prints), and it is \
                         not set"
                            .into(),
                    );
                }
                Ok(Target::Apiserver)
            }
            other => Err(format!(
                "unknown target {other:?} (PIO_BENCH_TARGETS / --targets: kubesim, apiserver)"
            )),
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Target::Kubesim => "kubesim",
            Target::Apiserver => "apiserver",
        }
    }
}

/// The Kubernetes side of a stack.
pub(crate) enum Kube {
    Sim(KubeSim),
    Real {
        /// Held for its processes, stopped when the stack is dropped.
        _plane: Box<cluster::ControlPlane>,
        /// `apiserver_request_total` writes at the last reset.
        baseline: AtomicU64,
    },
}

/// The AWS simulator served on loopback, a Kubernetes API server (kubesim over TCP or a
/// real one), plus the operator process.
pub(crate) struct Stack {
    pub(crate) kube: Kube,
    pub(crate) client: Client,
    pub(crate) aws: Arc<AwsSim>,
    pub(crate) aws_url: String,
    pub(crate) dir: PathBuf,
    pub(crate) kubeconfig: PathBuf,
    pub(crate) guardrails: PathBuf,
}

impl Stack {
    pub(crate) async fn start(target: Target, dir: PathBuf) -> Res<Stack> {
        let aws = Arc::new(AwsSim::new(SimConfig::default()));
        aws.add_cluster(CLUSTER);
        // The operator's policy rendered for the cluster and the guardrails it runs with.
        let guardrails = GuardrailConfig::parse(GUARDRAILS).map_err(|e| e.to_string())?;
        let sim = aws.config();
        let installation = Installation::new(CLUSTER, &sim.account_id, &sim.region);
        aws.enforce(Some(&permissions(&installation, &guardrails)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("bind: {e}"))?;
        let aws_url = format!(
            "http://{}",
            listener.local_addr().map_err(|e| e.to_string())?
        );
        tokio::spawn(pod_identity_operator::aws::sim::http::serve(
            aws.clone(),
            listener,
        ));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let (kube, client, kubeconfig) = match target {
            Target::Kubesim => {
                let kube = KubeSim::new();
                let server = kube
                    .serve_tcp("127.0.0.1:0".parse().map_err(|_| "address")?)
                    .await
                    .map_err(|e| format!("kubesim: {e}"))?;
                let kubeconfig = dir.join("kubeconfig");
                server
                    .write_kubeconfig(&kubeconfig)
                    .map_err(|e| e.to_string())?;
                // The server runs until the process ends.
                std::mem::forget(server);
                let client = kube.client();
                (Kube::Sim(kube), client, kubeconfig)
            }
            Target::Apiserver => {
                let binaries = cluster::Binaries::locate()?;
                // Without kube-controller-manager: nothing but the operator and the
                // benchmark writes, as on kubesim.
                let plane = cluster::ControlPlane::start_in(
                    binaries,
                    dir.join("control-plane"),
                    false,
                    cluster::Options {
                        controller_manager: false,
                    },
                )
                .await?;
                let client = plane.admin_client().await?;
                let kubeconfig = plane.kubeconfig().to_owned();
                let kube = Kube::Real {
                    _plane: Box::new(plane),
                    baseline: AtomicU64::new(0),
                };
                (kube, client, kubeconfig)
            }
        };
        let guardrails = dir.join("guardrails.yaml");
        std::fs::write(&guardrails, GUARDRAILS).map_err(|e| e.to_string())?;
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        crds.create(&PostParams::default(), &PodIdentityBinding::crd())
            .await
            .map_err(|e| format!("CRD: {e}"))?;
        wait_established(&crds).await?;
        let namespaces: Api<Namespace> = Api::all(client.clone());
        for i in 0..NAMESPACES {
            let ns: Namespace =
                serde_json::from_value(json!({"metadata": {"name": format!("bench-{i}")}}))
                    .map_err(|e| e.to_string())?;
            namespaces
                .create(&PostParams::default(), &ns)
                .await
                .map_err(|e| format!("namespace: {e}"))?;
        }
        Ok(Stack {
            kube,
            client,
            aws,
            aws_url,
            dir,
            kubeconfig,
            guardrails,
        })
    }

    /// The one place the operator's command line is made.
    pub(crate) fn spawn_operator(&self, plan: &Plan, resync: Duration, log: &str) -> Res<Operator> {
        let log = self.dir.join(log);
        let file = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        let err = file.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(operator_binary())
            .args(["run", "--cluster-name", CLUSTER, "--region", REGION])
            .args(["--aws-endpoint-url", &self.aws_url])
            .args(["--resync-interval", &resync.as_secs().to_string()])
            .args(["--concurrency", &plan.concurrency.to_string()])
            .arg("--config")
            .arg(&self.guardrails)
            .args(&plan.operator_args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("AWS_ACCESS_KEY_ID", "AKIABENCH")
            .env("AWS_SECRET_ACCESS_KEY", "bench-secret")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("AWS_PROFILE")
            .env("RUST_LOG", operator_log_filter())
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("operator binary: {e}"))?;
        Ok(Operator { child, log })
    }

    pub(crate) fn aws_writes(&self) -> u64 {
        self.aws
            .knobs()
            .calls()
            .iter()
            .filter(|(op, _)| is_write(op))
            .map(|(_, n)| n)
            .sum()
    }

    pub(crate) fn aws_reads(&self) -> u64 {
        self.aws.knobs().total_calls() - self.aws_writes()
    }

    /// Kubernetes writes since the last reset; on a real API server, from its metrics.
    pub(crate) async fn kube_writes(&self) -> u64 {
        match &self.kube {
            Kube::Sim(kube) => kube.write_counts().total(),
            Kube::Real { baseline, .. } => self
                .apiserver_writes()
                .await
                .saturating_sub(baseline.load(Ordering::Relaxed)),
        }
    }

    /// The API server's write requests so far (0 when the metrics cannot be read: the
    /// row then shows it, and the run goes on).
    pub(crate) async fn apiserver_writes(&self) -> u64 {
        match apiserver_writes(&self.client).await {
            Ok(n) => n,
            Err(e) => {
                println!("apiserver metrics: {e}");
                0
            }
        }
    }

    pub(crate) async fn reset_counters(&self) {
        self.aws.knobs().reset_calls();
        match &self.kube {
            Kube::Sim(kube) => kube.reset_write_counts(),
            Kube::Real { baseline, .. } => {
                baseline.store(self.apiserver_writes().await, Ordering::Relaxed)
            }
        }
    }

    /// Waits, watching the bindings, until `n` of them are Ready for their generation;
    /// returns when the last one became Ready, measured from `since`.
    pub(crate) async fn wait_all_ready(
        &self,
        n: usize,
        since: Instant,
        limit: Duration,
        op: &mut Operator,
    ) -> Res<Duration> {
        let all: Api<PodIdentityBinding> = Api::all(self.client.clone());
        let events = watcher::watcher(all, watcher::Config::default()).applied_objects();
        let mut events = std::pin::pin!(events);
        let mut ready = std::collections::HashSet::new();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        while ready.len() < n {
            tokio::select! {
                ev = events.next() => match ev {
                    Some(Ok(b)) => {
                        let key = (b.metadata.namespace.clone(), b.metadata.name.clone());
                        if is_ready(&b) { ready.insert(key); } else { ready.remove(&key); }
                    }
                    Some(Err(e)) => return Err(format!("watch bindings: {e}")),
                    None => return Err("binding watch ended".into()),
                },
                _ = tick.tick() => {
                    op.alive()?;
                    if since.elapsed() > limit {
                        return Err(format!(
                            "{}/{n} Ready after {:?}:\n{}",
                            ready.len(),
                            since.elapsed(),
                            log_tail(&op.log)
                        ));
                    }
                }
            }
        }
        Ok(since.elapsed())
    }

    /// Waits until no AWS call and no Kubernetes write happened for `plan.quiet`;
    /// returns the time of the last one (measured from `since`).
    pub(crate) async fn wait_quiet(
        &self,
        plan: &Plan,
        since: Instant,
        limit: Duration,
    ) -> Duration {
        let mut last = (self.aws.knobs().total_calls(), self.kube_writes().await);
        let mut changed = Instant::now();
        // A scrape of a real API server's metrics costs it some CPU: fewer of them.
        let poll = match self.kube {
            Kube::Sim(_) => plan.poll.min(Duration::from_millis(100)),
            Kube::Real { .. } => Duration::from_millis(500),
        };
        while changed.elapsed() < plan.quiet && since.elapsed() < limit {
            tokio::time::sleep(poll).await;
            let now = (self.aws.knobs().total_calls(), self.kube_writes().await);
            if now != last {
                last = now;
                changed = Instant::now();
            }
        }
        changed.saturating_duration_since(since)
    }
}

/// The operator binary the benchmark runs: `PIO_BENCH_OPERATOR_BIN` (for example the
/// image's build, without the `sandbox` feature), or the one Cargo built beside it.
pub(crate) fn operator_binary() -> PathBuf {
    std::env::var_os("PIO_BENCH_OPERATOR_BIN")
        .filter(|v| !v.is_empty())
        .map_or_else(
            || PathBuf::from(env!("CARGO_BIN_EXE_pod-identity-operator")),
            PathBuf::from,
        )
}

/// The operator's `RUST_LOG`: `PIO_BENCH_OPERATOR_LOG` (for example
/// `warn,pod_identity_operator::controller=debug` for a line per pass), or `warn`.
fn operator_log_filter() -> String {
    std::env::var("PIO_BENCH_OPERATOR_LOG")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "warn".to_owned())
}

/// The operator process; killed when dropped.
pub(crate) struct Operator {
    pub(crate) child: Child,
    pub(crate) log: PathBuf,
}

impl Operator {
    /// (VmHWM, VmRSS) in bytes, from /proc.
    pub(crate) fn memory(&self) -> Res<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .map_err(|e| format!("/proc status: {e}"))?;
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
                .map(|kb| kb * 1024)
                .ok_or(format!("no {name} in /proc status"))
        };
        Ok((field("VmHWM:")?, field("VmRSS:")?))
    }

    pub(crate) fn alive(&mut self) -> Res<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            other => Err(format!(
                "operator exited ({other:?}):\n{}",
                log_tail(&self.log)
            )),
        }
    }

    /// SIGTERM, as a rolling update sends; SIGKILL if it does not end in time.
    pub(crate) async fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the API server serves the CRD (at once on kubesim).
async fn wait_established(crds: &Api<CustomResourceDefinition>) -> Res<()> {
    let name = PodIdentityBinding::crd_name();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let crd = crds
            .get(name)
            .await
            .map_err(|e| format!("CRD {name}: {e}"))?;
        let established = crd.status.and_then(|s| s.conditions).is_some_and(|cs| {
            cs.iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
        });
        if established {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("CRD {name} not Established within 60 s"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Write requests a real API server has served: the sum of `apiserver_request_total`
/// over the write verbs, every answer code, Leases left out (kube-apiserver renews its
/// own every 10 s).
async fn apiserver_writes(client: &Client) -> Res<u64> {
    let request = http::Request::get("/metrics")
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    let text = client
        .request_text(request)
        .await
        .map_err(|e| format!("GET /metrics: {e}"))?;
    let mut total = 0.0;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let label = |key: &str| {
            labels.split(',').find_map(|kv| {
                kv.strip_prefix(key)?
                    .strip_prefix("=\"")?
                    .strip_suffix('"')
                    .map(str::to_owned)
            })
        };
        let write = matches!(
            label("verb").as_deref(),
            Some("POST" | "PUT" | "PATCH" | "APPLY" | "DELETE" | "DELETECOLLECTION")
        );
        if write && label("resource").as_deref() != Some("leases") {
            total += value.trim().parse::<f64>().unwrap_or(0.0);
        }
    }
    Ok(total as u64)
}

/// Ready is True for the binding's current generation.
fn is_ready(b: &PodIdentityBinding) -> bool {
    let st = b.status.as_ref();
    st.and_then(|s| s.observed_generation) == b.metadata.generation
        && st.is_some_and(|s| {
            s.conditions.iter().any(|c| {
                c.type_ == "Ready"
                    && c.status == "True"
                    && c.observed_generation == b.metadata.generation
            })
        })
}

pub(crate) fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

pub(crate) fn binding_name(i: usize) -> (String, String) {
    (format!("bench-{}", i % NAMESPACES), format!("b-{i:05}"))
}

pub(crate) async fn apply_bindings(client: &Client, n: usize, spec: &Value) -> Res<()> {
    let results: Vec<Res<()>> = futures::stream::iter(0..n)
        .map(|i| {
            let client = client.clone();
            let spec = spec.clone();
            async move {
                let (ns, name) = binding_name(i);
                let b: PodIdentityBinding = serde_json::from_value(json!({
                    "apiVersion": "podidentity.dev/v1alpha1", "kind": "PodIdentityBinding",
                    "metadata": {"name": name, "namespace": ns}, "spec": spec,
                }))
                .map_err(|e| e.to_string())?;
                Api::<PodIdentityBinding>::namespaced(client, &ns)
                    .create(&PostParams::default(), &b)
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("create {ns}/{name}: {e}"))
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    results.into_iter().collect()
}
