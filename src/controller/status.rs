//! Status: the reasons a binding can report, the one mapping from errors to reasons and
//! retry delays (DESIGN §3's table), and the conditions computed from an outcome.
//!
//! Conditions follow `metav1.Condition` and kstatus: `Ready` plus one condition per
//! resource, each with `observedGeneration`. A condition that stays `True` keeps its
//! reason and `lastTransitionTime`, and messages are computed from the spec and what
//! exists, so a converged binding's status does not change between resyncs and is not
//! written.

use std::time::Duration;

use chrono::{SecondsFormat, Utc};

use crate::Error;
use crate::crd::{Condition, PodIdentityBindingStatus};
use crate::error::{AwsError, ErrorClass};

/// Every reason a condition can carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    Reconciled,
    RoleCreated,
    RoleExisting,
    ServiceAccountCreated,
    ServiceAccountFound,
    ServiceAccountNotFound,
    AssociationCreated,
    AssociationAdopted,
    Waiting,
    Retrying,
    RolePropagating,
    InvalidSpec,
    PolicyDenied,
    RoleConflict,
    RoleNotFound,
    RoleTrustMissing,
    AssociationConflict,
    CleanupBlocked,
    AccessDenied,
    ClusterNotFound,
    QuotaExceeded,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        use Reason::*;
        match self {
            Reconciled => "Reconciled",
            RoleCreated => "RoleCreated",
            RoleExisting => "RoleExisting",
            ServiceAccountCreated => "ServiceAccountCreated",
            ServiceAccountFound => "ServiceAccountFound",
            ServiceAccountNotFound => "ServiceAccountNotFound",
            AssociationCreated => "AssociationCreated",
            AssociationAdopted => "AssociationAdopted",
            Waiting => "Waiting",
            Retrying => "Retrying",
            RolePropagating => "RolePropagating",
            InvalidSpec => "InvalidSpec",
            PolicyDenied => "PolicyDenied",
            RoleConflict => "RoleConflict",
            RoleNotFound => "RoleNotFound",
            RoleTrustMissing => "RoleTrustMissing",
            AssociationConflict => "AssociationConflict",
            CleanupBlocked => "CleanupBlocked",
            AccessDenied => "AccessDenied",
            ClusterNotFound => "ClusterNotFound",
            QuotaExceeded => "QuotaExceeded",
        }
    }
}

/// How long to wait before the next attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// Exponential backoff with jitter.
    Backoff,
    /// A short fixed delay (propagation, release windows).
    Soon,
    /// A slow requeue: conflicts and environment problems that someone must fix.
    Slow,
    /// Nothing until the spec changes.
    OnChange,
}

/// A failure as the status reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    pub reason: Reason,
    pub message: String,
    pub retry: Retry,
}

/// Which AWS call failed matters for some codes; the operation is in the error.
pub fn problem_of(err: &Error, role_within_propagation_window: bool) -> Problem {
    match err {
        Error::InvalidSpec { .. } => Problem {
            reason: Reason::InvalidSpec,
            message: err.to_string(),
            retry: Retry::OnChange,
        },
        // A guardrail change wakes every binding (the configuration is watched), so
        // nothing is retried until the spec or the configuration changes.
        Error::PolicyDenied { .. } => Problem {
            reason: Reason::PolicyDenied,
            message: err.to_string(),
            retry: Retry::OnChange,
        },
        Error::Aws(e) => aws_problem(e, role_within_propagation_window),
        other => Problem {
            reason: Reason::Retrying,
            message: other.to_string(),
            retry: Retry::Backoff,
        },
    }
}

/// The failure without its request id, which changes on every attempt and would make
/// an unchanged status look changed.
struct Brief<'a>(&'a AwsError);

impl std::fmt::Display for Brief<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} failed: {}: {}",
            self.0.operation, self.0.code, self.0.message
        )
    }
}

