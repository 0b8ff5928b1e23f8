//! A real Kubernetes control plane for the tests, envtest-style: etcd, kube-apiserver
//! and kube-controller-manager (garbage collector, namespace and ServiceAccount
//! controllers) as processes on free 127.0.0.1 ports, with certificates made at start,
//! an admin kubeconfig, and everything stopped and removed on drop.
//!
//! The binaries come from `KUBEBUILDER_ASSETS` when it is set (the envtest convention),
//! else from `$PIO_CONTROL_PLANE` (a folder), else from `scripts/build-control-plane`,
//! which builds the versions pinned in `tests/cluster/` once and then answers from its
//! cache.

#![allow(dead_code)]

use std::fmt::Write as _;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::Client;
use kube::api::Api;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

const READY_WITHIN: Duration = Duration::from_secs(120);

/// What to start.
#[derive(Clone, Debug)]
pub struct Options {
    /// kube-controller-manager with the garbage collector, namespace and ServiceAccount
    /// controllers, so ownerReference cascades and namespace deletion behave like a
    /// cluster.
    pub controller_manager: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            controller_manager: true,
        }
    }
}

/// Where the binaries are.
#[derive(Clone, Debug)]
pub struct Binaries {
    pub dir: PathBuf,
}

impl Binaries {
    /// `KUBEBUILDER_ASSETS`, `PIO_CONTROL_PLANE`, or what `scripts/build-control-plane`
    /// prints (building the pinned versions when they are not cached).
    pub fn locate() -> Result<Binaries, String> {
        for var in ["KUBEBUILDER_ASSETS", "PIO_CONTROL_PLANE"] {
            if let Some(dir) = std::env::var_os(var).filter(|v| !v.is_empty()) {
                return Binaries::check(PathBuf::from(dir), var);
            }
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/build-control-plane");
        let out = Command::new("bash")
            .arg(&script)
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
        if !out.status.success() {
            return Err(format!(
                "{} failed ({}): the real API server tests need its binaries (see its output above)",
                script.display(),
                out.status
            ));
        }
        let printed = String::from_utf8_lossy(&out.stdout);
        let dir = printed.lines().last().unwrap_or_default().trim().to_owned();
        Binaries::check(PathBuf::from(dir), "scripts/build-control-plane")
    }

    fn check(dir: PathBuf, source: &str) -> Result<Binaries, String> {
        for name in ["etcd", "kube-apiserver"] {
            if !dir.join(name).is_file() {
                return Err(format!(
                    "{source} names {}, which holds no {name}: run `bash scripts/build-control-plane`",
                    dir.display()
                ));
            }
        }
        Ok(Binaries { dir })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn has(&self, name: &str) -> bool {
        self.path(name).is_file()
    }
}

/// The certificate authority that signs the serving certificate and every client
/// certificate (users are the certificate's CN, groups its O).
struct Authority {
    issuer: Issuer<'static, KeyPair>,
}

impl Authority {
    fn new(dir: &Path) -> Result<Authority, String> {
        let key = KeyPair::generate().map_err(|e| format!("CA key: {e}"))?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
        params
            .distinguished_name
            .push(DnType::CommonName, "pod-identity-operator test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params
            .self_signed(&key)
            .map_err(|e| format!("CA certificate: {e}"))?;
        write(&dir.join("ca.crt"), &cert.pem())?;
        Ok(Authority {
            issuer: Issuer::new(params, key),
        })
    }

    /// Writes `<stem>.crt` and `<stem>.key` into `dir`.
    fn issue(
        &self,
        dir: &Path,
        stem: &str,
        common_name: &str,
        organization: Option<&str>,
        sans: Vec<String>,
        usage: ExtendedKeyUsagePurpose,
    ) -> Result<(PathBuf, PathBuf), String> {
        let key = KeyPair::generate().map_err(|e| format!("{stem} key: {e}"))?;
        let mut params = CertificateParams::new(sans).map_err(|e| e.to_string())?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        if let Some(o) = organization {
            params.distinguished_name.push(DnType::OrganizationName, o);
        }
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![usage];
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| format!("{stem} certificate: {e}"))?;
        let (crt, pem) = (
            dir.join(format!("{stem}.crt")),
            dir.join(format!("{stem}.key")),
        );
        write(&crt, &cert.pem())?;
        write(&pem, &key.serialize_pem())?;
        Ok((crt, pem))
    }
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("write {}: {e}", path.display()))
}

/// A port nothing listens on now (the OS's choice); a race with another process is
/// caught when the server fails to bind, and the start is retried.
fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free 127.0.0.1 port: {e}"))
}

