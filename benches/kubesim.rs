//! kubesim write benchmark: N `PodIdentityBinding`s written to kubesim over TCP through
//! kube-rs, as a GitOps tool or `kubectl` writes them, with a watcher on the bindings
//! running as the operator's would.
//!
//! Scenarios at each N, each on a fresh server with the CRD and 10 namespaces installed:
//! - `create`: N POSTs;
//! - `apply`: N server-side applies (field manager `gitops`) that create the objects;
//! - `re-apply`: the same N applies again with one tag changed (each an update of an
//!   existing object, the store already holding all N);
//! - `delete`: the N applied objects deleted (as a GitOps prune deletes them).
//!
//! Each prints total seconds, writes/s, and writes/s over the first and the last tenth of
//! the writes (equal when a write costs the same whatever the store holds).
//!
//! `cargo bench --bench kubesim` runs N = 1,000 and 5,000 and writes the figures to
//! `target/bench/kubesim.json`; `PIO_BENCH_SIZES=1000` (or `--sizes 1000`) picks the
//! sizes and `PIO_BENCH_CONCURRENCY` the requests in flight (default 32). Without
//! `--bench` (as `cargo test --all-targets` runs it) it runs N = 50 and fails only when
//! a write is refused or an object or watch event is missing; it never judges time.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Client, CustomResourceExt};
use pod_identity_operator::crd::PodIdentityBinding;
use pod_identity_operator::kubesim::{KubeSim, ServerHandle};
use serde_json::{Value, json};

const NAMESPACES: usize = 10;

type Res<T> = std::result::Result<T, String>;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Create,
    Apply,
    Reapply,
    Delete,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Create => "create",
            Scenario::Apply => "apply",
            Scenario::Reapply => "re-apply",
            Scenario::Delete => "delete",
        }
    }
}

fn spec(team: &str) -> Value {
    json!({
        "role": {
            "managedPolicyArns": ["arn:aws:iam::aws:policy/ReadOnlyAccess"],
            "inlinePolicies": {"s3": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                "Action": "s3:GetObject", "Resource": "arn:aws:s3:::bench/*"}]}},
        },
        "tags": {"team": team},
    })
}

fn binding(i: usize, team: &str) -> (String, Value) {
    let ns = format!("bench-{}", i % NAMESPACES);
    let body = json!({
        "apiVersion": "podidentity.dev/v1alpha1", "kind": "PodIdentityBinding",
        "metadata": {"name": format!("b-{i:05}"), "namespace": ns},
        "spec": spec(team),
    });
    (ns, body)
}

/// A server over TCP with the CRD and the namespaces, and a kube-rs client through its
/// kubeconfig.
async fn start() -> Res<(KubeSim, ServerHandle, Client)> {
    let sim = KubeSim::new();
    let server = sim
        .serve_tcp("127.0.0.1:0".parse().map_err(|_| "address")?)
        .await
        .map_err(|e| format!("kubesim: {e}"))?;
    let client = server.client().await.map_err(|e| e.to_string())?;
    Api::<CustomResourceDefinition>::all(client.clone())
        .create(&PostParams::default(), &PodIdentityBinding::crd())
        .await
        .map_err(|e| format!("CRD: {e}"))?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for i in 0..NAMESPACES {
        let ns: Namespace =
            serde_json::from_value(json!({"metadata": {"name": format!("bench-{i}")}}))
                .map_err(|e| e.to_string())?;
        namespaces
            .create(&PostParams::default(), &ns)
            .await
            .map_err(|e| format!("namespace: {e}"))?;
    }
    Ok((sim, server, client))
}

