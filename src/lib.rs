//! pod-identity-operator: makes EKS Pod Identity declarative.
//!
//! The library holds every piece the binary wires together; see `../shared/DESIGN.md`
//! for how they fit.

pub mod error;

pub use error::{Error, Result};
