use futures::StreamExt;
use kube::api::{ApiResource, DynamicObject, ObjectMeta};
use kube::runtime::reflector;
use kube::runtime::watcher::Event;

use super::*;
use crate::controller::settings::Settings;
use crate::controller::status::Retry;
use crate::crd::PodIdentityBinding;

fn ar() -> ApiResource {
    ApiResource::erase::<PodIdentityBinding>(&())
}

fn cached(name: &str, uid: &str) -> CachedBinding {
    let mut b = DynamicObject::new(name, &ar()).within("team");
    b.metadata = ObjectMeta {
        uid: Some(uid.into()),
        ..b.metadata
    };
    b.data = serde_json::json!({"spec": {}});
    CachedBinding::from(b)
}

#[test]
fn the_period_is_a_sixteenth_of_the_resync_within_5_to_30_seconds() {
    assert_eq!(
        period(Duration::from_secs(120)),
        Duration::from_millis(7500)
    );
    assert_eq!(period(Duration::from_secs(2)), Duration::from_secs(5));
    assert_eq!(period(Duration::from_secs(3600)), Duration::from_secs(30));
}

#[tokio::test(start_paused = true)]
async fn late_resyncs_and_late_retries_are_both_found() {
    let (confirmed, backoffs) = (Confirmed::default(), Backoffs::default());
    let grace = Duration::from_secs(10);
    let ttl = Duration::from_secs(120);
    let mut settings = Settings::new("prod");
    settings.retry_slow = Duration::from_secs(60);
    let phase = crate::controller::backoff::Phase {
        generation: Some(1),
        deleting: false,
    };
    let t0 = Instant::now();
    confirmed.record("ready", Some(1), t0, ttl);
    backoffs.failed(&settings, "failing", phase, Retry::Slow);
    assert!(late_uids(&confirmed, &backoffs, t0, grace).is_empty());
    let later = t0 + ttl + grace + Duration::from_secs(1);
    let late = late_uids(&confirmed, &backoffs, later, grace);
    assert_eq!(late, HashSet::from(["ready".into(), "failing".into()]));
}

#[test]
fn only_cached_bindings_are_woken() {
    let cached = [Arc::new(cached("a", "ua")), Arc::new(cached("b", "ub"))];
    let late = HashSet::from(["ua".to_owned(), "deleted-since".to_owned()]);
    let wake = to_wake(&cached, &late);
    assert_eq!(wake, [ObjectRef::new("a").within("team")]);
}

/// A requeue dropped on purpose: the binding was confirmed, its resync never came.
/// The sweep wakes it once it is a period late, and again at each sweep until a pass
/// takes the confirmation away.
#[tokio::test(start_paused = true)]
async fn a_binding_whose_resync_never_came_is_woken_by_the_next_sweep() {
    let mut writer = reflector::store::Writer::default();
    let reader = writer.as_reader();
    writer.apply_watcher_event(&Event::Apply(cached("a", "ua")));
    writer.apply_watcher_event(&Event::Apply(cached("b", "ub")));
    let confirmed = Arc::new(Confirmed::default());
    let ttl = Duration::from_secs(160);
    let every = period(ttl);
    confirmed.record("ua", Some(1), Instant::now(), ttl);
    confirmed.record("ub", Some(1), Instant::now() + 3 * every, ttl);
    let backoffs = Arc::new(Backoffs::default());
    let (c, b) = (confirmed.clone(), backoffs.clone());
    let counts = Arc::new(std::sync::Mutex::new(Vec::new()));
    let heard = counts.clone();
    let wakes = sweeps(
        every,
        move |now| late_uids(&c, &b, now, every),
        reader,
        move |n| heard.lock().expect("counts").push(n),
    );
    let mut wakes = std::pin::pin!(wakes);
    let started = Instant::now();
    let first = wakes.next().await.expect("a wake");
    assert_eq!(first, ObjectRef::new("a").within("team"));
    let waited = started.elapsed();
    assert!(
        waited > ttl + every && waited <= ttl + 2 * every,
        "{waited:?}"
    );
    // Still not reconciled: woken again at the next sweep.
    assert_eq!(wakes.next().await, Some(first));
    assert_eq!(started.elapsed(), waited + every);
    // Its pass ran and confirmed it again; `b` is the next to be late.
    confirmed.record("ua", Some(1), Instant::now(), ttl);
    let next = wakes.next().await.expect("a wake");
    assert_eq!(next, ObjectRef::new("b").within("team"));
    // Each sweep said how many it found: one binding at each of the three wakes, none
    // at the others.
    let counts = counts.lock().expect("counts").clone();
    assert_eq!(counts.iter().filter(|n| **n == 1).count(), 3, "{counts:?}");
    assert!(counts.iter().all(|n| *n <= 1), "{counts:?}");
    assert_eq!(counts.last(), Some(&1), "{counts:?}");
}