/// Writes N bindings, `concurrency` at a time; returns the instant each write finished.
async fn write_all(
    client: &Client,
    scenario: Scenario,
    n: usize,
    concurrency: usize,
) -> Res<Vec<Instant>> {
    let team = if scenario == Scenario::Reapply {
        "bench-2"
    } else {
        "bench"
    };
    let results: Vec<Res<Instant>> = futures::stream::iter(0..n)
        .map(|i| {
            let client = client.clone();
            async move {
                let (ns, body) = binding(i, team);
                let api = Api::<PodIdentityBinding>::namespaced(client, &ns);
                let name = format!("b-{i:05}");
                match scenario {
                    Scenario::Create => {
                        let b: PodIdentityBinding =
                            serde_json::from_value(body).map_err(|e| e.to_string())?;
                        api.create(&PostParams::default(), &b)
                            .await
                            .map(|_| ())
                            .map_err(|e| format!("create {ns}/{name}: {e}"))?;
                    }
                    Scenario::Delete => {
                        api.delete(&name, &DeleteParams::default())
                            .await
                            .map(|_| ())
                            .map_err(|e| format!("delete {ns}/{name}: {e}"))?;
                    }
                    Scenario::Apply | Scenario::Reapply => {
                        api.patch(&name, &PatchParams::apply("gitops"), &Patch::Apply(&body))
                            .await
                            .map(|_| ())
                            .map_err(|e| format!("apply {ns}/{name}: {e}"))?;
                    }
                }
                Ok(Instant::now())
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut done = results.into_iter().collect::<Res<Vec<_>>>()?;
    done.sort();
    Ok(done)
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Runs one scenario at one size on a fresh server; returns its figures.
async fn run(scenario: Scenario, n: usize, concurrency: usize) -> Res<Value> {
    let (sim, server, client) = start().await?;
    // the watcher an operator keeps on the bindings: every write is fanned out to it
    let seen = Arc::new(AtomicUsize::new(0));
    let (listed_tx, listed_rx) = tokio::sync::oneshot::channel();
    let watch = {
        let seen = seen.clone();
        let api = Api::<PodIdentityBinding>::all(client.clone());
        tokio::spawn(async move {
            let mut listed_tx = Some(listed_tx);
            let mut events = std::pin::pin!(watcher(api, watcher::Config::default()));
            while let Some(e) = events.next().await {
                match e {
                    Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_)) => {
                        seen.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(watcher::Event::InitDone) => {
                        if let Some(tx) = listed_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    _ => {}
                }
            }
        })
    };
    // writes begin once the watcher has listed, so each one reaches it as an event
    tokio::time::timeout(Duration::from_secs(30), listed_rx)
        .await
        .map_err(|_| "the watcher did not list the bindings")?
        .map_err(|_| "the watcher ended")?;
    let expected_events = if matches!(scenario, Scenario::Reapply | Scenario::Delete) {
        write_all(&client, Scenario::Apply, n, concurrency).await?;
        2 * n
    } else {
        n
    };
    let writes_before = sim.write_counts().total();
    let start = Instant::now();
    let done = write_all(&client, scenario, n, concurrency).await?;
    let total = start.elapsed().as_secs_f64();
    let writes = sim.write_counts().total() - writes_before;
    // every write reached the watcher
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.load(Ordering::Relaxed) < expected_events && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let watched = seen.load(Ordering::Relaxed);
    watch.abort();
    let listed = Api::<PodIdentityBinding>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("list: {e}"))?;
    let team = if scenario == Scenario::Reapply {
        "bench-2"
    } else {
        "bench"
    };
    let current = listed
        .items
        .iter()
        .filter(|b| b.spec.tags.get("team").map(String::as_str) == Some(team))
        .count();
    let kept = if scenario == Scenario::Delete { 0 } else { n };
    server.shutdown().await;
    if writes != n as u64 {
        return Err(format!("{writes} writes counted for {n} requests"));
    }
    if current != kept || listed.items.len() != kept {
        return Err(format!(
            "{} bindings listed, {current} holding what was written; {kept} expected",
            listed.items.len()
        ));
    }
    if watched < expected_events {
        return Err(format!(
            "the watcher saw {watched} of {expected_events} events"
        ));
    }
    let tenth = (n / 10).max(1);
    let rate = |from: Instant, to: Instant| {
        let s = to.duration_since(from).as_secs_f64();
        if s > 0.0 {
            round(tenth as f64 / s)
        } else {
            0.0
        }
    };
    let first = rate(start, done[tenth - 1]);
    let last = rate(done[n - 1 - tenth], done[n - 1]);
    Ok(json!({
        "scenario": scenario.name(),
        "n": n,
        "total_s": round(total),
        "writes_per_s": round(n as f64 / total),
        "first_tenth_writes_per_s": first,
        "last_tenth_writes_per_s": last,
    }))
}

fn sizes(smoke: bool) -> Vec<usize> {
    let args: Vec<String> = std::env::args().collect();
    let from_args = args
        .iter()
        .position(|a| a == "--sizes")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let given = from_args.or_else(|| std::env::var("PIO_BENCH_SIZES").ok());
    match given {
        Some(s) => s
            .split(',')
            .filter_map(|n| n.trim().parse().ok())
            .filter(|n| *n > 0)
            .collect(),
        None if smoke => vec![50],
        None => vec![1000, 5000],
    }
}

fn main() {
    let smoke = !std::env::args().any(|a| a == "--bench");
    let sizes = sizes(smoke);
    let concurrency = std::env::var("PIO_BENCH_CONCURRENCY")
        .ok()
        .and_then(|c| c.parse().ok())
        .filter(|c| *c > 0)
        .unwrap_or(32);
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
    let cores = std::thread::available_parallelism().map_or(0, |c| c.get());
    let date = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    println!(
        "kubesim write benchmark {date}, {cores} cores, {concurrency} requests in flight, \
         over TCP through kube-rs, one watcher on the bindings"
    );
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for &n in &sizes {
        for scenario in [
            Scenario::Create,
            Scenario::Apply,
            Scenario::Reapply,
            Scenario::Delete,
        ] {
            match runtime.block_on(run(scenario, n, concurrency)) {
                Ok(row) => {
                    println!(
                        "N = {n:>5} {:<9}: {:>7} s, {:>7} writes/s (first tenth {}, last tenth {})",
                        scenario.name(),
                        row["total_s"],
                        row["writes_per_s"],
                        row["first_tenth_writes_per_s"],
                        row["last_tenth_writes_per_s"],
                    );
                    rows.push(row);
                }
                Err(e) => {
                    println!("N = {n:>5} {:<9}: FAILED: {e}", scenario.name());
                    failures.push(format!("N={n} {}: {e}", scenario.name()));
                }
            }
        }
    }
    if !smoke {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
            .join("bench");
        let file = target.join("kubesim.json");
        let out = json!({"date": date, "cores": cores, "concurrency": concurrency, "rows": rows});
        match std::fs::create_dir_all(&target)
            .and_then(|()| std::fs::write(&file, format!("{out:#}\n")))
        {
            Ok(()) => println!("figures written to {}", file.display()),
            Err(e) => failures.push(format!("cannot write {}: {e}", file.display())),
        }
    }
    if !failures.is_empty() {
        eprintln!("\nFAILED:\n  {}", failures.join("\n  "));
        std::process::exit(1);
    }
}
