//! Scale benchmark: the operator binary, as a child process, against kubesim (TCP) and
//! the AWS simulator's wire front, at N bindings.
//!
//! Scenarios at each N: cold start (N bindings applied at once, simulated latency on
//! every AWS call and a token bucket on IAM writes; time to all `Ready` against the
//! bound the rate limit alone forces), AWS calls per binding by operation against the
//! minimum the spec needs, restart over N converged bindings (time to confirm all, AWS
//! and Kubernetes writes), steady state (a scaled resync; reads per converged reconcile,
//! reported per simulated hour at the default resync; writes), drift (1% of roles
//! changed out of band; time to repair, writes spent) and memory (peak RSS of the
//! operator process from /proc).
//!
//! `cargo bench --bench scale` runs the table (N = 100, 1,000, 5,000) and writes it to
//! `target/bench/scale.json`. Without `--bench` (as `cargo test --all-targets` runs it)
//! it runs a quick N = 20 smoke that fails unless restart and steady state write
//! nothing and drift is repaired. `PIO_BENCH_SIZES=100,1000` (or `--sizes 100,1000`)
//! picks the sizes; `PIO_BENCH_CONCURRENCY`, `PIO_BENCH_LATENCY_MS`, `PIO_BENCH_IAM_RATE`
//! (writes per second, every size), `PIO_BENCH_RESYNC` (seconds) and
//! `PIO_BENCH_OPERATOR_ARGS` (extra flags for the operator, space separated) change
//! the settings.
//!
//! `PIO_BENCH_TARGETS=kubesim,apiserver` (or `--targets kubesim,apiserver`) picks the
//! Kubernetes API servers each size runs against (default `kubesim`): `apiserver` is a
//! real etcd and kube-apiserver, started as the tests start them (`tests/support/cluster.rs`)
//! from the binaries in `$PIO_CONTROL_PLANE` (or `$KUBEBUILDER_ASSETS`); asking for it
//! without either set fails before anything runs. There the operator runs with the
//! admin kubeconfig, and Kubernetes writes are the API server's `apiserver_request_total`
//! for POST, PUT, PATCH, APPLY, DELETE and DELETECOLLECTION (every answer code; Leases,
//! which kube-apiserver writes for itself, left out). Rows of earlier runs in
//! `target/bench/scale.json` for other (target, N) pairs are kept, each with its date
//! and commit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, CustomResourceExt};
use pod_identity_operator::aws::IamApi;
use pod_identity_operator::aws::faults::{Service, is_write};
use pod_identity_operator::aws::sim::{AwsSim, SimConfig};
use pod_identity_operator::crd::PodIdentityBinding;
use pod_identity_operator::guardrails::GuardrailConfig;
use pod_identity_operator::kubesim::KubeSim;
use pod_identity_operator::naming;
use pod_identity_operator::operator_policy::{Installation, permissions};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU64, Ordering};

#[path = "../tests/support/cluster.rs"]
mod cluster;

const CLUSTER: &str = "bench";
const REGION: &str = "us-east-1";
const NAMESPACES: usize = 10;
const DEFAULT_RESYNC: Duration = Duration::from_secs(300);
const MANAGED_POLICY: &str = "arn:aws:iam::aws:policy/ReadOnlyAccess";
const GUARDRAILS: &str = "rules:\n- name: bench\n  namespaces: [\"*\"]\n  \
    allowedManagedPolicyArns: [\"*\"]\n  inlinePolicies: {allowed: true}\n";

type Res<T> = std::result::Result<T, String>;

/// What one binding asks for; the minimum AWS calls follow from it.
struct BindingSpec {
    managed_policies: Vec<&'static str>,
    inline_policies: BTreeMap<&'static str, Value>,
    tags: BTreeMap<&'static str, &'static str>,
}

