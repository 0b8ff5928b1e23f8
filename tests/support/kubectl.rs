//! kubectl as the tests run it: the client found on the machine (a test needing it
//! fails with the install hint when it is missing), a kubeconfig and a cache directory
//! next to it rather than in `$HOME`.

use std::process::Command;

pub fn kubectl_path() -> std::path::PathBuf {
    ["/usr/bin/kubectl", "/usr/local/bin/kubectl"]
        .iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.exists())
        .or_else(|| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join("kubectl"))
                    .find(|p| p.exists())
            })
        })
        .expect("kubectl is needed by this test: install the kubectl 1.32 client")
}

/// kubectl with the test's kubeconfig and a cache next to it (not in `$HOME`).
pub fn kubectl_command(kubeconfig: &std::path::Path) -> Command {
    let mut cmd = Command::new(kubectl_path());
    cmd.arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cache-dir")
        .arg(
            kubeconfig
                .parent()
                .expect("kubeconfig lives in a directory")
                .join("kube-cache"),
        );
    cmd
}

/// Runs kubectl against the kubeconfig and returns its stdout; panics on failure.
pub fn kubectl(kubeconfig: &std::path::Path, args: &[&str]) -> String {
    let out = kubectl_command(kubeconfig)
        .args(args)
        .output()
        .expect("kubectl runs");
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