struct Process {
    name: &'static str,
    args: Vec<String>,
    child: Option<Child>,
    log: PathBuf,
}

impl Process {
    fn spawn(
        binaries: &Binaries,
        name: &'static str,
        args: Vec<String>,
        dir: &Path,
    ) -> Result<Process, String> {
        let mut p = Process {
            name,
            args,
            child: None,
            log: dir.join(format!("{name}.log")),
        };
        p.start(binaries)?;
        Ok(p)
    }

    fn start(&mut self, binaries: &Binaries) -> Result<(), String> {
        let bin = binaries.path(self.name);
        if !bin.is_file() {
            return Err(format!("no {} in {}", self.name, binaries.dir.display()));
        }
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("open {}: {e}", self.log.display()))?;
        let err = log
            .try_clone()
            .map_err(|e| format!("{}: {e}", self.log.display()))?;
        let child = Command::new(&bin)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILL, and reaped.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// An error when the process has exited, with the end of its log.
    fn check_running(&mut self) -> Result<(), String> {
        let Some(child) = self.child.as_mut() else {
            return Err(format!("{} is not running", self.name));
        };
        match child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!(
                "{} exited ({status}); the end of {}:\n{}",
                self.name,
                self.log.display(),
                tail(&self.log, 25)
            )),
            Err(e) => Err(format!("{}: {e}", self.name)),
        }
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

