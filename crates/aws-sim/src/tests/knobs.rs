//! The knobs: added latency, the token buckets, injected faults (by call number, by
//! seed, in front of any implementation) and the per-operation call counters.

use tokio::time::Instant;

use super::*;
use crate::faults::Service;

#[tokio::test(start_paused = true)]
async fn latency_is_added_to_each_call() {
    let sim = sim(SimConfig::default());
    sim.knobs().set_latency(Duration::from_millis(100));
    sim.knobs()
        .set_operation_latency("GetRole", Duration::from_secs(2));
    let start = Instant::now();
    sim.describe_cluster("c1").await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(100));
    let start = Instant::now();
    sim.get_role("absent").await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn token_bucket_throttles_each_service_apart() {
    let sim = sim(SimConfig::default());
    sim.knobs().set_throttle(Service::Iam, 2, 1.0);
    sim.get_role("a").await.unwrap();
    sim.get_role("a").await.unwrap();
    let e = sim.get_role("a").await.unwrap_err();
    let e = e.aws().unwrap();
    assert_eq!(
        (e.code.as_str(), e.class, e.throttled),
        ("Throttling", ErrorClass::Transient, true)
    );
    // EKS has no bucket: unaffected.
    sim.describe_cluster("c1").await.unwrap();
    tokio::time::advance(Duration::from_secs(1)).await;
    sim.get_role("a").await.unwrap();
    assert!(sim.get_role("a").await.is_err());

    sim.knobs().set_throttle(Service::Eks, 1, 0.5);
    sim.describe_cluster("c1").await.unwrap();
    let (c, _) = code(sim.describe_cluster("c1").await);
    assert_eq!(c, "ThrottlingException");
    sim.knobs().clear_throttle(Service::Eks);
    sim.describe_cluster("c1").await.unwrap();
    // Counted per service, throttled calls apart.
    let k = sim.knobs();
    assert_eq!(
        (k.calls_of_service(Service::Iam), k.throttled(Service::Iam)),
        (5, 2)
    );
    assert_eq!(
        (k.calls_of_service(Service::Eks), k.throttled(Service::Eks)),
        (4, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn write_bucket_throttles_writes_only_and_counts_refusals() {
    let sim = sim(SimConfig::default());
    sim.knobs().set_write_throttle(Service::Iam, 1, 1.0);
    role(&sim, "one").await;
    let e = sim
        .create_role(&CreateRole {
            name: "two".into(),
            path: "/".into(),
            assume_role_policy: trust(),
            ..CreateRole::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.aws().unwrap().code, "Throttling");
    // Reads pass whatever the write bucket holds.
    for _ in 0..5 {
        sim.get_role("one").await.unwrap();
    }
    assert_eq!(sim.knobs().calls_of("CreateRole"), 2);
    assert_eq!(
        sim.knobs()
            .throttled_by_operation()
            .into_iter()
            .collect::<Vec<_>>(),
        [("CreateRole".to_owned(), 1)]
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    role(&sim, "two").await;
    sim.knobs().reset_calls();
    assert!(sim.knobs().throttled_by_operation().is_empty());
    sim.knobs().clear_throttle(Service::Iam);
    role(&sim, "three").await;
    role(&sim, "four").await;
}

#[tokio::test]
async fn nth_call_fault_fails_exactly_that_call() {
    let sim = sim(SimConfig::default());
    sim.knobs()
        .fail_nth("CreateRole", 2, Fault::server_error(Service::Iam));
    role(&sim, "one").await;
    let e = sim
        .create_role(&CreateRole {
            name: "two".into(),
            path: "/".into(),
            assume_role_policy: trust(),
            ..CreateRole::default()
        })
        .await
        .unwrap_err();
    let e = e.aws().unwrap();
    assert_eq!(
        (e.code.as_str(), e.class, e.http_status),
        ("ServiceFailure", ErrorClass::Transient, Some(500))
    );
    assert!(
        sim.inventory().role("two").is_none(),
        "a failed call changes nothing"
    );
    role(&sim, "two").await;
    assert_eq!(
        sim.knobs().calls_of("CreateRole"),
        3,
        "failed calls are counted"
    );

    sim.knobs()
        .fail_next("DescribeCluster", Fault::new("AccessDeniedException", "no"));
    let (c, class) = code(sim.describe_cluster("c1").await);
    assert_eq!(
        (c.as_str(), class),
        ("AccessDeniedException", ErrorClass::AccessDenied)
    );
    sim.describe_cluster("c1").await.unwrap();
}

#[tokio::test]
async fn random_faults_follow_their_seed() {
    async fn outcomes(seed: u64) -> Vec<bool> {
        let sim = sim(SimConfig::default());
        sim.knobs().fail_random(
            seed,
            0.3,
            Fault::throttling(Service::Eks),
            &["DescribeCluster"],
        );
        let mut v = Vec::new();
        for _ in 0..200 {
            v.push(sim.describe_cluster("c1").await.is_ok());
        }
        // Operations not listed never fail.
        sim.get_role("x").await.unwrap();
        v
    }
    let a = outcomes(7).await;
    assert_eq!(a, outcomes(7).await, "same seed, same failures");
    assert_ne!(a, outcomes(8).await);
    let failures = a.iter().filter(|ok| !**ok).count();
    assert!(
        (30..=90).contains(&failures),
        "about 30% of 200: {failures}"
    );
}

#[tokio::test]
async fn call_counters_count_per_operation() {
    let sim = sim(SimConfig::default());
    role(&sim, "r").await;
    sim.get_role("r").await.unwrap();
    sim.get_role("r").await.unwrap();
    sim.describe_cluster("c1").await.unwrap();
    let calls = sim.knobs().calls();
    assert_eq!(calls.get("CreateRole"), Some(&1));
    assert_eq!(calls.get("GetRole"), Some(&2));
    assert_eq!(calls.get("DescribeCluster"), Some(&1));
    assert_eq!(sim.knobs().total_calls(), 4);
    sim.knobs().reset_calls();
    assert_eq!(sim.knobs().total_calls(), 0);
}

#[tokio::test]
async fn faulty_wrapper_injects_in_front_of_any_implementation() {
    let inner = sim(SimConfig::default());
    let knobs = crate::faults::Knobs::new();
    let wrapped = Faulty::wrap(inner.clone(), knobs.clone());
    knobs.fail_next("GetRole", Fault::throttling(Service::Iam));
    assert!(wrapped.get_role("x").await.is_err());
    assert_eq!(
        inner.knobs().calls_of("GetRole"),
        0,
        "the failed call never reached the inner"
    );
    wrapped.get_role("x").await.unwrap();
    assert_eq!(inner.knobs().calls_of("GetRole"), 1);
    assert_eq!(knobs.calls_of("GetRole"), 2);
    assert!(wrapped.describe_cluster("c1").await.unwrap().is_some());
    let iam: Arc<dyn IamApi> = Arc::new(Faulty::wrap(inner.clone(), knobs.clone()));
    let eks: Arc<dyn EksApi> = Arc::new(Faulty::wrap(inner, knobs));
    assert!(iam.get_role("x").await.unwrap().is_none());
    assert!(eks.describe_cluster("nope").await.unwrap().is_none());
}
