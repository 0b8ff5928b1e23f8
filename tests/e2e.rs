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

mod support;

#[allow(dead_code)]
#[path = "aws_contract/servers.rs"]
mod servers;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
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

use servers::{ACCOUNT_ID, Kind};
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

async fn create_cluster(config: &SdkConfig, name: &str) {
    aws_sdk_eks::Client::new(config)
        .create_cluster()
        .name(name)
        .role_arn(format!("arn:aws:iam::{ACCOUNT_ID}:role/eks-cluster"))
        .resources_vpc_config(aws_sdk_eks::types::VpcConfigRequest::builder().build())
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateCluster on ministack: {e:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_adapters_create_update_delete_and_conflicts() {
    let target = Target::from_env();
    let cluster = target.cluster("wire");
    let (iam_access, eks_access, servers) = match target.aws {
        AwsTarget::Local => {
            let (moto, ministack) =
                tokio::join!(servers::lease(Kind::Moto), servers::lease(Kind::Ministack));
            (
                local(&moto.url()),
                local(&ministack.url()),
                Some((moto, ministack)),
            )
        }
        _ => (target.aws_access(None), target.aws_access(None), None),
    };
    let eks_config = eks_access.sdk_config().await;
    if servers.is_some() {
        create_cluster(&eks_config, &cluster).await;
    }
    let knobs = Knobs::new();
    let iam = Arc::new(Faulty::new(
        Arc::new(SdkIam::new(&iam_access.sdk_config().await)),
        knobs.clone(),
    ));
    let eks = Arc::new(Faulty::new(
        Arc::new(SdkEks::new(&eks_config)),
        knobs.clone(),
    ));
    let dir = tempfile::tempdir().expect("temp dir");
    let tune =
        |s: &mut pod_identity_operator::controller::Settings| s.resync = Duration::from_millis(200);
    let (env, kube) = if target.external_kube() {
        let (kube, ns) = Kube::start_in(&target, dir.path(), "wire").await;
        let env = Env::start_on(
            kube.client.clone(),
            None,
            &ns,
            &cluster,
            iam.clone(),
            eks.clone(),
            tune,
        )
        .await;
        (env, Some(kube))
    } else {
        (
            Env::start(&cluster, iam.clone(), eks.clone(), tune).await,
            None,
        )
    };
    let ns = env.ns.clone();
    let ns = ns.as_str();
    let cluster_arn = eks
        .describe_cluster(&cluster)
        .await
        .expect("DescribeCluster")
        .expect("the cluster exists")
        .arn;

    // Create.
    env.apply("wire-app", json!({"tags": {"env": "e2e"}})).await;
    let b = env.wait_converged("wire-app").await;
    let role_name = naming::default_role_name(&cluster_arn, ns, "wire-app");
    let role = iam
        .get_role(&role_name)
        .await
        .expect("GetRole")
        .expect("role made");
    assert!(naming::owned_by(&role.tags, &cluster_arn, ns, "wire-app"));
    assert_eq!(role.path, format!("/pod-identity/{cluster}/"));
    let list = eks
        .list_pod_identity_associations(&cluster, Some(ns), Some("wire-app"))
        .await
        .expect("list");
    assert_eq!(list.len(), 1);
    assert_eq!(
        b.status.as_ref().and_then(|s| s.association_id.clone()),
        Some(list[0].association_id.clone())
    );

    // Converged over the wire: resyncs read (trust policies come URL-encoded) and
    // write nothing.
    let writes = write_calls(&knobs);
    let reads = knobs.calls_of("GetRole");
    let deadline = Instant::now() + WAIT;
    while knobs.calls_of("GetRole") < reads + 3 {
        assert!(Instant::now() < deadline, "no resyncs happened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        write_calls(&knobs),
        writes,
        "writes while converged: {:?}",
        knobs.calls()
    );

    // Update: a managed policy and a description.
    env.bindings()
        .patch(
            "wire-app",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"role": {"managedPolicyArns": [READ_ONLY], "description": "wire"}}})),
        )
        .await
        .expect("patch");
    env.wait_converged("wire-app").await;
    let attached = iam
        .list_attached_role_policies(&role_name)
        .await
        .expect("list attached");
    assert_eq!(
        attached.iter().map(|p| p.arn.as_str()).collect::<Vec<_>>(),
        [READ_ONLY]
    );
    let role = iam
        .get_role(&role_name)
        .await
        .expect("GetRole")
        .expect("role");
    assert_eq!(role.description.as_deref(), Some("wire"));

    // A conflict: a role of the derived name made by someone else.
    iam.create_role(&CreateRole {
        name: naming::default_role_name(&cluster_arn, ns, "taken"),
        path: "/".into(),
        assume_role_policy: pod_identity_trust_policy(None),
        ..CreateRole::default()
    })
    .await
    .expect("foreign role");
    env.apply("taken", json!({})).await;
    env.wait_ready("taken", "RoleConflict", |_, c| c.reason == "RoleConflict")
        .await;

    // Another: an association made elsewhere.
    eks.create_pod_identity_association(&CreateAssociation {
        cluster_name: cluster.clone(),
        namespace: ns.into(),
        service_account: "legacy".into(),
        role_arn: format!("arn:aws:iam::{ACCOUNT_ID}:role/legacy"),
        ..CreateAssociation::default()
    })
    .await
    .expect("foreign association");
    env.apply("legacy", json!({})).await;
    env.wait_ready("legacy", "AssociationConflict", |_, c| {
        c.reason == "AssociationConflict"
    })
    .await;
    // (Adoption itself tags the association, and ministack's TagResource refuses
    // association ARNs, which EKS accepts; the controller suite covers adoption.)

    // Delete: nothing of the binding is left in either server.
    env.delete("wire-app").await;
    env.wait_gone("wire-app").await;
    assert!(iam.get_role(&role_name).await.expect("GetRole").is_none());
    assert!(
        eks.list_pod_identity_associations(&cluster, Some(ns), Some("wire-app"))
            .await
            .expect("list")
            .is_empty()
    );
    // The bindings in conflict go without touching what someone else made; then the
    // test removes that too (another endpoint would keep it).
    for name in ["taken", "legacy"] {
        env.delete(name).await;
        env.wait_gone(name).await;
    }
    let foreign_role = naming::default_role_name(&cluster_arn, ns, "taken");
    assert!(
        iam.get_role(&foreign_role)
            .await
            .expect("GetRole")
            .is_some()
    );
    let foreign = eks
        .list_pod_identity_associations(&cluster, Some(ns), Some("legacy"))
        .await
        .expect("list");
    assert_eq!(foreign.len(), 1, "the foreign association stays");
    iam.delete_role(&foreign_role).await.expect("DeleteRole");
    eks.delete_pod_identity_association(&cluster, &foreign[0].association_id)
        .await
        .expect("DeletePodIdentityAssociation");
    env.stop().await;
    if let Some(kube) = kube {
        kube.stop().await;
    }
    drop(servers);
}

/// The guardrails the operator binary runs under in this suite.
const E2E_GUARDRAILS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e-guardrails.yaml");

