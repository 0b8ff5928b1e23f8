//! `audit` and `migrate` end to end, on kubesim and on a real kube-apiserver, with the
//! AWS simulator: a cluster that ran IRSA, hand-made and Terraform-made associations and
//! EKS add-ons shows every finding kind; `migrate` without `--apply` writes nothing to
//! Kubernetes or AWS; its bindings, applied, become Ready under the controller; and a
//! second audit no longer shows what the migration addressed. The binary's `audit` is
//! run once as a process (table, `-o json`, exit status at `--fail-on`).

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::{Client, ResourceExt};
use pod_identity_operator::audit::{self, Finding, Kind, Selection, Severity};
use pod_identity_operator::aws::sim::{AddonSetup, AwsSim, SimConfig, administrator_policy};
use pod_identity_operator::aws::{CreateAssociation, CreateRole, EksApi, IamApi};
use pod_identity_operator::crd::PodIdentityBinding;
use pod_identity_operator::kubesim::KubeSim;
use pod_identity_operator::migrate::{self, Change, Options};
use pod_identity_operator::naming;
use serde_json::{Value, json};
use support::cluster::ControlPlane;
use support::{Env, WAIT};

const CLUSTER: &str = "prod";
const ACCOUNT: &str = "111122223333";
const ISSUER: &str = "oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE";

fn role_arn(name: &str) -> String {
    format!("arn:aws:iam::{ACCOUNT}:role/{name}")
}

fn oidc_trust(namespace: &str, sa: &str) -> Value {
    json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow",
        "Principal": {"Federated": format!("arn:aws:iam::{ACCOUNT}:oidc-provider/{ISSUER}")},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringEquals": {
            format!("{ISSUER}:sub"): format!("system:serviceaccount:{namespace}:{sa}"),
            format!("{ISSUER}:aud"): "sts.amazonaws.com",
        }},
    }]})
}

/// Where the test runs: kubesim in-process or a real API server of its own.
enum Server {
    Kubesim(KubeSim),
    /// Kept for its lifetime: dropping it stops the control plane.
    Real {
        _plane: Box<ControlPlane>,
    },
}

async fn server(real: bool) -> (Server, Client) {
    let (server, client) = if real {
        let plane = ControlPlane::start(Default::default())
            .await
            .unwrap_or_else(|e| panic!("the real control plane did not start: {e}"));
        let client = plane.admin_client().await.expect("admin client");
        (
            Server::Real {
                _plane: Box::new(plane),
            },
            client,
        )
    } else {
        let kube = KubeSim::new();
        let client = kube.client();
        (Server::Kubesim(kube), client)
    };
    support::install_crd(&client).await;
    let bindings: Api<PodIdentityBinding> = Api::all(client.clone());
    let deadline = Instant::now() + WAIT;
    while let Err(e) = bindings.list(&ListParams::default().limit(1)).await {
        assert!(Instant::now() < deadline, "the CRD is never served: {e}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "apps"}})).expect("namespace"),
        )
        .await
        .expect("namespace apps");
    (server, client)
}

async fn service_account(client: &Client, ns: &str, name: &str, role: Option<&str>) {
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let mut meta = json!({"name": name, "namespace": ns});
    if let Some(r) = role {
        meta["annotations"] = json!({"eks.amazonaws.com/role-arn": r});
    }
    sas.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": meta})).expect("sa"),
    )
    .await
    .expect("ServiceAccount created");
}

