//! Scale benchmark: the operator binary, as a child process, against kubesim (TCP) and
//! the AWS simulator's wire front, at N bindings.
//!
//! Scenarios at each N: cold start (N bindings applied at once, simulated latency on
//! every AWS call and a token bucket on IAM writes; time to all `Ready` against the
//! bound the rate limit alone forces), AWS calls per binding by operation against the
//! minimum the spec needs, restart over N converged bindings (time to confirm all, AWS
//! and Kubernetes writes), steady state (a scaled resync; reads per converged reconcile,
//! reported per simulated hour at the default resync; writes), drift (1% of roles
//! changed out of band; time to repair, writes spent) and memory (peak RSS of the
//! operator process from /proc).
//!
//! `cargo bench --bench scale` runs the table (N = 100, 1,000, 5,000) and writes it to
//! `target/bench/scale.json`. Without `--bench` (as `cargo test --all-targets` runs it)
//! it runs a quick N = 20 smoke that fails unless restart and steady state write
//! nothing and drift is repaired. `PIO_BENCH_SIZES=100,1000` (or `--sizes 100,1000`)
//! picks the sizes; `PIO_BENCH_CONCURRENCY`, `PIO_BENCH_LATENCY_MS`, `PIO_BENCH_IAM_RATE`
//! (writes per second, every size), `PIO_BENCH_RESYNC` (seconds) and
//! `PIO_BENCH_OPERATOR_ARGS` (extra flags for the operator, space separated) change
//! the settings; `PIO_BENCH_OPERATOR_LOG` is the operator's `RUST_LOG` (default `warn`;
//! its logs are the `operator-*.log` files in each run's `scale-*` folder beside
//! `scale.json`).
//!
//! `PIO_BENCH_TARGETS=kubesim,apiserver` (or `--targets kubesim,apiserver`) picks the
//! Kubernetes API servers each size runs against (default `kubesim`): `apiserver` is a
//! real etcd and kube-apiserver, started as the tests start them (`tests/support/cluster.rs`)
//! from the binaries in `$PIO_CONTROL_PLANE` (or `$KUBEBUILDER_ASSETS`); asking for it
//! without either set fails before anything runs. There the operator runs with the
//! admin kubeconfig, and Kubernetes writes are the API server's `apiserver_request_total`
//! for POST, PUT, PATCH, APPLY, DELETE and DELETECOLLECTION (every answer code; Leases,
//! which kube-apiserver writes for itself, left out). Rows of earlier runs in
//! `target/bench/scale.json` for other (target, N) pairs are kept, each with its date
//! and commit.
//!
//! Here: the settings and the table's driver; `spec` (what a binding asks for and the
//! AWS calls that takes at least), `stack` (kubesim or a real API server, the AWS
//! simulator and the operator process), `scenarios` (the scenarios at one N) and
//! `report` (rows printed, the smoke's verdict, the machine and commit).

#[path = "../../tests/support/cluster.rs"]
mod cluster;

mod report;
mod scenarios;
mod spec;
mod stack;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use report::{busy_before_run, commit, machine, print_row, smoke_failures};
use scenarios::run_size;
use spec::BindingSpec;
use stack::Target;

const CLUSTER: &str = "bench";

const NAMESPACES: usize = 10;
const DEFAULT_RESYNC: Duration = Duration::from_secs(300);
const MANAGED_POLICY: &str = "arn:aws:iam::aws:policy/ReadOnlyAccess";

type Res<T> = std::result::Result<T, String>;

/// Every setting of a run.
struct Plan {
    smoke: bool,
    sizes: Vec<usize>,
    targets: Vec<Target>,
    concurrency: u16,
    latency: Duration,
    /// IAM writes per second by size; `None`: not limited.
    iam_rate: Box<dyn Fn(usize) -> Option<f64>>,
    /// The resync of the steady-state and drift phases (time scaled), before
    /// [`Plan::resync_for`] stretches it to one pass over N bindings.
    resync: Duration,
    /// `PIO_BENCH_RESYNC` was given: the resync is used as it is, at every size.
    resync_fixed: bool,
    /// Resync periods the steady state is measured over.
    steady_periods: u32,
    drift_fraction: f64,
    quiet: Duration,
    poll: Duration,
    operator_args: Vec<String>,
}

