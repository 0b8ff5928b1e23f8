//! pod-identity-operator: makes EKS Pod Identity declarative.
//!
//! The library holds every piece the binary wires together; see `../shared/DESIGN.md`
//! for how they fit.

pub mod aws;
pub mod error;
pub mod kubesim;
pub mod policy;

pub use error::{Error, Result};