/// The account before the migration, made as its administrator.
async fn legacy_account(aws: &AwsSim, cluster_arn: &str) {
    AwsSim::as_admin(async {
        aws.add_oidc_provider(&format!("https://{ISSUER}"));
        let role =
            async |name: &str, path: &str, trust: Value, tags: pod_identity_operator::aws::Tags| {
                aws.create_role(&CreateRole {
                    name: name.into(),
                    path: path.into(),
                    assume_role_policy: trust,
                    tags,
                    ..CreateRole::default()
                })
                .await
            };
        let open = pod_identity_operator::policy::pod_identity_trust_policy(None);
        role(
            "web-irsa",
            "/",
            oidc_trust("apps", "web"),
            Default::default(),
        )
        .await
        .expect("web-irsa");
        role(
            "worker-irsa",
            "/",
            oidc_trust("apps", "worker"),
            Default::default(),
        )
        .await
        .expect("worker-irsa");
        role(
            "cni-irsa",
            "/",
            oidc_trust("kube-system", "aws-node"),
            Default::default(),
        )
        .await
        .expect("cni-irsa");
        role("legacy", "/", open.clone(), Default::default())
            .await
            .expect("legacy");
        role("ebs", "/", open.clone(), Default::default())
            .await
            .expect("ebs");
        // A role the operator made for a binding that is gone, and one on its path that
        // it never made.
        role(
            "pi-prod-apps-gone",
            &naming::role_path(CLUSTER),
            open.clone(),
            naming::ownership_tags(cluster_arn, "apps", "gone"),
        )
        .await
        .expect("orphan");
        role(
            "stray",
            &naming::role_path(CLUSTER),
            open,
            Default::default(),
        )
        .await
        .expect("stray");
        let assoc =
            async |ns: &str, sa: &str, role: &str, tags: pod_identity_operator::aws::Tags| {
                aws.create_pod_identity_association(&CreateAssociation {
                    cluster_name: CLUSTER.into(),
                    namespace: ns.into(),
                    service_account: sa.into(),
                    role_arn: role_arn(role),
                    tags,
                    ..CreateAssociation::default()
                })
                .await
            };
        // By hand, on a ServiceAccount that still has its IRSA annotation.
        assoc("apps", "worker", "worker-irsa", Default::default())
            .await
            .expect("worker association");
        assoc(
            "apps",
            "legacy",
            "legacy",
            [("ManagedBy".to_owned(), "terraform".to_owned())].into(),
        )
        .await
        .expect("legacy association");
    })
    .await;
    aws.add_addon(
        CLUSTER,
        &AddonSetup {
            name: "aws-ebs-csi-driver".into(),
            pod_identity_associations: vec![(
                "kube-system".into(),
                "ebs-csi-controller-sa".into(),
                role_arn("ebs"),
            )],
            ..AddonSetup::default()
        },
    )
    .expect("ebs add-on");
    aws.add_addon(
        CLUSTER,
        &AddonSetup {
            name: "vpc-cni".into(),
            service_account_role_arn: Some(role_arn("cni-irsa")),
            ..AddonSetup::default()
        },
    )
    .expect("vpc-cni add-on");
}

async fn legacy_cluster(client: &Client) {
    service_account(client, "apps", "web", Some(&role_arn("web-irsa"))).await;
    service_account(client, "apps", "worker", Some(&role_arn("worker-irsa"))).await;
    service_account(client, "apps", "legacy", None).await;
    service_account(
        client,
        "kube-system",
        "aws-node",
        Some(&role_arn("cni-irsa")),
    )
    .await;
}

/// The controller for the cluster, under the operator's policy rendered for it, watching
/// every namespace.
async fn controller(client: &Client, sim: Option<KubeSim>, aws: &Arc<AwsSim>) -> Env {
    let env = Env::start_on(
        client.clone(),
        sim,
        "apps",
        CLUSTER,
        aws.clone(),
        aws.clone(),
        support::under_rendered_policy(aws, CLUSTER, |s| s.namespace = None),
    )
    .await;
    // The legacy cluster runs no Pod Identity Agent (the Env installs one).
    support::remove_agent(client).await;
    env
}

/// The audit as the account's administrator would run it (the user's credentials, not
/// the operator's).
async fn audit_now(client: &Client, aws: &Arc<AwsSim>) -> Vec<Finding> {
    AwsSim::as_admin(audit::audit(client, aws.as_ref(), aws.as_ref(), CLUSTER))
        .await
        .expect("audit")
        .findings
}

fn has(findings: &[Finding], kind: Kind, subject: &str) -> Option<Finding> {
    findings
        .iter()
        .find(|f| f.kind == kind && f.subject == subject)
        .cloned()
}

fn need(findings: &[Finding], kind: Kind, subject: &str) -> Finding {
    has(findings, kind, subject)
        .unwrap_or_else(|| panic!("no {kind:?} finding for {subject}: {findings:#?}"))
}

