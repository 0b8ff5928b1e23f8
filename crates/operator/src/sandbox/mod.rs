//! The sandbox: the operator working on a laptop with no cluster and no AWS account.
//!
//! [`run`] starts kubesim on 127.0.0.1 with the PodIdentityBinding CRD installed, the AWS
//! simulator ([`AwsSim`]) holding an EKS cluster named [`CLUSTER`] in account
//! [`ACCOUNT_ID`] (with what the examples expect to exist already: the
//! `billing-api` role and the Load Balancer Controller's customer-managed policy), and
//! the controller against both, in this process. It writes a kubeconfig, optionally
//! applies a directory of manifests ([`manifests`]), serves the AWS inventory as JSON
//! (`GET /inventory`, next to the simulator's IAM/EKS wire front on the same port), and
//! prints a live view ([`view`]) of bindings and AWS whenever it changes, until the
//! shutdown future resolves.
//!
//! With [`Options::wire`], moto (IAM) and ministack (EKS) from the test venv take the
//! simulator's place ([`wire`]); the live view and `/inventory` then read the account
//! through the AWS APIs, and the port serves `/inventory` only.
//!
//! The controller runs under the sandbox's own guardrails ([`GUARDRAILS`]), or the file
//! the user gives ([`Options::guardrails`]); the simulator's operator policy is rendered
//! for the same guardrails.

pub mod legacy;
pub mod manifests;
pub mod view;
pub mod wire;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use kube::api::{Api, ListParams, PostParams};
use tokio_util::sync::CancellationToken;

use crate::aws::sim::{AwsSim, Inventory, SimConfig};
use crate::aws::{CreateRole, IamApi};
use crate::controller::{self, Context, Settings};
use crate::crd::PodIdentityBinding;
use crate::guardrails::{GuardrailConfig, GuardrailSource};
use crate::kubesim::KubeSim;
use crate::operator_policy::{self, Installation};
use crate::policy::pod_identity_trust_policy;

/// The simulated EKS cluster the operator manages.
pub const CLUSTER: &str = "sandbox";
/// The simulated AWS account.
pub const ACCOUNT_ID: &str = "111122223333";
pub const REGION: &str = "us-east-1";
/// Roles that exist before the operator starts, as an application's own role would.
pub const EXISTING_ROLES: [&str; 1] = ["billing-api"];
/// Customer-managed policies that exist before the operator starts.
pub const EXISTING_POLICIES: [&str; 1] =
    ["arn:aws:iam::111122223333:policy/AWSLoadBalancerControllerIAMPolicy"];

/// How the sandbox runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// Where the kubeconfig pointing at kubesim is written.
    pub kubeconfig: PathBuf,
    /// kubesim's address (port 0 picks a free one).
    pub kube_addr: SocketAddr,
    /// The inventory's (and AWS wire front's) address.
    pub inventory_addr: SocketAddr,
    /// Manifests applied once everything runs.
    pub apply: Option<PathBuf>,
    /// How often the live view is refreshed; `None` prints no view.
    pub view_interval: Option<Duration>,
    /// moto and ministack instead of the simulator.
    pub wire: bool,
    /// The guardrails the controller runs under and the simulator's operator policy is
    /// rendered for ([`GUARDRAILS`] unless the user gives their own).
    pub guardrails: GuardrailConfig,
    /// Where `guardrails` came from, for the banner.
    pub guardrails_from: String,
}

/// The AWS side of a running sandbox.
enum Aws {
    Sim(Arc<AwsSim>),
    Wire(Box<wire::WireAws>),
}

impl Aws {
    fn iam(&self) -> Arc<dyn IamApi> {
        match self {
            Aws::Sim(sim) => sim.clone(),
            Aws::Wire(w) => w.iam.clone(),
        }
    }

    fn eks(&self) -> Arc<dyn crate::aws::EksApi> {
        match self {
            Aws::Sim(sim) => sim.clone(),
            Aws::Wire(w) => w.eks.clone(),
        }
    }

    async fn inventory(&self) -> crate::Result<Inventory> {
        match self {
            Aws::Sim(sim) => Ok(sim.inventory()),
            Aws::Wire(w) => w.inventory().await,
        }
    }
}

/// The simulated account as the sandbox starts it: the cluster, the managed policies
/// and roles the examples expect, and the operator's IAM policy rendered for the
/// cluster and `guardrails` enforced on every call.
pub async fn simulated_aws(guardrails: &GuardrailConfig) -> crate::Result<Arc<AwsSim>> {
    let aws = Arc::new(AwsSim::new(SimConfig {
        account_id: ACCOUNT_ID.into(),
        region: REGION.into(),
        identity_policy: None,
        ..SimConfig::default()
    }));
    aws.add_cluster(CLUSTER);
    for arn in EXISTING_POLICIES {
        aws.add_managed_policy(arn);
    }
    create_existing_roles(aws.as_ref()).await?;
    legacy::create_in_aws(aws.as_ref()).await?;
    // What exists was made by an administrator; from here on every call is the
    // operator's, allowed only by its IAM policy rendered for this installation. The
    // controller's guardrails are fixed for the whole run ([`controller_settings`]), so
    // the policy is rendered once, here, from them.
    let installation = Installation::new(CLUSTER, ACCOUNT_ID, REGION);
    aws.enforce(Some(&operator_policy::permissions(
        &installation,
        guardrails,
    )));
    Ok(aws)
}

