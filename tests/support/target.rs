//! Where the end-to-end suite runs. By default: kubesim over TCP and the suite's own
//! local AWS (the simulator's HTTP front, or moto/ministack), each test with its own.
//! From the environment:
//! - `E2E_KUBECONFIG`: a kubeconfig file of another cluster (a kind cluster, say). The
//!   CRD is applied there with kubectl, each test works in a namespace of its own and
//!   runs its operators with `--namespace`, so tests never see each other's bindings.
//! - `E2E_OPERATOR_KUBECONFIG` (with `E2E_KUBECONFIG`): the kubeconfig the operator
//!   processes get, for running them as the identity `config/rbac/` binds (the test's
//!   own checks keep `E2E_KUBECONFIG`); `config/rbac/` is then applied with kubectl.
//! - `E2E_AWS_ENDPOINT`: an http(s) URL serving IAM and EKS (moto/ministack elsewhere,
//!   LocalStack), holding the EKS cluster `E2E_CLUSTER_NAME` (default `e2e`); or
//!   `E2E_AWS_CREDENTIALS=1`: real AWS, through the standard credential chain, in
//!   `E2E_REGION` (default `us-east-1`). Not both.
//!
//! Tests that need kubesim's fault injection or instrumentation cannot run on another
//! cluster: with `E2E_KUBECONFIG` set they say so on stderr and return
//! ([`Target::skip_without_kubesim`]). Tests that need the simulator's AWS fault
//! injection keep the simulator whatever `E2E_AWS_*` says, and say so.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_config::SdkConfig;
use aws_credential_types::Credentials;
use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::api::{Api, DeleteParams, PostParams};
use pod_identity_operator::aws::config::{AwsSettings, config_loader};
use pod_identity_operator::kubesim::{KubeSim, ServerHandle};

use super::kubectl::kubectl;

/// The AWS side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AwsTarget {
    /// The test's own local server.
    Local,
    /// Another endpoint serving IAM and EKS.
    Endpoint(String),
    /// Real AWS through the standard credential chain.
    Credentials,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub kubeconfig: Option<PathBuf>,
    pub operator_kubeconfig: Option<PathBuf>,
    pub aws: AwsTarget,
    pub cluster_name: String,
    pub region: String,
}

/// Test credentials the local servers accept.
pub const ACCESS_KEY: &str = "AKIAE2ETESTS";
pub const SECRET_KEY: &str = "e2e-secret";

impl Target {
    /// The target the environment names; panics naming the variable when it is wrong.
    pub fn from_env() -> Target {
        Target::parse(|key| std::env::var(key).ok()).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Reads the settings through `get` (an empty value counts as unset).
    pub fn parse(get: impl Fn(&str) -> Option<String>) -> Result<Target, String> {
        let get = |key: &str| get(key).filter(|v| !v.trim().is_empty());
        let kubeconfig = get("E2E_KUBECONFIG").map(PathBuf::from);
        if let Some(path) = &kubeconfig
            && !path.is_file()
        {
            return Err(format!("E2E_KUBECONFIG={}: no such file", path.display()));
        }
        let operator_kubeconfig = get("E2E_OPERATOR_KUBECONFIG").map(PathBuf::from);
        if let Some(path) = &operator_kubeconfig {
            if kubeconfig.is_none() {
                return Err("E2E_OPERATOR_KUBECONFIG needs E2E_KUBECONFIG".into());
            }
            if !path.is_file() {
                return Err(format!(
                    "E2E_OPERATOR_KUBECONFIG={}: no such file",
                    path.display()
                ));
            }
        }
        let credentials = match get("E2E_AWS_CREDENTIALS").as_deref() {
            None | Some("0") | Some("false") => false,
            Some("1") | Some("true") => true,
            Some(other) => {
                return Err(format!("E2E_AWS_CREDENTIALS={other}: use 1 or true"));
            }
        };
        let aws = match (get("E2E_AWS_ENDPOINT"), credentials) {
            (Some(_), true) => {
                return Err(
                    "E2E_AWS_ENDPOINT and E2E_AWS_CREDENTIALS are both set: pick one".into(),
                );
            }
            (Some(url), false) => {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(format!("E2E_AWS_ENDPOINT={url}: not an http(s) URL"));
                }
                AwsTarget::Endpoint(url)
            }
            (None, true) => AwsTarget::Credentials,
            (None, false) => AwsTarget::Local,
        };
        Ok(Target {
            kubeconfig,
            operator_kubeconfig,
            aws,
            cluster_name: get("E2E_CLUSTER_NAME").unwrap_or_else(|| "e2e".into()),
            region: get("E2E_REGION").unwrap_or_else(|| "us-east-1".into()),
        })
    }