/// resourceVersions of every ServiceAccount, binding and DaemonSet the test touches.
async fn resource_versions(client: &Client) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let sas: Api<ServiceAccount> = Api::all(client.clone());
    for sa in sas.list(&ListParams::default()).await.expect("sas").items {
        out.insert(
            format!(
                "sa {}/{}",
                sa.namespace().unwrap_or_default(),
                sa.name_any()
            ),
            sa.resource_version().unwrap_or_default(),
        );
    }
    let bindings: Api<PodIdentityBinding> = Api::all(client.clone());
    for b in bindings
        .list(&ListParams::default())
        .await
        .expect("bindings")
        .items
    {
        out.insert(
            format!("pib {}/{}", b.namespace().unwrap_or_default(), b.name_any()),
            b.resource_version().unwrap_or_default(),
        );
    }
    out
}

async fn wait_ready_status(
    client: &Client,
    ns: &str,
    name: &str,
    status: &str,
) -> PodIdentityBinding {
    let api: Api<PodIdentityBinding> = Api::namespaced(client.clone(), ns);
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(b) = api.get_opt(name).await.expect("get")
            && support::ready(&b).is_some_and(|c| c.status == status)
        {
            return b;
        }
        assert!(
            Instant::now() < deadline,
            "{ns}/{name} never Ready={status}: {:?}",
            api.get_opt(name)
                .await
                .ok()
                .flatten()
                .and_then(|b| b.status)
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn migrate_now(
    client: &Client,
    aws: &Arc<AwsSim>,
    options: Options,
    out: Option<&std::path::Path>,
    apply: bool,
) -> migrate::Plan {
    AwsSim::as_admin(migrate::migrate(
        client,
        aws.as_ref(),
        aws.as_ref(),
        CLUSTER,
        &Selection::default(),
        &options,
        out,
        apply,
    ))
    .await
    .expect("migrate")
    .0
}

async fn audit_then_migrate(real: bool) {
    let (server, client) = server(real).await;
    let aws = Arc::new(AwsSim::new(SimConfig::default()));
    let cluster = aws.add_cluster(CLUSTER);
    legacy_account(&aws, &cluster.arn).await;
    legacy_cluster(&client).await;
    let sim = match &server {
        Server::Kubesim(k) => Some(k.clone()),
        Server::Real { .. } => None,
    };

    // A binding whose role does not exist is not Ready.
    let env = controller(&client, sim.clone(), &aws).await;
    env.apply(
        "broken",
        json!({"serviceAccount": {"name": "broken"}, "role": {"arn": role_arn("missing")}}),
    )
    .await;
    let broken = wait_ready_status(&client, "apps", "broken", "False").await;
    env.stop().await;

    // Every finding kind.
    let before = audit_now(&client, &aws).await;
    let worker_assoc = aws
        .inventory()
        .associations_for("apps", "worker")
        .first()
        .map(|a| (a.association_arn.clone(), a.association_id.clone()))
        .expect("worker association");
    let legacy_assoc = aws.inventory().associations_for("apps", "legacy")[0]
        .association_arn
        .clone();
    let ebs_assoc = aws
        .inventory()
        .associations_for("kube-system", "ebs-csi-controller-sa")[0]
        .association_arn
        .clone();
    let f = need(&before, Kind::UnmanagedAssociation, &worker_assoc.0);
    assert_eq!(f.severity, Severity::Warning);
    assert!(f.message.contains("unknown"), "{}", f.message);
    let f = need(&before, Kind::UnmanagedAssociation, &legacy_assoc);
    assert!(f.message.contains("Terraform"), "{}", f.message);
    let f = need(&before, Kind::UnmanagedAssociation, &ebs_assoc);
    assert_eq!(f.severity, Severity::Info);
    assert!(
        f.message.contains("EKS add-on aws-ebs-csi-driver"),
        "{}",
        f.message
    );
    need(&before, Kind::IrsaServiceAccount, "apps/web");
    let f = need(&before, Kind::IrsaRoleWithoutPodIdentityTrust, "apps/web");
    assert!(
        f.message.contains("pods.eks.amazonaws.com"),
        "{}",
        f.message
    );
    let f = need(&before, Kind::IrsaAndAssociation, "apps/worker");
    assert!(
        f.message.contains(audit::CREDENTIAL_CHAIN_DOCS[0])
            && f.message
                .contains("web identity (IRSA) before the container credential provider"),
        "{}",
        f.message
    );
    let f = need(&before, Kind::AddonUsesIrsa, "vpc-cni");
    assert!(
        f.message.contains(
            "aws eks update-addon --cluster-name prod --addon-name vpc-cni --pod-identity-associations serviceAccount=aws-node,roleArn=arn:aws:iam::111122223333:role/cni-irsa"
        ),
        "{}",
        f.message
    );
    let orphan = format!("arn:aws:iam::{ACCOUNT}:role/pod-identity/prod/pi-prod-apps-gone");
    assert!(
        need(&before, Kind::OrphanRole, &orphan)
            .message
            .contains("apps/gone")
    );
    need(
        &before,
        Kind::OrphanRole,
        &format!("arn:aws:iam::{ACCOUNT}:role/pod-identity/prod/stray"),
    );
    let f = need(&before, Kind::BindingNotReady, "apps/broken");
    assert_eq!(f.severity, Severity::Error);
    let reason = support::ready(&broken)
        .map(|c| c.reason.clone())
        .unwrap_or_default();
    assert!(f.message.contains(&reason), "{} / {reason}", f.message);
    need(&before, Kind::UnscopedPodIdentityTrust, &role_arn("legacy"));
    need(&before, Kind::UnscopedPodIdentityTrust, &role_arn("ebs"));
    assert_eq!(
        need(
            &before,
            Kind::PodIdentityAgentMissing,
            "eks-pod-identity-agent"
        )
        .severity,
        Severity::Error
    );

    // Planning, even with every option but --apply, writes nothing to either side.
    let kube_writes = sim.as_ref().map(KubeSim::write_counts);
    let versions = resource_versions(&client).await;
    let aws_writes = support::write_calls(aws.knobs());
    let inventory = aws.inventory();
    let out = tempfile::tempdir().expect("temp dir");
    let planned = migrate_now(
        &client,
        &aws,
        Options {
            update_trust: true,
            remove_irsa: true,
            remove_oidc_trust: true,
        },
        Some(out.path()),
        false,
    )
    .await;
    let _ = audit_now(&client, &aws).await;
    assert_eq!(support::write_calls(aws.knobs()), aws_writes, "AWS writes");
    assert_eq!(aws.inventory(), inventory);
    assert_eq!(resource_versions(&client).await, versions);
    if let Some(sim) = &sim {
        assert_eq!(Some(sim.write_counts()), kube_writes, "kubesim saw a write");
    }
    assert!(
        planned
            .changes
            .iter()
            .any(|c| matches!(c, Change::UpdateTrust { role_name, .. } if role_name == "web-irsa")),
        "{planned:#?}"
    );
    // No binding is Ready yet: no annotation would go.
    assert!(
        !planned
            .changes
            .iter()
            .any(|c| matches!(c, Change::RemoveIrsaAnnotation { .. }))
    );

    let mut files: Vec<_> = std::fs::read_dir(out.path())
        .expect("out dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["apps.web.yaml", "apps.worker.yaml"]);
    let manifest = |file: &str| -> PodIdentityBinding {
        serde_yaml::from_str(&std::fs::read_to_string(out.path().join(file)).expect("read"))
            .expect("a binding")
    };
    let web = manifest("apps.web.yaml");
    assert_eq!(
        web.spec.role.arn.as_deref(),
        Some(role_arn("web-irsa").as_str())
    );
    assert_eq!(web.spec.service_account.create, Some(false));
    assert_eq!(web.spec.adopt, None);
    assert_eq!(manifest("apps.worker.yaml").spec.adopt, Some(true));
    let notes: Vec<String> = planned.notes.iter().map(|n| n.message.clone()).collect();
    assert!(
        notes.iter().any(|n| n.contains("--addon-name vpc-cni"))
            && notes
                .iter()
                .any(|n| n.contains("--addon-name aws-ebs-csi-driver")),
        "{notes:#?}"
    );

    // --apply --update-trust: each IRSA role gets a scoped Pod Identity statement and
    // keeps its OIDC statement.
    migrate_now(
        &client,
        &aws,
        Options {
            update_trust: true,
            ..Options::default()
        },
        None,
        true,
    )
    .await;
    for (name, sa) in [("web-irsa", "web"), ("worker-irsa", "worker")] {
        let trust = aws
            .inventory()
            .role(name)
            .expect("role")
            .role
            .assume_role_policy
            .clone();
        let statements = trust["Statement"].as_array().cloned().unwrap_or_default();
        assert_eq!(statements.len(), 2, "{trust}");
        assert_eq!(statements[0], oidc_trust("apps", sa)["Statement"][0]);
        assert_eq!(
            statements[1]["Condition"]["StringEquals"]["aws:RequestTag/kubernetes-service-account"],
            sa
        );
    }
    assert!(
        aws.inventory()
            .role("cni-irsa")
            .expect("cni")
            .role
            .assume_role_policy
            == oidc_trust("kube-system", "aws-node"),
        "the add-on's role is not the migration's to change"
    );

    // The bindings as written, applied, become Ready; the hand-made association is
    // adopted, not duplicated.
    let env = controller(&client, sim.clone(), &aws).await;
    for file in ["apps.web.yaml", "apps.worker.yaml"] {
        let b = manifest(file);
        Api::<PodIdentityBinding>::namespaced(client.clone(), "apps")
            .create(&PostParams::default(), &b)
            .await
            .expect("binding applied");
    }
    wait_ready_status(&client, "apps", "web", "True").await;
    let worker = wait_ready_status(&client, "apps", "worker", "True").await;
    assert_eq!(
        worker
            .status
            .as_ref()
            .and_then(|s| s.association_id.clone()),
        Some(worker_assoc.1.clone())
    );
    assert_eq!(aws.inventory().associations_for("apps", "web").len(), 1);

    // --apply --remove-irsa --remove-oidc-trust, once Ready.
    let done = migrate_now(
        &client,
        &aws,
        Options {
            remove_irsa: true,
            remove_oidc_trust: true,
            ..Options::default()
        },
        None,
        true,
    )
    .await;
    assert!(done.bindings.is_empty(), "{:?}", done.bindings);
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "apps");
    for sa in ["web", "worker"] {
        let sa = sas.get(sa).await.expect("sa");
        assert!(
            !sa.annotations().contains_key("eks.amazonaws.com/role-arn"),
            "{:?}",
            sa.annotations()
        );
    }
    let node = Api::<ServiceAccount>::namespaced(client.clone(), "kube-system")
        .get("aws-node")
        .await
        .expect("aws-node");
    assert!(
        node.annotations()
            .contains_key("eks.amazonaws.com/role-arn")
    );
    let trust = aws
        .inventory()
        .role("web-irsa")
        .expect("role")
        .role
        .assume_role_policy
        .clone();
    assert_eq!(
        trust["Statement"].as_array().map(Vec::len),
        Some(1),
        "{trust}"
    );
    assert!(pod_identity_operator::policy::trust_admits_pod_identity(
        &trust
    ));
    wait_ready_status(&client, "apps", "web", "True").await;

    // The second audit: what the migration addressed is gone.
    let after = audit_now(&client, &aws).await;
    for subject in ["apps/web", "apps/worker"] {
        for kind in [
            Kind::IrsaServiceAccount,
            Kind::IrsaRoleWithoutPodIdentityTrust,
            Kind::IrsaAndAssociation,
            Kind::BindingNotReady,
        ] {
            assert!(
                has(&after, kind, subject).is_none(),
                "{kind:?} {subject}: {after:#?}"
            );
        }
    }
    assert!(has(&after, Kind::UnmanagedAssociation, &worker_assoc.0).is_none());
    let web_assoc = aws.inventory().associations_for("apps", "web")[0]
        .role_arn
        .clone();
    assert!(has(&after, Kind::UnscopedPodIdentityTrust, &web_assoc).is_none());
    // What it left alone is still reported.
    need(&after, Kind::AddonUsesIrsa, "vpc-cni");
    need(&after, Kind::UnmanagedAssociation, &legacy_assoc);

    // The agent: a self-managed DaemonSet, or the add-on, makes the finding go.
    let ds: Api<DaemonSet> = Api::namespaced(client.clone(), "kube-system");
    ds.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "metadata": {"name": "eks-pod-identity-agent", "namespace": "kube-system"},
            "spec": {
                "selector": {"matchLabels": {"app": "agent"}},
                "template": {"metadata": {"labels": {"app": "agent"}},
                    "spec": {"containers": [{"name": "agent", "image": "agent"}]}},
            },
        }))
        .expect("daemonset"),
    )
    .await
    .expect("DaemonSet created");
    let with_ds = audit_now(&client, &aws).await;
    assert!(
        !with_ds
            .iter()
            .any(|f| f.kind == Kind::PodIdentityAgentMissing),
        "{with_ds:#?}"
    );
    ds.delete("eks-pod-identity-agent", &DeleteParams::default())
        .await
        .expect("DaemonSet deleted");
    let deadline = Instant::now() + WAIT;
    while ds
        .get_opt("eks-pod-identity-agent")
        .await
        .expect("get")
        .is_some()
    {
        assert!(Instant::now() < deadline, "the DaemonSet never went");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    need(
        &audit_now(&client, &aws).await,
        Kind::PodIdentityAgentMissing,
        "eks-pod-identity-agent",
    );
    aws.add_addon(
        CLUSTER,
        &AddonSetup {
            name: "eks-pod-identity-agent".into(),
            ..AddonSetup::default()
        },
    )
    .expect("agent add-on");
    let with_addon = audit_now(&client, &aws).await;
    assert!(
        !with_addon
            .iter()
            .any(|f| f.kind == Kind::PodIdentityAgentMissing),
        "{with_addon:#?}"
    );
    env.stop().await;
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_and_migrate_on_kubesim() {
    audit_then_migrate(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_and_migrate_on_a_real_apiserver() {
    audit_then_migrate(true).await;
}

/// The binary: `audit` against kubesim over TCP and the simulator's HTTP front, as a
/// table and as JSON, exiting 2 at or above `--fail-on` and 0 below it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_command_prints_and_fails_at_its_threshold() {
    let (kube, _server, dir) = support::kubesim_over_tcp().await;
    let aws = Arc::new(AwsSim::new(SimConfig {
        identity_policy: Some(administrator_policy()),
        ..SimConfig::default()
    }));
    let cluster = aws.add_cluster(CLUSTER);
    legacy_account(&aws, &cluster.arn).await;
    let (url, _front) = support::serve_simulator(aws.clone()).await;
    let client = kube.client();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "apps"}})).expect("namespace"),
        )
        .await
        .expect("namespace apps");
    legacy_cluster(&client).await;

    let kubeconfig = dir.path().join("kubeconfig");
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_pod-identity-operator"))
            .arg("audit")
            .args(["--cluster-name", CLUSTER, "--region", "us-east-1"])
            .args(["--aws-endpoint-url", &url])
            .args(args)
            .env("KUBECONFIG", &kubeconfig)
            .env("AWS_ACCESS_KEY_ID", "AKIAAUDITTEST")
            .env("AWS_SECRET_ACCESS_KEY", "secret")
            .env_remove("AWS_PROFILE")
            .output()
            .expect("the binary runs")
    };
    let table = run(&[]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert_eq!(
        table.status.code(),
        Some(2),
        "{text}\n{}",
        String::from_utf8_lossy(&table.stderr)
    );
    assert!(text.starts_with("SEVERITY"), "{text}");
    assert!(text.contains("PodIdentityAgentMissing"), "{text}");

    let json_out = run(&["-o", "json"]);
    let report: audit::Report = serde_json::from_slice(&json_out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&json_out.stdout)));
    assert_eq!(report.cluster, CLUSTER);
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.kind == Kind::IrsaAndAssociation)
    );
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.kind == Kind::UnmanagedAssociation
                && f.message.contains("aws-ebs-csi-driver"))
    );

    // With the agent there, no error is left: at --fail-on error it exits 0, at
    // --fail-on warning it still fails.
    aws.add_addon(
        CLUSTER,
        &AddonSetup {
            name: "eks-pod-identity-agent".into(),
            ..AddonSetup::default()
        },
    )
    .expect("agent add-on");
    let codes = ["error", "warning"].map(|level| run(&["--fail-on", level]).status.code());
    assert_eq!(codes, [Some(0), Some(2)]);
}