impl Plan {
    fn from_env() -> Res<Plan> {
        let args: Vec<String> = std::env::args().collect();
        let smoke = !args.iter().any(|a| a == "--bench");
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let sizes = args
            .iter()
            .position(|a| a == "--sizes")
            .and_then(|i| args.get(i + 1).cloned())
            .or_else(|| env("PIO_BENCH_SIZES"))
            .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
            .unwrap_or_else(|| {
                if smoke {
                    vec![20]
                } else {
                    vec![100, 1000, 5000]
                }
            });
        let targets = args
            .iter()
            .position(|a| a == "--targets")
            .and_then(|i| args.get(i + 1).cloned())
            .or_else(|| env("PIO_BENCH_TARGETS"))
            .map_or(Ok(vec![Target::Kubesim]), |s| {
                s.split(',').map(|t| Target::parse(t.trim())).collect()
            })?;
        let num = |k: &str| env(k).and_then(|v| v.parse::<f64>().ok());
        let fixed_rate = num("PIO_BENCH_IAM_RATE");
        let iam_rate: Box<dyn Fn(usize) -> Option<f64>> = match (smoke, fixed_rate) {
            (_, Some(r)) => Box::new(move |_| Some(r)),
            (true, None) => Box::new(|_| None),
            // Chosen so each cold start's bound is one to three minutes.
            (false, None) => Box::new(|n| {
                Some(match n {
                    0..=200 => 5.0,
                    201..=2000 => 25.0,
                    _ => 100.0,
                })
            }),
        };
        Ok(Plan {
            smoke,
            sizes,
            targets,
            concurrency: num("PIO_BENCH_CONCURRENCY").map_or(16, |c| c as u16),
            latency: Duration::from_millis(
                num("PIO_BENCH_LATENCY_MS").map_or(if smoke { 5 } else { 50 }, |l| l as u64),
            ),
            iam_rate,
            resync: Duration::from_secs(
                num("PIO_BENCH_RESYNC").map_or(if smoke { 2 } else { 20 }, |s| s as u64),
            ),
            resync_fixed: num("PIO_BENCH_RESYNC").is_some(),
            steady_periods: 2,
            drift_fraction: 0.01,
            quiet: Duration::from_secs(if smoke { 1 } else { 3 }),
            poll: Duration::from_millis(if smoke { 100 } else { 250 }),
            // No client-side limit by default: the simulator's write bucket stands for
            // the account's quota, and the scaled resync is not stretched by pacing.
            operator_args: env("PIO_BENCH_OPERATOR_ARGS")
                .unwrap_or_else(|| "--iam-rate 0 --eks-rate 0".into())
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
        })
    }

    /// The steady-state and drift resync at N bindings: the scaled resync, or 1.25 ×
    /// the time one pass over N converged bindings takes at the simulated latency
    /// (`reads` AWS reads each, `concurrency` at once) when that is longer. A resync
    /// shorter than one pass over all bindings cannot come round, and "repaired within
    /// one resync period" would measure the scaling, not the repair; the operator's
    /// default 300 s resync is over three times a pass at N = 5,000.
    fn resync_for(&self, n: usize, reads: f64) -> Duration {
        let pass = self.latency.as_secs_f64() * reads * n as f64 / f64::from(self.concurrency);
        if self.resync_fixed {
            self.resync
        } else {
            self.resync
                .max(Duration::from_secs((pass * 1.25).ceil() as u64))
        }
    }

    fn settings_json(&self) -> Value {
        json!({
            "mode": if self.smoke { "smoke" } else { "bench" },
            "sizes": self.sizes,
            "targets": self.targets.iter().map(|t| t.name()).collect::<Vec<_>>(),
            "operator_concurrency": self.concurrency,
            "aws_latency_ms_per_call": self.latency.as_millis() as u64,
            "iam_write_rate_per_s": self.sizes.iter().map(|n| json!({"n": n, "rate": (self.iam_rate)(*n)})).collect::<Vec<_>>(),
            "iam_write_burst": "one second of the rate",
            "restart_resync_s": DEFAULT_RESYNC.as_secs(),
            "steady_and_drift_resync_s": self.sizes.iter().map(|n| json!({"n": n, "resync_s": self.resync_for(*n, BindingSpec::typical().reads_per_converged_pass()).as_secs()})).collect::<Vec<_>>(),
            "steady_periods": self.steady_periods,
            "drift_fraction": self.drift_fraction,
            "extra_operator_args": self.operator_args,
            "operator_binary": stack::operator_binary().display().to_string(),
            "namespaces": NAMESPACES,
            "binding_spec": BindingSpec::typical().json(),
        })
    }
}

