//! pod-identity-operator: makes EKS Pod Identity declarative.
//!
//! The library holds every piece the binary wires together; see `../shared/DESIGN.md`
//! for how they fit.
//!
//! The test and local-run infrastructure (`kubesim`, the AWS simulator `aws::sim` with
//! `aws::faults`, and `sandbox`) is compiled only with the `sandbox` Cargo feature, on by
//! default; the production image is built without it (`--no-default-features`).

pub mod audit;
pub mod aws;
pub mod cli;
pub mod controller;
pub mod crd;
pub mod error;
pub mod glob;
pub mod guardrails;
pub mod migrate;
pub mod naming;
pub mod operator_policy;
pub mod policy;
pub mod presets;
pub mod runtime;
#[cfg(feature = "sandbox")]
pub mod sandbox;

pub use error::{Error, Result};
/// The local Kubernetes API server (its own crate, `crates/kubesim`), re-exported for the
/// sandbox and the tests.
#[cfg(feature = "sandbox")]
pub use kubesim;