impl BindingSpec {
    fn typical() -> Self {
        BindingSpec {
            managed_policies: vec![MANAGED_POLICY],
            inline_policies: BTreeMap::from([(
                "s3",
                json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                    "Action": "s3:GetObject", "Resource": "arn:aws:s3:::bench/*"}]}),
            )]),
            tags: BTreeMap::from([("team", "bench")]),
        }
    }

    fn json(&self) -> Value {
        json!({
            "role": {"managedPolicyArns": self.managed_policies,
                     "inlinePolicies": self.inline_policies},
            "tags": self.tags,
        })
    }

    /// IAM writes one binding needs: CreateRole (tags and boundary go with it), one
    /// AttachRolePolicy per managed policy, one PutRolePolicy per inline policy.
    fn iam_writes(&self) -> f64 {
        (1 + self.managed_policies.len() + self.inline_policies.len()) as f64
    }

    /// The fewest AWS calls per binding a cold start of this spec can make, by
    /// operation: the writes above, one CreatePodIdentityAssociation (tags go with
    /// it), the two reads that observe that nothing exists yet (GetRole,
    /// ListPodIdentityAssociations), and one DescribeCluster for the whole operator.
    fn minimum_calls(&self, n: usize) -> BTreeMap<String, f64> {
        let mut m = BTreeMap::new();
        m.insert("GetRole".to_owned(), 1.0);
        m.insert("ListPodIdentityAssociations".to_owned(), 1.0);
        m.insert("CreateRole".to_owned(), 1.0);
        m.insert("CreatePodIdentityAssociation".to_owned(), 1.0);
        m.insert("DescribeCluster".to_owned(), 1.0 / n as f64);
        if !self.managed_policies.is_empty() {
            m.insert(
                "AttachRolePolicy".to_owned(),
                self.managed_policies.len() as f64,
            );
        }
        if !self.inline_policies.is_empty() {
            m.insert(
                "PutRolePolicy".to_owned(),
                self.inline_policies.len() as f64,
            );
        }
        m
    }
}

/// Every setting of a run.
struct Plan {
    smoke: bool,
    sizes: Vec<usize>,
    targets: Vec<Target>,
    concurrency: u16,
    latency: Duration,
    /// IAM writes per second by size; `None`: not limited.
    iam_rate: Box<dyn Fn(usize) -> Option<f64>>,
    /// The resync of the steady-state and drift phases (time scaled).
    resync: Duration,
    /// Resync periods the steady state is measured over.
    steady_periods: u32,
    drift_fraction: f64,
    quiet: Duration,
    poll: Duration,
    operator_args: Vec<String>,
}

impl Plan {
    fn from_env() -> Res<Plan> {
        let args: Vec<String> = std::env::args().collect();
        let smoke = !args.iter().any(|a| a == "--bench");
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let sizes = args
            .iter()
            .position(|a| a == "--sizes")
            .and_then(|i| args.get(i + 1).cloned())
            .or_else(|| env("PIO_BENCH_SIZES"))
            .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
            .unwrap_or_else(|| {
                if smoke {
                    vec![20]
                } else {
                    vec![100, 1000, 5000]
                }
            });
        let targets = args
            .iter()
            .position(|a| a == "--targets")
            .and_then(|i| args.get(i + 1).cloned())
            .or_else(|| env("PIO_BENCH_TARGETS"))
            .map_or(Ok(vec![Target::Kubesim]), |s| {
                s.split(',').map(|t| Target::parse(t.trim())).collect()
            })?;
        let num = |k: &str| env(k).and_then(|v| v.parse::<f64>().ok());
        let fixed_rate = num("PIO_BENCH_IAM_RATE");
        let iam_rate: Box<dyn Fn(usize) -> Option<f64>> = match (smoke, fixed_rate) {
            (_, Some(r)) => Box::new(move |_| Some(r)),
            (true, None) => Box::new(|_| None),
            // Chosen so each cold start's bound is one to three minutes.
            (false, None) => Box::new(|n| {
                Some(match n {
                    0..=200 => 5.0,
                    201..=2000 => 25.0,
                    _ => 100.0,
                })
            }),
        };
        Ok(Plan {
            smoke,
            sizes,
            targets,
            concurrency: num("PIO_BENCH_CONCURRENCY").map_or(16, |c| c as u16),
            latency: Duration::from_millis(
                num("PIO_BENCH_LATENCY_MS").map_or(if smoke { 5 } else { 50 }, |l| l as u64),
            ),
            iam_rate,
            resync: Duration::from_secs(
                num("PIO_BENCH_RESYNC").map_or(if smoke { 2 } else { 20 }, |s| s as u64),
            ),
            steady_periods: 2,
            drift_fraction: 0.01,
            quiet: Duration::from_secs(if smoke { 1 } else { 3 }),
            poll: Duration::from_millis(if smoke { 100 } else { 250 }),
            // No client-side limit by default: the simulator's write bucket stands for
            // the account's quota, and the scaled resync is not stretched by pacing.
            operator_args: env("PIO_BENCH_OPERATOR_ARGS")
                .unwrap_or_else(|| "--iam-rate 0 --eks-rate 0".into())
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
        })
    }

