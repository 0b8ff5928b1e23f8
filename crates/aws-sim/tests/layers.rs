//! The call stack's layers (`pod_identity_aws::layer`) over the simulator: every
//! method forwarded, metering, and the rate limiter's pacing and throttling retries.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pod_identity_aws::layer::{Call, CallObserver, Layer, Layered, Service};
use pod_identity_aws::metered::Metered;
use pod_identity_aws::ratelimit::{Rate, RateLimited, THROTTLE_ATTEMPTS};
use pod_identity_aws::{
    CreateAssociation, CreateRole, EksApi, IamApi, Result, Tags, UpdateAssociation,
};
use pod_identity_aws_sim::faults::{Fault, Faulty, Knobs};
use pod_identity_aws_sim::{AwsSim, SimConfig, administrator_policy};

/// A layer that notes each operation it passes on, and when it is done.
struct Note(&'static str, Arc<Mutex<Vec<String>>>);

impl Layer for Note {
    async fn call<'a, R, F, Fut>(&'a self, call: Call, f: F) -> Result<R>
    where
        F: Fn() -> Fut + Send + Sync + 'a,
        Fut: Future<Output = Result<R>> + Send + 'a,
        R: Send + 'a,
    {
        let note = |s: String| self.1.lock().expect("notes").push(s);
        note(format!("{} {}", self.0, call.operation));
        let r = f().await;
        note(format!("{} done", self.0));
        r
    }
}

/// Every method of both traits reaches the implementation as the operation its
/// layer was told (the simulator counts calls by operation name).
#[tokio::test]
async fn every_method_is_forwarded_under_its_operation_name() {
    let sim = Arc::new(AwsSim::new(SimConfig::default()));
    let notes = Arc::new(Mutex::new(Vec::new()));
    let aws = Layered::wrap(sim.clone(), Note("", notes.clone()));
    let doc = serde_json::json!({});
    let tags = Tags::new();
    let keys = Vec::new();
    let _ = aws.create_role(&CreateRole::default()).await;
    let _ = aws.get_role("r").await;
    let _ = aws.update_role("r", None, None).await;
    let _ = aws.update_assume_role_policy("r", &doc).await;
    let _ = aws.put_role_permissions_boundary("r", "p").await;
    let _ = aws.delete_role_permissions_boundary("r").await;
    let _ = aws.attach_role_policy("r", "p").await;
    let _ = aws.detach_role_policy("r", "p").await;
    let _ = aws.list_attached_role_policies("r").await;
    let _ = aws.put_role_policy("r", "p", &doc).await;
    let _ = aws.get_role_policy("r", "p").await;
    let _ = aws.delete_role_policy("r", "p").await;
    let _ = aws.list_role_policies("r").await;
    let _ = aws.tag_role("r", &tags).await;
    let _ = aws.untag_role("r", &keys).await;
    let _ = aws.list_role_tags("r").await;
    let _ = aws.delete_role("r").await;
    let _ = aws.list_instance_profiles_for_role("r").await;
    let _ = aws.list_roles("/").await;
    let _ = aws.describe_cluster("c").await;
    let _ = aws
        .create_pod_identity_association(&CreateAssociation::default())
        .await;
    let _ = aws.describe_pod_identity_association("c", "a").await;
    let _ = aws
        .update_pod_identity_association(&UpdateAssociation::default())
        .await;
    let _ = aws.delete_pod_identity_association("c", "a").await;
    let _ = aws.list_pod_identity_associations("c", None, None).await;
    let _ = aws.tag_resource("arn", &tags).await;
    let _ = aws.untag_resource("arn", &keys).await;
    let _ = aws.describe_addon("c", "a").await;
    let _ = aws.list_addons("c").await;
    let told: Vec<String> = notes
        .lock()
        .expect("notes")
        .iter()
        .filter_map(|n| n.strip_prefix(' '))
        .filter(|n| *n != "done")
        .map(str::to_owned)
        .collect();
    assert_eq!(told.len(), 29);
    let counted = sim.knobs().calls();
    for operation in &told {
        assert_eq!(counted.get(operation), Some(&1), "{operation}");
    }
    assert_eq!(counted.len(), 29, "{counted:?}");
}

