//! Leader election on a `coordination.k8s.io/v1` Lease, with `kube-lease-manager`.
//!
//! Every replica runs [`run_elected`]: the lease manager acquires and renews the Lease
//! (renewing `grace` seconds before it expires); the controller runs only while this
//! process holds it. Besides the manager's own notifications, the Lease is read every
//! [`CHECK_EVERY`]: the controller also stops when the last renewal this process saw is
//! about to expire (renewTime + leaseDurationSeconds − [`CHECK_EVERY`]), as happens when
//! the API server cannot be reached to renew, because another replica may take the
//! Lease over once it expires. Losing the Lease aborts the controller at once (in-flight
//! reconciles are dropped mid-way, which reconciles are built to survive), and a replica
//! that regains it starts a fresh controller. On shutdown the controller gets the
//! shutdown deadline to finish (cut short if the Lease is lost meanwhile), then the
//! Lease is released (holder cleared) so a standby takes over without waiting for it to
//! expire.
//!
//! Not implemented: handing over before shutdown (the standby only learns of the
//! release at its next look at the Lease, within the lease duration).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::metrics::Metrics;
use super::shutdown::finish_within;
use crate::{Error, Result};

/// How often this process reads the Lease to confirm it still holds it.
pub const CHECK_EVERY: Duration = Duration::from_millis(500);

/// Which Lease, and who this process is.
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    pub name: String,
    pub namespace: String,
    /// Unique per process: the host name and a random suffix.
    pub identity: String,
    /// Seconds a holder keeps the Lease without renewing it.
    pub duration: u64,
    /// Seconds before expiry at which the holder renews.
    pub grace: u64,
}

/// A unique identity for this process: `<hostname>-<8 random hex digits>`.
pub fn identity() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "pod-identity-operator".into());
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}", &suffix[..8])
}

/// Until when this process may act on the Lease as read: `None` when another identity
/// (or nobody) holds it, or when it has no renewal time or duration.
pub fn held_until(lease: &Lease, identity: &str) -> Option<SystemTime> {
    let spec = lease.spec.as_ref()?;
    if spec.holder_identity.as_deref() != Some(identity) {
        return None;
    }
    let renewed: SystemTime = spec.renew_time.as_ref()?.0.into();
    let duration = u64::try_from(spec.lease_duration_seconds?).ok()?;
    renewed.checked_add(Duration::from_secs(duration))
}

/// Whether the controller may run: the manager says this process leads, and the last
/// renewal seen is not about to expire.
pub fn may_lead(manager_says: bool, held_until: Option<SystemTime>, now: SystemTime) -> bool {
    manager_says && held_until.is_some_and(|t| now + CHECK_EVERY < t)
}

