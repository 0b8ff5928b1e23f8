//! The table's rows printed, the smoke's verdict on a row, and the machine and commit a
//! run records.

use std::process::Command;

use serde_json::{Value, json};

fn f(v: &Value, path: &str) -> String {
    match v.pointer(path) {
        Some(Value::Number(x)) => {
            let x = x.as_f64().unwrap_or(0.0);
            if x.fract() == 0.0 {
                format!("{x:.0}")
            } else {
                format!("{x:.2}")
            }
        }
        Some(Value::Null) | None => "-".into(),
        Some(other) => other.to_string(),
    }
}

pub(crate) fn print_row(row: &Value) {
    let n = f(row, "/n");
    println!("\n== N = {n} on {}", f(row, "/target").trim_matches('"'));
    println!(
        "cold start   : all Ready in {} s (apply {} s); bound N x {} IAM writes / {} per s = {} s; ratio {}",
        f(row, "/cold_start/all_ready_s"),
        f(row, "/cold_start/apply_s"),
        f(row, "/cold_start/iam_writes_per_binding"),
        f(row, "/cold_start/iam_write_rate_per_s"),
        f(row, "/cold_start/bound_s"),
        f(row, "/cold_start/ratio_to_bound"),
    );
    println!(
        "aws calls    : {} per binding ({} accepted) vs minimum {}; ratio {} ({} accepted)",
        f(row, "/aws_calls_per_binding/total"),
        f(row, "/aws_calls_per_binding/accepted"),
        f(row, "/aws_calls_per_binding/minimum"),
        f(row, "/aws_calls_per_binding/ratio"),
        f(row, "/aws_calls_per_binding/ratio_accepted"),
    );
    if let Some(Value::Object(ops)) = row.pointer("/aws_calls_per_binding/by_operation") {
        for (op, v) in ops {
            println!(
                "  {op:<32} {:>6.2}  (min {:>4}, throttled {:>5})",
                v.as_f64().unwrap_or(0.0),
                f(
                    row,
                    &format!("/aws_calls_per_binding/minimum_by_operation/{op}")
                ),
                f(
                    row,
                    &format!("/aws_calls_per_binding/throttled_by_operation/{op}")
                ),
            );
        }
    }
    println!(
        "restart      : all confirmed in {} s; AWS writes {}, Kubernetes writes {} ({} AWS reads)",
        f(row, "/restart/confirm_all_s"),
        f(row, "/restart/aws_writes"),
        f(row, "/restart/kubernetes_writes"),
        f(row, "/restart/aws_reads"),
    );
    println!(
        "steady state : {} AWS reads per reconcile -> {} per binding per simulated hour at the 300 s resync; AWS writes {}, Kubernetes writes {} (resync scaled to {} s, {} s window, {} reconciles per binding)",
        f(row, "/steady_state/aws_reads_per_reconcile"),
        f(
            row,
            "/steady_state/aws_reads_per_binding_per_hour_at_default_resync"
        ),
        f(row, "/steady_state/aws_writes"),
        f(row, "/steady_state/kubernetes_writes"),
        f(row, "/steady_state/resync_s"),
        f(row, "/steady_state/window_s"),
        f(row, "/steady_state/reconciles_per_binding"),
    );
    println!(
        "drift        : {} roles changed; repaired in {} s (resync {} s) with {} AWS writes (bound {}), {} Kubernetes writes",
        f(row, "/drift/drifted"),
        f(row, "/drift/repair_s"),
        f(row, "/steady_state/resync_s"),
        f(row, "/drift/aws_writes"),
        f(row, "/drift/drifted"),
        f(row, "/drift/kubernetes_writes"),
    );
    println!(
        "memory       : peak RSS {} MiB (cold {}, restart {}, steady {}); idle {} MiB; {} KiB per binding",
        f(row, "/memory/peak_rss_mib"),
        f(row, "/memory/peak_cold_mib"),
        f(row, "/memory/peak_restart_mib"),
        f(row, "/memory/peak_steady_mib"),
        f(row, "/memory/idle_rss_mib"),
        f(row, "/memory/per_binding_kib"),
    );
    if let Some(busy) = row["machine_busy_before_run"].as_f64() {
        println!(
            "machine      : {:.1}% of the CPU busy with other work in the 5 s before the run",
            busy * 100.0
        );
    }
}

/// The smoke's assertions: the zero-write results and a repaired drift.
pub(crate) fn smoke_failures(row: &Value) -> Vec<String> {
    let mut failures = Vec::new();
    for path in [
        "/restart/aws_writes",
        "/restart/kubernetes_writes",
        "/steady_state/aws_writes",
        "/steady_state/kubernetes_writes",
    ] {
        if row.pointer(path).and_then(Value::as_u64) != Some(0) {
            failures.push(format!("{path} = {} (want 0)", f(row, path)));
        }
    }
    if row
        .pointer("/steady_state/reconciles_per_binding")
        .and_then(Value::as_f64)
        < Some(0.5)
    {
        failures.push("steady state: the resync did not run".into());
    }
    failures
}

/// The machine: cores and memory.
pub(crate) fn machine() -> Value {
    let cores = std::thread::available_parallelism().map_or(0, |c| c.get());
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0);
    json!({"cores": cores, "memory_gib": (mem_kib as f64 / 1_048_576.0 * 10.0).round() / 10.0})
}

/// The machine's CPU busy time and total time so far, all cores (`/proc/stat`).
fn cpu_times() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: u64 = fields.iter().sum();
    // idle and iowait
    let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// The share of the machine's CPU that other work used over `window`, measured before a
/// run starts its servers: near 0 when the run had the machine to itself.
pub(crate) async fn busy_before_run(window: std::time::Duration) -> Option<f64> {
    let (busy0, total0) = cpu_times()?;
    tokio::time::sleep(window).await;
    let (busy1, total1) = cpu_times()?;
    let total = total1.checked_sub(total0).filter(|t| *t > 0)?;
    Some(((busy1 - busy0) as f64 / total as f64 * 1000.0).round() / 1000.0)
}

/// The commit the benchmark was built from, `-dirty` when the tree has changes.
pub(crate) fn commit() -> String {
    Command::new("git")
        .args(["describe", "--always", "--dirty", "--abbrev=12"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}
