//! The scenarios at one N: cold start, AWS calls per binding, restart, steady state,
//! drift and memory, measured into one row.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use pod_identity_operator::aws::IamApi;
use pod_identity_operator::aws::faults::Service;
use pod_identity_operator::aws::sim::AwsSim;
use pod_identity_operator::naming;
use serde_json::{Value, json};

use crate::spec::BindingSpec;
use crate::stack::{Stack, Target, apply_bindings, binding_name, log_tail};
use crate::{CLUSTER, DEFAULT_RESYNC, MANAGED_POLICY, Plan, Res};

fn per(calls: &BTreeMap<String, u64>, n: usize) -> BTreeMap<String, f64> {
    calls
        .iter()
        .map(|(op, c)| (op.clone(), *c as f64 / n as f64))
        .collect()
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 100.0).round() / 100.0
}

fn mib(bytes: u64) -> f64 {
    (bytes as f64 / 1_048_576.0 * 10.0).round() / 10.0
}

/// All scenarios at one size; returns the row.
pub(crate) async fn run_size(plan: &Plan, target: Target, n: usize, dir: PathBuf) -> Res<Value> {
    let spec = BindingSpec::typical();
    let stack = Stack::start(target, dir).await?;
    let knobs = stack.aws.knobs().clone();
    knobs.set_latency(plan.latency);
    let rate = (plan.iam_rate)(n);
    if let Some(r) = rate {
        knobs.set_write_throttle(Service::Iam, r.ceil().max(1.0) as u32, r);
    }
    let bound = rate.map(|r| Duration::from_secs_f64(n as f64 * spec.iam_writes() / r));
    let resync = plan.resync_for(n, spec.reads_per_converged_pass());
    let limit = bound.unwrap_or_default() * 4 + Duration::from_secs(120 + n as u64 / 10);

    // 1-2. Cold start, and the calls it made.
    let mut op1 = stack.spawn_operator(plan, DEFAULT_RESYNC, &format!("operator-{n}-cold.log"))?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    op1.alive()?;
    let (_, idle_rss) = op1.memory()?;
    stack.reset_counters().await;
    let start = Instant::now();
    apply_bindings(&stack.client, n, &spec.json()).await?;
    let applied = start.elapsed();
    let cold = stack
        .wait_all_ready(n, start, limit, &mut op1)
        .await
        .map_err(|e| format!("cold start: {e}"))?;
    stack.wait_quiet(plan, start, limit).await;
    let calls = knobs.calls();
    let throttled = knobs.throttled_by_operation();
    let cold_kube_writes = stack.kube_writes().await;
    let (cold_hwm, _) = op1.memory()?;
    let minimum = spec.minimum_calls(n);
    let min_total: f64 = minimum.values().sum();
    let total = knobs.total_calls() as f64 / n as f64;
    let accepted = total - throttled.values().sum::<u64>() as f64 / n as f64;
    op1.stop().await;

    // 3. Restart over N converged bindings, at the default resync.
    stack.reset_counters().await;
    let start = Instant::now();
    let mut op2 =
        stack.spawn_operator(plan, DEFAULT_RESYNC, &format!("operator-{n}-restart.log"))?;
    while knobs.calls_of("GetRole") < n as u64 {
        if start.elapsed() > limit {
            return Err(format!(
                "restart: roles never all read:\n{}",
                log_tail(&op2.log)
            ));
        }
        op2.alive()?;
        tokio::time::sleep(plan.poll).await;
    }
    let restart = stack.wait_quiet(plan, start, limit).await;
    let restart_aws_writes = stack.aws_writes();
    let restart_kube_writes = stack.kube_writes().await;
    let restart_reads = stack.aws_reads();
    let (restart_hwm, _) = op2.memory()?;
    op2.stop().await;

    // 4. Steady state: a scaled resync, measured after the start-up pass.
    stack.reset_counters().await;
    let start = Instant::now();
    let mut op3 = stack.spawn_operator(plan, resync, &format!("operator-{n}-steady.log"))?;
    while knobs.calls_of("GetRole") < n as u64 {
        if start.elapsed() > limit {
            return Err(format!(
                "steady: roles never all read:\n{}",
                log_tail(&op3.log)
            ));
        }
        op3.alive()?;
        tokio::time::sleep(plan.poll).await;
    }
    tokio::time::sleep(resync).await;
    stack.reset_counters().await;
    let window = resync * plan.steady_periods;
    tokio::time::sleep(window).await;
    op3.alive()?;
    let steady_reads = stack.aws_reads();
    let steady_reconciles = knobs.calls_of("GetRole");
    let steady_aws_writes = stack.aws_writes();
    let steady_kube_writes = stack.kube_writes().await;
    let reads_per_reconcile = steady_reads as f64 / steady_reconciles.max(1) as f64;
    let resyncs_per_hour = 3600.0 / DEFAULT_RESYNC.as_secs_f64();

    // 5. Drift: the managed policy detached from 1% of the roles, out of band.
    let sim = stack.aws.config();
    let cluster_arn = format!(
        "arn:aws:eks:{}:{}:cluster/{CLUSTER}",
        sim.region, sim.account_id
    );
    let drifted: Vec<String> = (0..n)
        .step_by((1.0 / plan.drift_fraction) as usize)
        .map(|i| {
            let (ns, name) = binding_name(i);
            naming::default_role_name(&cluster_arn, &ns, &name)
        })
        .collect();
    let start = Instant::now();
    let mut unrepaired = 0;
    for role in &drifted {
        // Out of band: an administrator's call, not the operator's.
        AwsSim::as_admin(stack.aws.detach_role_policy(role, MANAGED_POLICY))
            .await
            .map_err(|e| format!("drift {role}: {e}"))?;
    }
    stack.reset_counters().await;
    loop {
        // Only the drifted roles are read, each on its own: a copy of the whole
        // simulator four times a second would hold its lock against the operator's calls
        // and slow the very repairs being timed.
        let mut left = Vec::new();
        for role in &drifted {
            let attached = AwsSim::as_admin(stack.aws.list_attached_role_policies(role))
                .await
                .map_err(|e| format!("drift check {role}: {e}"))?;
            if !attached.iter().any(|p| p.arn == MANAGED_POLICY) {
                left.push(role);
            }
        }
        if left.is_empty() {
            break;
        }
        // Every drifted role is due for a full pass within one resync; three is a
        // failure, reported in the row rather than ending the run.
        if start.elapsed() > resync * 3 + Duration::from_secs(60) {
            unrepaired = left.len();
            println!("drift: not repaired: {left:?}");
            break;
        }
        op3.alive()?;
        tokio::time::sleep(plan.poll).await;
    }
    let drift = start.elapsed();
    if unrepaired > 0 {
        println!(
            "drift: {unrepaired} of {} roles not repaired after {drift:?}",
            drifted.len()
        );
    }
    // Writes are counted until the repairs' own follow-ups are done, within a resync.
    tokio::time::sleep(plan.quiet).await;
    let drift_aws_writes = stack.aws_writes();
    let drift_kube_writes = stack.kube_writes().await;
    let (steady_hwm, _) = op3.memory()?;
    op3.stop().await;

    let peak = cold_hwm.max(restart_hwm).max(steady_hwm);
    Ok(json!({
        "target": target.name(),
        "n": n,
        "cold_start": {
            "apply_s": secs(applied),
            "all_ready_s": secs(cold),
            "iam_write_rate_per_s": rate,
            "iam_writes_per_binding": spec.iam_writes(),
            "bound_s": bound.map(secs),
            "ratio_to_bound": bound.map(|b| (cold.as_secs_f64() / b.as_secs_f64() * 100.0).round() / 100.0),
            "kubernetes_writes_per_binding": cold_kube_writes as f64 / n as f64,
        },
        "aws_calls_per_binding": {
            "by_operation": per(&calls, n),
            "throttled_by_operation": per(&throttled, n),
            "minimum_by_operation": minimum,
            "total": total,
            "accepted": accepted,
            "minimum": min_total,
            "ratio": (total / min_total * 100.0).round() / 100.0,
            "ratio_accepted": (accepted / min_total * 100.0).round() / 100.0,
        },
        "restart": {
            "confirm_all_s": secs(restart),
            "aws_reads": restart_reads,
            "aws_writes": restart_aws_writes,
            "kubernetes_writes": restart_kube_writes,
        },
        "steady_state": {
            "resync_s": resync.as_secs(),
            "window_s": window.as_secs(),
            "reconciles_per_binding": steady_reconciles as f64 / n as f64,
            "aws_reads_per_reconcile": reads_per_reconcile,
            "aws_reads_per_binding_per_hour_at_default_resync": reads_per_reconcile * resyncs_per_hour,
            "aws_writes": steady_aws_writes,
            "kubernetes_writes": steady_kube_writes,
        },
        "drift": {
            "drifted": drifted.len(),
            "unrepaired": unrepaired,
            "repair_s": secs(drift),
            "aws_writes": drift_aws_writes,
            "kubernetes_writes": drift_kube_writes,
            "ratio_to_bound": drift_aws_writes as f64 / drifted.len() as f64,
        },
        "memory": {
            "idle_rss_mib": mib(idle_rss),
            "peak_rss_mib": mib(peak),
            "peak_cold_mib": mib(cold_hwm),
            "peak_restart_mib": mib(restart_hwm),
            "peak_steady_mib": mib(steady_hwm),
            "per_binding_kib": ((peak.saturating_sub(idle_rss)) as f64 / n as f64 / 1024.0 * 10.0).round() / 10.0,
        },
    }))
}
