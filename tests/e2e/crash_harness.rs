//! What a crash-safety run runs on and writes: the Kubernetes side (kubesim, whose
//! watches its fault injection drops, or a real control plane, whose kube-apiserver is
//! killed and restarted) and the report of the run's figures.

use super::*;

/// The Kubernetes side of a crash-safety run, and how it breaks the operator's watches.
pub(super) enum CrashKube {
    /// kubesim over TCP; watches are dropped by its fault injection.
    Kubesim {
        kube: KubeSim,
        server: pod_identity_operator::kubesim::ServerHandle,
        dir: tempfile::TempDir,
    },
    /// A real control plane; kube-apiserver is killed and restarted.
    Real {
        plane: Box<support::cluster::ControlPlane>,
        operator_kubeconfig: std::path::PathBuf,
    },
}

impl CrashKube {
    pub(super) async fn kubesim() -> CrashKube {
        let (kube, server, dir) = support::kubesim_over_tcp().await;
        CrashKube::Kubesim { kube, server, dir }
    }

    pub(super) async fn real_apiserver() -> CrashKube {
        let plane = support::cluster::ControlPlane::start(Default::default())
            .await
            .unwrap_or_else(|e| panic!("the real control plane did not start: {e}"));
        let operator_kubeconfig = support::cluster::install_operator_identity(&plane);
        CrashKube::Real {
            plane: Box::new(plane),
            operator_kubeconfig,
        }
    }

    pub(super) fn name(&self) -> &'static str {
        match self {
            CrashKube::Kubesim { .. } => "kubesim",
            CrashKube::Real { .. } => "a real kube-apiserver",
        }
    }

    pub(super) async fn client(&self) -> kube::Client {
        match self {
            CrashKube::Kubesim { kube, .. } => kube.client(),
            CrashKube::Real { plane, .. } => plane.admin_client().await.expect("admin client"),
        }
    }

    pub(super) fn operator_kubeconfig(&self) -> std::path::PathBuf {
        match self {
            CrashKube::Kubesim { dir, .. } => dir.path().join("kubeconfig"),
            CrashKube::Real {
                operator_kubeconfig,
                ..
            } => operator_kubeconfig.clone(),
        }
    }

    /// The report's file name, in the target folder.
    pub(super) fn report_file(&self) -> &'static str {
        match self {
            CrashKube::Kubesim { .. } => "crash-safety-report.txt",
            CrashKube::Real { .. } => "crash-safety-report-real-apiserver.txt",
        }
    }

    /// Breaks every watch: kubesim drops them; the real kube-apiserver is SIGKILLed and
    /// started again after a pause (the call returns once it serves again).
    pub(super) async fn break_watches(&mut self, rng: &mut rand::rngs::StdRng) {
        use rand::Rng;
        match self {
            CrashKube::Kubesim { kube, .. } => kube.faults().drop_watches(),
            CrashKube::Real { plane, .. } => {
                plane.kill_apiserver();
                tokio::time::sleep(Duration::from_millis(rng.random_range(0..1000))).await;
                plane
                    .start_apiserver()
                    .await
                    .unwrap_or_else(|e| panic!("kube-apiserver did not come back: {e}"));
            }
        }
    }

    pub(super) async fn stop(self) {
        if let CrashKube::Kubesim { server, .. } = self {
            server.shutdown().await;
        }
    }
}

/// The crash-safety figures, written to `<target dir>/crash-safety-report.txt`
/// (`$CARGO_TARGET_DIR`, else the crate's `target/`) as the run goes, so CI can print
/// them: cargo hides a passing test's output.
pub(super) struct CrashReport {
    path: std::path::PathBuf,
    seed: u64,
    kube: String,
}

impl CrashReport {
    pub(super) fn new(seed: u64, file: &str, kube: &str) -> CrashReport {
        let dir = std::env::var_os("CARGO_TARGET_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
        let report = CrashReport {
            path: dir.join(file),
            seed,
            kube: kube.to_owned(),
        };
        report.write(&["result: running (the test failed if this is the last line)".into()]);
        report
    }

    /// Keeps the whole operator log next to the report, for a failed run.
    pub(super) fn keep_operator_log(&self, log: &std::path::Path) {
        let kept = self.path.with_extension("operator.log");
        if let Err(e) = std::fs::copy(log, &kept) {
            eprintln!("cannot keep the operator log at {}: {e}", kept.display());
        } else {
            eprintln!("operator log kept at {}", kept.display());
        }
    }

    pub(super) fn write(&self, lines: &[String]) {
        let seed = self.seed;
        let mut text = format!(
            "crash-safety run of the operator binary on {}\nseed: {seed} (replay with CRASH_SEED={seed})\n",
            self.kube
        );
        for line in lines {
            text.push_str(line);
            text.push('\n');
        }
        // Also on stdout, for `--nocapture` and failing runs.
        print!("{text}");
        std::fs::write(&self.path, text)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", self.path.display()));
    }
}
