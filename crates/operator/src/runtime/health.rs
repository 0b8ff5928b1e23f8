//! What `/healthz` and `/readyz` report.
//!
//! `/healthz` answers 200 while the process serves HTTP at all (liveness). `/readyz`
//! answers 200 once AWS answered at least one call (any answer, an error included: the
//! endpoint and network work) and, while this process leads, the controller's watches
//! have listed everything once; otherwise 503 with what is missing. A replica waiting
//! for the lease is ready once AWS answered: it has no watches to sync, and a rollout
//! must not wait for it to lead.

use std::sync::atomic::{AtomicBool, Ordering};

/// Readiness inputs, set by the controller, the metrics (as the AWS metering layer's
/// observer) and leader election.
#[derive(Debug, Default)]
pub struct Health {
    synced: AtomicBool,
    aws_reached: AtomicBool,
    leading: AtomicBool,
}

impl Health {
    pub fn new() -> std::sync::Arc<Self> {
        std::sync::Arc::new(Health::default())
    }

    pub fn set_synced(&self, synced: bool) {
        self.synced.store(synced, Ordering::SeqCst);
    }

    pub fn set_aws_reached(&self) {
        self.aws_reached.store(true, Ordering::SeqCst);
    }

    pub fn set_leading(&self, leading: bool) {
        self.leading.store(leading, Ordering::SeqCst);
    }

    pub fn aws_reached(&self) -> bool {
        self.aws_reached.load(Ordering::SeqCst)
    }

    /// `Ok` when ready, else what is missing.
    pub fn readiness(&self) -> Result<(), String> {
        readiness(
            self.aws_reached.load(Ordering::SeqCst),
            self.leading.load(Ordering::SeqCst),
            self.synced.load(Ordering::SeqCst),
        )
    }
}

/// The readiness rule (see the module doc).
pub fn readiness(aws_reached: bool, leading: bool, synced: bool) -> Result<(), String> {
    let mut missing = Vec::new();
    if !aws_reached {
        missing.push("AWS not reached yet");
    }
    if leading && !synced {
        missing.push("watches not synced yet");
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(missing.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_needs_aws_and_synced_watches_when_leading() {
        assert_eq!(readiness(true, true, true), Ok(()));
        assert_eq!(readiness(true, false, false), Ok(()), "a standby is ready");
        assert_eq!(
            readiness(false, false, false),
            Err("AWS not reached yet".into())
        );
        assert_eq!(
            readiness(true, true, false),
            Err("watches not synced yet".into())
        );
        assert_eq!(
            readiness(false, true, false),
            Err("AWS not reached yet; watches not synced yet".into())
        );
    }

    #[test]
    fn health_tracks_its_inputs() {
        let h = Health::new();
        assert!(h.readiness().is_err());
        h.set_aws_reached();
        assert!(h.readiness().is_ok());
        h.set_leading(true);
        assert!(h.readiness().is_err());
        h.set_synced(true);
        assert!(h.readiness().is_ok());
    }
}