/// Every call reported: operation, and the error code of a failed one.
#[derive(Default)]
struct Recorder(Mutex<Vec<(Service, &'static str, Option<String>)>>);

impl CallObserver for Recorder {
    fn finished(&self, call: Call, error: Option<&pod_identity_aws::Error>) {
        let code = error.map(|e| e.aws().map_or("other".into(), |a| a.code.clone()));
        self.0
            .lock()
            .expect("recorder")
            .push((call.service, call.operation, code));
    }
}

#[tokio::test]
async fn every_call_is_reported_with_its_error_once_it_finished() {
    let sim = Arc::new(AwsSim::new(SimConfig {
        identity_policy: Some(administrator_policy()),
        ..SimConfig::default()
    }));
    sim.add_cluster("prod");
    let recorder = Arc::new(Recorder::default());
    let knobs = Knobs::new();
    let aws = Metered::new(Arc::new(Faulty::wrap(sim, knobs.clone())), recorder.clone());
    assert!(aws.get_role("nobody").await.expect("GetRole").is_none());
    assert!(
        aws.describe_cluster("prod")
            .await
            .expect("describe")
            .is_some()
    );
    knobs.fail_next("DeleteRole", Fault::timeout());
    aws.delete_role("nobody").await.expect_err("timeout");
    let seen = recorder.0.lock().expect("recorder").clone();
    assert_eq!(
        seen,
        vec![
            (Service::Iam, "GetRole", None),
            (Service::Eks, "DescribeCluster", None),
            (Service::Iam, "DeleteRole", Some("Timeout".into())),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_burst_passes_at_once_then_calls_are_paced() {
    let sim = Arc::new(AwsSim::new(SimConfig {
        identity_policy: Some(administrator_policy()),
        ..SimConfig::default()
    }));
    let limited = Arc::new(RateLimited::new(
        sim.clone(),
        Some(Rate {
            per_second: 20.0,
            burst: 5,
        }),
    ));
    // 25 calls from 5 tasks: the burst of 5 at once, then 20 at 20/s, so at least
    // about a second passes (a lower bound only: the machine may be slower).
    let start = std::time::Instant::now();
    let tasks: Vec<_> = (0..5)
        .map(|_| {
            let l = limited.clone();
            tokio::spawn(async move {
                for _ in 0..5 {
                    IamApi::get_role(&*l, "r").await.expect("get_role");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    assert!(start.elapsed() >= Duration::from_millis(900));
    assert_eq!(sim.knobs().calls_of("GetRole"), 25);
}

#[tokio::test(start_paused = true)]
async fn throttled_calls_are_retried_a_bounded_number_of_times_and_pause_the_service() {
    let sim = Arc::new(AwsSim::new(SimConfig {
        identity_policy: Some(administrator_policy()),
        ..SimConfig::default()
    }));
    let limited = Arc::new(RateLimited::new(sim.clone(), None));
    // Five calls a second: concurrent callers are throttled, retried, and all pass.
    sim.knobs().set_throttle(Service::Iam, 1, 5.0);
    let tasks: Vec<_> = (0..3)
        .map(|_| {
            let l = limited.clone();
            tokio::spawn(async move { IamApi::get_role(&*l, "r").await.map(|_| ()) })
        })
        .collect();
    for t in tasks {
        t.await.expect("task").expect("passes after retries");
    }
    assert!(sim.knobs().throttled(Service::Iam) > 0);

    // A bucket that never refills: the call gives up after THROTTLE_ATTEMPTS.
    sim.knobs().set_throttle(Service::Iam, 0, 0.0);
    let before = sim.knobs().calls_of("GetRole");
    let e = IamApi::get_role(&*limited, "r")
        .await
        .expect_err("throttled");
    assert!(e.aws().is_some_and(|a| a.throttled));
    assert_eq!(
        sim.knobs().calls_of("GetRole") - before,
        u64::from(THROTTLE_ATTEMPTS)
    );
    // Other errors are not retried; EKS is not paused by IAM's throttling.
    sim.knobs().clear_throttle(Service::Iam);
    sim.knobs()
        .fail_next("GetRole", Fault::server_error(Service::Iam));
    let before = sim.knobs().calls_of("GetRole");
    assert!(IamApi::get_role(&*limited, "r").await.is_err());
    assert_eq!(sim.knobs().calls_of("GetRole") - before, 1);
}
