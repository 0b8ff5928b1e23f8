//! The same controller test on either API server: kubesim in-process, or a real
//! kube-apiserver (with etcd) of the test's own. [`both!`] turns one test body into a
//! test per server.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::Client;
use kube::api::{Api, ListParams};
use pod_identity_operator::aws::{EksApi, IamApi};
use pod_identity_operator::controller::Settings;
use pod_identity_operator::crd::PodIdentityBinding;
use pod_identity_operator::kubesim::KubeSim;

use super::cluster::ControlPlane;
use super::{Env, NS, WAIT, install_crd};

/// Where a test's controller runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiServer {
    Kubesim,
    Real,
}

/// A controller watching every namespace of an API server of its own, kept running as
/// long as this lives; derefs to its [`Env`].
pub struct Running {
    env: Env,
    _plane: Option<Box<ControlPlane>>,
}

impl std::ops::Deref for Running {
    type Target = Env;
    fn deref(&self) -> &Env {
        &self.env
    }
}

impl Running {
    pub async fn stop(self) {
        self.env.stop().await;
    }

    /// The admin client of the API server.
    pub fn client(&self) -> &Client {
        &self.env.client
    }
}

/// The controller for `cluster` on a new API server of kind `server`, the CRD installed.
pub async fn start(
    server: ApiServer,
    cluster: &str,
    iam: Arc<dyn IamApi>,
    eks: Arc<dyn EksApi>,
    tune: impl FnOnce(&mut Settings),
) -> Running {
    match server {
        ApiServer::Kubesim => {
            let kube = KubeSim::new();
            let client = kube.client();
            install_crd(&client).await;
            Running {
                env: Env::start_on(client, Some(kube), NS, cluster, iam, eks, tune).await,
                _plane: None,
            }
        }
        ApiServer::Real => {
            let plane = ControlPlane::start(Default::default())
                .await
                .unwrap_or_else(|e| panic!("the real control plane did not start: {e}"));
            let client = plane.admin_client().await.expect("admin client");
            install_crd(&client).await;
            served(&client).await;
            let env = Env::start_on(client, None, NS, cluster, iam, eks, |s| {
                tune(s);
                s.namespace = None;
            })
            .await;
            Running {
                env,
                _plane: Some(Box::new(plane)),
            }
        }
    }
}

/// Waits until the real API server serves the CRD's resource (it is not served the
/// moment the CRD is created, until it is Established).
pub async fn served(client: &Client) {
    let bindings: Api<PodIdentityBinding> = Api::all(client.clone());
    let deadline = Instant::now() + WAIT;
    while let Err(e) = bindings.list(&ListParams::default().limit(1)).await {
        assert!(Instant::now() < deadline, "the CRD is never served: {e}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `both!(kubesim_test, real_apiserver_test, body)`: two tests running `body(server)`,
/// one on kubesim and one on a real API server.
#[macro_export]
macro_rules! both {
    ($on_kubesim:ident, $on_real:ident, $body:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $on_kubesim() {
            $body($crate::support::apiserver::ApiServer::Kubesim).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $on_real() {
            $body($crate::support::apiserver::ApiServer::Real).await;
        }
    };
}
