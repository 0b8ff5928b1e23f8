//! The operator binary as a process, around its controller: `--version`; the startup
//! log line; `/healthz`, `/readyz` and `/metrics`; JSON logs with a span per reconcile
//! and neither credentials nor policy documents in them; leader election between two
//! processes (only the holder reconciles or writes to AWS; after a kill -9 the other
//! takes over and converges a new binding); and graceful shutdown on SIGTERM (in-flight
//! work finishes, a stuck one is dropped at the deadline, exit code 0, Lease released).
//!
//! Runs against kubesim over TCP and the AWS simulator's HTTP front, both in this
//! process; needs no test servers.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, PostParams};
use pod_identity_operator::aws::sim::{AwsSim, SimConfig};
use pod_identity_operator::crd::PodIdentityBinding;
use pod_identity_operator::kubesim::{KubeSim, ServerHandle};
use serde_json::{Value, json};

use support::{NS, WAIT, http_get};

const REGION: &str = "eu-west-1";
const SECRET: &str = "runtime-secret-never-logged";
const GUARDRAILS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e-guardrails.yaml");
const LEASE: &str = "pod-identity-operator";

/// kubesim over TCP with the CRD, and the AWS simulator's HTTP front.
struct Stack {
    aws: Arc<AwsSim>,
    aws_url: String,
    front: tokio::task::JoinHandle<pod_identity_operator::aws::Result<()>>,
    kube: KubeSim,
    server: Option<ServerHandle>,
    dir: tempfile::TempDir,
}

impl Stack {
    async fn start(cluster: &str) -> Stack {
        let aws = Arc::new(AwsSim::new(SimConfig::default()));
        aws.add_cluster(cluster);
        // The operator binary runs with `GUARDRAILS`, the file `permissive_guardrails`
        // reads.
        support::enforce_rendered(&aws, cluster, &support::permissive_guardrails());
        let (aws_url, front) = support::serve_simulator(aws.clone()).await;
        let (kube, server, dir) = support::kubesim_over_tcp().await;
        Stack {
            aws,
            aws_url,
            front,
            kube,
            server: Some(server),
            dir,
        }
    }

    /// Starts the operator binary with JSON logs and both servers on free ports.
    fn spawn(&self, name: &str, cluster: &str, endpoint: &str, extra: &[&str]) -> Operator {
        let log = self.dir.path().join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_pod-identity-operator"))
            .args(["run", "--cluster-name", cluster, "--region", REGION])
            .args(["--aws-endpoint-url", endpoint])
            .args(["--resync-interval", "2", "--config", GUARDRAILS])
            .args(["--log-format", "json"])
            .args([
                "--health-addr",
                "127.0.0.1:0",
                "--metrics-addr",
                "127.0.0.1:0",
            ])
            .args(extra)
            .env("KUBECONFIG", self.dir.path().join("kubeconfig"))
            .env("AWS_ACCESS_KEY_ID", "AKIARUNTIMETESTS")
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("AWS_PROFILE")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log"))
            .stderr(file)
            .spawn()
            .expect("operator binary starts");
        let mut op = Operator {
            child,
            log,
            health: String::new(),
            metrics: String::new(),
            identity: String::new(),
        };
        let start = op.wait_log("the startup line", |l| {
            l["message"] == "pod-identity-operator starting"
        });
        op.health = start["health_addr"]
            .as_str()
            .expect("health_addr")
            .to_owned();
        op.metrics = start["metrics_addr"]
            .as_str()
            .expect("metrics_addr")
            .to_owned();
        op.identity = start["identity"].as_str().unwrap_or_default().to_owned();
        op
    }

    fn bindings(&self) -> Api<PodIdentityBinding> {
        Api::namespaced(self.kube.client(), NS)
    }

    async fn apply(&self, name: &str, spec: Value) {
        let b: PodIdentityBinding = serde_json::from_value(json!({
            "apiVersion": "podidentity.dev/v1alpha1", "kind": "PodIdentityBinding",
            "metadata": {"name": name, "namespace": NS}, "spec": spec,
        }))
        .expect("binding");
        self.bindings()
            .create(&PostParams::default(), &b)
            .await
            .expect("binding created");
    }

