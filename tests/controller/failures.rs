//! Failed passes: environment problems reported and recovered from, and a failed pass
//! waiting out its backoff while the kstatus conditions say Reconciling or Stalled.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pod_identity_operator::aws::faults::{Fault, Service};
use pod_identity_operator::aws::sim::{AwsSim, SimConfig};
use serde_json::json;

use crate::support;
use crate::support::kstatus_of;
use crate::support::{Env, WAIT, ready};
use crate::{CLUSTER, owned_roles, start, write_calls};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_problems_are_reported_and_recovered_from() {
    // The cluster does not exist yet.
    let aws = Arc::new(AwsSim::new(SimConfig::default()));
    let env = Env::start(
        CLUSTER,
        aws.clone(),
        aws.clone(),
        support::under_rendered_policy(&aws, CLUSTER, |_| {}),
    )
    .await;
    env.apply("early", json!({})).await;
    let b = env
        .wait_ready("early", "ClusterNotFound", |_, c| {
            c.reason == "ClusterNotFound"
        })
        .await;
    assert!(ready(&b).is_some_and(|c| c.message.contains("--cluster-name")));
    assert_eq!(write_calls(&aws), 0);
    aws.add_cluster(CLUSTER);
    env.wait_converged("early").await;

    // A missing permission for a few calls, then granted.
    let next = aws.knobs().calls_of("CreateRole") + 1;
    for n in next..next + 3 {
        aws.knobs().fail_nth(
            "CreateRole",
            n,
            Fault::new(
                "AccessDenied",
                "User is not authorized to perform: iam:CreateRole",
            ),
        );
    }
    env.apply("denied", json!({})).await;
    let note = env.wait_warning("denied", "AccessDenied").await;
    assert!(note.contains("iam:CreateRole"), "{note}");
    env.wait_converged("denied").await;

    // A full quota.
    let next = aws.knobs().calls_of("CreatePodIdentityAssociation") + 1;
    for n in next..next + 3 {
        aws.knobs().fail_nth(
            "CreatePodIdentityAssociation",
            n,
            Fault::new("ServiceQuotaExceededException", "association quota reached"),
        );
    }
    env.apply("crowded", json!({})).await;
    env.wait_warning("crowded", "QuotaExceeded").await;
    env.wait_converged("crowded").await;
    let reasons = env.event_reasons().await;
    for wanted in ["ClusterNotFound", "AccessDenied", "QuotaExceeded"] {
        assert!(
            reasons.iter().any(|(t, r)| t == "Warning" && r == wanted),
            "no Warning {wanted} event"
        );
    }
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_pass_waits_out_its_backoff_and_conditions_say_reconciling_or_stalled() {
    let (env, aws) = start(SimConfig::default(), |s| {
        s.retry_base = Duration::from_secs(1);
        s.retry_max = Duration::from_secs(2);
    })
    .await;
    // A server error on the first CreateRole. The same pass created the ServiceAccount
    // and wrote the status, both of which wake the binding; the retry still waits for
    // its backoff (at least half of retry_base, by the jitter).
    aws.knobs()
        .fail_nth("CreateRole", 1, Fault::server_error(Service::Iam));
    env.apply("flaky", json!({})).await;
    let calls = |n: u64| {
        let aws = aws.clone();
        async move {
            let deadline = Instant::now() + WAIT;
            while aws.knobs().calls_of("CreateRole") < n {
                assert!(Instant::now() < deadline, "CreateRole call {n} never came");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Instant::now()
        }
    };
    let first = calls(1).await;
    let b = env
        .wait_ready("flaky", "Retrying", |_, c| c.reason == "Retrying")
        .await;
    assert_eq!(
        kstatus_of(&b),
        [("Reconciling".to_owned(), "Retrying".to_owned())]
    );
    let second = calls(2).await;
    assert!(
        second - first >= Duration::from_millis(450),
        "retried after {:?}",
        second - first
    );
    let b = env.wait_converged("flaky").await;
    assert!(kstatus_of(&b).is_empty(), "{:?}", kstatus_of(&b));
    assert_eq!(aws.knobs().calls_of("CreateRole"), 2);
    assert_eq!(owned_roles(&aws, "flaky"), 1);

    // A problem that needs a person: Stalled, until it is fixed (every CreateRole is
    // denied until the faults are cleared).
    aws.knobs().fail_random(
        1,
        1.0,
        Fault::new("AccessDenied", "not authorized to perform: iam:CreateRole"),
        &["CreateRole"],
    );
    env.apply("denied", json!({})).await;
    let b = env
        .wait_ready("denied", "AccessDenied", |_, c| c.reason == "AccessDenied")
        .await;
    assert_eq!(
        kstatus_of(&b),
        [("Stalled".to_owned(), "AccessDenied".to_owned())]
    );
    let stalled = b
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Stalled"))
        .expect("Stalled");
    assert_eq!(stalled.observed_generation, Some(1));
    aws.knobs().clear_faults();
    let b = env.wait_converged("denied").await;
    assert!(kstatus_of(&b).is_empty());
    env.stop().await;
}
