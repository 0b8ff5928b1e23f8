//! The README's main command as a newcomer runs it: the compiled binary's `sandbox` as a
//! process, the examples applied with `kubectl` (as kustomize does, and through
//! `--apply`), `kubectl wait` for every binding Ready, the AWS inventory read over
//! HTTP, and a clean exit on Ctrl-C (SIGINT) or SIGTERM.
//!
//! Needs the kubectl client.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pod_identity_operator::aws::sim::Inventory;
use pod_identity_operator::naming;
use pod_identity_operator::sandbox::{ACCOUNT_ID, CLUSTER, REGION};

use support::WAIT;
use support::kubectl::{kubectl, kubectl_command};

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");

/// The sandbox process, its stdout collected as it comes; killed if the test fails.
struct Sandbox {
    child: Child,
    stdout: Arc<Mutex<String>>,
}

impl Sandbox {
    fn start(dir: &Path, extra: &[&str]) -> Sandbox {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pod-identity-operator"))
            .arg("sandbox")
            .arg("--kubeconfig")
            .arg(dir.join("kubeconfig"))
            .args(["--inventory-addr", "127.0.0.1:0", "--view-interval", "1"])
            .args(extra)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the sandbox starts");
        let stdout = Arc::new(Mutex::new(String::new()));
        let pipe = child.stdout.take().expect("piped stdout");
        let sink = stdout.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut text = sink.lock().expect("stdout buffer");
                text.push_str(&line);
                text.push('\n');
            }
        });
        Sandbox { child, stdout }
    }

    fn output(&self) -> String {
        self.stdout.lock().expect("stdout buffer").clone()
    }

    /// Waits for a printed line starting with `label` and returns the rest of it.
    fn printed(&mut self, label: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(line) = self.output().lines().find(|l| l.trim().starts_with(label)) {
                return line.trim()[label.len()..].trim().to_owned();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("sandbox exited ({status}):\n{}", self.output());
            }
            assert!(
                Instant::now() < deadline,
                "sandbox never printed {label:?}:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_printed(&self, text: &str) {
        let deadline = Instant::now() + WAIT;
        while !self.output().contains(text) {
            assert!(
                Instant::now() < deadline,
                "sandbox never printed {text:?}:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends `signal` and waits for the exit status.
    fn stop(mut self, signal: &str) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args([signal, &pid])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill {signal} {pid}");
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("process state") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "sandbox did not stop on {signal}:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET` over plain HTTP/1.0; the body.
fn http_get(url: &str) -> String {
    let rest = url.strip_prefix("http://").expect("http URL");
    let (host, path) = rest.split_once('/').expect("URL with a path");
    let mut stream = std::net::TcpStream::connect(host).expect("connect");
    write!(stream, "GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n").expect("request");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("answer");
    let (head, body) = answer.split_once("\r\n\r\n").expect("HTTP answer");
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    body.to_owned()
}

fn kubectl_wait_all_ready(kubeconfig: &Path, sandbox: &Sandbox) {
    let waited = kubectl_command(kubeconfig)
        .args([
            "wait",
            "--for=condition=Ready",
            "pib",
            "--all",
            "-A",
            "--timeout=120s",
        ])
        .output()
        .expect("kubectl wait runs");
    assert!(
        waited.status.success(),
        "kubectl wait failed: {}\n{}\nsandbox output:\n{}",
        String::from_utf8_lossy(&waited.stderr),
        kubectl(kubeconfig, &["get", "pib", "-A"]),
        sandbox.output()
    );
}

/// What the examples must have made in the simulated account.
fn check_inventory(inv: &Inventory) {
    let cluster_arn = format!("arn:aws:eks:{REGION}:{ACCOUNT_ID}:cluster/{CLUSTER}");
    let managed = [
        ("kube-system", "aws-load-balancer-controller"),
        ("external-dns", "external-dns"),
        ("kube-system", "ebs-csi-controller"),
        ("analytics", "reporting"),
        ("media", "uploader"),
        ("shop", "checkout"),
    ];
    for (ns, name) in managed {
        let role = inv
            .role(&naming::default_role_name(&cluster_arn, ns, name))
            .unwrap_or_else(|| panic!("no role for {ns}/{name}: {inv:#?}"));
        assert!(naming::owned_by(&role.role.tags, &cluster_arn, ns, name));
    }
    let role = |ns, name| {
        inv.role(&naming::default_role_name(&cluster_arn, ns, name))
            .expect("role")
    };
    // The load balancer controller's role carries its preset: the controller's policy
    // rendered for the sandbox's cluster, inline, and nothing else.
    let lb = role("kube-system", "aws-load-balancer-controller");
    let preset = pod_identity_operator::presets::render(
        pod_identity_operator::presets::get("aws-load-balancer-controller").expect("preset"),
        &Default::default(),
        &pod_identity_operator::presets::Context::of_cluster_arn(&cluster_arn).expect("ARN"),
        "role.presets[0]",
    )
    .expect("renders");
    assert!(lb.attached_policy_arns.is_empty(), "{lb:#?}");
    assert_eq!(
        lb.inline_policies,
        preset.inline_policy.into_iter().collect()
    );
    let rendered = |name: &str, parameters: &[(&str, &str)]| {
        pod_identity_operator::presets::render(
            pod_identity_operator::presets::get(name).expect("preset"),
            &parameters
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            &pod_identity_operator::presets::Context::of_cluster_arn(&cluster_arn).expect("ARN"),
            "role.presets[0]",
        )
        .expect("renders")
    };
    let dns = role("external-dns", "external-dns");
    let preset = rendered(
        "external-dns",
        &[("hostedZoneIds", "Z0123456789ABCDEFGHIJ")],
    );
    assert!(dns.attached_policy_arns.is_empty(), "{dns:#?}");
    assert_eq!(
        dns.inline_policies,
        preset.inline_policy.into_iter().collect()
    );
    // The EBS CSI driver's preset: AWS's managed policy and nothing else.
    let ebs = role("kube-system", "ebs-csi-controller");
    assert_eq!(
        ebs.attached_policy_arns,
        ["arn:aws:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy"],
        "{ebs:#?}"
    );
    assert!(ebs.inline_policies.is_empty(), "{ebs:#?}");
    // The existing role is used, not changed and not made again.
    let existing = inv.role("billing-api").expect("the existing role stays");
    assert!(!naming::has_ownership_tags(&existing.role.tags));
    // Beside what the examples made: the wiring `audit` and `migrate` start from, on
    // the simulator.
    use pod_identity_operator::sandbox::legacy;
    let legacy_role = |name: &str| {
        name == legacy::ADDON_ROLE || legacy::IRSA.iter().any(|(_, role)| *role == name)
    };
    let roles = inv.roles.iter().filter(|r| !legacy_role(&r.role.name));
    assert_eq!(roles.count(), managed.len() + 1, "roles: {inv:#?}");
    let associations = inv.associations.iter().filter(|a| {
        a.namespace != legacy::NAMESPACE && a.service_account != "efs-csi-controller-sa"
    });
    assert_eq!(associations.count(), 7, "associations: {inv:#?}");
    let assoc = |ns, sa| {
        let found = inv.associations_for(ns, sa);
        assert_eq!(found.len(), 1, "associations of {ns}/{sa}");
        found[0]
    };
    assert_eq!(assoc("billing", "billing-api").role_arn, existing.role.arn);
    assert_eq!(
        assoc("analytics", "reporting").target_role_arn.as_deref(),
        Some("arn:aws:iam::444455556666:role/analytics-reader")
    );
    let uploader = assoc("media", "uploader");
    assert!(uploader.disable_session_tags && uploader.session_policy.is_some());
    assoc("shop", "checkout");
    assoc("kube-system", "aws-load-balancer-controller");
    assoc("external-dns", "external-dns");
    assoc("kube-system", "ebs-csi-controller-sa");
}

#[test]
fn the_sandbox_runs_the_examples_applied_with_kubectl_and_stops_on_ctrl_c() {
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = dir.path().join("kubeconfig");
    let mut sandbox = Sandbox::start(dir.path(), &[]);
    let inventory_url = sandbox.printed("AWS inventory (JSON):");
    assert!(
        sandbox
            .output()
            .contains(&format!("export KUBECONFIG={}", kubeconfig.display())),
        "{}",
        sandbox.output()
    );

    // The GitOps way (kustomize), as the README says.
    let applied = kubectl(&kubeconfig, &["apply", "-k", EXAMPLES]);
    assert!(
        applied.contains("podidentitybinding.podidentity.dev/checkout"),
        "{applied}"
    );
    kubectl_wait_all_ready(&kubeconfig, &sandbox);
    let table = kubectl(&kubeconfig, &["get", "pib", "-A"]);
    assert_eq!(
        table.lines().filter(|l| l.contains("Reconciled")).count(),
        7,
        "{table}"
    );

    let inv: Inventory = serde_json::from_str(&http_get(&inventory_url)).expect("inventory JSON");
    check_inventory(&inv);
    // The Helm-made ServiceAccount is left as Helm made it.
    let sa = kubectl(
        &kubeconfig,
        &["get", "sa", "checkout", "-n", "shop", "-o", "json"],
    );
    let sa: serde_json::Value = serde_json::from_str(&sa).expect("SA JSON");
    assert_eq!(
        sa["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "Helm"
    );
    assert!(sa["metadata"]["ownerReferences"].is_null(), "{sa}");

    // The live view caught up.
    sandbox.wait_printed("shop/checkout  sa=checkout  Ready=True Reconciled");
    sandbox.wait_printed("media/uploader => ");

    // `kubectl apply -f examples/` on top changes nothing and is accepted.
    kubectl(&kubeconfig, &["apply", "-f", EXAMPLES]);

    let status = sandbox.stop("-INT");
    assert!(status.success(), "exit status {status}");
}

#[test]
fn the_sandbox_applies_a_directory_itself_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = dir.path().join("kubeconfig");
    let mut sandbox = Sandbox::start(dir.path(), &["--apply", EXAMPLES, "--quiet"]);
    let inventory_url = sandbox.printed("AWS inventory (JSON):");
    sandbox.wait_printed("applied PodIdentityBinding media/uploader");
    kubectl_wait_all_ready(&kubeconfig, &sandbox);
    let inv: Inventory = serde_json::from_str(&http_get(&inventory_url)).expect("inventory JSON");
    check_inventory(&inv);
    assert!(
        !sandbox.output().contains("── bindings"),
        "--quiet printed a view"
    );
    let status = sandbox.stop("-TERM");
    assert!(status.success(), "exit status {status}");
}

/// Wire mode: moto (IAM) and ministack (EKS) from the test venv instead of the
/// simulator; the examples applied with `kubectl` become Ready, and the inventory read
/// through the AWS APIs shows what they made.
#[test]
fn the_sandbox_in_wire_mode_runs_the_examples_on_moto_and_ministack() {
    // The sandbox starts moto and ministack from the test venv: without them, fail here.
    support::aws_servers::venv();
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = dir.path().join("kubeconfig");
    let mut sandbox = Sandbox::start(dir.path(), &["--wire"]);
    let inventory_url = sandbox.printed("AWS inventory (JSON):");
    let moto = sandbox.printed("AWS endpoint (IAM, moto):");
    assert!(moto.starts_with("http://127.0.0.1:"), "{moto}");

    kubectl(&kubeconfig, &["apply", "-f", EXAMPLES]);
    kubectl_wait_all_ready(&kubeconfig, &sandbox);
    let inv: Inventory = serde_json::from_str(&http_get(&inventory_url)).expect("inventory JSON");
    check_inventory(&inv);
    sandbox.wait_printed("shop/checkout  sa=checkout  Ready=True Reconciled");
    sandbox.wait_printed("media/uploader => ");
    let ministack = sandbox.printed("AWS endpoint (EKS, ministack):");

    let status = sandbox.stop("-INT");
    assert!(status.success(), "exit status {status}");
    // The servers went with the sandbox.
    for url in [moto, ministack] {
        let addr = url.trim_start_matches("http://").to_owned();
        let deadline = Instant::now() + WAIT;
        while std::net::TcpStream::connect(&addr).is_ok() {
            assert!(Instant::now() < deadline, "{url} still answers");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn wire_mode_without_the_venv_says_how_to_install_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = Command::new(env!("CARGO_BIN_EXE_pod-identity-operator"))
        .args(["sandbox", "--quiet", "--wire", "--kubeconfig"])
        .arg(dir.path().join("kubeconfig"))
        .env("PIO_TEST_VENV", dir.path().join("no-venv"))
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .output()
        .expect("the sandbox runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("bash scripts/install-test-servers") && stderr.contains("no-venv"),
        "{stderr}"
    );
}

/// `--config FILE`: the sandbox runs under the user's guardrails. Under a file that
/// allows media's managed policy and session policy but not turning session tags off,
/// the session-policy example is refused on `disableSessionTags` while billing's
/// existing role still becomes Ready; the banner names the file.
#[test]
fn the_sandbox_runs_under_the_guardrails_file_it_is_given() {
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = dir.path().join("kubeconfig");
    let guardrails = dir.path().join("my-guardrails.yaml");
    std::fs::write(
        &guardrails,
        r#"rules:
- name: mine-billing
  namespaces: [billing]
  allowedExistingRoleArns: ["arn:aws:iam::111122223333:role/billing-api"]
- name: mine-media
  namespaces: [media]
  allowedManagedPolicyArns: ["arn:aws:iam::aws:policy/AmazonS3FullAccess"]
  sessionPolicies: {allowed: true, maxSize: 2048}
"#,
    )
    .expect("guardrails file");
    let config = guardrails.to_str().expect("utf-8 path");
    let mut sandbox = Sandbox::start(dir.path(), &["--config", config, "--quiet"]);
    assert_eq!(sandbox.printed("guardrails:"), config);
    kubectl(
        &kubeconfig,
        &["apply", "-f", &format!("{EXAMPLES}/00-namespaces.yaml")],
    );
    for example in ["existing-role.yaml", "session-policy.yaml"] {
        kubectl(
            &kubeconfig,
            &["apply", "-f", &format!("{EXAMPLES}/{example}")],
        );
    }
    let waited = kubectl_command(&kubeconfig)
        .args([
            "wait",
            "--for=condition=Ready",
            "pib/billing-api",
            "-n",
            "billing",
        ])
        .arg("--timeout=120s")
        .output()
        .expect("kubectl wait runs");
    assert!(
        waited.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&waited.stderr),
        sandbox.output()
    );
    let reason = "jsonpath={.status.conditions[?(@.type==\"Ready\")].reason}";
    let message = "jsonpath={.status.conditions[?(@.type==\"Ready\")].message}";
    let deadline = Instant::now() + WAIT;
    loop {
        let got = kubectl(
            &kubeconfig,
            &["get", "pib/uploader", "-n", "media", "-o", reason],
        );
        if got == "PolicyDenied" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "uploader's reason stayed {got:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let said = kubectl(
        &kubeconfig,
        &["get", "pib/uploader", "-n", "media", "-o", message],
    );
    assert!(
        said.contains("disableSessionTags") && said.contains("mine-media"),
        "{said}"
    );
    let status = sandbox.stop("-INT");
    assert!(status.success(), "exit status {status}");
}

#[test]
fn a_guardrails_file_that_does_not_parse_stops_the_sandbox_naming_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let guardrails = dir.path().join("broken.yaml");
    std::fs::write(&guardrails, "rules:\n- name: x\n  namespaces: 7\n").expect("file");
    let out = Command::new(env!("CARGO_BIN_EXE_pod-identity-operator"))
        .args(["sandbox", "--quiet", "--config"])
        .arg(&guardrails)
        .arg("--kubeconfig")
        .arg(dir.path().join("kubeconfig"))
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .output()
        .expect("the sandbox runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("broken.yaml"), "{stderr}");
}

/// The sandbox's IRSA wiring (namespace `legacy`) taken through the README's walk:
/// `audit`, `migrate --apply --update-trust` writing bindings, `kubectl apply` and
/// `kubectl wait`, `migrate --apply --remove-irsa --remove-oidc-trust`, `audit` again.
#[test]
fn the_sandbox_holds_irsa_wiring_that_audit_and_migrate_move_to_bindings() {
    use pod_identity_operator::audit::{Kind, Report};
    use pod_identity_operator::aws::sim::http::ADMIN_ACCESS_KEY_ID;
    use pod_identity_operator::sandbox::legacy;

    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = dir.path().join("kubeconfig");
    let out = dir.path().join("bindings");
    let mut sandbox = Sandbox::start(dir.path(), &["--quiet"]);
    let url = sandbox.printed("AWS endpoint (IAM, EKS):");
    assert!(
        sandbox
            .printed("IRSA to migrate:")
            .contains(ADMIN_ACCESS_KEY_ID)
    );
    let tool = |command: &str, args: &[&str], key: &str| {
        let output = Command::new(env!("CARGO_BIN_EXE_pod-identity-operator"))
            .arg(command)
            .args(["--cluster-name", CLUSTER, "--region", REGION])
            .args(["--aws-endpoint-url", &url])
            .args(args)
            .env("KUBECONFIG", &kubeconfig)
            .env("AWS_ACCESS_KEY_ID", key)
            .env("AWS_SECRET_ACCESS_KEY", "secret")
            .env_remove("AWS_PROFILE")
            .output()
            .expect("the binary runs");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let audit = || {
        let (_, stdout, stderr) = tool("audit", &["-o", "json"], ADMIN_ACCESS_KEY_ID);
        serde_json::from_str::<Report>(&stdout)
            .unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"))
            .findings
    };
    let about = |findings: &[pod_identity_operator::audit::Finding], kind: Kind| {
        let mut subjects: Vec<String> = findings
            .iter()
            .filter(|f| f.kind == kind)
            .map(|f| f.subject.clone())
            .collect();
        subjects.sort();
        subjects
    };

    // Any other access key is the operator's, whose policy has no ListRoles.
    let (code, _, stderr) = tool("audit", &[], "AKIAOPERATORSKEY");
    assert_ne!(code, Some(0), "the operator's identity audited: {stderr}");
    assert!(stderr.contains("AccessDenied"), "{stderr}");

    let before = audit();
    assert_eq!(
        about(&before, Kind::IrsaServiceAccount),
        ["legacy/cart", "legacy/checkout"],
        "{before:#?}"
    );
    assert_eq!(
        about(&before, Kind::IrsaAndAssociation),
        ["legacy/checkout"]
    );
    assert_eq!(
        about(&before, Kind::IrsaRoleWithoutPodIdentityTrust).len(),
        2
    );
    assert!(
        before
            .iter()
            .any(|f| f.kind == Kind::UnmanagedAssociation && f.message.contains(legacy::ADDON)),
        "{before:#?}"
    );
    assert!(about(&before, Kind::PodIdentityAgentMissing).is_empty());

    let out_dir = out.to_str().expect("utf-8 path");
    let (code, stdout, stderr) = tool(
        "migrate",
        &["--out", out_dir, "--apply", "--update-trust"],
        ADMIN_ACCESS_KEY_ID,
    );
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    eprintln!("migrate:\n{stdout}");
    assert!(stdout.contains("aws eks update-addon"), "{stdout}");
    kubectl(&kubeconfig, &["apply", "-f", out_dir]);
    let waited = kubectl_command(&kubeconfig)
        .args([
            "wait",
            "--for=condition=Ready",
            "pib",
            "--all",
            "-n",
            "legacy",
        ])
        .arg("--timeout=120s")
        .output()
        .expect("kubectl wait runs");
    assert!(
        waited.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&waited.stderr),
        kubectl(&kubeconfig, &["get", "pib", "-n", "legacy", "-o", "yaml"])
    );
    let (code, stdout, stderr) = tool(
        "migrate",
        &["--apply", "--remove-irsa", "--remove-oidc-trust"],
        ADMIN_ACCESS_KEY_ID,
    );
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");

    let after = audit();
    for kind in [
        Kind::IrsaServiceAccount,
        Kind::IrsaAndAssociation,
        Kind::IrsaRoleWithoutPodIdentityTrust,
        Kind::BindingNotReady,
    ] {
        assert!(about(&after, kind).is_empty(), "{kind:?}: {after:#?}");
    }
    // What is left is the add-on's association, which only the add-on may change.
    assert!(
        after
            .iter()
            .filter(|f| f.kind == Kind::UnmanagedAssociation)
            .all(|f| f.message.contains(legacy::ADDON)),
        "{after:#?}"
    );
    let status = sandbox.stop("-INT");
    assert!(status.success(), "exit status {status}");
}
