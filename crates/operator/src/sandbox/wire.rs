//! Wire mode of the sandbox (`sandbox --wire`): instead of the in-memory simulator, IAM
//! is moto and EKS is ministack, both started from the test venv (the one
//! `bash scripts/install-test-servers` makes) on free 127.0.0.1 ports, and the operator
//! talks to them through the same SDK adapters it uses against AWS. The account holds
//! what the examples expect (the `billing-api` role, the Load Balancer Controller's
//! customer-managed policy) and the EKS cluster [`super::CLUSTER`].
//!
//! The venv is `$PIO_TEST_VENV`, else `./.venv`, else the `.venv` of the source tree
//! the binary was built from. The inventory is read through the AWS APIs (ListRoles,
//! GetRole, the role's policies; ListPodIdentityAssociations, Describe...), as a script
//! against AWS would.
//!
//! The servers end with the sandbox: they are killed when it stops, and each watches a
//! pipe from the sandbox and ends itself when the pipe closes (a sandbox killed with
//! SIGKILL leaves none behind).
//!
//! Not implemented: failure injection (the simulator's knobs), and an endpoint the
//! operator binary could be pointed at for both services (moto and ministack are two).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, ChildStdin, Command};

use crate::aws::eks::SdkEks;
use crate::aws::iam::SdkIam;
use crate::aws::local::LocalAccount;
use crate::aws::sim::{Inventory, RoleInventory};
use crate::aws::{EksApi, IamApi};
use crate::{Error, Result};

use super::{ACCOUNT_ID, CLUSTER, EXISTING_POLICIES, REGION};

/// The command that makes the venv.
pub const INSTALL: &str = "bash scripts/install-test-servers";
const SERVERS: [&str; 2] = ["bin/moto_server", "bin/ministack"];
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// The venv to take the servers from: the first of `candidates` holding both, or an
/// error naming the install command.
pub fn pick_venv(candidates: &[PathBuf]) -> Result<PathBuf> {
    if let Some(found) = candidates
        .iter()
        .find(|dir| SERVERS.iter().all(|bin| dir.join(bin).is_file()))
    {
        return Ok(found.clone());
    }
    let looked: Vec<String> = candidates.iter().map(|d| d.display().to_string()).collect();
    Err(Error::LocalServer(format!(
        "--wire needs moto and ministack from the test venv, found in none of {}: run `{INSTALL}` in the source tree (or set PIO_TEST_VENV to a venv made by it)",
        looked.join(", ")
    )))
}

/// `$PIO_TEST_VENV` when set (and then only it), else `./.venv`, else the build tree's.
pub fn venv_candidates(env: Option<PathBuf>) -> Vec<PathBuf> {
    match env {
        Some(dir) => vec![dir],
        None => vec![
            PathBuf::from(".venv"),
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv"),
        ],
    }
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Moto,
    Ministack,
}

/// One server process; killed on drop.
struct Server {
    child: Child,
    // Held open: the server's watcher ends it when this closes.
    _lifeline: Option<ChildStdin>,
    port: u16,
    stderr_tail: Arc<Mutex<VecDeque<u8>>>,
}

impl Server {
    /// A server on a free port; a few attempts, since the port can be taken by someone
    /// else between picking it and the server binding it.
    async fn start(kind: Kind, venv: &Path) -> Result<Server> {
        let mut failure = None;
        for _ in 0..3 {
            match Server::start_once(kind, venv).await {
                Ok(server) => return Ok(server),
                Err(e) => failure = Some(e),
            }
        }
        Err(failure.unwrap_or_else(|| Error::LocalServer(format!("{kind:?} did not start"))))
    }

