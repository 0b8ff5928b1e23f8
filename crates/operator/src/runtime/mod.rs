//! The process around the controller: leader election ([`leader`]), metrics
//! ([`metrics`], served with health by [`http`]), health ([`health`]), logging
//! ([`telemetry`]) and graceful shutdown ([`shutdown`]). [`operator`] wires them into
//! `pod-identity-operator run`; [`local`] runs the local commands (`kubesim`,
//! `sandbox`).

pub mod health;
pub mod http;
pub mod leader;
pub mod local;
pub mod metrics;
pub mod operator;
pub mod shutdown;
pub mod telemetry;
