//! Over the wire. First the controller in-process with the SDK adapters against moto
//! (IAM) and ministack (EKS): create, update, delete, conflicts, and zero writes once
//! converged. Then the compiled operator binary as a process against kubesim over TCP
//! and ministack (IAM and EKS on one port, through `--aws-endpoint-url`), driven with
//! `kubectl` as the README says: install the CRD, apply a binding, `kubectl wait` for
//! Ready, delete it, and check AWS holds nothing of it.
//!
//! Then the binary against the simulator's HTTP front: every spec field updated in turn,
//! a ServiceAccount rename, two bindings on one ServiceAccount, a ServiceAccount deleted
//! out of band, delete-and-recreate, a deleted namespace, bad specs refused (by the
//! schema through kubectl, by the operator's validation); a kill -9 during an
//! association's creation, and the crash-safety run (seeded SIGKILLs, watch drops and AWS faults
//! during a churn of 20 bindings; `CRASH_SEED` replays a seed).
//!
//! The whole suite runs against another cluster and AWS endpoint when `E2E_KUBECONFIG`
//! and `E2E_AWS_ENDPOINT` (or `E2E_AWS_CREDENTIALS=1`) are set (see
//! `support/target.rs`): each test then works in a namespace of its own. The crash-safety
//! run needs kubesim's watch-drop fault injection and says on stderr that it is skipped
//! when `E2E_KUBECONFIG` is set; the tests that need the simulator's AWS fault injection
//! keep the simulator and say so.
//!
//! Needs the test servers (`bash scripts/install-test-servers`) and the kubectl client.

#[path = "../support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::{Api, Patch, PatchParams};
use pod_identity_operator::aws::eks::SdkEks;
use pod_identity_operator::aws::faults::{Faulty, Knobs};
use pod_identity_operator::aws::iam::SdkIam;
use pod_identity_operator::aws::{CreateAssociation, CreateRole, EksApi, IamApi};
use pod_identity_operator::crd::PodIdentityBinding;
use pod_identity_operator::kubesim::KubeSim;
use pod_identity_operator::naming;
use pod_identity_operator::policy::pod_identity_trust_policy;
use serde_json::json;

use support::aws_servers::{self, ACCOUNT_ID, Kind};
use support::kubectl::{kubectl, kubectl_command};
use support::target::{AwsAccess, AwsTarget, Kube, Target};
use support::{Env, NS, WAIT, serve_simulator, write_calls};

const REGION: &str = "us-east-1";
const READ_ONLY: &str = "arn:aws:iam::aws:policy/ReadOnlyAccess";

/// The suite's own AWS server at `url`, with the test credentials.
fn local(url: &str) -> AwsAccess {
    AwsAccess {
        endpoint: Some(url.to_owned()),
        region: REGION.into(),
        test_credentials: true,
    }
}

mod binary;
mod crash_checks;
mod crash_harness;
mod crash_safety;
mod sdk;
mod stack;

/// The guardrails the operator binary runs under in this suite.
const E2E_GUARDRAILS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e-guardrails.yaml");

/// The guardrails of [`E2E_GUARDRAILS`]: the simulators the operator binary calls
/// enforce its policy rendered for them.
fn e2e_guardrails() -> pod_identity_operator::guardrails::GuardrailConfig {
    let text = std::fs::read_to_string(E2E_GUARDRAILS).expect("tests/e2e-guardrails.yaml");
    pod_identity_operator::guardrails::GuardrailConfig::parse(&text).expect("e2e guardrails parse")
}

/// Starts the operator binary with its output appended to `log`; `namespace` limits it
/// to one namespace (on another cluster, shared with other tests).
fn spawn_operator(
    kubeconfig: &std::path::Path,
    cluster: &str,
    aws: &AwsAccess,
    namespace: Option<&str>,
    resync_seconds: u32,
    log: &std::path::Path,
) -> Operator {
    spawn_operator_with(
        kubeconfig,
        cluster,
        aws,
        namespace,
        resync_seconds,
        log,
        &[],
    )
}

/// [`spawn_operator`] with more flags of `run`.
fn spawn_operator_with(
    kubeconfig: &std::path::Path,
    cluster: &str,
    aws: &AwsAccess,
    namespace: Option<&str>,
    resync_seconds: u32,
    log: &std::path::Path,
    flags: &[&str],
) -> Operator {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pod-identity-operator"));
    cmd.args(["run", "--cluster-name", cluster])
        .args(["--resync-interval", &resync_seconds.to_string()])
        .args(["--config", E2E_GUARDRAILS])
        .args(flags);
    aws.configure(&mut cmd);
    if let Some(ns) = namespace {
        cmd.args(["--namespace", ns]);
    }
    let child = cmd
        .env("KUBECONFIG", kubeconfig)
        .env(
            "RUST_LOG",
            std::env::var("E2E_OPERATOR_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().expect("log"))
        .stderr(log_file)
        .spawn()
        .expect("operator binary starts");
    Operator(child)
}

/// Kills the operator process when the test ends, however it ends.
struct Operator(std::process::Child);

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