/// Runs the controller (`start`, given a token that asks it to stop gracefully) while
/// this process holds the Lease, until `stop` is cancelled; then lets it finish within
/// `deadline` and releases the Lease.
pub async fn run_elected<F, Fut>(
    client: kube::Client,
    lease: LeaseSettings,
    metrics: Arc<Metrics>,
    start: F,
    stop: CancellationToken,
    deadline: Duration,
) -> Result<()>
where
    F: Fn(CancellationToken) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let manager = LeaseManagerBuilder::new(client.clone(), &lease.name)
        .with_namespace(&lease.namespace)
        .with_identity(&lease.identity)
        .with_duration(lease.duration)
        .with_grace(lease.grace)
        .build()
        .await
        .map_err(|e| Error::LeaderElection(e.to_string()))?;
    let (mut says_leader, manager_task) = manager.watch().await;
    let leases: Api<Lease> = Api::namespaced(client, &lease.namespace);
    let mut held: Option<SystemTime> = None;
    let mut running: Option<(JoinHandle<()>, CancellationToken)> = None;
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let lead = may_lead(*says_leader.borrow(), held, SystemTime::now());
        match (lead, running.is_some()) {
            (true, false) => {
                let token = CancellationToken::new();
                running = Some((tokio::spawn(start(token.clone())), token));
                metrics.set_leader(true);
                tracing::info!(identity = %lease.identity, lease = %lease.name, "leading: reconciling");
            }
            (false, true) => {
                if let Some((task, _)) = running.take() {
                    task.abort();
                    let _ = task.await;
                }
                metrics.set_leader(false);
                metrics.controller_stopped();
                tracing::warn!(identity = %lease.identity, "lease lost: stopped reconciling");
            }
            _ => {}
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            changed = says_leader.changed() => {
                if changed.is_err() {
                    // The manager ended on an error it could not retry.
                    tracing::error!("leader election stopped");
                    break;
                }
                held = read_held(&leases, &lease, held).await;
            }
            _ = tick.tick() => {
                held = read_held(&leases, &lease, held).await;
            }
            _ = async {
                match running.as_mut() {
                    Some((task, _)) => {
                        let _ = task.await;
                    }
                    None => std::future::pending::<()>().await,
                }
            } => {
                // The controller ended by itself: started again while leading.
                running = None;
                metrics.set_leader(false);
                metrics.controller_stopped();
                tracing::warn!("the controller stopped by itself");
                tokio::time::sleep(CHECK_EVERY).await;
            }
        }
    }
    if let Some((mut task, token)) = running.take() {
        token.cancel();
        // In-flight passes finish only while the Lease is still this process's.
        let lost = async {
            loop {
                tick.tick().await;
                held = read_held(&leases, &lease, held).await;
                if !may_lead(true, held, SystemTime::now()) {
                    break;
                }
            }
        };
        let lost_it = tokio::select! {
            finished = finish_within(&mut task, &stop, deadline) => {
                if !finished {
                    tracing::warn!("shutdown deadline passed: in-flight reconciles dropped");
                }
                false
            }
            _ = lost => true,
        };
        if lost_it {
            // finish_within was dropped before the task ended: it still runs.
            task.abort();
            let _ = task.await;
            tracing::warn!("lease lost during shutdown: in-flight reconciles dropped");
        }
        metrics.controller_stopped();
    }
    metrics.set_leader(false);
    // Closing the channel makes the manager release the Lease and end.
    drop(says_leader);
    match tokio::time::timeout(Duration::from_secs(10), manager_task).await {
        Ok(Ok(Ok(_))) => tracing::info!(lease = %lease.name, "lease released"),
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "cannot release the lease"),
        Ok(Err(e)) => tracing::warn!(error = %e, "lease manager failed"),
        Err(_) => tracing::warn!("lease release timed out"),
    }
    if stop.is_cancelled() {
        Ok(())
    } else {
        Err(Error::LeaderElection("the lease manager stopped".into()))
    }
}

/// Reads the Lease; on a read failure the last value seen stands (it expires by itself).
async fn read_held(
    leases: &Api<Lease>,
    lease: &LeaseSettings,
    last: Option<SystemTime>,
) -> Option<SystemTime> {
    match tokio::time::timeout(CHECK_EVERY * 4, leases.get_opt(&lease.name)).await {
        Ok(Ok(Some(l))) => held_until(&l, &lease.identity),
        Ok(Ok(None)) => None,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "cannot read the lease");
            last
        }
        Err(_) => last,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

    fn lease(holder: Option<&str>, renewed: Option<SystemTime>, seconds: Option<i32>) -> Lease {
        Lease {
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_owned),
                renew_time: renewed.map(|t| MicroTime(t.try_into().expect("time in range"))),
                lease_duration_seconds: seconds,
                ..LeaseSpec::default()
            }),
            ..Lease::default()
        }
    }

    #[test]
    fn a_lease_is_held_until_its_renewal_plus_duration_by_its_holder_only() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let l = lease(Some("me"), Some(t), Some(15));
        assert_eq!(held_until(&l, "me"), Some(t + Duration::from_secs(15)));
        assert_eq!(held_until(&l, "other"), None);
        assert_eq!(held_until(&lease(None, Some(t), Some(15)), "me"), None);
        assert_eq!(held_until(&lease(Some("me"), None, Some(15)), "me"), None);
        assert_eq!(held_until(&lease(Some("me"), Some(t), None), "me"), None);
        assert_eq!(held_until(&Lease::default(), "me"), None);
    }

    #[test]
    fn leading_needs_the_manager_and_a_renewal_not_about_to_expire() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let later = Some(now + Duration::from_secs(10));
        assert!(may_lead(true, later, now));
        assert!(
            !may_lead(false, later, now),
            "the manager says another leads"
        );
        assert!(!may_lead(true, None, now), "not seen holding it");
        assert!(
            !may_lead(true, Some(now + CHECK_EVERY / 2), now),
            "about to expire"
        );
        assert!(!may_lead(true, Some(now - Duration::from_secs(1)), now));
    }

    #[test]
    fn identities_are_unique_per_process() {
        assert_ne!(identity(), identity());
    }
}
