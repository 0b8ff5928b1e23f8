//! The test venv and the wire-protocol AWS servers in it: moto (IAM) and ministack (EKS
//! Pod Identity, IAM), run from the Python venv that `bash scripts/install-test-servers`
//! makes at the versions pinned in `tests/servers/requirements.txt`. Every test that
//! runs moto or ministack, or another tool of the venv, finds it here; a missing server
//! or tool fails the test with the install command, never skips it.
//!
//! A test takes a [`Lease`] on a server of one kind: an idle one from this process's
//! pool, reset to empty, or a new one started on a free 127.0.0.1 port. Dropping the
//! lease returns the server to the pool, so tests running in parallel never share a
//! server while they use it. Servers are stopped when the lease is dropped for good (a
//! failed reset) or, for pooled ones, when the test process exits: each server watches
//! a pipe from this process and terminates itself when the pipe closes.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The account both servers put their resources in, so ARNs from one are valid on the
/// other.
pub const ACCOUNT_ID: &str = "111122223333";

/// How long a server may take to answer after it was started.
const READY_TIMEOUT: Duration = Duration::from_secs(90);
pub const INSTALL: &str = "bash scripts/install-test-servers";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Moto,
    Ministack,
}

impl Kind {
    fn ready_path(self) -> &'static str {
        match self {
            Kind::Moto => "/moto-api/",
            Kind::Ministack => "/_ministack/ready",
        }
    }

    fn reset_path(self) -> &'static str {
        match self {
            Kind::Moto => "/moto-api/reset",
            Kind::Ministack => "/_ministack/reset",
        }
    }

    fn pool(self) -> &'static Mutex<Vec<Process>> {
        static MOTO: Mutex<Vec<Process>> = Mutex::new(Vec::new());
        static MINISTACK: Mutex<Vec<Process>> = Mutex::new(Vec::new());
        match self {
            Kind::Moto => &MOTO,
            Kind::Ministack => &MINISTACK,
        }
    }

    fn command(self, venv: &std::path::Path, port: u16) -> Command {
        let port = port.to_string();
        // The shell keeps the pipe on fd 3 in a watcher that ends the server (which
        // takes over the shell's pid through `exec`) when this process goes away.
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(r#"exec 3<&0; (cat <&3 >/dev/null; kill $$ 2>/dev/null) & exec "$@" </dev/null"#)
            .arg("sh");
        match self {
            Kind::Moto => {
                cmd.arg(venv.join("bin/moto_server"))
                    .args(["-H", "127.0.0.1", "-p", &port])
                    .env("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
                    .env("MOTO_ACCOUNT_ID", ACCOUNT_ID);
            }
            Kind::Ministack => {
                cmd.arg(venv.join("bin/ministack"))
                    .env("GATEWAY_PORT", &port)
                    .env("BIND_HOST", "127.0.0.1")
                    .env("MINISTACK_ACCOUNT_ID", ACCOUNT_ID)
                    // No MQTT listener on 8883 next to the API.
                    .env("IOT_MTLS_ENABLED", "0");
            }
        }
        cmd
    }
}

/// The test venv's folder: `$PIO_TEST_VENV`, else `<crate>/.venv`; not checked.
pub fn venv_dir() -> PathBuf {
    std::env::var_os("PIO_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv"))
}

/// The file `rel` of the test venv (`bin/python`, say). Panics, naming the install
/// command, when it is not there.
pub fn venv_file(rel: &str) -> PathBuf {
    let dir = venv_dir();
    let file = dir.join(rel);
    assert!(
        file.is_file(),
        "the test venv {} has no {rel}: run `{INSTALL}` (or set PIO_TEST_VENV to a venv made \
         by it)",
        dir.display()
    );
    file
}

/// The venv holding the servers: `$PIO_TEST_VENV`, else `<crate>/.venv`. Panics, naming
/// the install command, when the servers are not there.
pub fn venv() -> PathBuf {
    let dir = venv_dir();
    for bin in ["bin/moto_server", "bin/ministack"] {
        assert!(
            dir.join(bin).is_file(),
            "test server {} is missing: run `{INSTALL}` (or set PIO_TEST_VENV to a venv \
             made by it)",
            dir.join(bin).display()
        );
    }
    dir
}