    pub fn external_kube(&self) -> bool {
        self.kubeconfig.is_some()
    }

    /// Why this test must not run, when it needs kubesim (`needs` says for what) and
    /// `E2E_KUBECONFIG` names another cluster.
    pub fn kubesim_skip_reason(&self, test: &str, needs: &str) -> Option<String> {
        self.kubeconfig.as_ref().map(|path| {
            format!(
                "SKIPPED {test}: it needs kubesim's {needs}, and E2E_KUBECONFIG={} names another cluster",
                path.display()
            )
        })
    }

    /// True, after saying why on stderr, when this test must not run (see
    /// [`Target::kubesim_skip_reason`]).
    pub fn skip_without_kubesim(&self, test: &str, needs: &str) -> bool {
        match self.kubesim_skip_reason(test, needs) {
            Some(reason) => {
                eprintln!("{reason}");
                true
            }
            None => false,
        }
    }

    /// Says on stderr that this test keeps the simulator despite `E2E_AWS_*`.
    pub fn note_simulator_kept(&self, test: &str, needs: &str) {
        if self.aws != AwsTarget::Local {
            eprintln!(
                "{test}: runs against the AWS simulator, not {:?}: it needs the simulator's {needs}",
                self.aws
            );
        }
    }

    /// The EKS cluster: the test's own on a local server, else `E2E_CLUSTER_NAME`.
    pub fn cluster(&self, local: &str) -> String {
        match self.aws {
            AwsTarget::Local => local.to_owned(),
            _ => self.cluster_name.clone(),
        }
    }

    /// A namespace of this test's own: `base` on kubesim (each test has its own), a
    /// name unique to this process and call on another cluster.
    pub fn namespace(&self, base: &str) -> String {
        static N: AtomicUsize = AtomicUsize::new(0);
        if self.external_kube() {
            let n = N.fetch_add(1, Ordering::Relaxed);
            format!("e2e-{base}-{}-{n}", std::process::id())
        } else {
            base.to_owned()
        }
    }

    /// How the test reaches AWS, given the URL of its local server.
    pub fn aws_access(&self, local_url: Option<String>) -> AwsAccess {
        match &self.aws {
            AwsTarget::Local => AwsAccess {
                endpoint: local_url,
                region: self.region.clone(),
                test_credentials: true,
            },
            AwsTarget::Endpoint(url) => AwsAccess {
                endpoint: Some(url.clone()),
                region: self.region.clone(),
                test_credentials: true,
            },
            AwsTarget::Credentials => AwsAccess {
                endpoint: None,
                region: self.region.clone(),
                test_credentials: false,
            },
        }
    }
}

/// An AWS endpoint (or AWS itself) and the credentials to use there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AwsAccess {
    pub endpoint: Option<String>,
    pub region: String,
    /// Fixed test credentials (local servers) instead of the standard chain.
    pub test_credentials: bool,
}

impl AwsAccess {
    /// The SDK configuration the test's own checks use.
    pub async fn sdk_config(&self) -> SdkConfig {
        let settings = AwsSettings {
            region: Some(self.region.clone()),
            endpoint_url: self.endpoint.clone(),
            ..AwsSettings::default()
        };
        let mut loader = config_loader(&settings);
        if self.test_credentials {
            loader = loader
                .credentials_provider(Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "e2e"));
        }
        loader.load().await
    }

    /// The operator's flags and environment for this access.
    pub fn configure(&self, cmd: &mut Command) {
        cmd.args(["--region", &self.region]);
        if let Some(url) = &self.endpoint {
            cmd.args(["--aws-endpoint-url", url]);
        }
        if self.test_credentials {
            cmd.env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
                .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
                .env("AWS_EC2_METADATA_DISABLED", "true")
                .env_remove("AWS_PROFILE");
        }
    }
}

