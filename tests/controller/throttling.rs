//! Pacing: under hard AWS throttling every binding gets Ready and none shows a failure, and
//! the client-side limit paces the calls to each service.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::ResourceExt;
use kube::runtime::{WatchStreamExt, watcher};
use pod_identity_operator::aws::faults::Service;
use pod_identity_operator::aws::ratelimit::Rate;
use pod_identity_operator::aws::sim::SimConfig;
use pod_identity_operator::controller::status::Reason;
use pod_identity_operator::crd::PodIdentityBinding;
use serde_json::json;

use crate::support::NS;
use crate::support::kstatus_of;
use crate::{READ_ONLY, owned_roles, start};

/// Every condition of the binding that is not True and reports an error.
fn errors_shown(b: &PodIdentityBinding) -> Vec<String> {
    b.status
        .iter()
        .flat_map(|s| &s.conditions)
        .filter(|c| c.status != "True")
        .filter(|c| {
            Reason::ALL
                .iter()
                .find(|r| r.as_str() == c.reason)
                .is_none_or(|r| r.is_error())
        })
        .map(|c| {
            format!(
                "{}: {}={} {}: {}",
                b.name_any(),
                c.type_,
                c.status,
                c.reason,
                c.message
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_hard_aws_throttling_every_binding_gets_ready_and_none_shows_a_failure() {
    // No client-side limit: the simulator's small buckets throttle the operator.
    let (env, aws) = start(SimConfig::default(), |s| {
        s.iam_rate = None;
        s.eks_rate = None;
        s.retry_base = Duration::from_millis(50);
        s.retry_max = Duration::from_secs(1);
        s.concurrency = 8;
    })
    .await;
    aws.knobs().set_throttle(Service::Iam, 3, 10.0);
    aws.knobs().set_throttle(Service::Eks, 2, 5.0);

    // Every state every binding goes through, as a watch sees it.
    let seen_errors = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen_reasons = Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
    let watch = {
        let (errors, reasons) = (seen_errors.clone(), seen_reasons.clone());
        let stream = watcher(env.bindings(), watcher::Config::default()).touched_objects();
        tokio::spawn(async move {
            futures::pin_mut!(stream);
            while let Some(Ok(b)) = stream.next().await {
                let found = errors_shown(&b);
                errors.lock().expect("lock").extend(found);
                for (type_, reason) in kstatus_of(&b) {
                    reasons
                        .lock()
                        .expect("lock")
                        .insert(format!("{type_}/{reason}"));
                }
            }
        })
    };

    let started = Instant::now();
    let names: Vec<String> = (0..20).map(|i| format!("busy-{i:02}")).collect();
    for n in &names {
        env.apply(n, json!({"role": {"managedPolicyArns": [READ_ONLY]}}))
            .await;
    }
    for n in &names {
        let b = env.wait_converged(n).await;
        assert!(kstatus_of(&b).is_empty(), "{n}: {:?}", kstatus_of(&b));
        assert_eq!(owned_roles(&aws, n), 1, "{n}: one role");
        assert_eq!(aws.inventory().associations_for(NS, n).len(), 1, "{n}");
    }
    let throttled = aws.knobs().throttled(Service::Iam) + aws.knobs().throttled(Service::Eks);
    assert!(
        throttled > 0,
        "the simulator never throttled: the test proves nothing"
    );
    eprintln!(
        "20 bindings Ready in {:.1}s; {} AWS calls, {throttled} throttled",
        started.elapsed().as_secs_f64(),
        aws.knobs().total_calls()
    );

    // EKS refuses everything for a while: more than the call retries absorb. The new
    // binding shows it as progress, then gets Ready once EKS answers again.
    aws.knobs().set_throttle(Service::Eks, 0, 0.0);
    env.apply("late", json!({})).await;
    let b = env
        .wait_ready("late", "Throttled", |_, c| c.reason == "Throttled")
        .await;
    assert_eq!(
        kstatus_of(&b),
        [("Reconciling".to_owned(), "Throttled".to_owned())]
    );
    aws.knobs().clear_throttle(Service::Eks);
    env.wait_converged("late").await;

    // Let the watch catch up with the last writes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    watch.abort();
    let errors = seen_errors.lock().expect("lock").clone();
    assert!(
        errors.is_empty(),
        "failures shown under throttling: {errors:#?}"
    );
    let warnings: Vec<(String, String)> = env
        .event_reasons()
        .await
        .into_iter()
        .filter(|(t, _)| t == "Warning")
        .collect();
    assert!(warnings.is_empty(), "Warning events: {warnings:?}");
    let reasons = seen_reasons.lock().expect("lock").clone();
    assert!(
        reasons.iter().all(|r| r == "Reconciling/Throttled"),
        "{reasons:?}"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_side_limit_paces_calls_to_each_service() {
    let iam = Rate {
        per_second: 20.0,
        burst: 4,
    };
    let eks = Rate {
        per_second: 10.0,
        burst: 2,
    };
    let (env, aws) = start(SimConfig::default(), |s| {
        s.iam_rate = Some(iam);
        s.eks_rate = Some(eks);
        s.concurrency = 8;
    })
    .await;
    // Samples of the calls counted so far, each between two clock readings.
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (aws, done) = (aws.clone(), done.clone());
        tokio::spawn(async move {
            let mut samples = Vec::new();
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let before = Instant::now();
                let counts = (
                    aws.knobs().calls_of_service(Service::Iam),
                    aws.knobs().calls_of_service(Service::Eks),
                );
                samples.push((before, counts, Instant::now()));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            samples
        })
    };
    let names: Vec<String> = (0..20).map(|i| format!("paced-{i:02}")).collect();
    for n in &names {
        env.apply(n, json!({"role": {"managedPolicyArns": [READ_ONLY]}}))
            .await;
    }
    for n in &names {
        env.wait_converged(n).await;
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let samples = sampler.await.expect("sampler");
    let (iam_total, eks_total) = samples.last().expect("samples").1;
    assert!(
        iam_total >= 50 && eks_total >= 30,
        "too few calls to measure: {iam_total} IAM, {eks_total} EKS"
    );
    // Between any two samples, no more calls than the bucket allows over the longest
    // time that can separate them (an upper bound only: a slow machine makes fewer).
    let mut worst = (0.0f64, 0.0f64);
    for (i, (before_i, (iam_i, eks_i), _)) in samples.iter().enumerate() {
        for (_, (iam_j, eks_j), after_j) in &samples[i + 1..] {
            let secs = (*after_j - *before_i).as_secs_f64();
            for (rate, calls, w) in [
                (iam, iam_j - iam_i, &mut worst.0),
                (eks, eks_j - eks_i, &mut worst.1),
            ] {
                let allowed = f64::from(rate.burst) + rate.per_second * secs + 1.0;
                assert!(
                    calls as f64 <= allowed,
                    "{calls} calls in {secs:.2}s, limit {rate:?}"
                );
                if secs >= 1.0 {
                    *w = w.max(calls as f64 / secs);
                }
            }
        }
    }
    eprintln!(
        "busiest rate over any second or more: IAM {:.1}/s (limit {}), EKS {:.1}/s (limit {})",
        worst.0, iam.per_second, worst.1, eks.per_second
    );
    env.stop().await;
}