/// The roles that exist before the operator starts ([`EXISTING_ROLES`]), trusting EKS
/// Pod Identity.
pub async fn create_existing_roles(iam: &dyn IamApi) -> crate::Result<()> {
    for name in EXISTING_ROLES {
        iam.create_role(&CreateRole {
            name: name.into(),
            path: "/".into(),
            assume_role_policy: pod_identity_trust_policy(None),
            description: Some("made before the operator, used as it is".into()),
            ..CreateRole::default()
        })
        .await?;
    }
    Ok(())
}

/// The sandbox's guardrails (`config/sandbox-guardrails.yaml`): exactly what examples/
/// needs, so anything else shows `PolicyDenied`.
pub const GUARDRAILS: &str = include_str!("../../../../config/sandbox-guardrails.yaml");

/// The sandbox's own guardrails ([`GUARDRAILS`]).
pub fn default_guardrails() -> crate::Result<GuardrailConfig> {
    GuardrailConfig::parse(GUARDRAILS)
}

/// Controller settings for an interactive sandbox: `guardrails`, quick retries, a
/// one-minute resync.
pub fn controller_settings(guardrails: GuardrailConfig) -> Settings {
    let mut settings = Settings::new(CLUSTER);
    settings.guardrails = Arc::new(GuardrailSource::fixed(guardrails));
    settings.resync = Duration::from_secs(60);
    settings.retry_base = Duration::from_millis(200);
    settings.retry_max = Duration::from_secs(10);
    settings.retry_soon = Duration::from_secs(1);
    settings.retry_slow = Duration::from_secs(5);
    settings
}

/// Routes of the inventory port: `GET /inventory`, and the simulator's wire front when
/// the simulator is the AWS side.
fn inventory_router(aws: Arc<Aws>) -> Router {
    async fn inventory(State(aws): State<Arc<Aws>>) -> Response {
        match aws.inventory().await {
            Ok(inv) => Json(inv).into_response(),
            Err(e) => (axum::http::StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
        }
    }
    let router = Router::new()
        .route("/inventory", get(inventory))
        .with_state(aws.clone());
    match aws.as_ref() {
        Aws::Sim(sim) => router.merge(crate::aws::sim::http::router(sim.clone())),
        Aws::Wire(_) => router,
    }
}

/// Runs the sandbox until `shutdown` resolves, then stops everything.
/// The Pod Identity Agent's DaemonSet, as the EKS add-on installs it: the sandbox is a
/// cluster where the agent runs.
async fn install_agent(client: &kube::Client) -> crate::Result<()> {
    use crate::controller::notices::{AGENT_NAME, AGENT_NAMESPACE};
    use k8s_openapi::api::apps::v1::DaemonSet;
    let labels = serde_json::json!({"app.kubernetes.io/name": AGENT_NAME});
    let ds: DaemonSet = serde_json::from_value(serde_json::json!({
        "metadata": {"name": AGENT_NAME, "namespace": AGENT_NAMESPACE},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{
                    "name": AGENT_NAME,
                    "image": "public.ecr.aws/eks/eks-pod-identity-agent:v0.1.29",
                }]},
            },
        },
    }))?;
    Api::<DaemonSet>::namespaced(client.clone(), AGENT_NAMESPACE)
        .create(&PostParams::default(), &ds)
        .await?;
    Ok(())
}