/// One running server process.
pub struct Process {
    kind: Kind,
    child: Child,
    port: u16,
    log: tempfile::NamedTempFile,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Process {
    async fn start(kind: Kind) -> Process {
        let venv = venv();
        let mut last_failure = String::new();
        // A free port can be taken by someone else before the server binds it; a few
        // attempts cover that.
        for _ in 0..3 {
            let port = free_port();
            let log = tempfile::NamedTempFile::new().expect("temp file for server log");
            let child = kind
                .command(&venv, port)
                .stdin(Stdio::piped())
                .stdout(log.reopen().expect("reopen log"))
                .stderr(log.reopen().expect("reopen log"))
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {kind:?} ({e}); run `{INSTALL}`"));
            let mut process = Process {
                kind,
                child,
                port,
                log,
            };
            match process.wait_ready().await {
                Ok(()) => return process,
                Err(failure) => last_failure = failure,
            }
        }
        panic!("{kind:?} did not start: {last_failure}");
    }

    async fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("exited with {status}: {}", self.log_text()));
            }
            // The log line proves this process holds the port: another server that
            // took the port first would answer the readiness check too.
            let bound = format!("Running on http://127.0.0.1:{}", self.port);
            if self.log_text().contains(&bound)
                && http(self.port, "GET", self.kind.ready_path(), "").await == Ok(200)
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "not ready after {READY_TIMEOUT:?}: {}",
                    self.log_text()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    async fn reset(&mut self) -> bool {
        let alive = matches!(self.child.try_wait(), Ok(None));
        let reset = alive && http(self.port, "POST", self.kind.reset_path(), "").await == Ok(200);
        match self.kind {
            // Authentication off again, as it starts ("inf" calls before it applies).
            Kind::Moto => reset && set_moto_open_calls(self.port, "inf").await,
            Kind::Ministack => reset,
        }
    }
}

/// Exclusive use of one server, empty when handed out.
pub struct Lease {
    process: Option<Process>,
}

impl Lease {
    /// Makes a moto server check signatures and IAM permissions after `open_calls`
    /// more calls (which can set up users, keys and policies).
    pub async fn enforce_moto_auth(&self, open_calls: u32) {
        let process = self.process.as_ref().expect("lease holds a process");
        assert_eq!(process.kind, Kind::Moto, "only moto checks permissions");
        assert!(
            set_moto_open_calls(process.port, &open_calls.to_string()).await,
            "moto refused /moto-api/reset-auth"
        );
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port())
    }

    pub fn port(&self) -> u16 {
        self.process.as_ref().expect("lease holds a process").port
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(process) = self.process.take() {
            let kind = process.kind;
            if let Ok(mut pool) = kind.pool().lock() {
                pool.push(process);
            }
        }
    }
}

/// A server of `kind` for this test alone, with no state left from earlier tests.
pub async fn lease(kind: Kind) -> Lease {
    loop {
        let idle = kind.pool().lock().ok().and_then(|mut pool| pool.pop());
        match idle {
            Some(mut process) => {
                if process.reset().await {
                    return Lease {
                        process: Some(process),
                    };
                }
                // A server that cannot reset is dropped (killed) and another tried.
            }
            None => {
                return Lease {
                    process: Some(Process::start(kind).await),
                };
            }
        }
    }
}

/// Creates the EKS cluster `name` on the ministack `config` points at (set-up only: the
/// operator never creates one), with a role ARN in [`ACCOUNT_ID`].
pub async fn create_eks_cluster(config: &aws_config::SdkConfig, name: &str) {
    aws_sdk_eks::Client::new(config)
        .create_cluster()
        .name(name)
        .role_arn(format!("arn:aws:iam::{ACCOUNT_ID}:role/eks-cluster"))
        .resources_vpc_config(aws_sdk_eks::types::VpcConfigRequest::builder().build())
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateCluster on ministack: {e:?}"));
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

async fn set_moto_open_calls(port: u16, count: &str) -> bool {
    http(port, "POST", "/moto-api/reset-auth", count).await == Ok(200)
}

/// One HTTP/1.1 request; the status code of the answer.
async fn http(port: u16, method: &str, path: &str, body: &str) -> Result<u16, String> {
    let exchange = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| e.to_string())?;
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut answer = Vec::new();
        stream
            .read_to_end(&mut answer)
            .await
            .map_err(|e| e.to_string())?;
        let head = String::from_utf8_lossy(&answer);
        head.split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| format!("no HTTP status in {head:?}"))
    };
    tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .map_err(|_| "no answer within 30s".to_string())?
}
