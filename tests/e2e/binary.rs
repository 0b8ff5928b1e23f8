//! The operator binary against kubesim and ministack, kill -9 during propagation, and
//! the suite's own targets.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_binary_reconciles_against_kubesim_and_ministack() {
    let target = Target::from_env();
    let cluster = target.cluster("e2e");
    let ministack = match target.aws {
        AwsTarget::Local => Some(aws_servers::lease(Kind::Ministack).await),
        _ => None,
    };
    let access = target.aws_access(ministack.as_ref().map(|m| m.url()));
    let aws_config = access.sdk_config().await;
    if ministack.is_some() {
        aws_servers::create_eks_cluster(&aws_config, &cluster).await;
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