fn aws_problem(full: &AwsError, in_window: bool) -> Problem {
    let e = &Brief(full);
    let p = |reason, message: String, retry| Problem {
        reason,
        message,
        retry,
    };
    match full.class {
        ErrorClass::Transient => p(Reason::Retrying, format!("{e}; retrying"), Retry::Backoff),
        ErrorClass::Propagation if in_window => p(
            Reason::RolePropagating,
            format!("the new role is not yet visible to EKS ({e}); retrying shortly"),
            Retry::Soon,
        ),
        ErrorClass::Propagation => p(
            Reason::Retrying,
            format!(
                "EKS still does not see the role long after it was created ({e}); check that the role exists in the cluster's account"
            ),
            Retry::Backoff,
        ),
        ErrorClass::UserInput if full.message.contains("Cross-account pass role") => p(
            Reason::InvalidSpec,
            format!(
                "{e}: the role must be in the cluster's account; name a role of the other account in targetRoleArn"
            ),
            Retry::OnChange,
        ),
        ErrorClass::UserInput => p(
            Reason::InvalidSpec,
            format!("AWS refused the request: {e}; fix the spec"),
            Retry::OnChange,
        ),
        ErrorClass::Conflict if full.code == "DeleteConflict" => p(
            Reason::CleanupBlocked,
            format!("{e}; remove what still holds the role"),
            Retry::Slow,
        ),
        ErrorClass::Conflict if full.code.starts_with("ResourceInUse") => p(
            Reason::Retrying,
            format!(
                "{e}; a previous association for this ServiceAccount is still being released, retrying"
            ),
            Retry::Soon,
        ),
        ErrorClass::Conflict => p(Reason::Retrying, format!("{e}; retrying"), Retry::Backoff),
        ErrorClass::AccessDenied => p(
            Reason::AccessDenied,
            format!("{e}: grant the operator's IAM role this action (see config/iam)"),
            Retry::Slow,
        ),
        ErrorClass::NotFound => p(Reason::Retrying, format!("{e}; retrying"), Retry::Backoff),
        ErrorClass::Quota => p(
            Reason::QuotaExceeded,
            format!("{e}: raise the quota or remove unused resources"),
            Retry::Slow,
        ),
    }
}

/// The backoff delay for the `failures`-th consecutive failure, with up to 25% jitter.
pub fn backoff(base: Duration, max: Duration, failures: u32) -> Duration {
    let exp = base.saturating_mul(1u32 << failures.min(16)).min(max);
    let jitter = rand::random::<f64>() * 0.25;
    exp.mul_f64(1.0 + jitter).min(max)
}

/// The state of one condition.
#[derive(Clone, Debug, PartialEq)]
pub struct State {
    pub status: &'static str,
    pub reason: Reason,
    pub message: String,
}

impl State {
    pub fn ok(reason: Reason, message: impl Into<String>) -> Self {
        State {
            status: "True",
            reason,
            message: message.into(),
        }
    }
    pub fn failed(reason: Reason, message: impl Into<String>) -> Self {
        State {
            status: "False",
            reason,
            message: message.into(),
        }
    }
    pub fn unknown() -> Self {
        State {
            status: "Unknown",
            reason: Reason::Waiting,
            message: "waiting for an earlier step".into(),
        }
    }
}

/// The four conditions of a binding.
#[derive(Clone, Debug, PartialEq)]
pub struct Conditions {
    pub ready: State,
    pub role: State,
    pub service_account: State,
    pub association: State,
}

/// Merges new condition states into the old list: a condition whose status is
/// unchanged keeps its `lastTransitionTime`, and one that stays `True` keeps its reason
/// (say `AssociationAdopted`, which only the adopting pass reports).
pub fn merge(old: &[Condition], new: &Conditions, generation: Option<i64>) -> Vec<Condition> {
    let now = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true);
    [
        ("Ready", &new.ready),
        ("RoleReady", &new.role),
        ("ServiceAccountReady", &new.service_account),
        ("AssociationReady", &new.association),
    ]
    .into_iter()
    .map(|(type_, state)| {
        let previous = old.iter().find(|c| c.type_ == type_);
        let mut c = Condition {
            type_: type_.to_owned(),
            status: state.status.to_owned(),
            reason: state.reason.as_str().to_owned(),
            message: state.message.clone(),
            last_transition_time: now.clone(),
            observed_generation: generation,
        };
        if let Some(p) = previous
            && p.status == c.status
        {
            c.last_transition_time = p.last_transition_time.clone();
            if c.status == "True" {
                c.reason = p.reason.clone();
            }
        }
        c
    })
    .collect()
}