pub async fn run(
    options: Options,
    shutdown: impl std::future::Future<Output = ()>,
) -> crate::Result<()> {
    let kube = KubeSim::new();
    let server = kube.serve_tcp(options.kube_addr).await?;
    server.write_kubeconfig(&options.kubeconfig)?;
    let client = kube.client();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &PodIdentityBinding::crd())
        .await?;
    install_agent(&client).await?;

    let aws = Arc::new(if options.wire {
        let venv = wire::pick_venv(&wire::venv_candidates(
            std::env::var_os("PIO_TEST_VENV").map(PathBuf::from),
        ))?;
        Aws::Wire(Box::new(wire::WireAws::start(&venv).await?))
    } else {
        Aws::Sim(simulated_aws(&options.guardrails).await?)
    });
    if let Aws::Sim(_) = aws.as_ref() {
        legacy::create_in_kubernetes(&client).await?;
    }
    let stop = CancellationToken::new();
    let listener = tokio::net::TcpListener::bind(options.inventory_addr).await?;
    let inventory_url = format!("http://{}/inventory", listener.local_addr()?);
    let aws_url = format!("http://{}", listener.local_addr()?);
    let front = tokio::spawn(
        axum::serve(listener, inventory_router(aws.clone()))
            .with_graceful_shutdown(stop.clone().cancelled_owned())
            .into_future(),
    );

    let ctx = Context::new(
        client.clone(),
        aws.iam(),
        aws.eks(),
        controller_settings(options.guardrails.clone()),
    );
    let operator = tokio::spawn(controller::run(ctx, stop.clone().cancelled_owned()));

    let kubeconfig = options.kubeconfig.display();
    println!("pod-identity-operator sandbox is running");
    println!("  Kubernetes API (kubesim): {}", server.url());
    println!("  kubeconfig:               {kubeconfig}");
    println!("  EKS cluster:              {CLUSTER} (account {ACCOUNT_ID}, {REGION})");
    println!("  AWS inventory (JSON):     {inventory_url}");
    println!("  guardrails:               {}", options.guardrails_from);
    match aws.as_ref() {
        Aws::Sim(_) => {
            println!("  AWS endpoint (IAM, EKS):  {aws_url}");
            println!(
                "  IRSA to migrate:          namespace {} (audit and migrate as the account's administrator: AWS_ACCESS_KEY_ID={})",
                legacy::NAMESPACE,
                crate::aws::sim::http::ADMIN_ACCESS_KEY_ID
            );
        }
        Aws::Wire(w) => {
            println!("  AWS endpoint (IAM, moto): {}", w.iam_url());
            println!("  AWS endpoint (EKS, ministack): {}", w.eks_url());
        }
    }
    println!();
    println!("Try:");
    println!("  export KUBECONFIG={kubeconfig}");
    println!("  kubectl apply -k examples/");
    println!("  kubectl get pib -A");
    println!("  curl -s {inventory_url}");
    println!("Ctrl-C stops the sandbox.");

    if let Some(dir) = &options.apply {
        for applied in manifests::apply_path(&client, dir).await? {
            println!("applied {applied}");
        }
    }

    let viewer = options.view_interval.map(|every| {
        let (client, aws) = (client.clone(), aws.clone());
        tokio::spawn(async move {
            let bindings: Api<PodIdentityBinding> = Api::all(client);
            let mut last = String::new();
            loop {
                if let Ok(list) = bindings.list(&ListParams::default()).await
                    && let Ok(inventory) = aws.inventory().await
                {
                    let text = view::render(&list.items, &inventory);
                    if text != last {
                        println!("{text}");
                        last = text;
                    }
                }
                tokio::time::sleep(every).await;
            }
        })
    });

    shutdown.await;
    println!("stopping the sandbox");
    stop.cancel();
    if let Some(v) = viewer {
        v.abort();
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), operator).await;
    let _ = tokio::time::timeout(Duration::from_secs(10), front).await;
    server.shutdown().await;
    // The last reference: local AWS servers are stopped here.
    drop(aws);
    println!("sandbox stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::guardrails::evaluate;

    fn example_bindings() -> Vec<PodIdentityBinding> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples");
        manifests::read_manifests(dir.as_ref())
            .expect("examples/ reads")
            .into_iter()
            .filter(|m| m.kind() == "PodIdentityBinding")
            .map(|m| serde_json::from_value(m.object).expect("example is a binding"))
            .collect()
    }

    #[test]
    fn sandbox_guardrails_admit_every_example() {
        let config = GuardrailConfig::parse(GUARDRAILS).expect("sandbox guardrails parse");
        let bindings = example_bindings();
        assert!(bindings.len() >= 6, "examples found: {}", bindings.len());
        for b in &bindings {
            if let Err(e) = evaluate(b, &BTreeMap::new(), &config) {
                panic!(
                    "{:?} denied by the sandbox guardrails: {e}",
                    b.metadata.name
                );
            }
        }
    }

    #[test]
    fn sandbox_guardrails_deny_what_examples_do_not_need() {
        let config = GuardrailConfig::parse(GUARDRAILS).expect("sandbox guardrails parse");
        let mut admin = example_bindings()
            .into_iter()
            .find(|b| b.metadata.namespace.as_deref() == Some("shop"))
            .expect("an example in shop");
        admin.spec.role.managed_policy_arns =
            vec!["arn:aws:iam::aws:policy/AdministratorAccess".into()];
        let denied = evaluate(&admin, &BTreeMap::new(), &config);
        assert!(
            matches!(denied, Err(crate::Error::PolicyDenied { .. })),
            "{denied:?}"
        );
        let mut elsewhere = example_bindings().remove(0);
        elsewhere.metadata.namespace = Some("default".into());
        assert!(matches!(
            evaluate(&elsewhere, &BTreeMap::new(), &config),
            Err(crate::Error::PolicyDenied { .. })
        ));
    }
}
