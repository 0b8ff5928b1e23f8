//! Serving over TCP on loopback, the kubeconfig that points at it, graceful shutdown.

use std::net::SocketAddr;
use std::path::Path;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::KubeSim;

/// A running TCP server. Dropping it stops the server as [`ServerHandle::shutdown`] does,
/// without waiting for in-flight requests. Open watches end either way (also those of
/// in-process clients of the same [`KubeSim`], which simply re-watch).
pub struct ServerHandle {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
    sim: KubeSim,
}

/// A kubeconfig (YAML) whose only context points at `url` with namespace `default`.
pub fn kubeconfig_yaml(url: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: kubesim
  cluster:
    server: {url}
users:
- name: kubesim
  user: {{}}
contexts:
- name: kubesim
  context:
    cluster: kubesim
    user: kubesim
    namespace: default
current-context: kubesim
preferences: {{}}
"
    )
}

pub(crate) async fn serve_tcp(sim: KubeSim, addr: SocketAddr) -> crate::Result<ServerHandle> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let router = sim.router();
    let task = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await
    });
    Ok(ServerHandle {
        addr,
        stop: Some(stop),
        task: Some(task),
        sim,
    })
}

impl ServerHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn kubeconfig(&self) -> String {
        kubeconfig_yaml(&self.url())
    }

    pub fn write_kubeconfig(&self, path: &Path) -> crate::Result<()> {
        std::fs::write(path, self.kubeconfig())?;
        Ok(())
    }

    /// A client that talks to this server over TCP through the kubeconfig.
    pub async fn client(&self) -> crate::Result<kube::Client> {
        // both rustls providers are linked (kube uses ring, the AWS SDK aws-lc-rs), so one
        // must be chosen; an already installed provider is fine
        let _ = rustls::crypto::ring::default_provider().install_default();
        let kubeconfig =
            kube::config::Kubeconfig::from_yaml(&self.kubeconfig()).map_err(kube::Error::from)?;
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .map_err(kube::Error::from)?;
        Ok(kube::Client::try_from(config)?)
    }

    /// Ends open watches, stops accepting, and waits for in-flight requests.
    pub async fn shutdown(mut self) {
        self.stop_now();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    fn stop_now(&mut self) {
        if let Some(stop) = self.stop.take() {
            self.sim.faults().drop_watches();
            let _ = stop.send(());
        }
    }

    /// Serves until `signal` completes, then shuts down (for a `main`: pass Ctrl-C).
    pub async fn serve_until(self, signal: impl std::future::Future<Output = ()>) {
        signal.await;
        self.shutdown().await;
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop_now();
    }
}