/// True when the stored status already says what `new` says.
pub fn unchanged(old: Option<&PodIdentityBindingStatus>, new: &PodIdentityBindingStatus) -> bool {
    old == Some(new)
}

/// The Ready condition as the binding's status holds it.
pub fn ready_of(status: Option<&PodIdentityBindingStatus>) -> Option<&Condition> {
    status?.conditions.iter().find(|c| c.type_ == "Ready")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::faults::aws_error;

    #[test]
    fn error_classes_map_to_the_design_reasons() {
        let cases = [
            (
                "CreateRole",
                "Throttling",
                "slow down",
                Reason::Retrying,
                Retry::Backoff,
            ),
            (
                "CreatePodIdentityAssociation",
                "InvalidParameterException",
                "Role provided in the request does not exist",
                Reason::RolePropagating,
                Retry::Soon,
            ),
            (
                "CreateRole",
                "MalformedPolicyDocument",
                "bad",
                Reason::InvalidSpec,
                Retry::OnChange,
            ),
            (
                "DeleteRole",
                "DeleteConflict",
                "instance profile",
                Reason::CleanupBlocked,
                Retry::Slow,
            ),
            (
                "CreateRole",
                "AccessDenied",
                "no",
                Reason::AccessDenied,
                Retry::Slow,
            ),
            (
                "CreateRole",
                "LimitExceeded",
                "quota",
                Reason::QuotaExceeded,
                Retry::Slow,
            ),
            (
                "CreatePodIdentityAssociation",
                "ResourceInUseException",
                "in use",
                Reason::Retrying,
                Retry::Soon,
            ),
        ];
        for (op, code, msg, reason, retry) in cases {
            let p = problem_of(&aws_error(op, code, msg), true);
            assert_eq!((p.reason, p.retry), (reason, retry), "{code}");
            assert!(p.message.contains(code) && !p.message.contains("request id"));
        }
        let late = problem_of(
            &aws_error(
                "CreatePodIdentityAssociation",
                "InvalidParameterException",
                "Role provided in the request does not exist",
            ),
            false,
        );
        assert_eq!(late.reason, Reason::Retrying);
        let cross = problem_of(
            &aws_error(
                "CreatePodIdentityAssociation",
                "InvalidParameterException",
                "Cross-account pass role is not allowed.",
            ),
            true,
        );
        assert!(cross.reason == Reason::InvalidSpec && cross.message.contains("targetRoleArn"));
    }

    #[test]
    fn true_conditions_keep_reason_and_time_false_ones_update() {
        let first = Conditions {
            ready: State::ok(Reason::Reconciled, "ok"),
            role: State::ok(Reason::RoleCreated, "created"),
            service_account: State::ok(Reason::ServiceAccountCreated, "created"),
            association: State::failed(Reason::Retrying, "a"),
        };
        let mut old = merge(&[], &first, Some(1));
        old[0].last_transition_time = "2020-01-01T00:00:00Z".into();
        old[3].last_transition_time = "2020-01-01T00:00:00Z".into();
        let second = Conditions {
            role: State::ok(Reason::RoleCreated, "found"),
            association: State::failed(Reason::RolePropagating, "b"),
            ..first
        };
        let new = merge(&old, &second, Some(2));
        assert_eq!(new[0].last_transition_time, "2020-01-01T00:00:00Z");
        assert_eq!(new[1].reason, "RoleCreated");
        assert_eq!(new[1].message, "found");
        assert_eq!(new[3].reason, "RolePropagating");
        assert_eq!(new[3].last_transition_time, "2020-01-01T00:00:00Z");
        assert!(new.iter().all(|c| c.observed_generation == Some(2)));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(10);
        assert!(backoff(base, max, 0) < Duration::from_millis(126));
        assert!(backoff(base, max, 3) >= Duration::from_millis(800));
        assert!(backoff(base, max, 30) <= max);
    }
}
