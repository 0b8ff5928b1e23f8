//! How long a converged binding waits for its resync.
//!
//! The resync reads a binding's role, policies and association again to find drift.
//! Those reads share each AWS service's client-side rate ([`Rate`]) with every change the
//! operator makes. Once the resync alone asks for more calls than a rate allows, the
//! work queue never drains, and kube-runtime's scheduler takes waiting bindings in an
//! arbitrary but stable order: the same few wait forever, new and changed ones included.
//! So the interval is stretched until the resync of all bindings spends at most
//! [`RESYNC_SHARE`] of each rate: with N bindings whose passes read `c` times from a
//! service limited to `r` calls per second, at least N × c / (r × share). The operator's
//! `--resync-interval` is the least it waits. A random 0–10% is added so that bindings
//! converged together do not come due together.
//!
//! Every binding is assumed to cost what this one does; the share holds on average over
//! bindings of mixed specs, not for each.

use std::time::Duration;

use super::desired::{Desired, DesiredRole};
use crate::aws::ratelimit::Rate;

/// The part of a service's rate the resync may take.
pub const RESYNC_SHARE: f64 = 0.5;

/// The longest a paced resync waits, whatever the count of bindings.
pub const MAX_RESYNC: Duration = Duration::from_secs(24 * 3600);

/// AWS reads of one pass over a converged binding, by service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PassReads {
    pub iam: u32,
    pub eks: u32,
}

impl PassReads {
    /// What a pass reads for `desired`: a managed role with its attached and inline
    /// policies (GetRole, ListAttachedRolePolicies, ListRolePolicies, one GetRolePolicy
    /// each) or the user's role (GetRole), and the association (ListPodIdentityAssociations,
    /// DescribePodIdentityAssociation).
    pub fn of(desired: &Desired) -> PassReads {
        let iam = match &desired.role {
            DesiredRole::Existing { .. } => 1,
            DesiredRole::Managed(m) => {
                3 + u32::try_from(m.inline_policies.len()).unwrap_or(u32::MAX - 3)
            }
        };
        PassReads { iam, eks: 2 }
    }
}

/// The resync interval for `bindings` bindings each reading `reads`, at least `base`.
pub fn resync_interval(
    base: Duration,
    bindings: usize,
    reads: PassReads,
    iam: Option<Rate>,
    eks: Option<Rate>,
) -> Duration {
    let needed = |calls: u32, rate: Option<Rate>| match rate {
        Some(r) if r.per_second.is_finite() && r.per_second > 0.0 => {
            bindings as f64 * f64::from(calls) / (r.per_second * RESYNC_SHARE)
        }
        _ => 0.0,
    };
    let paced = needed(reads.iam, iam)
        .max(needed(reads.eks, eks))
        .min(MAX_RESYNC.as_secs_f64());
    base.max(Duration::from_secs_f64(paced))
}

/// `interval` less a random 0–10%: bindings confirmed together come due spread over
/// the last tenth of the interval, and each is read again within one interval.
pub fn jittered(interval: Duration) -> Duration {
    interval.mul_f64(1.0 - rand::random::<f64>() * 0.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Duration = Duration::from_secs(300);
    const TEN: Option<Rate> = Some(Rate {
        per_second: 10.0,
        burst: 20,
    });
    const READS: PassReads = PassReads { iam: 4, eks: 2 };

    #[test]
    fn few_bindings_resync_at_the_base_interval() {
        assert_eq!(resync_interval(BASE, 1, READS, TEN, TEN), BASE);
        // 300 bindings × 4 IAM reads at half of 10/s is 240 s: under the base.
        assert_eq!(resync_interval(BASE, 300, READS, TEN, TEN), BASE);
    }

    #[test]
    fn many_bindings_stretch_it_to_half_the_slowest_services_rate() {
        // 1,000 × 4 IAM reads / (10/s × 0.5) = 800 s; EKS needs 400 s.
        assert_eq!(
            resync_interval(BASE, 1000, READS, TEN, TEN),
            Duration::from_secs(800)
        );
        let slow_eks = Some(Rate {
            per_second: 1.0,
            burst: 1,
        });
        assert_eq!(
            resync_interval(BASE, 1000, READS, TEN, slow_eks),
            Duration::from_secs(4000)
        );
        // The resync asks for at most half of the rate: N × reads / interval.
        let n = 5000;
        let interval = resync_interval(BASE, n, READS, TEN, TEN);
        let iam_per_second = n as f64 * 4.0 / interval.as_secs_f64();
        assert!((iam_per_second - 5.0).abs() < 1e-9, "{iam_per_second}");
    }

    #[test]
    fn unlimited_services_are_not_paced_and_the_stretch_is_capped() {
        assert_eq!(resync_interval(BASE, 100_000, READS, None, None), BASE);
        let zero = Some(Rate {
            per_second: 0.0,
            burst: 1,
        });
        assert_eq!(resync_interval(BASE, 100_000, READS, zero, None), BASE);
        let tiny = Some(Rate {
            per_second: 1e-9,
            burst: 1,
        });
        assert_eq!(
            resync_interval(BASE, usize::MAX, READS, tiny, None),
            MAX_RESYNC
        );
    }

    #[test]
    fn jitter_takes_off_up_to_a_tenth() {
        for _ in 0..200 {
            let j = jittered(BASE);
            assert!(j <= BASE && j >= BASE.mul_f64(0.9), "{j:?}");
        }
    }
}