    async fn start_once(kind: Kind, venv: &Path) -> Result<Server> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut cmd = Command::new("sh");
        // The shell keeps our pipe on fd 3 in a watcher that ends the server (which
        // takes over the shell's pid through `exec`) when the sandbox goes away.
        cmd.arg("-c")
            .arg(r#"exec 3<&0; (cat <&3 >/dev/null; kill $$ 2>/dev/null) & exec "$@" </dev/null"#)
            .arg("sh");
        let p = port.to_string();
        match kind {
            Kind::Moto => {
                cmd.arg(venv.join("bin/moto_server"))
                    .args(["-H", "127.0.0.1", "-p", &p])
                    .env("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
                    .env("MOTO_ACCOUNT_ID", ACCOUNT_ID);
            }
            Kind::Ministack => {
                cmd.arg(venv.join("bin/ministack"))
                    .env("GATEWAY_PORT", &p)
                    .env("BIND_HOST", "127.0.0.1")
                    .env("MINISTACK_ACCOUNT_ID", ACCOUNT_ID)
                    .env("IOT_MTLS_ENABLED", "0");
            }
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                Error::LocalServer(format!("cannot start {kind:?}: {e}; run `{INSTALL}`"))
            })?;
        // Drained, or a chatty server would block on a full pipe; the tail explains a
        // failed start.
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(mut err) = child.stderr.take() {
            let tail = stderr_tail.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = err.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let mut t = tail.lock().unwrap_or_else(|e| e.into_inner());
                    t.extend(&buf[..n]);
                    let excess = t.len().saturating_sub(4096);
                    t.drain(..excess);
                }
            });
        }
        let mut server = Server {
            _lifeline: child.stdin.take(),
            child,
            port,
            stderr_tail,
        };
        server.wait_ready(kind).await?;
        Ok(server)
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn tail(&self) -> String {
        let t = self.stderr_tail.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&t.iter().copied().collect::<Vec<u8>>()).into_owned()
    }

    async fn wait_ready(&mut self, kind: Kind) -> Result<()> {
        let path = match kind {
            Kind::Moto => "/moto-api/",
            Kind::Ministack => "/_ministack/ready",
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(Error::LocalServer(format!(
                    "{kind:?} exited ({status}): {}",
                    self.tail()
                )));
            }
            if http_status(self.port, path).await == Some(200) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::LocalServer(format!(
                    "{kind:?} not ready after {READY_TIMEOUT:?}: {}",
                    self.tail()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The status code of `GET path`, or `None` when nothing answers.
async fn http_status(port: u16, path: &str) -> Option<u16> {
    let exchange = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.ok()?;
        String::from_utf8_lossy(&answer)
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .ok()
        .flatten()
}

/// moto and ministack running, with the sandbox's account set up in them.
pub struct WireAws {
    pub iam: Arc<SdkIam>,
    pub eks: Arc<SdkEks>,
    moto: Server,
    ministack: Server,
}

impl WireAws {
    /// Starts both servers from `venv` and creates the cluster, the existing role and
    /// the customer-managed policies the examples use.
    pub async fn start(venv: &Path) -> Result<WireAws> {
        let (moto, ministack) = tokio::join!(
            Server::start(Kind::Moto, venv),
            Server::start(Kind::Ministack, venv)
        );
        let (moto, ministack) = (moto?, ministack?);
        let account =
            LocalAccount::connect(&moto.url(), &ministack.url(), REGION, "AKIASANDBOXLOCAL").await;
        account
            .create_cluster(
                CLUSTER,
                &format!("arn:aws:iam::{ACCOUNT_ID}:role/eks-cluster"),
            )
            .await?;
        for arn in EXISTING_POLICIES {
            let name = arn.rsplit('/').next().unwrap_or(arn);
            let document = serde_json::json!({"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": "elasticloadbalancing:Describe*", "Resource": "*"}]});
            account.create_policy(name, &document).await?;
        }
        super::create_existing_roles(account.iam.as_ref()).await?;
        Ok(WireAws {
            iam: account.iam,
            eks: account.eks,
            moto,
            ministack,
        })
    }

    pub fn iam_url(&self) -> String {
        self.moto.url()
    }

    pub fn eks_url(&self) -> String {
        self.ministack.url()
    }

    /// What the account holds, read through the IAM and EKS APIs.
    pub async fn inventory(&self) -> Result<Inventory> {
        read_inventory(self.iam.as_ref(), self.eks.as_ref(), CLUSTER, None).await
    }
}

/// An account's roles (all, or those under `path_prefix`) with their policies, the
/// cluster, and its Pod Identity associations, read through the IAM and EKS APIs.
pub async fn read_inventory(
    iam: &dyn IamApi,
    eks: &dyn EksApi,
    cluster: &str,
    path_prefix: Option<&str>,
) -> Result<Inventory> {
    let mut names: Vec<String> = iam
        .list_roles(path_prefix.unwrap_or("/"))
        .await?
        .into_iter()
        .map(|r| r.name)
        .collect();
    names.sort();
    let mut roles = Vec::new();
    for name in names {
        // A role deleted since the listing is simply not there any more.
        let Some(role) = iam.get_role(&name).await? else {
            continue;
        };
        let mut attached_policy_arns: Vec<String> = iam
            .list_attached_role_policies(&name)
            .await?
            .into_iter()
            .map(|p| p.arn)
            .collect();
        attached_policy_arns.sort();
        let mut inline_policies = std::collections::BTreeMap::new();
        for policy in iam.list_role_policies(&name).await? {
            if let Some(doc) = iam.get_role_policy(&name, &policy).await? {
                inline_policies.insert(policy, doc);
            }
        }
        let instance_profiles = iam.list_instance_profiles_for_role(&name).await?;
        roles.push(RoleInventory {
            role,
            attached_policy_arns,
            inline_policies,
            instance_profiles,
        });
    }
    let clusters = eks.describe_cluster(cluster).await?.into_iter().collect();
    let mut associations = Vec::new();
    for summary in eks
        .list_pod_identity_associations(cluster, None, None)
        .await?
    {
        if let Some(a) = eks
            .describe_pod_identity_association(cluster, &summary.association_id)
            .await?
        {
            associations.push(a);
        }
    }
    associations.sort_by(|a, b| {
        (&a.namespace, &a.service_account).cmp(&(&b.namespace, &b.service_account))
    });
    Ok(Inventory {
        roles,
        clusters,
        associations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_venv_is_the_first_candidate_holding_both_servers() {
        let root = std::env::temp_dir().join(format!("pio-venv-{}", std::process::id()));
        let (empty, half, full) = (root.join("empty"), root.join("half"), root.join("full"));
        for dir in [&empty, &half, &full] {
            std::fs::create_dir_all(dir.join("bin")).expect("mkdir");
        }
        std::fs::write(half.join("bin/moto_server"), "").expect("write");
        for bin in SERVERS {
            std::fs::write(full.join(bin), "").expect("write");
        }
        let picked = pick_venv(&[empty.clone(), half.clone(), full.clone()]);
        let missing = pick_venv(&[empty.clone(), half.clone()]);
        let _ = std::fs::remove_dir_all(&root);
        assert_eq!(picked.expect("found"), full);
        let message = missing.expect_err("none holds both").to_string();
        assert!(message.contains(INSTALL), "{message}");
        assert!(message.contains(&half.display().to_string()), "{message}");

        assert_eq!(
            venv_candidates(Some(PathBuf::from("/v"))),
            [PathBuf::from("/v")]
        );
        let defaults = venv_candidates(None);
        assert_eq!(defaults[0], PathBuf::from(".venv"));
        assert!(defaults[1].ends_with(".venv") && defaults[1].is_absolute());
    }
}
