//! Status: the reasons a binding can report, the one mapping from errors to reasons and
//! retry delays (DESIGN §3's table), and the conditions computed from an outcome.
//!
//! Conditions follow `metav1.Condition` and kstatus: `Ready` plus one condition per
//! resource, each with `observedGeneration`. A condition that stays `True` keeps its
//! reason and `lastTransitionTime`, and messages are computed from the spec and what
//! exists, so a converged binding's status does not change between resyncs and is not
//! written.
//!
//! The kstatus conditions are "abnormal-true" and present only while they hold:
//! `Reconciling=True` while the operator is still working toward the spec (a role
//! propagating, a transient failure or AWS throttling being retried), `Stalled=True`
//! while progress needs a person ([`Reason::stalls`]: a bad spec, a guardrail, a
//! conflict, missing access or quota). When neither applies the condition is removed,
//! not set to `False`. Ready=True never comes with either.
//!
//! Throttling by AWS is progress, not failure: its reason is [`Reason::Throttled`],
//! which is not an error ([`Reason::is_error`]) and publishes no Warning Event.

use std::time::Duration;

use chrono::{SecondsFormat, Utc};

use crate::Error;
use crate::crd::{Condition, PodIdentityBindingStatus};
use crate::error::{AwsError, ErrorClass};

/// Declares [`Reason`] with its name as a string and the list of all reasons, from one
/// list of variants.
macro_rules! reasons {
    ($($name:ident),* $(,)?) => {
        /// Every reason a condition can carry.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Reason {
            $($name),*
        }

        impl Reason {
            /// Every reason, in declaration order.
            pub const ALL: &[Reason] = &[$(Reason::$name),*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$name => stringify!($name)),*
                }
            }
        }
    };
}

