//! The controller: reconciles `PodIdentityBinding`s (DESIGN §3).
//!
//! One pass ([`reconcile`], with the watch that wakes it): finalizer (kube-runtime's
//! `finalizer`, added before the first AWS write) → cluster (DescribeCluster, cached)
//! → [`desired`] (validation) → [`observe`] → [`plan`] (pure) → [`apply`] → status
//! ([`report`], in the vocabulary of [`status`], patched only when it changed) →
//! requeue (the resync interval, stretched by [`pacing`] when the bindings' resync
//! would take more than half of an AWS rate, or a delay chosen by the error's class,
//! see [`backoff`]). Deletion runs [`cleanup`]. Events after a pass that ended `Ready`
//! skip the AWS reads while that pass's [`confirmed`] result holds. Watches: bindings
//! (one whose change matters to the others naming its ServiceAccount, which may win or
//! lose it, also wakes them: see [`sa_index`]), and ServiceAccounts mapped back to the
//! bindings that name them.
//!
//! Every change of a binding wakes it, its own status writes included: a retry still
//! waits out its [`backoff`], and a pass after a `Ready` one skips the AWS reads
//! ([`confirmed`]). AWS calls go through a client-side token bucket
//! per service ([`crate::aws::ratelimit`], `Settings::iam_rate`/`eks_rate`), and at most
//! `Settings::concurrency` bindings are reconciled at once.
//!
//! Guardrails ([`crate::guardrails`]) are evaluated after validation and before any AWS
//! call; a guardrail file is polled for changes and every binding is reconciled again
//! when it changes.
//!
//! With [`Settings::metrics`] set, each pass is timed and counted, in flight included,
//! in one place (the watch's handler in [`reconcile`]), and the bindings cache feeds
//! the bindings gauge and readiness ([`crate::runtime::metrics`]). Each pass runs in a
//! `reconcile` span carrying the binding's `namespace`, name (`binding`) and
//! `generation`. Leader election wraps [`run`] from outside
//! ([`crate::runtime::leader`]).
//!
//! Should a requeue never fire, the [`sweep`] wakes the binding once its resync or
//! retry is a sweep period late.
//!
//! A pass still running at [`Settings::pass_deadline`] is stopped and fails as
//! `Retrying`; the pass that ends a deleted binding forgets its retry state.
//!
//! What every pass shares is the [`context`] ([`Context`], with its [`settings`]); the
//! children take it from there, never from this file, which only declares them.

pub mod apply;
pub mod backoff;
pub mod cleanup;
pub mod confirmed;
pub mod context;
pub mod desired;
#[cfg(test)]
mod fixtures;
pub mod malformed;
pub mod notices;
pub mod observe;
pub mod pacing;
pub mod plan;
pub mod reconcile;
pub mod report;
pub mod revoke;
pub mod sa_index;
pub mod settings;
pub mod status;
pub mod sweep;
pub mod typed;

pub use context::Context;
pub use reconcile::run;
pub use settings::Settings;
pub use typed::CachedBinding;