    fn settings_json(&self) -> Value {
        json!({
            "mode": if self.smoke { "smoke" } else { "bench" },
            "sizes": self.sizes,
            "targets": self.targets.iter().map(|t| t.name()).collect::<Vec<_>>(),
            "operator_concurrency": self.concurrency,
            "aws_latency_ms_per_call": self.latency.as_millis() as u64,
            "iam_write_rate_per_s": self.sizes.iter().map(|n| json!({"n": n, "rate": (self.iam_rate)(*n)})).collect::<Vec<_>>(),
            "iam_write_burst": "one second of the rate",
            "restart_resync_s": DEFAULT_RESYNC.as_secs(),
            "steady_and_drift_resync_s": self.resync.as_secs(),
            "steady_periods": self.steady_periods,
            "drift_fraction": self.drift_fraction,
            "extra_operator_args": self.operator_args,
            "namespaces": NAMESPACES,
            "binding_spec": BindingSpec::typical().json(),
        })
    }
}

/// The Kubernetes API server a row runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Kubesim,
    /// etcd and kube-apiserver, as the tests start them.
    Apiserver,
}

impl Target {
    fn parse(name: &str) -> Res<Target> {
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

    fn name(self) -> &'static str {
        match self {
            Target::Kubesim => "kubesim",
            Target::Apiserver => "apiserver",
        }
    }
}

/// The Kubernetes side of a stack.
enum Kube {
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
struct Stack {
    kube: Kube,
    client: Client,
    aws: Arc<AwsSim>,
    aws_url: String,
    dir: PathBuf,
    kubeconfig: PathBuf,
    guardrails: PathBuf,
}

impl Stack {
    async fn start(target: Target, dir: PathBuf) -> Res<Stack> {
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
    fn spawn_operator(&self, plan: &Plan, resync: Duration, log: &str) -> Res<Operator> {
        let log = self.dir.join(log);
        let file = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        let err = file.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(env!("CARGO_BIN_EXE_pod-identity-operator"))
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
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("operator binary: {e}"))?;
        Ok(Operator { child, log })
    }

    fn aws_writes(&self) -> u64 {
        self.aws
            .knobs()
            .calls()
            .iter()
            .filter(|(op, _)| is_write(op))
            .map(|(_, n)| n)
            .sum()
    }

    fn aws_reads(&self) -> u64 {
        self.aws.knobs().total_calls() - self.aws_writes()
    }