    async fn wait_converged(&self, name: &str, logs: &[&Operator]) {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(b) = self.bindings().get_opt(name).await.expect("get")
                && let Some(c) = support::ready(&b)
                && c.status == "True"
                && c.observed_generation == b.metadata.generation
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{name} never converged:\n{}",
                logs.iter()
                    .map(|o| o.log_tail())
                    .collect::<Vec<_>>()
                    .join("\n---\n")
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn lease_holder(&self) -> Option<String> {
        let leases: Api<Lease> = Api::namespaced(self.kube.client(), NS);
        leases
            .get_opt(LEASE)
            .await
            .expect("get lease")
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity)
    }

    async fn stop(mut self) {
        self.front.abort();
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
    }
}

/// A running operator process; killed when dropped.
struct Operator {
    child: Child,
    log: PathBuf,
    health: String,
    metrics: String,
    identity: String,
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn json_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

impl Operator {
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn log_tail(&self) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(25)..].join("\n")
    }

    /// Waits for a JSON log line matching `pred` and returns it.
    fn wait_log(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(l) = json_lines(&self.log).into_iter().find(&pred) {
                return l;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "operator exited ({status}) before {what}:\n{}",
                    self.log_tail()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no {what} in the log:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    async fn metrics(&self) -> Option<String> {
        match http_get(&self.metrics, "/metrics").await {
            Some((200, body)) => Some(body),
            _ => None,
        }
    }

    /// The sum of every sample of a metric whose line starts with `prefix`.
    async fn metric(&self, prefix: &str) -> f64 {
        sum_of(&self.metrics().await.unwrap_or_default(), prefix)
    }

    async fn leading(&self) -> bool {
        self.metric("pod_identity_operator_leader ").await == 1.0
    }

    async fn wait_metric(&self, what: &str, prefix: &str, pred: impl Fn(f64) -> bool) {
        let deadline = Instant::now() + WAIT;
        loop {
            if pred(self.metric(prefix).await) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: {prefix} is {}\n{}\n{}",
                self.metric(prefix).await,
                self.metrics().await.unwrap_or_default(),
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn terminate(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs")
            .success();
        assert!(ok, "SIGTERM delivered");
    }

    /// Waits for the process to exit and returns its exit code.
    fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "operator did not exit:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn sum_of(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn write_calls(metrics: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("pod_identity_operator_aws_calls_total{"))
        .filter(|l| {
            let op = l.split("operation=\"").nth(1).unwrap_or("");
            !(op.starts_with("Get") || op.starts_with("List") || op.starts_with("Describe"))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn version_prints_the_crate_version() {
    let out = Command::new(env!("CARGO_BIN_EXE_pod-identity-operator"))
        .arg("--version")
        .output()
        .expect("binary runs");
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("pod-identity-operator {}", env!("CARGO_PKG_VERSION"))
    );
}

/// One process without leader election: the startup line, health, readiness, metrics
/// after a binding converges, the reconcile span in JSON logs, no secrets in them, and
/// SIGTERM → exit 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_process_reports_health_metrics_and_logs() {
    const CLUSTER: &str = "observed";
    let stack = Stack::start(CLUSTER).await;
    let mut op = stack.spawn(
        "single",
        CLUSTER,
        &stack.aws_url,
        &["--log-level", "info,pod_identity_operator=debug"],
    );

    // The startup line.
    let start = op.wait_log("the startup line", |l| {
        l["message"] == "pod-identity-operator starting"
    });
    let rules =
        pod_identity_operator::guardrails::GuardrailSource::from_file(Path::new(GUARDRAILS))
            .expect("guardrails")
            .current()
            .rules
            .len();
    assert_eq!(start["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(start["cluster"], CLUSTER);
    assert_eq!(start["region"], REGION);
    assert_eq!(start["guardrail_rules"], rules as u64);
    assert_eq!(start["leader_election"], false);
    assert_eq!(start["level"], "INFO");
    assert!(op.health.starts_with("127.0.0.1:") && !op.health.ends_with(":0"));
    assert!(op.metrics.starts_with("127.0.0.1:") && op.metrics != op.health);

    // Health, then readiness once AWS answered and the watches listed.
    assert_eq!(
        http_get(&op.health, "/healthz").await.map(|r| r.0),
        Some(200)
    );
    let deadline = Instant::now() + WAIT;
    loop {
        let r = http_get(&op.health, "/readyz").await;
        if r.as_ref().map(|r| r.0) == Some(200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never ready: {r:?}\n{}",
            op.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A binding with an inline policy converges and shows in the metrics.
    let marker = "RuntimeMarkerSid7431";
    stack
        .apply(
            "observed-app",
            json!({"role": {"inlinePolicies": {"read": {
                "Version": "2012-10-17",
                "Statement": [{"Sid": marker, "Effect": "Allow",
                               "Action": "s3:GetObject", "Resource": "*"}],
            }}}}),
        )
        .await;
    stack.wait_converged("observed-app", &[&op]).await;
    op.wait_metric(
        "a converged binding",
        r#"pod_identity_operator_bindings{ready="True",reason="Reconciled"}"#,
        |v| v == 1.0,
    )
    .await;
    op.wait_metric(
        "a Reconciled pass",
        r#"pod_identity_operator_reconciles_total{result="ok",reason="Reconciled"}"#,
        |v| v >= 1.0,
    )
    .await;
    let text = op.metrics().await.expect("metrics");
    assert_eq!(
        sum_of(
            &text,
            r#"pod_identity_operator_aws_calls_total{service="iam",operation="CreateRole",outcome="ok"}"#
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        sum_of(
            &text,
            r#"pod_identity_operator_aws_calls_total{service="eks",operation="CreatePodIdentityAssociation",outcome="ok"}"#
        ),
        1.0,
        "{text}"
    );
    assert!(
        sum_of(
            &text,
            "pod_identity_operator_reconcile_duration_seconds_count"
        ) >= 2.0
    );
    assert_eq!(sum_of(&text, "pod_identity_operator_leader "), 1.0);
    assert_eq!(
        sum_of(&text, r#"pod_identity_operator_bindings{ready="False""#),
        0.0
    );
    assert!(text.contains("pod_identity_operator_reconciles_in_flight "));
    assert!(
        text.contains("pod_identity_operator_bindings_late "),
        "{text}"
    );
    assert_eq!(
        sum_of(&text, "pod_identity_operator_build_info{"),
        1.0,
        "{text}"
    );

    // A span per reconcile, with the binding's namespace, name and generation.
    let in_span = op.wait_log("a log line in a reconcile span", |l| {
        l["span"]["name"] == "reconcile" && l["span"]["binding"] == "observed-app"
    });
    assert_eq!(in_span["span"]["namespace"], NS, "{in_span}");
    assert_eq!(in_span["span"]["generation"], 1, "{in_span}");

    // SIGTERM: exit 0; the log holds no credential and no policy document.
    op.terminate();
    assert_eq!(op.wait_exit(WAIT), Some(0), "{}", op.log_tail());
    let log = op.log_text();
    assert!(log.contains("pod-identity-operator stopped"), "{log}");
    assert!(!log.contains(SECRET), "the secret key is logged");
    assert!(!log.contains(marker), "a policy document is logged");
    stack.stop().await;
}

/// AWS unreachable: alive, not ready, and still stops cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_fails_until_aws_answers() {
    let stack = Stack::start("unreached").await;
    // A port nothing listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", l.local_addr().expect("addr"))
    };
    let mut op = stack.spawn("unreached", "unreached", &closed, &[]);
    assert_eq!(
        http_get(&op.health, "/healthz").await.map(|r| r.0),
        Some(200)
    );
    // The first DescribeCluster has failed once this is logged.
    op.wait_log("the failed AWS probe", |l| {
        l["message"] == "AWS not reachable yet"
    });
    let (status, body) = http_get(&op.health, "/readyz").await.expect("answer");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("AWS not reached"), "{body}");
    op.terminate();
    assert_eq!(op.wait_exit(WAIT), Some(0), "{}", op.log_tail());
    stack.stop().await;
}

/// Two processes on one Lease: only the holder reconciles or writes to AWS; after a
/// kill -9 of the holder the other takes over and converges a new binding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_takes_over_after_the_leader_is_killed() {
    const CLUSTER: &str = "elected";
    let stack = Stack::start(CLUSTER).await;
    let elect = [
        "--leader-elect",
        "--leader-election-namespace",
        NS,
        "--lease-duration",
        "4",
        "--lease-grace",
        "2",
    ];
    let a = stack.spawn("a", CLUSTER, &stack.aws_url, &elect);
    let b = stack.spawn("b", CLUSTER, &stack.aws_url, &elect);
    assert_ne!(a.identity, b.identity);
    assert!(!a.identity.is_empty());

    // One of them leads, and the Lease names it.
    let deadline = Instant::now() + WAIT;
    let (leader, standby) = loop {
        match (a.leading().await, b.leading().await) {
            (true, false) => break (a, b),
            (false, true) => break (b, a),
            (true, true) => panic!("both lead"),
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "nobody leads:\n{}\n---\n{}",
            a.log_tail(),
            b.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(stack.lease_holder().await, Some(leader.identity.clone()));
    // Both ready: the standby has no watches to sync.
    for op in [&leader, &standby] {
        let deadline = Instant::now() + WAIT;
        while http_get(&op.health, "/readyz").await.map(|r| r.0) != Some(200) {
            assert!(Instant::now() < deadline, "never ready:\n{}", op.log_tail());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // Never two leaders at once, sampled all along until the takeover is over.
    let sampler_stop = tokio_util::sync::CancellationToken::new();
    let sampler = {
        let (la, lb) = (leader.metrics.clone(), standby.metrics.clone());
        let stop = sampler_stop.clone();
        tokio::spawn(async move {
            let mut both = 0;
            while !stop.is_cancelled() {
                let lead = |addr: String| async move {
                    http_get(&addr, "/metrics")
                        .await
                        .is_some_and(|(_, t)| sum_of(&t, "pod_identity_operator_leader ") == 1.0)
                };
                if lead(la.clone()).await && lead(lb.clone()).await {
                    both += 1;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            both
        })
    };

    stack.apply("first", json!({})).await;
    stack.wait_converged("first", &[&leader, &standby]).await;
    // Resyncs (every 2 s) go on at the leader only.
    leader
        .wait_metric(
            "resyncs",
            r#"pod_identity_operator_reconciles_total{result="ok",reason="Reconciled"}"#,
            |v| v >= 2.0,
        )
        .await;
    let standby_text = standby.metrics().await.expect("standby metrics");
    assert_eq!(
        sum_of(&standby_text, "pod_identity_operator_reconciles_total{"),
        0.0,
        "the standby reconciled:\n{standby_text}"
    );
    assert_eq!(
        write_calls(&standby_text),
        0.0,
        "the standby wrote to AWS:\n{standby_text}"
    );
    assert!(write_calls(&leader.metrics().await.expect("leader metrics")) >= 2.0);
    assert_eq!(stack.aws.inventory().roles.len(), 1);

    // kill -9: no release; the standby takes over once the Lease expires.
    let killed = Instant::now();
    drop(leader);
    standby
        .wait_metric("the takeover", "pod_identity_operator_leader ", |v| {
            v == 1.0
        })
        .await;
    eprintln!(
        "takeover {:?} after the kill (lease duration 4 s)",
        killed.elapsed()
    );
    assert_eq!(stack.lease_holder().await, Some(standby.identity.clone()));
    stack.apply("second", json!({})).await;
    stack.wait_converged("second", &[&standby]).await;
    assert!(write_calls(&standby.metrics().await.expect("metrics")) >= 2.0);
    let inv = stack.aws.inventory();
    assert_eq!(inv.roles.len(), 2, "{inv:#?}");
    assert_eq!(inv.associations.len(), 2, "{inv:#?}");

    sampler_stop.cancel();
    assert_eq!(sampler.await.expect("sampler"), 0, "two leaders at once");
    drop(standby);
    stack.stop().await;
}

/// SIGTERM while a reconcile is in flight: it finishes, the Lease is released, exit 0.
/// Then one stuck past the shutdown deadline: dropped, Lease released, exit 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_work_and_releases_the_lease() {
    const CLUSTER: &str = "stopping";
    let stack = Stack::start(CLUSTER).await;
    let knobs = stack.aws.knobs().clone();
    let elect = ["--leader-elect", "--leader-election-namespace", NS];

    // In flight, finishing within the deadline.
    knobs.set_operation_latency("CreatePodIdentityAssociation", Duration::from_secs(3));
    let mut extra = elect.to_vec();
    extra.extend(["--shutdown-timeout", "60"]);
    let mut op = stack.spawn("graceful", CLUSTER, &stack.aws_url, &extra);
    op.wait_metric("leading", "pod_identity_operator_leader ", |v| v == 1.0)
        .await;
    assert_eq!(stack.lease_holder().await, Some(op.identity.clone()));
    stack.apply("slow", json!({})).await;
    let deadline = Instant::now() + WAIT;
    while knobs.calls_of("CreatePodIdentityAssociation") == 0 {
        assert!(
            Instant::now() < deadline,
            "never created:\n{}",
            op.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    op.terminate();
    assert_eq!(op.wait_exit(WAIT), Some(0), "{}", op.log_tail());
    assert_eq!(
        stack.aws.inventory().associations.len(),
        1,
        "the in-flight reconcile finished its call:\n{}",
        op.log_tail()
    );
    assert_eq!(stack.lease_holder().await, None, "{}", op.log_tail());
    assert!(op.log_text().contains("lease released"));
    drop(op);

    // Stuck past the deadline.
    knobs.set_operation_latency("CreatePodIdentityAssociation", Duration::from_secs(3600));
    let mut extra = elect.to_vec();
    extra.extend(["--shutdown-timeout", "1"]);
    let mut op = stack.spawn("deadline", CLUSTER, &stack.aws_url, &extra);
    op.wait_metric("leading", "pod_identity_operator_leader ", |v| v == 1.0)
        .await;
    let before = knobs.calls_of("CreatePodIdentityAssociation");
    stack.apply("stuck", json!({})).await;
    let deadline = Instant::now() + WAIT;
    while knobs.calls_of("CreatePodIdentityAssociation") == before {
        assert!(
            Instant::now() < deadline,
            "never created:\n{}",
            op.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    op.wait_metric(
        "in flight",
        "pod_identity_operator_reconciles_in_flight ",
        |v| v >= 1.0,
    )
    .await;
    op.terminate();
    assert_eq!(op.wait_exit(WAIT), Some(0), "{}", op.log_tail());
    assert!(
        op.log_text()
            .contains("shutdown deadline passed: in-flight reconciles dropped"),
        "{}",
        op.log_tail()
    );
    assert_eq!(stack.lease_holder().await, None, "{}", op.log_tail());
    drop(op);
    stack.stop().await;
}

/// A leader whose Lease another identity takes stops reconciling at once: a binding
/// applied meanwhile is not touched until the Lease comes back to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_loses_the_lease_stops_reconciling() {
    use kube::api::{Patch, PatchParams};
    const CLUSTER: &str = "usurped";
    let stack = Stack::start(CLUSTER).await;
    let op = stack.spawn(
        "usurped",
        CLUSTER,
        &stack.aws_url,
        &[
            "--leader-elect",
            "--leader-election-namespace",
            NS,
            "--lease-duration",
            "4",
            "--lease-grace",
            "2",
        ],
    );
    op.wait_metric("leading", "pod_identity_operator_leader ", |v| v == 1.0)
        .await;
    stack.apply("before", json!({})).await;
    stack.wait_converged("before", &[&op]).await;

    // Another identity takes the Lease for a few seconds.
    let leases: Api<Lease> = Api::namespaced(stack.kube.client(), NS);
    let now = chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();
    leases
        .patch(
            LEASE,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {
                "holderIdentity": "intruder", "renewTime": now, "acquireTime": now,
                "leaseDurationSeconds": 6,
            }})),
        )
        .await
        .expect("lease taken");
    op.wait_metric("stepping down", "pod_identity_operator_leader ", |v| {
        v == 0.0
    })
    .await;
    let writes = write_calls(&op.metrics().await.expect("metrics"));

    // While the intruder holds it, a new binding stays untouched.
    stack.apply("during", json!({})).await;
    let mut held_samples = 0;
    while stack.lease_holder().await.as_deref() == Some("intruder") {
        let b = stack.bindings().get("during").await.expect("get");
        assert!(
            b.status.is_none() && b.metadata.finalizers.is_none(),
            "reconciled without the lease: {b:?}"
        );
        held_samples += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(held_samples > 0, "the intruder's hold was never seen");
    let text = op.metrics().await.expect("metrics");
    assert_eq!(write_calls(&text), writes, "AWS writes without the lease");

    // The intruder's Lease expires unrenewed; the operator takes it back and converges.
    op.wait_metric("leading again", "pod_identity_operator_leader ", |v| {
        v == 1.0
    })
    .await;
    assert_eq!(stack.lease_holder().await, Some(op.identity.clone()));
    stack.wait_converged("during", &[&op]).await;
    assert!(op.log_text().contains("lease lost: stopped reconciling"));
    drop(op);
    stack.stop().await;
}