/// The Kubernetes side of a test: kubesim over TCP, or the cluster `E2E_KUBECONFIG`
/// names; the CRD applied with kubectl, as the README says.
pub struct Kube {
    pub client: Client,
    pub kubeconfig: PathBuf,
    /// What the operator processes get: `E2E_OPERATOR_KUBECONFIG`, else `kubeconfig`.
    pub operator_kubeconfig: PathBuf,
    pub sim: Option<KubeSim>,
    server: Option<ServerHandle>,
    created: Vec<String>,
}

impl Kube {
    /// Connects (or starts kubesim), writing the kubeconfig into `dir`.
    pub async fn start(target: &Target, dir: &Path) -> Kube {
        let kubeconfig = dir.join("kubeconfig");
        let kube = match &target.kubeconfig {
            Some(external) => {
                // A kubeconfig may use TLS: kube needs a process-wide rustls provider
                // (one already installed is fine).
                let _ = rustls::crypto::ring::default_provider().install_default();
                std::fs::copy(external, &kubeconfig).expect("copy E2E_KUBECONFIG");
                let config = kube::Config::from_custom_kubeconfig(
                    kube::config::Kubeconfig::read_from(&kubeconfig).expect("kubeconfig reads"),
                    &Default::default(),
                )
                .await
                .expect("kubeconfig usable");
                let operator_kubeconfig = match &target.operator_kubeconfig {
                    Some(path) => {
                        let copy = dir.join("operator.kubeconfig");
                        std::fs::copy(path, &copy).expect("copy E2E_OPERATOR_KUBECONFIG");
                        copy
                    }
                    None => kubeconfig.clone(),
                };
                Kube {
                    client: Client::try_from(config).expect("client"),
                    kubeconfig,
                    operator_kubeconfig,
                    sim: None,
                    server: None,
                    created: Vec::new(),
                }
            }
            None => {
                let sim = KubeSim::new();
                let server = sim
                    .serve_tcp("127.0.0.1:0".parse().expect("literal address"))
                    .await
                    .expect("kubesim serves");
                server.write_kubeconfig(&kubeconfig).expect("kubeconfig");
                Kube {
                    client: sim.client(),
                    operator_kubeconfig: kubeconfig.clone(),
                    kubeconfig,
                    sim: Some(sim),
                    server: Some(server),
                    created: Vec::new(),
                }
            }
        };
        let crd_file = concat!(env!("CARGO_MANIFEST_DIR"), "/crds/podidentitybindings.yaml");
        kubectl(&kube.kubeconfig, &["apply", "-f", crd_file]);
        if target.operator_kubeconfig.is_some() {
            // Once per test process: the operator's identity, installed as the README
            // says (its namespace, then config/rbac/ into it).
            static RBAC: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
            RBAC.get_or_init(|| async {
                let rbac = concat!(env!("CARGO_MANIFEST_DIR"), "/config/rbac");
                let namespace =
                    concat!(env!("CARGO_MANIFEST_DIR"), "/config/default/namespace.yaml");
                kubectl(&kube.kubeconfig, &["apply", "-f", namespace]);
                kubectl(
                    &kube.kubeconfig,
                    &["apply", "-n", "pod-identity-system", "-k", rbac],
                );
            })
            .await;
        }
        kube
    }

    /// [`Kube::start`], and the test's namespace ([`Target::namespace`] of `base`) made.
    pub async fn start_in(target: &Target, dir: &Path, base: &str) -> (Kube, String) {
        let mut kube = Kube::start(target, dir).await;
        let ns = target.namespace(base);
        kube.ensure_namespace(&ns).await;
        (kube, ns)
    }

    /// Makes the namespace unless it exists; those made are deleted by [`Kube::stop`].
    pub async fn ensure_namespace(&mut self, name: &str) {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        if namespaces
            .get_opt(name)
            .await
            .expect("get namespace")
            .is_some()
        {
            return;
        }
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}))
        .expect("namespace");
        namespaces
            .create(&PostParams::default(), &ns)
            .await
            .expect("namespace created");
        self.created.push(name.to_owned());
    }

    /// Deletes the namespaces made (on another cluster), stops kubesim.
    pub async fn stop(self) {
        if self.sim.is_none() {
            let namespaces: Api<Namespace> = Api::all(self.client.clone());
            for name in &self.created {
                let _ = namespaces.delete(name, &DeleteParams::default()).await;
            }
        }
        if let Some(server) = self.server {
            server.shutdown().await;
        }
    }
}
