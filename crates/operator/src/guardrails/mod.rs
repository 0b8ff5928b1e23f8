//! Guardrails: what each namespace's bindings may ask of AWS, owned by cluster admins
//! (DESIGN §5).
//!
//! A YAML file (`run --config`, env `PIO_CONFIG`) lists rules ([`rules`]); the first
//! rule whose `namespaces` (names or globs) or `namespaceSelector` (`matchLabels` and
//! `matchExpressions` with `In`, `NotIn`, `Exists`, `DoesNotExist`, as Kubernetes label
//! selectors) matches a binding's namespace governs it, and a namespace no rule matches
//! is denied.
//! [`evaluate()`] is a pure function of the binding, its namespace's labels and the
//! configuration: it answers with the [`Effects`] the rule imposes (permissions boundary,
//! role path, role name prefix) or [`Error::PolicyDenied`](crate::Error::PolicyDenied)
//! naming the rule and the field. The policy documents a binding carries are checked
//! under its rule (`documents`): their escalating grants ([`escalation`]) and the
//! roles they let their holder assume ([`targets`]) must be ones the rule allows.
//! [`GuardrailSource`] re-reads the file when its modification time changes and keeps
//! the last good configuration when the new one is invalid.
//!
//! Without any configuration the operator denies everything
//! ([`GuardrailConfig::unconfigured`]): every binding gets `PolicyDenied` saying that no
//! guardrail configuration is loaded and how to give one, before any AWS call. A file
//! with an empty rule list denies everything too, namespace by namespace.
//!
//! Not implemented: reading a ConfigMap through the API (mount it as a file instead).
//!
//! The files, each depending only on those listed after it: [`source`] (the file in
//! force) and [`evaluate`](mod@evaluate) (a binding under its rule), `documents` (a
//! policy document under a rule), [`rules`] (the file's format), [`escalation`] and
//! [`targets`] (what a permissions policy grants), [`globs`] and `statements` (reading
//! patterns and statements).

mod documents;
pub mod escalation;
pub mod evaluate;
#[cfg(test)]
mod fixtures;
pub mod globs;
pub mod rules;
pub mod source;
mod statements;
pub mod targets;

pub use escalation::Escalation;
pub use evaluate::{Effects, effects_unchecked, evaluate, not_the_operators_role};
pub use rules::{
    GuardrailConfig, IRSA_ROLE_ANNOTATION, LabelOperator, LabelRequirement, NamespaceSelector,
    PolicyAllowance, Rule, SESSION_DURATION_RANGE, WhenDenied,
};
pub use source::GuardrailSource;
