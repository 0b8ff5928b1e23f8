//! The operator binary as the Deployment runs it (leader election on, metrics served)
//! against kubesim over TCP and the AWS simulator's HTTP front: one binding converges, one
//! is refused by the guardrails, and the first one's deletion meets a throttled, then
//! denied, DeletePodIdentityAssociation; then every expression of the PrometheusRule and
//! the dashboard is held against `/metrics`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::{Api, DeleteParams, PostParams};
use pod_identity_operator::aws::faults::{Fault, Service};
use pod_identity_operator::aws::sim::{AwsSim, SimConfig};
use pod_identity_operator::crd::PodIdentityBinding;
use pod_identity_operator::guardrails::GuardrailConfig;
use serde_json::{Value, json};

use crate::promql::{Scrape, check_against_scrape};
use crate::support;
use crate::support::{NS, WAIT, http_get};

const CLUSTER: &str = "monitored";
const REGION: &str = "us-east-1";
const READ_ONLY: &str = "arn:aws:iam::aws:policy/ReadOnlyAccess";
const ADMIN: &str = "arn:aws:iam::aws:policy/AdministratorAccess";

/// The operator process; killed when dropped.
struct Operator {
    child: Child,
    log: PathBuf,
    metrics: String,
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Operator {
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    async fn scrape_text(&self) -> String {
        http_get(&self.metrics, "/metrics")
            .await
            .filter(|(status, _)| *status == 200)
            .map(|(_, body)| body)
            .unwrap_or_default()
    }

    /// Scrapes until `pred` holds for the scrape, at most `within`, and returns that
    /// scrape's text.
    async fn wait_scrape(
        &mut self,
        what: &str,
        within: Duration,
        pred: impl Fn(&Scrape) -> bool,
    ) -> String {
        let deadline = Instant::now() + within;
        loop {
            let text = self.scrape_text().await;
            if pred(&Scrape::parse(&text)) {
                return text;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("operator exited ({status}):\n{}", self.log_tail());
            }
            assert!(
                Instant::now() < deadline,
                "never scraped {what}:\n{text}\n---\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Starts the operator binary as the Deployment runs it (leader election, metrics),
/// with JSON logs in `dir`, and reads the metrics address from its startup line.
fn spawn_operator(dir: &Path, aws_url: &str, guardrails: &Path) -> Operator {
    let log = dir.join("operator.log");
    let file = std::fs::File::create(&log).expect("log file");
    let child = Command::new(env!("CARGO_BIN_EXE_pod-identity-operator"))
        .args(["run", "--cluster-name", CLUSTER, "--region", REGION])
        .args(["--aws-endpoint-url", aws_url])
        .arg("--config")
        .arg(guardrails)
        .args(["--leader-elect", "--leader-election-namespace", NS])
        .args(["--metrics-addr", "127.0.0.1:0", "--log-format", "json"])
        .env("KUBECONFIG", dir.join("kubeconfig"))
        .env("AWS_ACCESS_KEY_ID", "AKIAMONITORINGTESTS")
        .env("AWS_SECRET_ACCESS_KEY", "monitoring-test-secret")
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
        metrics: String::new(),
    };
    let deadline = Instant::now() + WAIT;
    op.metrics = loop {
        let start = std::fs::read_to_string(&op.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|l| l["message"] == "pod-identity-operator starting");
        if let Some(addr) = start.as_ref().and_then(|l| l["metrics_addr"].as_str()) {
            break addr.to_owned();
        }
        if let Ok(Some(status)) = op.child.try_wait() {
            panic!("operator exited ({status}):\n{}", op.log_tail());
        }
        assert!(
            Instant::now() < deadline,
            "no startup line:\n{}",
            op.log_tail()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    op
}

async fn wait_reason(bindings: &Api<PodIdentityBinding>, name: &str, status: &str, reason: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let b = bindings.get_opt(name).await.expect("get binding");
        if let Some(c) = b.as_ref().and_then(support::ready)
            && c.status == status
            && c.reason == reason
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} never got Ready={status} ({reason}): {:?}",
            b.and_then(|b| b.status)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_and_label_of_the_rules_and_the_dashboard_is_exported() {
    let aws = Arc::new(AwsSim::new(SimConfig::default()));
    aws.add_cluster(CLUSTER);
    let (aws_url, front) = support::serve_simulator(aws.clone()).await;
    let (kube, server, dir) = support::kubesim_over_tcp().await;
    // Read-only access for everyone, nothing else: an administrator binding is refused.
    let guardrails = dir.path().join("guardrails.yaml");
    let rules = format!(
        "rules:\n- name: monitoring\n  namespaces: [\"*\"]\n  allowedManagedPolicyArns: [\"{READ_ONLY}\"]\n"
    );
    std::fs::write(&guardrails, &rules).expect("guardrails");
    support::enforce_rendered(
        &aws,
        CLUSTER,
        &GuardrailConfig::parse(&rules).expect("guardrails parse"),
    );

    let mut op = spawn_operator(dir.path(), &aws_url, &guardrails);
    op.wait_scrape("the metrics", WAIT, |s| {
        s.has("pod_identity_operator_build_info", &[])
    })
    .await;

    let bindings: Api<PodIdentityBinding> = Api::namespaced(kube.client(), NS);
    for (name, policy) in [("monitored-app", READ_ONLY), ("monitored-admin", ADMIN)] {
        let b: PodIdentityBinding = serde_json::from_value(json!({
            "apiVersion": "podidentity.dev/v1alpha1", "kind": "PodIdentityBinding",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"role": {"managedPolicyArns": [policy]}},
        }))
        .expect("binding");
        bindings
            .create(&PostParams::default(), &b)
            .await
            .expect("binding created");
    }
    wait_reason(&bindings, "monitored-app", "True", "Reconciled").await;
    wait_reason(&bindings, "monitored-admin", "False", "PolicyDenied").await;

    // The deletion's first DeletePodIdentityAssociation is throttled on every attempt
    // the SDK makes (5), and the operator's own retry of it is denied: the cleanup fails.
    // This takes most of the test's time, 40 to 60 s: once throttled, the SDK's adaptive
    // retry mode lets a retry go only every 8 s or so (its client-side rate limiter),
    // and a `throttled` outcome is counted only after the last attempt.
    let knobs = aws.knobs();
    let op_name = "DeletePodIdentityAssociation";
    let before = knobs.calls_of(op_name);
    for n in 1..=5 {
        knobs.fail_nth(op_name, before + n, Fault::throttling(Service::Eks));
    }
    knobs.fail_nth(
        op_name,
        before + 6,
        Fault::new(
            "AccessDeniedException",
            "not authorized to perform: eks:DeletePodIdentityAssociation",
        ),
    );
    bindings
        .delete("monitored-app", &DeleteParams::default())
        .await
        .expect("delete");

    let wanted: [(&str, &[(&str, &str)]); 6] = [
        ("pod_identity_operator_bindings", &[("ready", "True")]),
        (
            "pod_identity_operator_bindings",
            &[("ready", "False"), ("reason", "PolicyDenied")],
        ),
        (
            "pod_identity_operator_reconciles_total",
            &[("result", "ok"), ("reason", "PolicyDenied")],
        ),
        (
            "pod_identity_operator_aws_calls_total",
            &[("operation", op_name), ("outcome", "throttled")],
        ),
        (
            "pod_identity_operator_aws_calls_total",
            &[("operation", op_name), ("outcome", "access_denied")],
        ),
        (
            "pod_identity_operator_reconciles_total",
            &[("result", "error"), ("reason", "AccessDenied")],
        ),
    ];
    let text = op
        .wait_scrape("the throttled and denied deletion", 3 * WAIT, |s| {
            s.has(
                "pod_identity_operator_reconciles_total",
                &[("result", "error")],
            )
        })
        .await;
    let scrape = Scrape::parse(&text);
    for (metric, labels) in wanted {
        assert!(
            scrape.has(metric, labels),
            "no {metric} with {labels:?} in the scrape:\n{text}"
        );
    }
    assert!(
        scrape.has("pod_identity_operator_leader", &[])
            && text.contains("pod_identity_operator_leader 1"),
        "the operator leads:\n{text}"
    );

    let problems = check_against_scrape(&scrape);
    assert!(
        problems.is_empty(),
        "the rules and the dashboard use what the operator does not export:\n{}\n\nscrape:\n{text}",
        problems.join("\n")
    );

    drop(op);
    server.shutdown().await;
    front.abort();
}