fn main() {
    let plan = match Plan::from_env() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("scale benchmark: {e}");
            std::process::exit(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tokio runtime: {e}");
            std::process::exit(2);
        }
    };
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
        .join("bench");
    let machine = machine();
    let commit = commit();
    let date = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let settings = plan.settings_json();
    println!(
        "scale benchmark ({}) {date}, commit {commit}, machine {machine}",
        settings["mode"]
    );
    println!("settings: {settings}");
    println!(
        "method: the operator binary runs as a child process against the Kubernetes API server \
         (kubesim over TCP, or etcd and kube-apiserver) and the AWS simulator's HTTP front; \
         memory is its VmHWM/VmRSS from /proc (the benchmark's own servers are not counted). \
         Steady state is time scaled: a {} s resync (longer where one pass over N bindings \
         takes longer; see the settings) measured over {} periods, reported per simulated \
         hour at the default 300 s resync.",
        plan.resync.as_secs(),
        plan.steady_periods
    );
    let runs: Vec<(Target, usize)> = plan
        .sizes
        .iter()
        .flat_map(|&n| plan.targets.iter().map(move |&t| (t, n)))
        .collect();
    let rows: Vec<Res<Value>> = runtime.block_on(async {
        let mut rows = Vec::new();
        for &(t, n) in &runs {
            let dir = target.join(format!(
                "scale-{}-{}-{n}",
                if plan.smoke { "smoke" } else { "run" },
                t.name()
            ));
            let busy = if plan.smoke {
                None
            } else {
                busy_before_run(Duration::from_secs(5)).await
            };
            let row = run_size(&plan, t, n, dir).await.map(|mut row| {
                row["machine_busy_before_run"] = json!(busy);
                row
            });
            match &row {
                Ok(r) => print_row(r),
                Err(e) => println!("\n== N = {n} on {}: FAILED: {e}", t.name()),
            }
            rows.push(row);
        }
        rows
    });
    let mut failures: Vec<String> = Vec::new();
    let mut table: Vec<Value> = rows
        .into_iter()
        .zip(&runs)
        .map(|(r, (t, n))| {
            let mut v = match r {
                Ok(v) => {
                    if plan.smoke {
                        failures.extend(
                            smoke_failures(&v)
                                .into_iter()
                                .map(|e| format!("N={n} on {}: {e}", t.name())),
                        );
                    }
                    v
                }
                Err(e) => {
                    failures.push(format!("N={n} on {}: {e}", t.name()));
                    json!({"target": t.name(), "n": n, "error": e})
                }
            };
            v["date"] = json!(date);
            v["commit"] = json!(commit);
            v["settings"] = settings.clone();
            v
        })
        .collect();
    let file = target.join(if plan.smoke {
        "scale-smoke.json"
    } else {
        "scale.json"
    });
    // Rows of earlier runs for the (target, N) pairs this run did not measure stay.
    if !plan.smoke
        && let Some(Value::Array(old)) = std::fs::read_to_string(&file)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .map(|v| v["rows"].clone())
    {
        for row in old {
            let key = (
                row["target"].as_str().unwrap_or("kubesim").to_owned(),
                row["n"].as_u64().unwrap_or(0) as usize,
            );
            if !runs
                .iter()
                .any(|(t, n)| (t.name(), *n) == (key.0.as_str(), key.1))
            {
                table.push(row);
            }
        }
    }
    table.sort_by_key(|r| {
        (
            r["n"].as_u64().unwrap_or(0),
            r["target"].as_str().unwrap_or("").to_owned(),
        )
    });
    let out = json!({"date": date, "commit": commit, "machine": machine, "settings": settings, "rows": table});
    match std::fs::create_dir_all(&target)
        .and_then(|()| std::fs::write(&file, format!("{out:#}\n")))
    {
        Ok(()) => println!("\ntable written to {}", file.display()),
        Err(e) => failures.push(format!("cannot write {}: {e}", file.display())),
    }
    if !failures.is_empty() {
        eprintln!("\nFAILED:\n  {}", failures.join("\n  "));
        std::process::exit(1);
    }
}
