//! pod-identity-operator: makes EKS Pod Identity declarative.
//!
//! The library holds every piece the binary wires together; see `../shared/DESIGN.md`
//! for how they fit.

pub mod audit;
pub mod aws;
pub mod config;
pub mod controller;
pub mod crd;
pub mod error;
pub mod escalation;
pub mod glob;
pub mod kubesim;
pub mod migrate;
pub mod naming;
pub mod operator_policy;
pub mod policy;
pub mod presets;
pub mod runtime;
pub mod sandbox;

pub use error::{Error, Result};