/// The guardrails of [`E2E_GUARDRAILS`]: the simulators the operator binary calls
/// enforce its policy rendered for them.
fn e2e_guardrails() -> pod_identity_operator::config::GuardrailConfig {
    let text = std::fs::read_to_string(E2E_GUARDRAILS).expect("tests/e2e-guardrails.yaml");
    pod_identity_operator::config::GuardrailConfig::parse(&text).expect("e2e guardrails parse")
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_binary_reconciles_against_kubesim_and_ministack() {
    let target = Target::from_env();
    let cluster = target.cluster("e2e");
    let ministack = match target.aws {
        AwsTarget::Local => Some(servers::lease(Kind::Ministack).await),
        _ => None,
    };
    let access = target.aws_access(ministack.as_ref().map(|m| m.url()));
    let aws_config = access.sdk_config().await;
    if ministack.is_some() {
        create_cluster(&aws_config, &cluster).await;
    }
    let iam = SdkIam::new(&aws_config);
    let eks = SdkEks::new(&aws_config);

    let dir = tempfile::tempdir().expect("temp dir");
    // Installed as the README says, with kubectl.
    let (kube, ns) = Kube::start_in(&target, dir.path(), NS).await;
    let (kubeconfig, client) = (kube.kubeconfig.clone(), kube.client.clone());
    let ns = ns.as_str();

    let log = dir.path().join("operator.log");
    let mut operator = spawn_operator(
        &kube.operator_kubeconfig,
        &cluster,
        &access,
        target.external_kube().then_some(ns),
        5,
        &log,
    );
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();

    let bindings: Api<PodIdentityBinding> = Api::namespaced(client.clone(), ns);
    let manifest = dir.path().join("binding.yaml");
    std::fs::write(
        &manifest,
        format!(
            "apiVersion: podidentity.dev/v1alpha1\nkind: PodIdentityBinding\n\
             metadata: {{name: e2e-app, namespace: {ns}}}\n\
             spec:\n  role:\n    managedPolicyArns: [{READ_ONLY}]\n"
        ),
    )
    .expect("manifest");
    kubectl(
        &kubeconfig,
        &["apply", "-f", manifest.to_str().expect("utf-8 path")],
    );
    let waited = kubectl_command(&kubeconfig)
        .args([
            "wait",
            "--for=condition=Ready",
            "pib/e2e-app",
            "-n",
            ns,
            "--timeout=120s",
        ])
        .output()
        .expect("kubectl wait runs");
    assert!(
        waited.status.success(),
        "kubectl wait failed: {}\n{:?}\noperator log:\n{}",
        String::from_utf8_lossy(&waited.stderr),
        bindings.get("e2e-app").await.ok().and_then(|b| b.status),
        log_text()
    );
    let table = kubectl(&kubeconfig, &["get", "pib", "-n", ns]);
    assert!(
        table.contains("SERVICEACCOUNT") && table.contains("Reconciled") && table.contains("True"),
        "kubectl get pib: {table}"
    );
    if let Ok(Some(status)) = operator.0.try_wait() {
        panic!("operator exited ({status}):\n{}", log_text());
    }
    let cluster_arn = eks
        .describe_cluster(&cluster)
        .await
        .expect("DescribeCluster")
        .expect("the cluster exists")
        .arn;
    let role_name = naming::default_role_name(&cluster_arn, ns, "e2e-app");
    assert!(iam.get_role(&role_name).await.expect("GetRole").is_some());
    assert_eq!(
        eks.list_pod_identity_associations(&cluster, Some(ns), Some("e2e-app"))
            .await
            .expect("list")
            .len(),
        1
    );

    bindings
        .delete("e2e-app", &Default::default())
        .await
        .expect("delete");
    let deadline = Instant::now() + WAIT;
    while bindings.get_opt("e2e-app").await.expect("get").is_some() {
        assert!(
            Instant::now() < deadline,
            "binding never deleted:\n{}",
            log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        iam.get_role(&role_name).await.expect("GetRole").is_none(),
        "role left behind"
    );
    assert!(
        eks.list_pod_identity_associations(&cluster, Some(ns), None)
            .await
            .expect("list")
            .is_empty(),
        "association left behind"
    );
    assert!(
        operator.0.try_wait().expect("process state").is_none(),
        "operator exited:\n{}",
        log_text()
    );
    drop(operator);
    kube.stop().await;
    drop(ministack);
}

/// The binary against the simulator's HTTP front (with a role propagation window in
/// force): a kill -9 while the association is being created, a restart that converges
/// to one role and one association, and a converged resync that writes nothing to
/// Kubernetes or AWS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_binary_survives_kill_9_and_propagation_against_the_simulator() {
    use pod_identity_operator::aws::sim::{AwsSim, SimConfig};
    const TEST: &str = "the_operator_binary_survives_kill_9_and_propagation_against_the_simulator";
    const CLUSTER: &str = "simulated";
    let target = Target::from_env();
    target.note_simulator_kept(TEST, "latency injection (to kill the operator mid-call)");
    let aws = Arc::new(AwsSim::new(SimConfig {
        account_id: ACCOUNT_ID.into(),
        role_propagation: Duration::from_secs(2),
        ..SimConfig::default()
    }));
    let cluster_arn = aws.add_cluster(CLUSTER).arn;
    support::enforce_rendered(&aws, CLUSTER, &e2e_guardrails());
    // The first association call hangs long enough to kill the operator during it.
    aws.knobs()
        .set_operation_latency("CreatePodIdentityAssociation", Duration::from_secs(3600));
    let (aws_url, front) = serve_simulator(aws.clone()).await;

    let dir = tempfile::tempdir().expect("temp dir");
    let (kube, ns) = Kube::start_in(&target, dir.path(), NS).await;
    let client = kube.client.clone();
    let ns = ns.as_str();
    let only = target.external_kube().then_some(ns);
    let log = dir.path().join("operator.log");
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    let access = local(&aws_url);

    let mut operator = spawn_operator(&kube.operator_kubeconfig, CLUSTER, &access, only, 1, &log);
    let bindings: Api<PodIdentityBinding> = Api::namespaced(client.clone(), ns);
    let binding: PodIdentityBinding = serde_json::from_value(json!({
        "apiVersion": "podidentity.dev/v1alpha1", "kind": "PodIdentityBinding",
        "metadata": {"name": "sturdy", "namespace": ns},
        "spec": {"role": {"managedPolicyArns": [READ_ONLY]}},
    }))
    .expect("binding");
    bindings
        .create(&Default::default(), &binding)
        .await
        .expect("create");

    let deadline = Instant::now() + WAIT;
    while aws.knobs().calls_of("CreatePodIdentityAssociation") == 0 {
        assert!(
            Instant::now() < deadline,
            "association never attempted:\n{}",
            log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // SIGKILL, no chance to clean up; then a fresh process.
    let _ = operator.0.kill();
    let _ = operator.0.wait();
    drop(operator);
    aws.knobs()
        .set_operation_latency("CreatePodIdentityAssociation", Duration::ZERO);
    let operator = spawn_operator(&kube.operator_kubeconfig, CLUSTER, &access, only, 1, &log);

    let deadline = Instant::now() + WAIT;
    loop {
        let b = bindings.get("sturdy").await.expect("get");
        if support::ready(&b).is_some_and(|c| c.status == "True") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never Ready: {:?}\n{}",
            b.status,
            log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let role_name = naming::default_role_name(&cluster_arn, ns, "sturdy");
    let inv = aws.inventory();
    assert_eq!(inv.roles_tagged(naming::TAG_NAME, "sturdy").len(), 1);
    assert_eq!(inv.associations_for(ns, "sturdy").len(), 1);
    assert_eq!(
        inv.role(&role_name).expect("role").attached_policy_arns,
        [READ_ONLY]
    );

    // Converged: resyncs every second read and write nothing.
    tokio::time::sleep(Duration::from_millis(500)).await;
    // kubesim counts every write; on another cluster, the binding's and its
    // ServiceAccount's resourceVersions show any write to them.
    let sas: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(client.clone(), ns);
    let versions = || async {
        (
            bindings
                .get("sturdy")
                .await
                .expect("get")
                .metadata
                .resource_version,
            sas.get("sturdy")
                .await
                .expect("get SA")
                .metadata
                .resource_version,
        )
    };
    let before = versions().await;
    if let Some(sim) = &kube.sim {
        sim.reset_write_counts();
    }
    let writes = write_calls(aws.knobs());
    let reads = aws.knobs().calls_of("GetRole");
    let deadline = Instant::now() + WAIT;
    while aws.knobs().calls_of("GetRole") < reads + 3 {
        assert!(Instant::now() < deadline, "no resyncs:\n{}", log_text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if let Some(sim) = &kube.sim {
        assert_eq!(
            sim.write_counts().total(),
            0,
            "Kubernetes writes while converged"
        );
    }
    assert_eq!(
        versions().await,
        before,
        "Kubernetes writes while converged"
    );
    assert_eq!(
        write_calls(aws.knobs()),
        writes,
        "AWS writes while converged"
    );

    bindings
        .delete("sturdy", &Default::default())
        .await
        .expect("delete");
    let deadline = Instant::now() + WAIT;
    while bindings.get_opt("sturdy").await.expect("get").is_some() {
        assert!(Instant::now() < deadline, "never deleted:\n{}", log_text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let inv = aws.inventory();
    assert!(inv.roles.is_empty(), "roles left: {:?}", inv.roles);
    assert!(inv.associations.is_empty(), "associations left");
    drop(operator);
    front.abort();
    kube.stop().await;
}

#[test]
fn the_suite_targets_an_external_cluster_and_endpoint_from_the_environment() {
    let env = |pairs: Vec<(&'static str, String)>| {
        move |key: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.clone())
        }
    };
    let defaults = Target::parse(env(vec![])).expect("defaults");
    assert_eq!(
        defaults,
        Target {
            kubeconfig: None,
            operator_kubeconfig: None,
            aws: AwsTarget::Local,
            cluster_name: "e2e".into(),
            region: "us-east-1".into(),
        }
    );
    assert!(!defaults.external_kube());
    assert_eq!(defaults.kubesim_skip_reason("t", "fault injection"), None);
    assert_eq!(defaults.namespace("default"), "default");
    assert_eq!(defaults.cluster("mine"), "mine");
    assert_eq!(
        defaults.aws_access(Some("http://127.0.0.1:1".into())),
        local("http://127.0.0.1:1")
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("kind.kubeconfig");
    std::fs::write(&file, "apiVersion: v1\nkind: Config\n").expect("write");
    let target = Target::parse(env(vec![
        ("E2E_KUBECONFIG", file.display().to_string()),
        ("E2E_AWS_ENDPOINT", "http://127.0.0.1:4566".into()),
        ("E2E_CLUSTER_NAME", "kind-pio".into()),
        ("E2E_REGION", "eu-west-1".into()),
    ]))
    .expect("external target");
    assert_eq!(target.kubeconfig, Some(file.clone()));
    assert_eq!(
        target.aws,
        AwsTarget::Endpoint("http://127.0.0.1:4566".into())
    );
    assert!(target.external_kube());
    let reason = target
        .kubesim_skip_reason("t", "watch drops")
        .expect("skipped on another cluster");
    assert!(
        reason.starts_with("SKIPPED t: it needs kubesim's watch drops")
            && reason.contains("E2E_KUBECONFIG="),
        "{reason}"
    );
    assert_eq!(target.cluster("mine"), "kind-pio");
    let (a, b) = (target.namespace("default"), target.namespace("default"));
    assert!(a.starts_with("e2e-default-") && a != b, "{a} {b}");
    // The endpoint replaces the test's own server.
    assert_eq!(
        target.aws_access(Some("http://127.0.0.1:1".into())),
        AwsAccess {
            endpoint: Some("http://127.0.0.1:4566".into()),
            region: "eu-west-1".into(),
            test_credentials: true,
        }
    );
    let real = Target::parse(env(vec![("E2E_AWS_CREDENTIALS", "1".into())])).expect("real AWS");
    assert_eq!(real.aws, AwsTarget::Credentials);
    let access = real.aws_access(Some("http://127.0.0.1:1".into()));
    assert!(access.endpoint.is_none() && !access.test_credentials);
    let mut cmd = Command::new("true");
    access.configure(&mut cmd);
    let args: Vec<_> = cmd
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    assert_eq!(args, ["--region", "us-east-1"], "no endpoint, no test keys");
    assert!(cmd.get_envs().next().is_none());

    // Empty values are unset; wrong ones are refused with the variable named.
    let target = Target::parse(env(vec![("E2E_KUBECONFIG", " ".into())])).expect("empty");
    assert!(target.kubeconfig.is_none());
    for (bad, variable) in [
        (
            vec![(
                "E2E_KUBECONFIG",
                dir.path().join("missing").display().to_string(),
            )],
            "E2E_KUBECONFIG",
        ),
        (
            vec![("E2E_AWS_ENDPOINT", "127.0.0.1:4566".into())],
            "E2E_AWS_ENDPOINT",
        ),
        (
            vec![("E2E_OPERATOR_KUBECONFIG", file.display().to_string())],
            "needs E2E_KUBECONFIG",
        ),
        (
            vec![
                ("E2E_KUBECONFIG", file.display().to_string()),
                (
                    "E2E_OPERATOR_KUBECONFIG",
                    dir.path().join("missing").display().to_string(),
                ),
            ],
            "E2E_OPERATOR_KUBECONFIG",
        ),
        (
            vec![("E2E_AWS_CREDENTIALS", "yes please".into())],
            "E2E_AWS_CREDENTIALS",
        ),
        (
            vec![
                ("E2E_AWS_CREDENTIALS", "1".into()),
                ("E2E_AWS_ENDPOINT", "http://127.0.0.1:4566".into()),
            ],
            "pick one",
        ),
    ] {
        let err = Target::parse(env(bad)).expect_err(variable);
        assert!(err.contains(variable), "{err}");
    }
}

/// The crash-safety figures, written to `<target dir>/crash-safety-report.txt`
/// (`$CARGO_TARGET_DIR`, else the crate's `target/`) as the run goes, so CI can print
/// them: cargo hides a passing test's output.
struct CrashReport {
    path: std::path::PathBuf,
    seed: u64,
    kube: String,
}

impl CrashReport {
    fn new(seed: u64, file: &str, kube: &str) -> CrashReport {
        let dir = std::env::var_os("CARGO_TARGET_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
        let report = CrashReport {
            path: dir.join(file),
            seed,
            kube: kube.to_owned(),
        };
        report.write(&["result: running (the test failed if this is the last line)".into()]);
        report
    }

    /// Keeps the whole operator log next to the report, for a failed run.
    fn keep_operator_log(&self, log: &std::path::Path) {
        let kept = self.path.with_extension("operator.log");
        if let Err(e) = std::fs::copy(log, &kept) {
            eprintln!("cannot keep the operator log at {}: {e}", kept.display());
        } else {
            eprintln!("operator log kept at {}", kept.display());
        }
    }

    fn write(&self, lines: &[String]) {
        let seed = self.seed;
        let mut text = format!(
            "crash-safety run of the operator binary on {}\nseed: {seed} (replay with CRASH_SEED={seed})\n",
            self.kube
        );
        for line in lines {
            text.push_str(line);
            text.push('\n');
        }
        // Also on stdout, for `--nocapture` and failing runs.
        print!("{text}");
        std::fs::write(&self.path, text)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", self.path.display()));
    }
}

/// Crash safety: 20 bindings created, updated and deleted while the operator binary is
/// killed with SIGKILL at seeded random points and restarted, kubesim drops every watch
/// now and then, and a seeded fraction of AWS writes fail (some after AWS acted, their
/// answer lost). Once the churn ends and the faults are cleared, every live binding is
/// Ready for its generation, every deleted one is gone, and AWS holds exactly the
/// expected roles, policies and associations. Replay a failure with `CRASH_SEED`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_binary_survives_seeded_kills_watch_drops_and_aws_faults() {
    const TEST: &str = "the_operator_binary_survives_seeded_kills_watch_drops_and_aws_faults";
    let target = Target::from_env();
    if target.skip_without_kubesim(TEST, "watch-drop fault injection") {
        return;
    }
    target.note_simulator_kept(TEST, "fault injection (AWS writes failing after effect)");
    crash_safety_run(CrashKube::kubesim().await).await;
}

/// The crash-safety run on a real control plane of the test's own: its watches break
/// for real, by kube-apiserver being SIGKILLed and restarted during the churn, and the
/// operator runs as the identity `config/rbac/` binds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_binary_survives_seeded_kills_apiserver_restarts_and_aws_faults() {
    crash_safety_run(CrashKube::real_apiserver().await).await;
}

/// The Kubernetes side of a crash-safety run, and how it breaks the operator's watches.
enum CrashKube {
    /// kubesim over TCP; watches are dropped by its fault injection.
    Kubesim {
        kube: KubeSim,
        server: pod_identity_operator::kubesim::ServerHandle,
        dir: tempfile::TempDir,
    },
    /// A real control plane; kube-apiserver is killed and restarted.
    Real {
        plane: Box<support::cluster::ControlPlane>,
        operator_kubeconfig: std::path::PathBuf,
    },
}

impl CrashKube {
    async fn kubesim() -> CrashKube {
        let (kube, server, dir) = support::kubesim_over_tcp().await;
        CrashKube::Kubesim { kube, server, dir }
    }

    async fn real_apiserver() -> CrashKube {
        let plane = support::cluster::ControlPlane::start(Default::default())
            .await
            .unwrap_or_else(|e| panic!("the real control plane did not start: {e}"));
        let operator_kubeconfig = support::cluster::install_operator_identity(&plane);
        CrashKube::Real {
            plane: Box::new(plane),
            operator_kubeconfig,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            CrashKube::Kubesim { .. } => "kubesim",
            CrashKube::Real { .. } => "a real kube-apiserver",
        }
    }

    async fn client(&self) -> kube::Client {
        match self {
            CrashKube::Kubesim { kube, .. } => kube.client(),
            CrashKube::Real { plane, .. } => plane.admin_client().await.expect("admin client"),
        }
    }

    fn operator_kubeconfig(&self) -> std::path::PathBuf {
        match self {
            CrashKube::Kubesim { dir, .. } => dir.path().join("kubeconfig"),
            CrashKube::Real {
                operator_kubeconfig,
                ..
            } => operator_kubeconfig.clone(),
        }
    }

    /// The report's file name, in the target folder.
    fn report_file(&self) -> &'static str {
        match self {
            CrashKube::Kubesim { .. } => "crash-safety-report.txt",
            CrashKube::Real { .. } => "crash-safety-report-real-apiserver.txt",
        }
    }

    /// Breaks every watch: kubesim drops them; the real kube-apiserver is SIGKILLed and
    /// started again after a pause (the call returns once it serves again).
    async fn break_watches(&mut self, rng: &mut rand::rngs::StdRng) {
        use rand::Rng;
        match self {
            CrashKube::Kubesim { kube, .. } => kube.faults().drop_watches(),
            CrashKube::Real { plane, .. } => {
                plane.kill_apiserver();
                tokio::time::sleep(Duration::from_millis(rng.random_range(0..1000))).await;
                plane
                    .start_apiserver()
                    .await
                    .unwrap_or_else(|e| panic!("kube-apiserver did not come back: {e}"));
            }
        }
    }

    async fn stop(self) {
        if let CrashKube::Kubesim { server, .. } = self {
            server.shutdown().await;
        }
    }
}

/// What a live binding of the crash-safety run last asked for.
#[derive(Clone, Debug)]
struct CrashSpec {
    /// Sorted.
    managed: Vec<String>,
    description: Option<String>,
    /// The binding's one inline policy, `read`.
    inline: serde_json::Value,
}

/// The trust policy the managed role of binding `name` (its ServiceAccount of the same
/// name, session tags on) must hold, written out here from the EKS user guide's
/// "pod-id-role" page and the design's scoped trust, not taken from the operator:
/// `pods.eks.amazonaws.com` may `sts:AssumeRole` and `sts:TagSession` only with the
/// session tags EKS sets for that cluster, namespace and ServiceAccount, from the
/// cluster's account.
fn crash_trust_policy(cluster_arn: &str, name: &str) -> serde_json::Value {
    json!({"Version": "2012-10-17", "Statement": [{
        "Sid": "AllowEksAuthToAssumeRoleForPodIdentity",
        "Effect": "Allow",
        "Principal": {"Service": "pods.eks.amazonaws.com"},
        "Action": ["sts:AssumeRole", "sts:TagSession"],
        "Condition": {"StringEquals": {
            "aws:SourceAccount": ACCOUNT_ID,
            "aws:RequestTag/eks-cluster-arn": cluster_arn,
            "aws:RequestTag/kubernetes-namespace": NS,
            "aws:RequestTag/kubernetes-service-account": name,
        }},
    }]})
}

/// The ownership tags of binding `name` of the crash-safety run's cluster, written out.
fn crash_ownership_tags(cluster: &str, cluster_arn: &str, name: &str) -> BTreeMap<String, String> {
    [
        ("podidentity.dev/cluster", cluster),
        ("podidentity.dev/cluster-arn", cluster_arn),
        ("podidentity.dev/namespace", NS),
        ("podidentity.dev/name", name),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// The resourceVersions of the run's bindings and ServiceAccounts, and of the Events
/// about them: any Kubernetes write to them changes this.
async fn crash_kube_versions(client: &kube::Client) -> BTreeMap<String, String> {
    use k8s_openapi::api::core::v1::ServiceAccount;
    use k8s_openapi::api::events::v1::Event;
    let rv = |kind: &str, m: &kube::api::ObjectMeta| {
        (
            format!("{kind}/{}", m.name.clone().unwrap_or_default()),
            m.resource_version.clone().unwrap_or_default(),
        )
    };
    let mut versions = BTreeMap::new();
    let bindings: Api<PodIdentityBinding> = Api::namespaced(client.clone(), NS);
    for b in bindings
        .list(&Default::default())
        .await
        .expect("list")
        .items
    {
        versions.extend([rv("binding", &b.metadata)]);
    }
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), NS);
    for sa in sas.list(&Default::default()).await.expect("list SAs").items {
        if sa
            .metadata
            .name
            .as_deref()
            .is_some_and(|n| n.starts_with("crash-"))
        {
            versions.extend([rv("serviceaccount", &sa.metadata)]);
        }
    }
    let events: Api<Event> = Api::namespaced(client.clone(), NS);
    for e in events
        .list(&Default::default())
        .await
        .expect("list events")
        .items
    {
        let about = e.regarding.as_ref().and_then(|r| r.kind.as_deref());
        if matches!(about, Some("PodIdentityBinding" | "ServiceAccount")) {
            versions.extend([rv("event", &e.metadata)]);
        }
    }
    versions
}

/// How EKS refused the operator's association creations during a crash-safety run, read
/// from the operator's log (its `write failed` lines).
#[derive(Debug, Default)]
struct CrashEksAnswers {
    /// The role not yet visible to EKS: its propagation window.
    propagating: usize,
    /// A created-again binding's ServiceAccount still held by the association its
    /// predecessor deleted: the release window.
    released: usize,
    /// Any other `ResourceInUseException`: an association already there.
    in_use: usize,
}

/// Counts [`CrashEksAnswers`] in `log`. `recreated` holds when each created-again binding
/// was created (its predecessor gone by then) and `associations` each live binding's
/// association id: a refusal naming another association, after the binding was created
/// again, names the predecessor's deleted one.
fn crash_eks_answers(
    log: &str,
    recreated: &BTreeMap<String, chrono::DateTime<chrono::Utc>>,
    associations: &BTreeMap<String, String>,
) -> CrashEksAnswers {
    let mut answers = CrashEksAnswers::default();
    for line in log.lines() {
        let Ok(entry) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if entry["message"] != "write failed" {
            continue;
        }
        let error = entry["error"].as_str().unwrap_or_default();
        let binding = entry["binding"].as_str().unwrap_or_default();
        if error.contains("Role provided in the request does not exist") {
            answers.propagating += 1;
        } else if error.contains("ResourceInUseException") {
            let named = error
                .split("Association already exists: ")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next());
            let at = entry["timestamp"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
            let after_recreate = recreated
                .get(binding)
                .zip(at)
                .is_some_and(|(created, at)| at > *created);
            if after_recreate
                && named.is_some()
                && named != associations.get(binding).map(String::as_str)
            {
                answers.released += 1;
            } else {
                answers.in_use += 1;
            }
        }
    }
    answers
}

async fn crash_safety_run(mut side: CrashKube) {
    use k8s_openapi::api::core::v1::ServiceAccount;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use pod_identity_operator::aws::faults::Fault;
    use pod_identity_operator::aws::sim::{AwsSim, DEFAULT_MANAGED_POLICIES, SimConfig};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    const CLUSTER: &str = "crash";
    const BINDINGS: usize = 20;
    const DELETED: usize = 7;
    /// Deleted bindings created again under the same name once gone, as GitOps
    /// replaces a binding: their new association meets the old one's release window.
    const RECREATED: usize = 3;
    const KILLS: usize = 32;
    /// Kills that must land while the operator has an AWS call in flight.
    const KILLS_IN_FLIGHT: usize = 10;
    const FAULT_FRACTION: f64 = 0.15;
    const RESYNC: u32 = 2;
    // The operator's own AWS rates, above the defaults (10 calls/s each) so that its
    // resync, paced to half of them, comes every few seconds for this many bindings.
    const RATES: [&str; 4] = ["--iam-rate", "40", "--eks-rate", "40"];
    // EKS's eventual consistency, on for the whole run: a new role is invisible to EKS
    // for a while, and a deleted association blocks its ServiceAccount a while longer
    // (longer than the propagation retry, so a replaced binding meets it).
    const PROPAGATION: Duration = Duration::from_secs(2);
    const RELEASE: Duration = Duration::from_secs(8);
    // AWS's own latency during the churn, so kills land inside calls.
    const READ_LATENCY: Duration = Duration::from_millis(10);
    const WRITE_LATENCY: Duration = Duration::from_millis(60);
    let seed: u64 = std::env::var("CRASH_SEED")
        .ok()
        .map(|s| s.parse().expect("CRASH_SEED is a number"))
        .unwrap_or(20_261_123);
    let started = Instant::now();
    let report = CrashReport::new(seed, side.report_file(), side.name());
    // The real server takes seconds to come back, so it is broken less often.
    let break_chance = match side {
        CrashKube::Kubesim { .. } => 0.2,
        CrashKube::Real { .. } => 0.1,
    };
    let mut rng = StdRng::seed_from_u64(seed);

    let aws = Arc::new(AwsSim::new(SimConfig {
        account_id: ACCOUNT_ID.into(),
        seed,
        role_propagation: PROPAGATION,
        association_release: RELEASE,
        ..SimConfig::default()
    }));
    let cluster_arn = aws.add_cluster(CLUSTER).arn;
    support::enforce_rendered(&aws, CLUSTER, &e2e_guardrails());
    let writes = [
        "CreateRole",
        "UpdateRole",
        "UpdateAssumeRolePolicy",
        "AttachRolePolicy",
        "DetachRolePolicy",
        "PutRolePolicy",
        "DeleteRolePolicy",
        "DeleteRole",
        "TagRole",
        "CreatePodIdentityAssociation",
        "UpdatePodIdentityAssociation",
        "DeletePodIdentityAssociation",
    ];
    aws.knobs().fail_random(
        seed,
        FAULT_FRACTION,
        Fault::timeout().after_effect(),
        &writes,
    );
    aws.knobs().set_latency(READ_LATENCY);
    for op in writes {
        aws.knobs().set_operation_latency(op, WRITE_LATENCY);
    }
    let (aws_url, front) = serve_simulator(aws.clone()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = side.operator_kubeconfig();
    let client = side.client().await;
    let log = dir.path().join("operator.log");
    let log_tail = || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    };
    let bindings: Api<PodIdentityBinding> = Api::namespaced(client.clone(), NS);
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), NS);

    // The churn: every binding created, most updated, some deleted and some of those
    // created again, in a seeded order.
    enum Op {
        Create(usize),
        Update(usize),
        Delete(usize),
        Recreate(usize),
    }
    let mut ops: Vec<Op> = (0..BINDINGS).map(Op::Create).collect();
    for i in 0..BINDINGS {
        if rng.random_bool(0.75) {
            let created = ops
                .iter()
                .position(|o| matches!(o, Op::Create(j) if *j == i))
                .expect("every binding has a create");
            let at = rng.random_range(created + 1..=ops.len());
            ops.insert(at, Op::Update(i));
        }
    }
    let mut deleted = std::collections::BTreeSet::new();
    while deleted.len() < DELETED {
        deleted.insert(rng.random_range(0..BINDINGS));
    }
    for &i in &deleted {
        ops.push(Op::Delete(i));
    }
    let mut recreated = std::collections::BTreeSet::new();
    while recreated.len() < RECREATED {
        let pick: Vec<usize> = deleted.iter().copied().collect();
        recreated.insert(pick[rng.random_range(0..pick.len())]);
    }
    for &i in &recreated {
        let removed = ops
            .iter()
            .position(|o| matches!(o, Op::Delete(j) if *j == i))
            .expect("a recreated binding was deleted");
        let at = rng.random_range(removed + 1..=ops.len());
        ops.insert(at, Op::Recreate(i));
    }
    let gone: Vec<String> = deleted
        .difference(&recreated)
        .map(|i| format!("crash-{i:02}"))
        .collect();
    let mut kill_after: std::collections::BTreeSet<usize> = Default::default();
    while kill_after.len() < KILLS {
        kill_after.insert(rng.random_range(0..ops.len()));
    }
    let random_policies = |rng: &mut StdRng| -> Vec<String> {
        let mut chosen: Vec<String> = (0..rng.random_range(0..3))
            .map(|_| {
                DEFAULT_MANAGED_POLICIES[rng.random_range(0..DEFAULT_MANAGED_POLICIES.len())]
                    .to_owned()
            })
            .collect();
        chosen.sort();
        chosen.dedup();
        chosen
    };
    let new_binding = |name: &str, spec: &CrashSpec| -> PodIdentityBinding {
        serde_json::from_value(json!({
            "apiVersion": "podidentity.dev/v1alpha1", "kind": "PodIdentityBinding",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"role": {"managedPolicyArns": spec.managed,
                "inlinePolicies": {"read": spec.inline}}},
        }))
        .expect("binding")
    };
    let read_bucket = |bucket: String| {
        json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "s3:GetObject",
             "Resource": format!("arn:aws:s3:::{bucket}/*")}]})
    };

    let mut expected: BTreeMap<String, CrashSpec> = BTreeMap::new();
    let mut recreated_at = BTreeMap::new();
    let mut operator = Some(spawn_operator_with(
        &kubeconfig,
        CLUSTER,
        &local(&aws_url),
        None,
        RESYNC,
        &log,
        &RATES,
    ));
    let (mut kills, mut watch_drops) = (0, 0);
    // Kills that cut an AWS call, as the simulator saw it at the SIGKILL.
    let (mut kills_in_call, mut kills_in_write) = (0, 0);
    for (step, op) in ops.iter().enumerate() {
        match *op {
            Op::Create(i) => {
                let name = format!("crash-{i:02}");
                let spec = CrashSpec {
                    managed: random_policies(&mut rng),
                    description: None,
                    inline: read_bucket(format!("bucket-{i}")),
                };
                bindings
                    .create(&Default::default(), &new_binding(&name, &spec))
                    .await
                    .expect("create binding");
                expected.insert(name, spec);
            }
            Op::Update(i) => {
                let name = format!("crash-{i:02}");
                let managed = random_policies(&mut rng);
                let description = format!("step {step}");
                bindings
                    .patch(
                        &name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"spec": {"role": {
                            "managedPolicyArns": managed,
                            "description": description}}})),
                    )
                    .await
                    .expect("update binding");
                let spec = expected.get_mut(&name).expect("an updated binding lives");
                spec.managed = managed;
                spec.description = Some(description);
            }
            Op::Delete(i) => {
                let name = format!("crash-{i:02}");
                bindings
                    .delete(&name, &Default::default())
                    .await
                    .expect("delete binding");
                expected.remove(&name);
            }
            Op::Recreate(i) => {
                let name = format!("crash-{i:02}");
                let deadline = Instant::now() + WAIT;
                while bindings.get_opt(&name).await.expect("get").is_some() {
                    assert!(
                        Instant::now() < deadline,
                        "deleted binding {name} never went away (seed {seed}):\n{}",
                        log_tail()
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let spec = CrashSpec {
                    managed: random_policies(&mut rng),
                    description: None,
                    inline: read_bucket(format!("bucket-{i}-again")),
                };
                recreated_at.insert(name.clone(), chrono::Utc::now());
                bindings
                    .create(&Default::default(), &new_binding(&name, &spec))
                    .await
                    .expect("create binding again");
                expected.insert(name, spec);
            }
        }
        if rng.random_bool(break_chance) {
            side.break_watches(&mut rng).await;
            watch_drops += 1;
        }
        if kill_after.contains(&step) {
            // Let it get into the middle of something, then SIGKILL and restart.
            tokio::time::sleep(Duration::from_millis(rng.random_range(50..600))).await;
            let (calls, writes) = (aws.knobs().in_flight(), aws.knobs().writes_in_flight());
            // Dropping an Operator kills it with `Child::kill`, SIGKILL on Unix.
            drop(operator.take());
            kills += 1;
            kills_in_call += usize::from(calls > 0);
            kills_in_write += usize::from(writes > 0);
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..200))).await;
            operator = Some(spawn_operator_with(
                &kubeconfig,
                CLUSTER,
                &local(&aws_url),
                None,
                RESYNC,
                &log,
                &RATES,
            ));
        } else {
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..100))).await;
        }
    }
    aws.knobs().clear_faults();
    aws.knobs().set_latency(Duration::ZERO);
    for op in writes {
        aws.knobs().set_operation_latency(op, Duration::ZERO);
    }
    let churn_took = started.elapsed();
    // Faults are off from here on: the count is final.
    let churn: Vec<String> = vec![
        format!(
            "bindings: {BINDINGS} ({} operations: creates, updates, deletes, {RECREATED} \
             deleted bindings created again under their name)",
            ops.len()
        ),
        format!("SIGKILLs and restarts: {kills}"),
        format!(
            "SIGKILLs while an AWS call was in flight: {kills_in_call} (a write: \
             {kills_in_write}); AWS latency during the churn {} ms per read, {} ms per write",
            READ_LATENCY.as_millis(),
            WRITE_LATENCY.as_millis()
        ),
        format!("Kubernetes: {}", side.name()),
        format!(
            "{}: {watch_drops}",
            match side {
                CrashKube::Kubesim { .. } => "watch drops",
                CrashKube::Real { .. } => "kube-apiserver SIGKILLs and restarts",
            }
        ),
        format!(
            "AWS faults: {:.0}% of {} write kinds time out after their effect; {} injected",
            FAULT_FRACTION * 100.0,
            writes.len(),
            aws.knobs().injected_faults()
        ),
        format!(
            "EKS eventual consistency: role propagation {} s, association release {} s",
            PROPAGATION.as_secs(),
            RELEASE.as_secs()
        ),
        format!("churn took {:.1} s", churn_took.as_secs_f64()),
    ];
    report.write(
        &[
            churn.clone(),
            vec!["result: churn done, waiting for convergence (the test failed if this is the last line)".into()],
        ]
        .concat(),
    );

    // Convergence: live bindings Ready for their generation and each the owner of its
    // ServiceAccount; deleted ones gone with their ServiceAccounts (the garbage
    // collector's work on a real server); AWS holding one role and one association per
    // live binding.
    let deadline = Instant::now() + Duration::from_secs(120);
    let list = loop {
        let list = bindings.list(&Default::default()).await.expect("list");
        let names: Vec<String> = list
            .items
            .iter()
            .filter_map(|b| b.metadata.name.clone())
            .collect();
        let ready = list.items.iter().all(|b| {
            support::ready(b).is_some_and(|c| {
                c.status == "True" && c.observed_generation == b.metadata.generation
            })
        });
        let sa_list = sas.list(&Default::default()).await.expect("list SAs");
        let owner_of = |name: &str| {
            sa_list
                .items
                .iter()
                .find(|sa| sa.metadata.name.as_deref() == Some(name))
                .map(|sa| {
                    sa.metadata
                        .owner_references
                        .iter()
                        .flatten()
                        .map(|o| o.uid.clone())
                        .collect::<Vec<_>>()
                })
        };
        let sas_settled = list.items.iter().all(|b| {
            owner_of(&b.metadata.name.clone().unwrap_or_default())
                == Some(vec![b.metadata.uid.clone().unwrap_or_default()])
        }) && gone.iter().all(|name| owner_of(name).is_none());
        let inv = aws.inventory();
        let settled = inv.roles.len() == expected.len() && inv.associations.len() == expected.len();
        if ready && settled && sas_settled && names == expected.keys().cloned().collect::<Vec<_>>()
        {
            break list;
        }
        if Instant::now() >= deadline {
            report.keep_operator_log(&log);
        }
        assert!(
            Instant::now() < deadline,
            "never converged (seed {seed}): bindings {names:?}, expected {:?}, \
             {} roles, {} associations, ServiceAccounts settled: {sas_settled}\n\
             statuses: {:?}\noperator log tail:\n{}",
            expected.keys().collect::<Vec<_>>(),
            inv.roles.len(),
            inv.associations.len(),
            list.items
                .iter()
                .map(|b| (b.metadata.name.clone(), support::ready(b).cloned()))
                .collect::<Vec<_>>(),
            log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let converged_after = started.elapsed() - churn_took;
    // The log so far, for a check below that fails; the whole log replaces it at the end.
    report.keep_operator_log(&log);

    // Every live binding's role, association, status and ServiceAccount are exactly
    // what its last spec asks for.
    let inv = aws.inventory();
    let role_path = format!("/pod-identity/{CLUSTER}/");
    for b in &list.items {
        let name = b.metadata.name.clone().unwrap_or_default();
        let spec = &expected[&name];
        let what = |field: &str| format!("{field} of {name} (seed {seed})");
        let tags = crash_ownership_tags(CLUSTER, &cluster_arn, &name);
        let role_name = naming::default_role_name(&cluster_arn, NS, &name);
        let role = inv
            .role(&role_name)
            .unwrap_or_else(|| panic!("no role for {name} (seed {seed})"));
        let role_arn = format!("arn:aws:iam::{ACCOUNT_ID}:role{role_path}{role_name}");
        assert_eq!(role.role.arn, role_arn, "{}", what("role ARN"));
        assert_eq!(role.role.path, role_path, "{}", what("role path"));
        assert_eq!(
            role.role.assume_role_policy,
            crash_trust_policy(&cluster_arn, &name),
            "{}",
            what("trust policy")
        );
        assert_eq!(role.role.tags, tags, "{}", what("role tags"));
        assert_eq!(
            role.role.description,
            spec.description,
            "{}",
            what("description")
        );
        assert_eq!(
            role.role.max_session_duration,
            3600,
            "{}",
            what("session duration")
        );
        assert_eq!(
            role.role.permissions_boundary_arn,
            None,
            "{}",
            what("boundary")
        );
        let mut attached = role.attached_policy_arns.clone();
        attached.sort();
        assert_eq!(attached, spec.managed, "{}", what("managed policies"));
        assert_eq!(
            role.inline_policies,
            BTreeMap::from([("read".to_owned(), spec.inline.clone())]),
            "{}",
            what("inline policies")
        );
        assert!(
            role.instance_profiles.is_empty(),
            "{}",
            what("instance profiles")
        );

        let assocs = inv.associations_for(NS, &name);
        assert_eq!(assocs.len(), 1, "{}", what("associations"));
        let assoc = assocs[0];
        assert_eq!(
            assoc.cluster_name,
            CLUSTER,
            "{}",
            what("association cluster")
        );
        assert_eq!(assoc.role_arn, role_arn, "{}", what("association role"));
        assert_eq!(assoc.tags, tags, "{}", what("association tags"));
        assert!(!assoc.disable_session_tags, "{}", what("session tags"));
        assert_eq!(assoc.target_role_arn, None, "{}", what("target role"));
        assert_eq!(assoc.session_policy, None, "{}", what("session policy"));
        assert_eq!(assoc.owner_arn, None, "{}", what("association owner"));

        let status = b.status.clone().unwrap_or_default();
        assert_eq!(
            status.observed_generation,
            b.metadata.generation,
            "{}",
            what("observedGeneration")
        );
        assert_eq!(
            status.role_arn.as_deref(),
            Some(role_arn.as_str()),
            "{}",
            what("status.roleArn")
        );
        assert_eq!(
            status.association_id.as_deref(),
            Some(assoc.association_id.as_str()),
            "{}",
            what("status.associationId")
        );
        assert_eq!(
            status.association_arn.as_deref(),
            Some(assoc.association_arn.as_str()),
            "{}",
            what("status.associationArn")
        );
        assert_eq!(
            status.service_account.map(|s| (s.name, s.created)),
            Some((name.clone(), true)),
            "{}",
            what("status.serviceAccount")
        );

        let sa = sas
            .get_opt(&name)
            .await
            .expect("get SA")
            .unwrap_or_else(|| panic!("no ServiceAccount for {name} (seed {seed})"));
        assert_eq!(
            sa.metadata.owner_references,
            Some(vec![OwnerReference {
                api_version: "podidentity.dev/v1alpha1".into(),
                kind: "PodIdentityBinding".into(),
                name: name.clone(),
                uid: b.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: None,
            }]),
            "{}",
            what("ServiceAccount ownerReferences")
        );
    }
    // Nothing left of the deleted bindings that were not created again.
    for name in &gone {
        assert!(bindings.get_opt(name).await.expect("get").is_none());
        assert!(
            inv.role(&naming::default_role_name(&cluster_arn, NS, name))
                .is_none()
                && inv.roles_tagged(naming::TAG_NAME, name).is_empty(),
            "orphaned role of {name} (seed {seed})"
        );
        assert!(
            inv.associations_for(NS, name).is_empty()
                && inv.associations_tagged(naming::TAG_NAME, name).is_empty(),
            "orphaned association of {name} (seed {seed})"
        );
        assert!(
            sas.get_opt(name).await.expect("get SA").is_none(),
            "orphaned ServiceAccount {name} (seed {seed})"
        );
    }
    assert_eq!(
        inv.roles.len(),
        expected.len(),
        "orphaned roles (seed {seed})"
    );
    assert_eq!(
        inv.associations.len(),
        expected.len(),
        "orphaned associations (seed {seed})"
    );
    // The eventual-consistency windows, as the operator met them.
    let association_ids = inv
        .associations
        .iter()
        .map(|a| (a.service_account.clone(), a.association_id.clone()))
        .collect();
    let answers = crash_eks_answers(
        &std::fs::read_to_string(&log).unwrap_or_default(),
        &recreated_at,
        &association_ids,
    );

    // At rest: two resyncs of every binding read AWS and write nothing, to AWS or to
    // Kubernetes.
    let kube_before = crash_kube_versions(&client).await;
    if let CrashKube::Kubesim { kube, .. } = &side {
        kube.reset_write_counts();
    }
    let aws_writes = write_calls(aws.knobs());
    let role_reads = aws.knobs().calls_of("GetRole");
    let quiet_from = Instant::now();
    let deadline = quiet_from + WAIT;
    while quiet_from.elapsed() < 2 * Duration::from_secs(RESYNC.into())
        || aws.knobs().calls_of("GetRole") < role_reads + 2 * expected.len() as u64
    {
        assert!(
            Instant::now() < deadline,
            "fewer than two resyncs of every binding (seed {seed}):\n{}",
            log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let quiet = quiet_from.elapsed();
    let resync_reads = aws.knobs().calls_of("GetRole") - role_reads;
    assert_eq!(
        write_calls(aws.knobs()),
        aws_writes,
        "AWS writes at rest (seed {seed}): {:?}",
        aws.knobs().calls()
    );
    if let CrashKube::Kubesim { kube, .. } = &side {
        assert_eq!(
            kube.write_counts().total(),
            0,
            "Kubernetes writes at rest (seed {seed}): {:?}",
            kube.write_counts()
        );
    }
    assert_eq!(
        crash_kube_versions(&client).await,
        kube_before,
        "Kubernetes writes at rest (seed {seed})"
    );

    let calls = aws.knobs().total_calls();
    report.write(
        &[
            churn,
            vec![
                format!(
                    "converged {:.1} s after the churn ({:.1} s in all)",
                    converged_after.as_secs_f64(),
                    started.elapsed().as_secs_f64()
                ),
                format!(
                    "EKS refusals the operator met: {} role not yet visible (propagation), \
                     {} ServiceAccount held by a deleted association (release), {} other \
                     association already there",
                    answers.propagating, answers.released, answers.in_use
                ),
                format!("AWS calls: {calls}"),
                format!(
                    "final inventory: {} roles, {} associations, {} live and {} deleted bindings \
                     (expected {} of each, none orphaned or duplicated)",
                    inv.roles.len(),
                    inv.associations.len(),
                    expected.len(),
                    gone.len(),
                    expected.len()
                ),
                format!(
                    "checked exact for each live binding: trust policy, ownership tags, \
                     description, session duration, boundary, managed and inline policies, \
                     association, status, ServiceAccount ownerReference; for each deleted \
                     one: no role, association or ServiceAccount left"
                ),
                format!(
                    "at rest for {:.1} s ({resync_reads} GetRole over {} bindings, resync {RESYNC} s): \
                     0 AWS writes, 0 Kubernetes writes (resourceVersions of {} bindings, \
                     ServiceAccounts and Events unchanged{})",
                    quiet.as_secs_f64(),
                    expected.len(),
                    kube_before.len(),
                    match side {
                        CrashKube::Kubesim { .. } => "; kubesim counted no write",
                        CrashKube::Real { .. } => "",
                    }
                ),
                "result: passed".into(),
            ],
        ]
        .concat(),
    );
    report.keep_operator_log(&log);
    assert!(kills >= 30);
    assert!(
        kills_in_call >= KILLS_IN_FLIGHT,
        "only {kills_in_call} SIGKILLs landed while an AWS call was in flight (seed {seed})"
    );
    assert!(
        answers.propagating >= 1,
        "EKS's propagation window was never met (seed {seed}): {answers:?}"
    );
    drop(operator);
    front.abort();
    side.stop().await;
}

/// Where a [`Stack`]'s AWS inventory comes from.
enum StackAws {
    /// The simulator behind its HTTP front (the default).
    Sim {
        sim: Arc<pod_identity_operator::aws::sim::AwsSim>,
        front: tokio::task::JoinHandle<pod_identity_operator::Result<()>>,
    },
    /// `E2E_AWS_ENDPOINT` or real AWS, read through the APIs.
    Api {
        client: aws_sdk_iam::Client,
        iam: SdkIam,
        eks: SdkEks,
    },
}

/// The binary against the target's Kubernetes (kubesim over TCP by default) and AWS
/// (the simulator's HTTP front by default), in namespaces of the test's own.
struct Stack {
    aws: StackAws,
    access: AwsAccess,
    kube: Kube,
    target: Target,
    cluster: String,
    dir: tempfile::TempDir,
    /// The namespaces the test works in; the inventory is limited to them.
    namespaces: Vec<String>,
    operators: Vec<Operator>,
}

impl Stack {
    async fn start(local_cluster: &str) -> Stack {
        use pod_identity_operator::aws::sim::{AwsSim, SimConfig};
        let target = Target::from_env();
        let cluster = target.cluster(local_cluster);
        let (aws, access) = match target.aws {
            AwsTarget::Local => {
                let sim = Arc::new(AwsSim::new(SimConfig {
                    account_id: ACCOUNT_ID.into(),
                    ..SimConfig::default()
                }));
                sim.add_cluster(&cluster);
                support::enforce_rendered(&sim, &cluster, &e2e_guardrails());
                let (url, front) = serve_simulator(sim.clone()).await;
                (StackAws::Sim { sim, front }, local(&url))
            }
            _ => {
                let access = target.aws_access(None);
                let config = access.sdk_config().await;
                let aws = StackAws::Api {
                    client: aws_sdk_iam::Client::new(&config),
                    iam: SdkIam::new(&config),
                    eks: SdkEks::new(&config),
                };
                (aws, access)
            }
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let (kube, ns) = Kube::start_in(&target, dir.path(), NS).await;
        let mut stack = Stack {
            aws,
            access,
            kube,
            target,
            cluster,
            dir,
            namespaces: Vec::new(),
            operators: Vec::new(),
        };
        stack.watch(&ns);
        stack
    }

    /// The cluster's ARN, as DescribeCluster gives it.
    async fn cluster_arn(&self) -> String {
        let cluster = match &self.aws {
            StackAws::Sim { sim, .. } => sim.describe_cluster(&self.cluster).await,
            StackAws::Api { eks, .. } => eks.describe_cluster(&self.cluster).await,
        };
        cluster
            .expect("DescribeCluster")
            .expect("the cluster exists")
            .arn
    }

    /// The namespace the test works in.
    fn ns(&self) -> &str {
        &self.namespaces[0]
    }

    /// Has `ns` reconciled: on kubesim the one operator (it watches every namespace)
    /// starts with the first; on another cluster each namespace gets an operator
    /// limited to it.
    fn watch(&mut self, ns: &str) {
        self.namespaces.push(ns.to_owned());
        let limit = self.target.external_kube().then_some(ns);
        if self.operators.is_empty() || limit.is_some() {
            let operator = spawn_operator(
                &self.kube.operator_kubeconfig,
                &self.cluster,
                &self.access,
                limit,
                2,
                &self.dir.path().join("operator.log"),
            );
            self.operators.push(operator);
        }
    }

    fn kubeconfig(&self) -> std::path::PathBuf {
        self.kube.kubeconfig.clone()
    }

    fn log_tail(&self) -> String {
        let text =
            std::fs::read_to_string(self.dir.path().join("operator.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn bindings(&self, ns: &str) -> Api<PodIdentityBinding> {
        Api::namespaced(self.kube.client.clone(), ns)
    }

    /// What AWS holds for the test's namespaces.
    async fn inventory(&self) -> pod_identity_operator::aws::sim::Inventory {
        let mut inv = match &self.aws {
            StackAws::Sim { sim, .. } => sim.inventory(),
            StackAws::Api { client, iam, eks } => {
                pod_identity_operator::sandbox::wire::read_inventory(
                    client,
                    iam,
                    eks,
                    &self.cluster,
                    Some(&naming::role_path(&self.cluster)),
                )
                .await
                .expect("inventory through the AWS APIs")
            }
        };
        let mine = |ns: &str| self.namespaces.iter().any(|n| n == ns);
        inv.roles.retain(|r| {
            r.role
                .tags
                .get(naming::TAG_NAMESPACE)
                .is_some_and(|ns| mine(ns))
        });
        inv.associations.retain(|a| mine(&a.namespace));
        inv
    }

    /// Waits until `pred` holds of the test's part of the account.
    async fn wait_aws(
        &self,
        what: &str,
        pred: impl Fn(&pod_identity_operator::aws::sim::Inventory) -> bool,
    ) {
        let deadline = Instant::now() + WAIT;
        loop {
            let inv = self.inventory().await;
            if pred(&inv) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "AWS never got {what}: {inv:#?}\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for the binding's Ready condition to match, for its current generation.
    async fn wait_reason(
        &self,
        ns: &str,
        name: &str,
        status: &str,
        reason: &str,
    ) -> PodIdentityBinding {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(b) = self.bindings(ns).get_opt(name).await.expect("get")
                && let Some(c) = support::ready(&b)
                && c.status == status
                && c.reason == reason
                && c.observed_generation == b.metadata.generation
            {
                return b;
            }
            assert!(
                Instant::now() < deadline,
                "{ns}/{name} never {status} {reason}: {:?}\n{}",
                self.bindings(ns)
                    .get_opt(name)
                    .await
                    .ok()
                    .flatten()
                    .and_then(|b| b.status),
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn patch_spec(&self, name: &str, spec: serde_json::Value) {
        self.bindings(self.ns())
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "spec": spec })),
            )
            .await
            .expect("patch spec");
        self.wait_reason(self.ns(), name, "True", "Reconciled")
            .await;
    }

    async fn stop(mut self) {
        // Bindings left behind are cleaned up by the operators before their namespaces
        // go (on another cluster).
        for ns in self.namespaces.clone() {
            let _ = self
                .bindings(&ns)
                .delete_collection(&Default::default(), &Default::default())
                .await;
        }
        if self.target.external_kube() {
            let deadline = Instant::now() + WAIT;
            for ns in self.namespaces.clone() {
                while self
                    .bindings(&ns)
                    .list(&Default::default())
                    .await
                    .is_ok_and(|l| !l.items.is_empty())
                    && Instant::now() < deadline
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        self.operators.clear();
        if let StackAws::Sim { front, .. } = &self.aws {
            front.abort();
        }
        self.kube.stop().await;
    }
}

fn binding(ns: &str, name: &str, spec: serde_json::Value) -> PodIdentityBinding {
    serde_json::from_value(json!({
        "apiVersion": "podidentity.dev/v1alpha1", "kind": "PodIdentityBinding",
        "metadata": {"name": name, "namespace": ns}, "spec": spec,
    }))
    .expect("binding")
}

/// Each spec field updated in turn through the binary reaches AWS; a ServiceAccount
/// rename moves the association; a second binding on the same ServiceAccount is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_binary_applies_every_spec_update_and_renames() {
    const CLUSTER: &str = "updates";
    let stack = Stack::start(CLUSTER).await;
    let ns = stack.ns().to_owned();
    let ns = ns.as_str();
    let cluster_arn = stack.cluster_arn().await;
    let bindings = stack.bindings(ns);
    bindings
        .create(&Default::default(), &binding(ns, "app", json!({})))
        .await
        .expect("create");
    stack.wait_reason(ns, "app", "True", "Reconciled").await;
    let role_name = naming::default_role_name(&cluster_arn, ns, "app");
    let role = |inv: &pod_identity_operator::aws::sim::Inventory| inv.role(&role_name).cloned();

    stack
        .patch_spec("app", json!({"role": {"description": "updated"}}))
        .await;
    stack
        .wait_aws("the description", |i| {
            role(i).is_some_and(|r| r.role.description.as_deref() == Some("updated"))
        })
        .await;
    stack
        .patch_spec("app", json!({"role": {"maxSessionDuration": 7200}}))
        .await;
    stack
        .wait_aws("the session duration", |i| {
            role(i).is_some_and(|r| r.role.max_session_duration == 7200)
        })
        .await;
    stack
        .patch_spec("app", json!({"role": {"managedPolicyArns": [READ_ONLY]}}))
        .await;
    stack
        .wait_aws("the managed policy", |i| {
            role(i).is_some_and(|r| r.attached_policy_arns == [READ_ONLY])
        })
        .await;
    let doc = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"}]});
    stack
        .patch_spec("app", json!({"role": {"inlinePolicies": {"s3": doc}}}))
        .await;
    stack
        .wait_aws("the inline policy", |i| {
            role(i).is_some_and(|r| r.inline_policies.keys().eq(["s3"]))
        })
        .await;
    stack
        .patch_spec("app", json!({"tags": {"team": "blue"}}))
        .await;
    stack
        .wait_aws("the tag", |i| {
            role(i).is_some_and(|r| r.role.tags.get("team").map(String::as_str) == Some("blue"))
        })
        .await;
    let target = "arn:aws:iam::444455556666:role/reader";
    stack
        .patch_spec("app", json!({"targetRoleArn": target}))
        .await;
    stack
        .wait_aws("the target role", |i| {
            i.associations_for(ns, "app")
                .first()
                .is_some_and(|a| a.target_role_arn.as_deref() == Some(target))
        })
        .await;
    stack
        .patch_spec(
            "app",
            json!({"targetRoleArn": null, "disableSessionTags": true, "sessionPolicy": doc}),
        )
        .await;
    stack
        .wait_aws("the session policy", |i| {
            i.associations_for(ns, "app").first().is_some_and(|a| {
                a.disable_session_tags && a.session_policy.is_some() && a.target_role_arn.is_none()
            })
        })
        .await;

    // Rename the ServiceAccount: the association follows, the old one goes.
    stack
        .patch_spec("app", json!({"serviceAccount": {"name": "app-renamed"}}))
        .await;
    stack
        .wait_aws("the association moved", |i| {
            i.associations_for(ns, "app").is_empty()
                && i.associations_for(ns, "app-renamed").len() == 1
        })
        .await;

    // A second binding on the same ServiceAccount loses to the first.
    bindings
        .create(
            &Default::default(),
            &binding(
                ns,
                "second",
                json!({"serviceAccount": {"name": "app-renamed"}}),
            ),
        )
        .await
        .expect("create second");
    stack
        .wait_reason(ns, "second", "False", "AssociationConflict")
        .await;
    let inv = stack.inventory().await;
    assert_eq!(inv.associations_for(ns, "app-renamed").len(), 1);
    assert_eq!(
        inv.associations_for(ns, "app-renamed")[0].role_arn,
        role(&inv).expect("role").role.arn
    );
    stack.stop().await;
}

/// Out-of-band and GitOps-shaped changes through the binary: a ServiceAccount deleted
/// behind the operator's back comes back; a binding deleted and created again at once
/// (`kubectl replace --force`) ends with one role and one association; a deleted
/// namespace takes its bindings' AWS resources with it; bad specs are refused with their
/// reasons, by the API server or by the operator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_binary_handles_out_of_band_deletes_replaces_and_bad_specs() {
    use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
    const CLUSTER: &str = "changes";
    let mut stack = Stack::start(CLUSTER).await;
    let ns = stack.ns().to_owned();
    let ns = ns.as_str();
    let cluster_arn = stack.cluster_arn().await;
    let client = stack.kube.client.clone();
    let bindings = stack.bindings(ns);
    bindings
        .create(&Default::default(), &binding(ns, "web", json!({})))
        .await
        .expect("create");
    stack.wait_reason(ns, "web", "True", "Reconciled").await;

    // The ServiceAccount deleted out of band is made again.
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    sas.delete("web", &Default::default())
        .await
        .expect("delete SA");
    let deadline = Instant::now() + WAIT;
    while sas.get_opt("web").await.expect("get SA").is_none() {
        assert!(
            Instant::now() < deadline,
            "SA never made again\n{}",
            stack.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stack.wait_reason(ns, "web", "True", "Reconciled").await;

    // Deleted and applied again at once, as `kubectl replace --force` does.
    let old_uid = bindings.get("web").await.expect("get").metadata.uid;
    kubectl(
        &stack.kubeconfig(),
        &["delete", "pib", "web", "-n", ns, "--wait=false"],
    );
    let deadline = Instant::now() + WAIT;
    while bindings
        .create(
            &Default::default(),
            &binding(ns, "web", json!({"tags": {"v": "2"}})),
        )
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "never re-created\n{}",
            stack.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let b = stack.wait_reason(ns, "web", "True", "Reconciled").await;
    assert_ne!(b.metadata.uid, old_uid);
    let role_name = naming::default_role_name(&cluster_arn, ns, "web");
    stack
        .wait_aws("one role and one association for the new binding", |i| {
            i.roles.len() == 1
                && i.role(&role_name)
                    .is_some_and(|r| r.role.tags.get("v").map(String::as_str) == Some("2"))
                && i.associations_for(ns, "web").len() == 1
        })
        .await;

    // A namespace deleted with a binding in it.
    let doomed = stack.target.namespace("doomed");
    let doomed = doomed.as_str();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let doomed_ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": doomed}})).expect("ns");
    namespaces
        .create(&Default::default(), &doomed_ns)
        .await
        .expect("create ns");
    stack.watch(doomed);
    stack
        .bindings(doomed)
        .create(&Default::default(), &binding(doomed, "temp", json!({})))
        .await
        .expect("create in doomed");
    stack
        .wait_reason(doomed, "temp", "True", "Reconciled")
        .await;
    namespaces
        .delete(doomed, &Default::default())
        .await
        .expect("delete ns");
    let deadline = Instant::now() + WAIT;
    while namespaces.get_opt(doomed).await.expect("get ns").is_some() {
        assert!(
            Instant::now() < deadline,
            "namespace stuck\n{}",
            stack.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stack
        .wait_aws("nothing left of the namespace", |i| {
            i.associations_for(doomed, "temp").is_empty()
                && i.role(&naming::default_role_name(&cluster_arn, doomed, "temp"))
                    .is_none()
        })
        .await;

    // Refused by the API server (schema): kubectl names the field.
    let bad = stack.dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        format!(
            "apiVersion: podidentity.dev/v1alpha1\nkind: PodIdentityBinding\n\
             metadata: {{name: bad, namespace: {ns}}}\nspec:\n  deletionPolicy: Sometimes\n"
        ),
    )
    .expect("write");
    let out = support::kubectl::kubectl_command(&stack.kubeconfig())
        .args(["apply", "-f", bad.to_str().expect("utf-8 path")])
        .output()
        .expect("kubectl runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "accepted a bad deletionPolicy");
    assert!(stderr.contains("deletionPolicy"), "{stderr}");
    // Refused by the operator: a policy document IAM would refuse.
    bindings
        .create(
            &Default::default(),
            &binding(
                ns,
                "bad-policy",
                json!({"role": {"inlinePolicies": {"p": {"Version": "2012-10-17",
                    "Statement": [{"Effect": "Maybe", "Action": "s3:GetObject", "Resource": "*"}]}}}}),
            ),
        )
        .await
        .expect("create bad-policy");
    let b = stack
        .wait_reason(ns, "bad-policy", "False", "InvalidSpec")
        .await;
    let message = &support::ready(&b).expect("Ready").message;
    assert!(message.contains("inlinePolicies"), "{message}");
    assert!(
        stack
            .inventory()
            .await
            .role(&naming::default_role_name(&cluster_arn, ns, "bad-policy"))
            .is_none(),
        "a role was made for an invalid spec"
    );
    stack.stop().await;
}