reasons! {
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
    Throttled,
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
    /// True when a binding held up by this reason needs a person to move on (kstatus
    /// `Stalled`); the others of a condition that is not `True` are progress
    /// (`Reconciling`).
    pub fn stalls(self) -> bool {
        use Reason::*;
        match self {
            InvalidSpec
            | PolicyDenied
            | RoleConflict
            | RoleNotFound
            | RoleTrustMissing
            | AssociationConflict
            | ServiceAccountNotFound
            | CleanupBlocked
            | AccessDenied
            | ClusterNotFound
            | QuotaExceeded => true,
            Reconciled
            | RoleCreated
            | RoleExisting
            | ServiceAccountCreated
            | ServiceAccountFound
            | AssociationCreated
            | AssociationAdopted
            | Waiting
            | Retrying
            | Throttled
            | RolePropagating => false,
        }
    }

    /// True when a condition that is not `True` with this reason reports a failure to
    /// the user (with a Warning Event): the stalling reasons, and `Retrying`, which
    /// carries the error of a failed AWS or Kubernetes call. Waiting, role propagation
    /// and throttling are normal steps of the way.
    pub fn is_error(self) -> bool {
        self.stalls() || self == Reason::Retrying
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

/// EKS's answer when the role of an association lives in another account than the
/// cluster; it comes as `InvalidParameterException` or as `AccessDeniedException` (403).
const CROSS_ACCOUNT_PASS_ROLE: &str = "Cross-account pass role is not allowed";

/// EKS's answer when the role's trust policy does not admit EKS Pod Identity, which it
/// also gives while a trust policy just written has not reached EKS yet.
const TRUST_POLICY_INVALID: &str = "Trust policy of the role provided is invalid";

/// The policy ARN of IAM's `NoSuchEntity` answer to AttachRolePolicy when the policy,
/// not the role, does not exist: "Policy <arn> does not exist or is not attachable."
pub fn missing_managed_policy(e: &AwsError) -> Option<&str> {
    if e.operation != "AttachRolePolicy" || e.code != "NoSuchEntity" {
        return None;
    }
    let rest = e.message.strip_prefix("Policy ")?;
    let (arn, _) = rest.split_once(' ')?;
    arn.starts_with("arn:").then_some(arn)
}

/// A problem in the terms of the binding's spec: a managed policy that does not exist
/// names its entry of `role.managedPolicyArns`; other problems are returned as they are.
pub fn in_spec_terms(problem: Problem, err: &Error, managed_policy_arns: &[String]) -> Problem {
    let Some(arn) = err.aws().and_then(missing_managed_policy) else {
        return problem;
    };
    match managed_policy_arns.iter().position(|a| a == arn) {
        Some(i) => Problem {
            message: problem.message.replacen(
                "spec.role.managedPolicyArns:",
                &format!("spec.role.managedPolicyArns[{i}]:"),
                1,
            ),
            ..problem
        },
        None => problem,
    }
}

fn aws_problem(full: &AwsError, in_window: bool) -> Problem {
    let e = &Brief(full);
    let p = |reason, message: String, retry| Problem {
        reason,
        message,
        retry,
    };
    // Answers whose message says more than their code.
    if full.message.contains(CROSS_ACCOUNT_PASS_ROLE) {
        return p(
            Reason::InvalidSpec,
            format!(
                "{e}: the role must be in the cluster's account; name a role of the other account in targetRoleArn"
            ),
            Retry::OnChange,
        );
    }
    if full.message.contains(TRUST_POLICY_INVALID) {
        return if in_window {
            p(
                Reason::RolePropagating,
                format!(
                    "the role's trust policy, written moments ago, is not yet visible to EKS ({e}); retrying shortly"
                ),
                Retry::Soon,
            )
        } else {
            p(
                Reason::InvalidSpec,
                format!(
                    "{e}: the role's trust policy must allow the service principal pods.eks.amazonaws.com sts:AssumeRole and sts:TagSession"
                ),
                Retry::OnChange,
            )
        };
    }
    if let Some(arn) = missing_managed_policy(full) {
        return p(
            Reason::InvalidSpec,
            format!(
                "invalid spec.role.managedPolicyArns: managed policy {arn} does not exist or cannot be attached ({e}); fix the ARN"
            ),
            Retry::OnChange,
        );
    }
    match full.class {
        ErrorClass::Transient if full.throttled => p(
            Reason::Throttled,
            format!(
                "AWS throttled {} ({}); retrying with backoff",
                full.operation, full.code
            ),
            Retry::Backoff,
        ),
        ErrorClass::Transient => p(Reason::Retrying, format!("{e}; retrying"), Retry::Backoff),
        ErrorClass::Propagation if in_window => p(
            Reason::RolePropagating,
            format!(
                "the role, created or changed moments ago, is not yet visible to EKS ({e}); retrying shortly"
            ),
            Retry::Soon,
        ),
        ErrorClass::Propagation => p(
            Reason::Retrying,
            format!(
                "EKS still does not see the role long after it was created ({e}); check that the role exists in the cluster's account"
            ),
            Retry::Backoff,
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
            format!(
                "{e}: the operator's role lacks this action; render its policy for this installation with `pod-identity-operator iam-policy` (config/iam/README.md), which names the statement that allows it"
            ),
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

/// The backoff delay after `failures` earlier consecutive failures: `base * 2^failures`
/// capped at `max`, then "equal jitter" (a uniformly drawn point of its upper half, as
/// in the AWS Architecture Blog's "Exponential Backoff And Jitter"), so bindings that
/// failed together do not retry together, and no retry comes sooner than half the
/// delay.
pub fn backoff(base: Duration, max: Duration, failures: u32) -> Duration {
    let exp = base.saturating_mul(1u32 << failures.min(16)).min(max);
    exp.mul_f64(1.0 - rand::random::<f64>() * 0.5)
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

impl Conditions {
    /// `Ready` failed for this reason before any resource was looked at: the others
    /// wait on it.
    pub fn not_ready(reason: Reason, message: impl Into<String>) -> Self {
        Conditions {
            ready: State::failed(reason, message),
            role: State::unknown(),
            service_account: State::unknown(),
            association: State::unknown(),
        }
    }
}

/// Merges new condition states into the old list: a condition whose status is
/// unchanged keeps its `lastTransitionTime`, and one that stays `True` keeps its reason
/// (say `AssociationAdopted`, which only the adopting pass reports).
pub fn merge(old: &[Condition], new: &Conditions, generation: Option<i64>) -> Vec<Condition> {
    let now = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true);
    let mut conditions = resource_conditions(old, new, generation, &now);
    conditions.extend(kstatus_condition(old, &new.ready, generation, &now));
    conditions
}

/// `Reconciling` or `Stalled` for a binding whose Ready is not `True`; `None` for a
/// ready one (kstatus reads an absent condition as `False`).
fn kstatus_condition(
    old: &[Condition],
    ready: &State,
    generation: Option<i64>,
    now: &str,
) -> Option<Condition> {
    if ready.status == "True" {
        return None;
    }
    let type_ = if ready.reason.stalls() {
        "Stalled"
    } else {
        "Reconciling"
    };
    let since = old
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
        .map_or(now, |c| c.last_transition_time.as_str());
    Some(Condition {
        type_: type_.to_owned(),
        status: "True".to_owned(),
        reason: ready.reason.as_str().to_owned(),
        message: ready.message.clone(),
        last_transition_time: since.to_owned(),
        observed_generation: generation,
    })
}

fn resource_conditions(
    old: &[Condition],
    new: &Conditions,
    generation: Option<i64>,
    now: &str,
) -> Vec<Condition> {
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
            last_transition_time: now.to_owned(),
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
    /// An AWS failure as the controller holds it.
    fn aws_error(operation: &str, code: &str, message: &str) -> Error {
        crate::aws::classify::aws_error(operation, code, message).into()
    }

    #[test]
    fn error_classes_map_to_the_design_reasons() {
        let cases = [
            (
                "CreateRole",
                "Throttling",
                "slow down",
                Reason::Throttled,
                Retry::Backoff,
            ),
            (
                "ListPodIdentityAssociations",
                "ThrottlingException",
                "Rate exceeded",
                Reason::Throttled,
                Retry::Backoff,
            ),
            (
                "CreateRole",
                "ServiceFailure",
                "oops",
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
    fn answers_whose_message_says_more_than_their_code() {
        // Cross-account pass role as a 403: the spec's, not the operator's permissions.
        let denied = problem_of(
            &aws_error(
                "CreatePodIdentityAssociation",
                "AccessDeniedException",
                "Cross-account pass role is not allowed.",
            ),
            false,
        );
        assert_eq!(
            (denied.reason, denied.retry),
            (Reason::InvalidSpec, Retry::OnChange)
        );
        assert!(
            denied.message.contains("targetRoleArn"),
            "{}",
            denied.message
        );
        assert!(!denied.message.contains("iam-policy"), "{}", denied.message);
        // A trust policy EKS finds invalid: propagation right after the operator wrote
        // it, the spec's problem otherwise.
        let trust = aws_error(
            "CreatePodIdentityAssociation",
            "InvalidParameterException",
            "Trust policy of the role provided is invalid",
        );
        let soon = problem_of(&trust, true);
        assert_eq!(
            (soon.reason, soon.retry),
            (Reason::RolePropagating, Retry::Soon)
        );
        let late = problem_of(&trust, false);
        assert_eq!(
            (late.reason, late.retry),
            (Reason::InvalidSpec, Retry::OnChange)
        );
        assert!(late.message.contains("pods.eks.amazonaws.com"));
        // A managed policy that does not exist is the spec's, and names its entry.
        let typo = "arn:aws:iam::aws:policy/ReadOnlyAcess";
        let missing = aws_error(
            "AttachRolePolicy",
            "NoSuchEntity",
            &format!("Policy {typo} does not exist or is not attachable."),
        );
        let p = problem_of(&missing, false);
        assert_eq!((p.reason, p.retry), (Reason::InvalidSpec, Retry::OnChange));
        let arns = [
            "arn:aws:iam::aws:policy/ReadOnlyAccess".to_owned(),
            typo.to_owned(),
        ];
        let named = in_spec_terms(p, &missing, &arns);
        assert!(
            named
                .message
                .starts_with("invalid spec.role.managedPolicyArns[1]: "),
            "{}",
            named.message
        );
        // A role that does not exist (yet) is not the policy's fault.
        let no_role = aws_error(
            "AttachRolePolicy",
            "NoSuchEntity",
            "The role with name r cannot be found.",
        );
        assert_eq!(problem_of(&no_role, false).reason, Reason::Retrying);
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

    fn conditions_with_ready(ready: State) -> Conditions {
        Conditions {
            ready,
            role: State::ok(Reason::RoleCreated, "created"),
            service_account: State::ok(Reason::ServiceAccountCreated, "created"),
            association: State::unknown(),
        }
    }

    fn kstatus(conds: &[Condition]) -> Vec<(&str, &str, &str)> {
        conds
            .iter()
            .filter(|c| c.type_ == "Reconciling" || c.type_ == "Stalled")
            .map(|c| (c.type_.as_str(), c.status.as_str(), c.reason.as_str()))
            .collect()
    }

    #[test]
    fn reconciling_and_stalled_follow_ready_and_are_removed_when_ready() {
        // Progress: Reconciling=True, carrying Ready's reason and message.
        let propagating = merge(
            &[],
            &conditions_with_ready(State::failed(Reason::RolePropagating, "soon")),
            Some(3),
        );
        assert_eq!(
            kstatus(&propagating),
            [("Reconciling", "True", "RolePropagating")]
        );
        let rec = &propagating[4];
        assert_eq!(
            (rec.message.as_str(), rec.observed_generation),
            ("soon", Some(3))
        );
        // Still reconciling for another reason: the transition time stays.
        let mut old = propagating.clone();
        old[4].last_transition_time = "2020-01-01T00:00:00Z".into();
        let throttled = merge(
            &old,
            &conditions_with_ready(State::failed(Reason::Throttled, "slow")),
            Some(3),
        );
        assert_eq!(kstatus(&throttled), [("Reconciling", "True", "Throttled")]);
        assert_eq!(throttled[4].last_transition_time, "2020-01-01T00:00:00Z");
        // A problem that needs a person: Stalled=True, and Reconciling goes.
        let denied = merge(
            &throttled,
            &conditions_with_ready(State::failed(Reason::PolicyDenied, "no")),
            Some(4),
        );
        assert_eq!(kstatus(&denied), [("Stalled", "True", "PolicyDenied")]);
        assert_eq!(denied[4].observed_generation, Some(4));
        // Ready: neither.
        let ready = merge(
            &denied,
            &conditions_with_ready(State::ok(Reason::Reconciled, "ok")),
            Some(5),
        );
        assert!(kstatus(&ready).is_empty());
        assert_eq!(ready.len(), 4);
        // Every reason is either progress or stalls, and only errors stall or retry.
        for r in Reason::ALL {
            if r.stalls() {
                assert!(r.is_error(), "{}", r.as_str());
            }
        }
        assert!(!Reason::Throttled.is_error() && !Reason::RolePropagating.is_error());
        assert!(Reason::Retrying.is_error() && !Reason::Retrying.stalls());
        assert_eq!(Reason::ALL.len(), 22);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(10);
        for _ in 0..100 {
            let first = backoff(base, max, 0);
            assert!(first >= base / 2 && first <= base, "{first:?}");
            let fourth = backoff(base, max, 3);
            assert!(fourth >= Duration::from_millis(400) && fourth <= Duration::from_millis(800));
            let late = backoff(base, max, 30);
            assert!(late >= max / 2 && late <= max, "{late:?}");
        }
    }
}