fn record_test() {
    let Some(log) = std::env::var_os("PIO_REAL_APISERVER_LOG") else {
        return;
    };
    let binary = std::env::args()
        .next()
        .map(PathBuf::from)
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .map(|s| {
            s.rsplit_once('-')
                .map_or(s.clone(), |(name, _hash)| name.to_owned())
        })
        .unwrap_or_default();
    let test = std::thread::current().name().unwrap_or("?").to_owned();
    if let Ok(mut file) = File::options().create(true).append(true).open(log) {
        let _ = writeln!(file, "{binary} {test}");
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A running control plane. Dropping it kills its processes and removes its folder
/// (unless [`ControlPlane::detach`] was called).
pub struct ControlPlane {
    binaries: Binaries,
    dir: PathBuf,
    keep_dir: bool,
    authority: Authority,
    etcd: Process,
    apiserver: Process,
    controller_manager: Option<Process>,
    controller_manager_restarts: usize,
    apiserver_port: u16,
    admin: PathBuf,
}

impl ControlPlane {
    /// Starts one in a new temporary folder. With `PIO_REAL_APISERVER_LOG` set, the
    /// test binary and test (the thread's name) are appended to that file first, so a
    /// run can say which tests a real API server judged.
    pub async fn start(options: Options) -> Result<ControlPlane, String> {
        record_test();
        let binaries = Binaries::locate()?;
        let dir = std::env::temp_dir().join(format!(
            "pio-cluster-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        ControlPlane::start_in(binaries, dir, false, options).await
    }

    /// Starts one in `dir` (made if missing); `keep_dir` leaves the folder on drop.
    pub async fn start_in(
        binaries: Binaries,
        dir: PathBuf,
        keep_dir: bool,
        options: Options,
    ) -> Result<ControlPlane, String> {
        let mut last = String::new();
        for _ in 0..3 {
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
            match ControlPlane::try_start(&binaries, &dir, keep_dir, &options).await {
                Ok(plane) => return Ok(plane),
                Err(e) if e.contains("address already in use") => last = e,
                Err(e) => {
                    if !keep_dir {
                        let _ = std::fs::remove_dir_all(&dir);
                    }
                    return Err(e);
                }
            }
        }
        Err(format!("every port tried was taken: {last}"))
    }

    async fn try_start(
        binaries: &Binaries,
        dir: &Path,
        keep_dir: bool,
        options: &Options,
    ) -> Result<ControlPlane, String> {
        let authority = Authority::new(dir)?;
        let (serving_crt, serving_key) = authority.issue(
            dir,
            "apiserver",
            "kube-apiserver",
            None,
            vec!["localhost".into(), "127.0.0.1".into(), "10.0.0.1".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
        )?;
        let (sa_key, sa_pub) = (
            dir.join("service-account.key"),
            dir.join("service-account.pub"),
        );
        let sa = KeyPair::generate().map_err(|e| format!("service account key: {e}"))?;
        write(&sa_key, &sa.serialize_pem())?;
        write(&sa_pub, &sa.public_key_pem())?;

        let (etcd_port, peer_port, apiserver_port) = (free_port()?, free_port()?, free_port()?);
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let etcd_args = vec![
            format!("--data-dir={}", dir.join("etcd").display()),
            format!("--listen-client-urls={etcd_url}"),
            format!("--advertise-client-urls={etcd_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=default={peer_url}"),
            "--unsafe-no-fsync=true".into(),
            "--log-level=warn".into(),
        ];
        let mut etcd = Process::spawn(binaries, "etcd", etcd_args, dir)?;
        wait_for("etcd", READY_WITHIN, &mut [&mut etcd], || {
            etcd_healthy(etcd_port)
        })
        .await?;

        let d = |name: &str| dir.join(name).display().to_string();
        let apiserver_args = vec![
            format!("--etcd-servers={etcd_url}"),
            "--bind-address=127.0.0.1".into(),
            // Without a default route the apiserver finds no address to advertise.
            "--advertise-address=127.0.0.1".into(),
            format!("--secure-port={apiserver_port}"),
            format!("--tls-cert-file={}", serving_crt.display()),
            format!("--tls-private-key-file={}", serving_key.display()),
            format!("--client-ca-file={}", d("ca.crt")),
            "--authorization-mode=RBAC".into(),
            "--service-cluster-ip-range=10.0.0.0/24".into(),
            format!("--service-account-issuer=https://127.0.0.1:{apiserver_port}"),
            format!("--service-account-key-file={}", sa_pub.display()),
            format!("--service-account-signing-key-file={}", sa_key.display()),
            "--disable-admission-plugins=ServiceAccount".into(),
            "--allow-privileged=true".into(),
            // As on clusters that guard ownerReferences: setting blockOwnerDeletion needs
            // update on the owner's finalizers, which config/rbac/ grants.
            "--enable-admission-plugins=OwnerReferencesPermissionEnforcement".into(),
            // The "kubernetes" Endpoints would carry a loopback address.
            "--endpoint-reconciler-type=none".into(),
        ];
        let apiserver = Process::spawn(binaries, "kube-apiserver", apiserver_args, dir)?;

        let (admin_crt, admin_key) = authority.issue(
            dir,
            "admin",
            "admin",
            Some("system:masters"),
            vec![],
            ExtendedKeyUsagePurpose::ClientAuth,
        )?;
        let admin = dir.join("admin.kubeconfig");
        write(
            &admin,
            &kubeconfig(
                apiserver_port,
                &dir.join("ca.crt"),
                &admin_crt,
                &admin_key,
                "admin",
            ),
        )?;
        let mut plane = ControlPlane {
            binaries: binaries.clone(),
            dir: dir.to_owned(),
            keep_dir,
            authority,
            etcd,
            apiserver,
            controller_manager: None,
            controller_manager_restarts: 0,
            apiserver_port,
            admin,
        };
        plane.wait_apiserver_ready().await?;

        if options.controller_manager && binaries.has("kube-controller-manager") {
            let kcm_port = free_port()?;
            let admin = plane.admin.display().to_string();
            let args = vec![
                format!("--kubeconfig={admin}"),
                format!("--authentication-kubeconfig={admin}"),
                format!("--authorization-kubeconfig={admin}"),
                "--controllers=garbagecollector,namespace,serviceaccount,serviceaccount-token"
                    .into(),
                "--leader-elect=false".into(),
                "--bind-address=127.0.0.1".into(),
                format!("--secure-port={kcm_port}"),
                "--use-service-account-credentials=false".into(),
                format!("--service-account-private-key-file={}", sa_key.display()),
                format!("--root-ca-file={}", d("ca.crt")),
                "--concurrent-gc-syncs=5".into(),
            ];
            plane.controller_manager = Some(Process::spawn(
                binaries,
                "kube-controller-manager",
                args,
                dir,
            )?);
            plane.wait_controller_manager_ready().await?;
        } else if options.controller_manager {
            // An envtest folder (KUBEBUILDER_ASSETS) carries none.
            eprintln!(
                "no kube-controller-manager in {}: the control plane runs without it, so \
                 ownerReference cascades and namespace deletion do not happen",
                binaries.dir.display()
            );
        }
        Ok(plane)
    }

    async fn wait_apiserver_ready(&mut self) -> Result<(), String> {
        let client = self.admin_client().await?;
        let apiserver = &mut self.apiserver;
        let etcd = &mut self.etcd;
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            apiserver.check_running()?;
            etcd.check_running()?;
            let ready = client
                .request_text(
                    http::Request::get("/readyz")
                        .body(Vec::new())
                        .map_err(|e| e.to_string())?,
                )
                .await
                .is_ok_and(|t| t.trim() == "ok");
            // Like Kubernetes' own test server: ready once namespace default exists.
            if ready
                && Api::<Namespace>::all(client.clone())
                    .get_opt("default")
                    .await
                    .is_ok_and(|n| n.is_some())
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "kube-apiserver not ready within {READY_WITHIN:?}; the end of its log:\n{}",
                    tail(&apiserver.log, 25)
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Ready once the ServiceAccount controller has made `default/default`.
    async fn wait_controller_manager_ready(&mut self) -> Result<(), String> {
        let client = self.admin_client().await?;
        let accounts: Api<ServiceAccount> = Api::namespaced(client, "default");
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Some(kcm) = self.controller_manager.as_mut() {
                kcm.check_running()?;
            }
            if accounts.get_opt("default").await.is_ok_and(|a| a.is_some()) {
                return Ok(());
            }
            if Instant::now() > deadline {
                let log = self
                    .controller_manager
                    .as_ref()
                    .map(|p| tail(&p.log, 25))
                    .unwrap_or_default();
                return Err(format!(
                    "kube-controller-manager made no default ServiceAccount within {READY_WITHIN:?}; the end of its log:\n{log}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The admin kubeconfig (a client certificate in `system:masters`).
    pub fn kubeconfig(&self) -> &Path {
        &self.admin
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.apiserver_port)
    }

    /// A kube-rs client as the admin.
    pub async fn admin_client(&self) -> Result<Client, String> {
        client_from(&self.admin).await
    }

    /// A kubeconfig for `user` (the certificate's CN) in `group` (its O), written as
    /// `<stem>.kubeconfig` into the control plane's folder. RBAC decides what it may do;
    /// `system:serviceaccount:<ns>:<name>` is matched by ServiceAccount subjects.
    pub fn kubeconfig_for(
        &self,
        stem: &str,
        user: &str,
        group: Option<&str>,
    ) -> Result<PathBuf, String> {
        let (crt, key) = self.authority.issue(
            &self.dir,
            stem,
            user,
            group,
            vec![],
            ExtendedKeyUsagePurpose::ClientAuth,
        )?;
        let path = self.dir.join(format!("{stem}.kubeconfig"));
        write(
            &path,
            &kubeconfig(
                self.apiserver_port,
                &self.dir.join("ca.crt"),
                &crt,
                &key,
                stem,
            ),
        )?;
        Ok(path)
    }

    /// Kills kube-apiserver (SIGKILL: every watch breaks) and returns once it is gone.
    pub fn kill_apiserver(&mut self) {
        self.apiserver.kill();
    }

    /// Starts kube-apiserver again on the same port and etcd, and waits until it is ready.
    /// kube-controller-manager gives up when kube-apiserver stays away too long at the
    /// wrong moment (it exits rather than retry); one that exited is started again, so
    /// the garbage collector keeps running, and its exit is said on stderr.
    pub async fn start_apiserver(&mut self) -> Result<(), String> {
        let binaries = self.binaries.clone();
        self.apiserver.start(&binaries)?;
        self.wait_apiserver_ready().await?;
        if let Some(kcm) = self.controller_manager.as_mut()
            && let Err(exited) = kcm.check_running()
        {
            eprintln!("{exited}\nstarting kube-controller-manager again");
            kcm.start(&binaries)?;
            self.controller_manager_restarts += 1;
        }
        Ok(())
    }

    /// How many times [`start_apiserver`](Self::start_apiserver) found
    /// kube-controller-manager exited and started it again.
    pub fn controller_manager_restarts(&self) -> usize {
        self.controller_manager_restarts
    }

    /// Leaves the processes running and the folder in place when this value is
    /// dropped; returns `(name, pid)` of each process (for `scripts/test-cluster down`).
    pub fn detach(mut self) -> Vec<(&'static str, u32)> {
        let mut pids = Vec::new();
        for p in [
            Some(&mut self.etcd),
            Some(&mut self.apiserver),
            self.controller_manager.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            if let (Some(pid), Some(_child)) = (p.pid(), p.child.take()) {
                pids.push((p.name, pid));
            }
        }
        self.keep_dir = true;
        pids
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if let Some(kcm) = self.controller_manager.as_mut() {
            kcm.kill();
        }
        self.apiserver.kill();
        self.etcd.kill();
        if !self.keep_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Waits until `ready` holds, failing early (with its log) when a process exits, and
/// naming the port when the log says it was taken.
async fn wait_for(
    what: &str,
    within: Duration,
    processes: &mut [&mut Process],
    mut ready: impl FnMut() -> bool,
) -> Result<(), String> {
    let deadline = Instant::now() + within;
    loop {
        for p in processes.iter_mut() {
            p.check_running()?;
        }
        if ready() {
            return Ok(());
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = processes.iter().map(|p| tail(&p.log, 25)).collect();
            return Err(format!(
                "{what} not ready within {within:?}:\n{}",
                logs.join("\n")
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn etcd_healthy(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.contains("\"health\":\"true\"")
}

fn kubeconfig(port: u16, ca: &Path, crt: &Path, key: &Path, user: &str) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: https://127.0.0.1:{port}
    certificate-authority: {ca}
users:
- name: {user}
  user:
    client-certificate: {crt}
    client-key: {key}
contexts:
- name: {user}
  context:
    cluster: test
    user: {user}
current-context: {user}
",
        ca = ca.display(),
        crt = crt.display(),
        key = key.display(),
    );
    s
}

/// A kube-rs client from a kubeconfig file (TLS needs a process-wide rustls provider).
pub async fn client_from(path: &Path) -> Result<Client, String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kubeconfig = kube::config::Kubeconfig::read_from(path)
        .map_err(|e| format!("read {}: {e}", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Client::try_from(config).map_err(|e| format!("client for {}: {e}", path.display()))
}

/// The user `config/rbac/` binds: the operator's ServiceAccount, as the API server names
/// it (a client certificate with this CN is matched by ServiceAccount subjects).
pub const OPERATOR_USER: &str = "system:serviceaccount:pod-identity-system:pod-identity-operator";

/// Installs what the operator needs as the README says, with kubectl as the admin: the
/// CRD (waited Established), the operator's namespace and `config/rbac/` in it. Returns
/// a kubeconfig for [`OPERATOR_USER`], who may do only what `config/rbac/` grants.
pub fn install_operator_identity(plane: &ControlPlane) -> PathBuf {
    let root = env!("CARGO_MANIFEST_DIR");
    let crd = format!("{root}/crds/podidentitybindings.yaml");
    let namespace = format!("{root}/config/default/namespace.yaml");
    let rbac = format!("{root}/config/rbac");
    let steps: [&[&str]; 4] = [
        &["apply", "-f", &crd],
        &[
            "wait",
            "--for=condition=Established",
            "crd/podidentitybindings.podidentity.dev",
        ],
        &["apply", "-f", &namespace],
        &["apply", "-n", "pod-identity-system", "-k", &rbac],
    ];
    for args in steps {
        let out = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(plane.kubeconfig())
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("kubectl runs (install the kubectl client): {e}"));
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    plane
        .kubeconfig_for("operator", OPERATOR_USER, None)
        .unwrap_or_else(|e| panic!("operator kubeconfig: {e}"))
}
