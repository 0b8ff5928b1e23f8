//! The calls `audit` and `migrate` add, checked alike on the simulator (in-process and
//! behind its HTTP front, through the SDK adapters) and on the wire servers that serve
//! them: DescribeAddon and ListAddons on ministack, ListRoles on moto. Each backend
//! creates the add-on its own way (the simulator as its administrator, ministack through
//! the SDK's CreateAddon), then every check goes through the traits.
//!
//! Not here: add-ons owning Pod Identity associations. ministack makes no association
//! for an add-on created with `podIdentityAssociations`, so that is the simulator's own
//! test (`crates/aws-sim/src/addons.rs`). IAM's refusal of a trust policy naming an OIDC
//! provider the account lacks is a contract case (`trust_policy_oidc_provider_must_exist`).

use std::sync::Arc;

use pod_identity_operator::aws::sim::{AddonSetup, AwsSim, SimConfig, administrator_policy, http};
use pod_identity_operator::aws::{CreateRole, EksApi, IamApi};
use pod_identity_operator::policy::pod_identity_trust_policy;

use crate::aws_servers::{self, ACCOUNT_ID, Kind};
use crate::cases::documents_equivalent;
use crate::wire_backend::sdk_config;

const CLUSTER: &str = "contract";

fn suffix() -> String {
    format!("{:08x}", rand::random::<u32>())
}

/// DescribeAddon of an existing and a missing add-on, and ListAddons.
async fn addon_described_and_listed(eks: &dyn EksApi, name: &str, role_arn: &str) {
    let addon = eks
        .describe_addon(CLUSTER, name)
        .await
        .expect("DescribeAddon")
        .expect("the add-on exists");
    assert_eq!(addon.name, name);
    assert_eq!(addon.cluster_name, CLUSTER);
    assert_eq!(addon.status.as_deref(), Some("ACTIVE"), "{addon:?}");
    assert!(
        addon.arn.contains(&format!(":addon/{CLUSTER}/{name}")),
        "{}",
        addon.arn
    );
    assert_eq!(addon.service_account_role_arn.as_deref(), Some(role_arn));
    assert_eq!(
        eks.describe_addon(CLUSTER, &format!("missing-{}", suffix()))
            .await
            .expect("a missing add-on is no error"),
        None
    );
    let names = eks.list_addons(CLUSTER).await.expect("ListAddons");
    assert!(names.iter().any(|n| n == name), "{names:?}");
}

/// ListRoles by path prefix: only the roles under it, trust policies decoded.
async fn roles_listed_by_path(iam: &dyn IamApi) {
    let path = format!("/audit-{}/", suffix());
    let trust = pod_identity_trust_policy(None);
    for (name, p) in [
        ("a", path.clone()),
        ("b", format!("{path}sub/")),
        ("c", "/".into()),
    ] {
        iam.create_role(&CreateRole {
            name: format!("{name}-{}", &path[7..15]),
            path: p,
            assume_role_policy: trust.clone(),
            ..CreateRole::default()
        })
        .await
        .expect("CreateRole");
    }
    let mut listed = iam.list_roles(&path).await.expect("ListRoles");
    listed.sort_by(|x, y| x.name.cmp(&y.name));
    let names: Vec<&str> = listed.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [format!("a-{}", &path[7..15]), format!("b-{}", &path[7..15])],
        "{listed:#?}"
    );
    for r in &listed {
        assert!(r.path.starts_with(&path), "{}", r.path);
        assert!(
            r.arn
                .starts_with(&format!("arn:aws:iam::{ACCOUNT_ID}:role{path}"))
        );
        assert!(
            documents_equivalent(&r.assume_role_policy, &trust),
            "{:?}",
            r.assume_role_policy
        );
    }
}

fn simulator() -> Arc<AwsSim> {
    let sim = Arc::new(AwsSim::new(SimConfig {
        identity_policy: Some(administrator_policy()),
        seed: rand::random(),
        ..SimConfig::default()
    }));
    sim.add_cluster(CLUSTER);
    sim
}

fn sim_addon(sim: &AwsSim, name: &str, role_arn: &str) {
    sim.add_addon(
        CLUSTER,
        &AddonSetup {
            name: name.into(),
            service_account_role_arn: Some(role_arn.into()),
            ..AddonSetup::default()
        },
    )
    .expect("add-on");
}

fn cni_role() -> String {
    format!("arn:aws:iam::{ACCOUNT_ID}:role/cni-irsa")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulator_addons() {
    let sim = simulator();
    sim_addon(&sim, "vpc-cni", &cni_role());
    addon_described_and_listed(sim.as_ref(), "vpc-cni", &cni_role()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulator_list_roles() {
    roles_listed_by_path(simulator().as_ref()).await;
}

/// The SDK adapters against the simulator's HTTP front.
async fn front(
    sim: Arc<AwsSim>,
) -> (
    aws_config::SdkConfig,
    tokio::task::JoinHandle<pod_identity_operator::aws::Result<()>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let server = tokio::spawn(http::serve(sim, listener));
    (sdk_config(&url).await, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adapters_on_simulator_addons() {
    let sim = simulator();
    sim_addon(&sim, "vpc-cni", &cni_role());
    let (config, server) = front(sim).await;
    let eks = pod_identity_operator::aws::eks::SdkEks::new(&config);
    addon_described_and_listed(&eks, "vpc-cni", &cni_role()).await;
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adapters_on_simulator_list_roles() {
    let (config, server) = front(simulator()).await;
    roles_listed_by_path(&pod_identity_operator::aws::iam::SdkIam::new(&config)).await;
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ministack_addons() {
    let ministack = aws_servers::lease(Kind::Ministack).await;
    let config = sdk_config(&ministack.url()).await;
    aws_servers::create_eks_cluster(&config, CLUSTER).await;
    aws_sdk_eks::Client::new(&config)
        .create_addon()
        .cluster_name(CLUSTER)
        .addon_name("vpc-cni")
        .service_account_role_arn(cni_role())
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateAddon on ministack: {e:?}"));
    let eks = pod_identity_operator::aws::eks::SdkEks::new(&config);
    addon_described_and_listed(&eks, "vpc-cni", &cni_role()).await;
    drop(ministack);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_list_roles() {
    let moto = aws_servers::lease(Kind::Moto).await;
    let config = sdk_config(&moto.url()).await;
    roles_listed_by_path(&pod_identity_operator::aws::iam::SdkIam::new(&config)).await;
    drop(moto);
}
