//! Metering: a [`Layer`] that reports every IAM and EKS call, once it finished, to a
//! [`CallObserver`] (the runtime's metrics, which count it in
//! `pod_identity_operator_aws_calls_total{service, operation, outcome}` and mark AWS
//! reached for `/readyz` at its first answer), and traces it. It changes no call or
//! result.

use std::future::Future;
use std::sync::Arc;

use super::layer::{Call, CallObserver, Layer, Layered};
use crate::Result;

/// The metering layer: each call reported to its observer.
#[derive(Clone)]
pub struct Meter {
    observer: Arc<dyn CallObserver>,
}

impl Meter {
    pub fn new(observer: Arc<dyn CallObserver>) -> Self {
        Meter { observer }
    }
}

impl Layer for Meter {
    async fn call<'a, R, F, Fut>(&'a self, call: Call, f: F) -> Result<R>
    where
        F: Fn() -> Fut + Send + Sync + 'a,
        Fut: Future<Output = Result<R>> + Send + 'a,
        R: Send + 'a,
    {
        let Call { service, operation } = call;
        tracing::trace!(?service, operation, "AWS call");
        let started = std::time::Instant::now();
        let result = f().await;
        tracing::debug!(
            ?service,
            operation,
            elapsed_ms = started.elapsed().as_millis() as u64,
            ok = result.is_ok(),
            "AWS call answered"
        );
        self.observer.finished(call, result.as_ref().err());
        result
    }
}

/// An AWS implementation whose calls are reported to a [`CallObserver`].
pub type Metered<T> = Layered<T, Meter>;

impl<T> Metered<T> {
    pub fn new(inner: T, observer: Arc<dyn CallObserver>) -> Self {
        Layered::wrap(inner, Meter::new(observer))
    }
}