    /// Kubernetes writes since the last reset; on a real API server, from its metrics.
    async fn kube_writes(&self) -> u64 {
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
    async fn apiserver_writes(&self) -> u64 {
        match apiserver_writes(&self.client).await {
            Ok(n) => n,
            Err(e) => {
                println!("apiserver metrics: {e}");
                0
            }
        }
    }

    async fn reset_counters(&self) {
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
    async fn wait_all_ready(
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
    async fn wait_quiet(&self, plan: &Plan, since: Instant, limit: Duration) -> Duration {
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

/// The operator process; killed when dropped.
struct Operator {
    child: Child,
    log: PathBuf,
}

impl Operator {
    /// (VmHWM, VmRSS) in bytes, from /proc.
    fn memory(&self) -> Res<(u64, u64)> {
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

    fn alive(&mut self) -> Res<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            other => Err(format!(
                "operator exited ({other:?}):\n{}",
                log_tail(&self.log)
            )),
        }
    }

    /// SIGTERM, as a rolling update sends; SIGKILL if it does not end in time.
    async fn stop(mut self) {
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

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

fn binding_name(i: usize) -> (String, String) {
    (format!("bench-{}", i % NAMESPACES), format!("b-{i:05}"))
}

async fn apply_bindings(client: &Client, n: usize, spec: &Value) -> Res<()> {
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

fn per(calls: &BTreeMap<String, u64>, n: usize) -> BTreeMap<String, f64> {
    calls
        .iter()
        .map(|(op, c)| (op.clone(), *c as f64 / n as f64))
        .collect()
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 100.0).round() / 100.0
}

fn mib(bytes: u64) -> f64 {
    (bytes as f64 / 1_048_576.0 * 10.0).round() / 10.0
}

/// All scenarios at one size; returns the row.
async fn run_size(plan: &Plan, target: Target, n: usize, dir: PathBuf) -> Res<Value> {
    let spec = BindingSpec::typical();
    let stack = Stack::start(target, dir).await?;
    let knobs = stack.aws.knobs().clone();
    knobs.set_latency(plan.latency);
    let rate = (plan.iam_rate)(n);
    if let Some(r) = rate {
        knobs.set_write_throttle(Service::Iam, r.ceil().max(1.0) as u32, r);
    }
    let bound = rate.map(|r| Duration::from_secs_f64(n as f64 * spec.iam_writes() / r));
    let limit = bound.unwrap_or_default() * 4 + Duration::from_secs(120 + n as u64 / 10);

    // 1-2. Cold start, and the calls it made.
    let mut op1 = stack.spawn_operator(plan, DEFAULT_RESYNC, &format!("operator-{n}-cold.log"))?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    op1.alive()?;
    let (_, idle_rss) = op1.memory()?;
    stack.reset_counters().await;
    let start = Instant::now();
    apply_bindings(&stack.client, n, &spec.json()).await?;
    let applied = start.elapsed();
    let cold = stack
        .wait_all_ready(n, start, limit, &mut op1)
        .await
        .map_err(|e| format!("cold start: {e}"))?;
    stack.wait_quiet(plan, start, limit).await;
    let calls = knobs.calls();
    let throttled = knobs.throttled_by_operation();
    let cold_kube_writes = stack.kube_writes().await;
    let (cold_hwm, _) = op1.memory()?;
    let minimum = spec.minimum_calls(n);
    let min_total: f64 = minimum.values().sum();
    let total = knobs.total_calls() as f64 / n as f64;
    let accepted = total - throttled.values().sum::<u64>() as f64 / n as f64;
    op1.stop().await;

    // 3. Restart over N converged bindings, at the default resync.
    stack.reset_counters().await;
    let start = Instant::now();
    let mut op2 =
        stack.spawn_operator(plan, DEFAULT_RESYNC, &format!("operator-{n}-restart.log"))?;
    while knobs.calls_of("GetRole") < n as u64 {
        if start.elapsed() > limit {
            return Err(format!(
                "restart: roles never all read:\n{}",
                log_tail(&op2.log)
            ));
        }
        op2.alive()?;
        tokio::time::sleep(plan.poll).await;
    }
    let restart = stack.wait_quiet(plan, start, limit).await;
    let restart_aws_writes = stack.aws_writes();
    let restart_kube_writes = stack.kube_writes().await;
    let restart_reads = stack.aws_reads();
    let (restart_hwm, _) = op2.memory()?;
    op2.stop().await;

    // 4. Steady state: a scaled resync, measured after the start-up pass.
    stack.reset_counters().await;
    let start = Instant::now();
    let mut op3 = stack.spawn_operator(plan, plan.resync, &format!("operator-{n}-steady.log"))?;
    while knobs.calls_of("GetRole") < n as u64 {
        if start.elapsed() > limit {
            return Err(format!(
                "steady: roles never all read:\n{}",
                log_tail(&op3.log)
            ));
        }
        op3.alive()?;
        tokio::time::sleep(plan.poll).await;
    }
    tokio::time::sleep(plan.resync).await;
    stack.reset_counters().await;
    let window = plan.resync * plan.steady_periods;
    tokio::time::sleep(window).await;
    op3.alive()?;
    let steady_reads = stack.aws_reads();
    let steady_reconciles = knobs.calls_of("GetRole");
    let steady_aws_writes = stack.aws_writes();
    let steady_kube_writes = stack.kube_writes().await;
    let reads_per_reconcile = steady_reads as f64 / steady_reconciles.max(1) as f64;
    let resyncs_per_hour = 3600.0 / DEFAULT_RESYNC.as_secs_f64();

    // 5. Drift: the managed policy detached from 1% of the roles, out of band.
    let sim = stack.aws.config();
    let cluster_arn = format!(
        "arn:aws:eks:{}:{}:cluster/{CLUSTER}",
        sim.region, sim.account_id
    );
    let drifted: Vec<String> = (0..n)
        .step_by((1.0 / plan.drift_fraction) as usize)
        .map(|i| {
            let (ns, name) = binding_name(i);
            naming::default_role_name(&cluster_arn, &ns, &name)
        })
        .collect();
    let start = Instant::now();
    let mut unrepaired = 0;
    for role in &drifted {
        // Out of band: an administrator's call, not the operator's.
        AwsSim::as_admin(stack.aws.detach_role_policy(role, MANAGED_POLICY))
            .await
            .map_err(|e| format!("drift {role}: {e}"))?;
    }
    stack.reset_counters().await;
    loop {
        let inv = stack.aws.inventory();
        let repaired = drifted
            .iter()
            .filter(|r| {
                inv.role(r)
                    .is_some_and(|r| r.attached_policy_arns.iter().any(|p| p == MANAGED_POLICY))
            })
            .count();
        if repaired == drifted.len() {
            break;
        }
        // Every drifted role is due for a full pass within one resync; three is a
        // failure, reported in the row rather than ending the run.
        if start.elapsed() > plan.resync * 3 + Duration::from_secs(60) {
            unrepaired = drifted.len() - repaired;
            let left: Vec<&String> = drifted
                .iter()
                .filter(|r| {
                    !inv.role(r)
                        .is_some_and(|r| r.attached_policy_arns.iter().any(|p| p == MANAGED_POLICY))
                })
                .collect();
            println!("drift: not repaired: {left:?}");
            break;
        }
        op3.alive()?;
        tokio::time::sleep(plan.poll).await;
    }
    let drift = start.elapsed();
    if unrepaired > 0 {
        println!(
            "drift: {unrepaired} of {} roles not repaired after {drift:?}",
            drifted.len()
        );
    }
    // Writes are counted until the repairs' own follow-ups are done, within a resync.
    tokio::time::sleep(plan.quiet).await;
    let drift_aws_writes = stack.aws_writes();
    let drift_kube_writes = stack.kube_writes().await;
    let (steady_hwm, _) = op3.memory()?;
    op3.stop().await;

    let peak = cold_hwm.max(restart_hwm).max(steady_hwm);
    Ok(json!({
        "target": target.name(),
        "n": n,
        "cold_start": {
            "apply_s": secs(applied),
            "all_ready_s": secs(cold),
            "iam_write_rate_per_s": rate,
            "iam_writes_per_binding": spec.iam_writes(),
            "bound_s": bound.map(secs),
            "ratio_to_bound": bound.map(|b| (cold.as_secs_f64() / b.as_secs_f64() * 100.0).round() / 100.0),
            "kubernetes_writes_per_binding": cold_kube_writes as f64 / n as f64,
        },
        "aws_calls_per_binding": {
            "by_operation": per(&calls, n),
            "throttled_by_operation": per(&throttled, n),
            "minimum_by_operation": minimum,
            "total": total,
            "accepted": accepted,
            "minimum": min_total,
            "ratio": (total / min_total * 100.0).round() / 100.0,
            "ratio_accepted": (accepted / min_total * 100.0).round() / 100.0,
        },
        "restart": {
            "confirm_all_s": secs(restart),
            "aws_reads": restart_reads,
            "aws_writes": restart_aws_writes,
            "kubernetes_writes": restart_kube_writes,
        },
        "steady_state": {
            "resync_s": plan.resync.as_secs(),
            "window_s": window.as_secs(),
            "reconciles_per_binding": steady_reconciles as f64 / n as f64,
            "aws_reads_per_reconcile": reads_per_reconcile,
            "aws_reads_per_binding_per_hour_at_default_resync": reads_per_reconcile * resyncs_per_hour,
            "aws_writes": steady_aws_writes,
            "kubernetes_writes": steady_kube_writes,
        },
        "drift": {
            "drifted": drifted.len(),
            "unrepaired": unrepaired,
            "repair_s": secs(drift),
            "aws_writes": drift_aws_writes,
            "kubernetes_writes": drift_kube_writes,
            "ratio_to_bound": drift_aws_writes as f64 / drifted.len() as f64,
        },
        "memory": {
            "idle_rss_mib": mib(idle_rss),
            "peak_rss_mib": mib(peak),
            "peak_cold_mib": mib(cold_hwm),
            "peak_restart_mib": mib(restart_hwm),
            "peak_steady_mib": mib(steady_hwm),
            "per_binding_kib": ((peak.saturating_sub(idle_rss)) as f64 / n as f64 / 1024.0 * 10.0).round() / 10.0,
        },
    }))
}

fn f(v: &Value, path: &str) -> String {
    match v.pointer(path) {
        Some(Value::Number(x)) => {
            let x = x.as_f64().unwrap_or(0.0);
            if x.fract() == 0.0 {
                format!("{x:.0}")
            } else {
                format!("{x:.2}")
            }
        }
        Some(Value::Null) | None => "-".into(),
        Some(other) => other.to_string(),
    }
}

fn print_row(row: &Value) {
    let n = f(row, "/n");
    println!("\n== N = {n} on {}", f(row, "/target").trim_matches('"'));
    println!(
        "cold start   : all Ready in {} s (apply {} s); bound N x {} IAM writes / {} per s = {} s; ratio {}",
        f(row, "/cold_start/all_ready_s"),
        f(row, "/cold_start/apply_s"),
        f(row, "/cold_start/iam_writes_per_binding"),
        f(row, "/cold_start/iam_write_rate_per_s"),
        f(row, "/cold_start/bound_s"),
        f(row, "/cold_start/ratio_to_bound"),
    );
    println!(
        "aws calls    : {} per binding ({} accepted) vs minimum {}; ratio {} ({} accepted)",
        f(row, "/aws_calls_per_binding/total"),
        f(row, "/aws_calls_per_binding/accepted"),
        f(row, "/aws_calls_per_binding/minimum"),
        f(row, "/aws_calls_per_binding/ratio"),
        f(row, "/aws_calls_per_binding/ratio_accepted"),
    );
    if let Some(Value::Object(ops)) = row.pointer("/aws_calls_per_binding/by_operation") {
        for (op, v) in ops {
            println!(
                "  {op:<32} {:>6.2}  (min {:>4}, throttled {:>5})",
                v.as_f64().unwrap_or(0.0),
                f(
                    row,
                    &format!("/aws_calls_per_binding/minimum_by_operation/{op}")
                ),
                f(
                    row,
                    &format!("/aws_calls_per_binding/throttled_by_operation/{op}")
                ),
            );
        }
    }
    println!(
        "restart      : all confirmed in {} s; AWS writes {}, Kubernetes writes {} ({} AWS reads)",
        f(row, "/restart/confirm_all_s"),
        f(row, "/restart/aws_writes"),
        f(row, "/restart/kubernetes_writes"),
        f(row, "/restart/aws_reads"),
    );
    println!(
        "steady state : {} AWS reads per reconcile -> {} per binding per simulated hour at the 300 s resync; AWS writes {}, Kubernetes writes {} (resync scaled to {} s, {} s window, {} reconciles per binding)",
        f(row, "/steady_state/aws_reads_per_reconcile"),
        f(
            row,
            "/steady_state/aws_reads_per_binding_per_hour_at_default_resync"
        ),
        f(row, "/steady_state/aws_writes"),
        f(row, "/steady_state/kubernetes_writes"),
        f(row, "/steady_state/resync_s"),
        f(row, "/steady_state/window_s"),
        f(row, "/steady_state/reconciles_per_binding"),
    );
    println!(
        "drift        : {} roles changed; repaired in {} s (resync {} s) with {} AWS writes (bound {}), {} Kubernetes writes",
        f(row, "/drift/drifted"),
        f(row, "/drift/repair_s"),
        f(row, "/steady_state/resync_s"),
        f(row, "/drift/aws_writes"),
        f(row, "/drift/drifted"),
        f(row, "/drift/kubernetes_writes"),
    );
    println!(
        "memory       : peak RSS {} MiB (cold {}, restart {}, steady {}); idle {} MiB; {} KiB per binding",
        f(row, "/memory/peak_rss_mib"),
        f(row, "/memory/peak_cold_mib"),
        f(row, "/memory/peak_restart_mib"),
        f(row, "/memory/peak_steady_mib"),
        f(row, "/memory/idle_rss_mib"),
        f(row, "/memory/per_binding_kib"),
    );
}

/// The smoke's assertions: the zero-write results and a repaired drift.
fn smoke_failures(row: &Value) -> Vec<String> {
    let mut failures = Vec::new();
    for path in [
        "/restart/aws_writes",
        "/restart/kubernetes_writes",
        "/steady_state/aws_writes",
        "/steady_state/kubernetes_writes",
    ] {
        if row.pointer(path).and_then(Value::as_u64) != Some(0) {
            failures.push(format!("{path} = {} (want 0)", f(row, path)));
        }
    }
    if row
        .pointer("/steady_state/reconciles_per_binding")
        .and_then(Value::as_f64)
        < Some(0.5)
    {
        failures.push("steady state: the resync did not run".into());
    }
    failures
}

/// The machine: cores and memory.
fn machine() -> Value {
    let cores = std::thread::available_parallelism().map_or(0, |c| c.get());
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0);
    json!({"cores": cores, "memory_gib": (mem_kib as f64 / 1_048_576.0 * 10.0).round() / 10.0})
}

/// The commit the benchmark was built from, `-dirty` when the tree has changes.
fn commit() -> String {
    Command::new("git")
        .args(["describe", "--always", "--dirty", "--abbrev=12"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}

fn main() {
    let plan = match Plan::from_env() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("scale benchmark: {e}");
            std::process::exit(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tokio runtime: {e}");
            std::process::exit(2);
        }
    };
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
        .join("bench");
    let machine = machine();
    let commit = commit();
    let date = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let settings = plan.settings_json();
    println!(
        "scale benchmark ({}) {date}, commit {commit}, machine {machine}",
        settings["mode"]
    );
    println!("settings: {settings}");
    println!(
        "method: the operator binary runs as a child process against the Kubernetes API server \
         (kubesim over TCP, or etcd and kube-apiserver) and the AWS simulator's HTTP front; \
         memory is its VmHWM/VmRSS from /proc (the benchmark's own servers are not counted). \
         Steady state is time scaled: a {} s resync measured over {} periods, reported per \
         simulated hour at the default 300 s resync.",
        plan.resync.as_secs(),
        plan.steady_periods
    );
    let runs: Vec<(Target, usize)> = plan
        .sizes
        .iter()
        .flat_map(|&n| plan.targets.iter().map(move |&t| (t, n)))
        .collect();
    let rows: Vec<Res<Value>> = runtime.block_on(async {
        let mut rows = Vec::new();
        for &(t, n) in &runs {
            let dir = target.join(format!(
                "scale-{}-{}-{n}",
                if plan.smoke { "smoke" } else { "run" },
                t.name()
            ));
            let row = run_size(&plan, t, n, dir).await;
            match &row {
                Ok(r) => print_row(r),
                Err(e) => println!("\n== N = {n} on {}: FAILED: {e}", t.name()),
            }
            rows.push(row);
        }
        rows
    });
    let mut failures: Vec<String> = Vec::new();
    let mut table: Vec<Value> = rows
        .into_iter()
        .zip(&runs)
        .map(|(r, (t, n))| {
            let mut v = match r {
                Ok(v) => {
                    if plan.smoke {
                        failures.extend(
                            smoke_failures(&v)
                                .into_iter()
                                .map(|e| format!("N={n} on {}: {e}", t.name())),
                        );
                    }
                    v
                }
                Err(e) => {
                    failures.push(format!("N={n} on {}: {e}", t.name()));
                    json!({"target": t.name(), "n": n, "error": e})
                }
            };
            v["date"] = json!(date);
            v["commit"] = json!(commit);
            v["settings"] = settings.clone();
            v
        })
        .collect();
    let file = target.join(if plan.smoke {
        "scale-smoke.json"
    } else {
        "scale.json"
    });
    // Rows of earlier runs for the (target, N) pairs this run did not measure stay.
    if !plan.smoke
        && let Some(Value::Array(old)) = std::fs::read_to_string(&file)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .map(|v| v["rows"].clone())
    {
        for row in old {
            let key = (
                row["target"].as_str().unwrap_or("kubesim").to_owned(),
                row["n"].as_u64().unwrap_or(0) as usize,
            );
            if !runs
                .iter()
                .any(|(t, n)| (t.name(), *n) == (key.0.as_str(), key.1))
            {
                table.push(row);
            }
        }
    }
    table.sort_by_key(|r| {
        (
            r["n"].as_u64().unwrap_or(0),
            r["target"].as_str().unwrap_or("").to_owned(),
        )
    });
    let out = json!({"date": date, "commit": commit, "machine": machine, "settings": settings, "rows": table});
    match std::fs::create_dir_all(&target)
        .and_then(|()| std::fs::write(&file, format!("{out:#}\n")))
    {
        Ok(()) => println!("\ntable written to {}", file.display()),
        Err(e) => failures.push(format!("cannot write {}: {e}", file.display())),
    }
    if !failures.is_empty() {
        eprintln!("\nFAILED:\n  {}", failures.join("\n  "));
        std::process::exit(1);
    }
}
