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

// On the AWS simulator, which only the `sandbox` feature compiles. The metrics' side
// (series and readiness) is tested with them, in `runtime::metrics`.
#[cfg(all(test, feature = "sandbox"))]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::aws::faults::{Fault, Faulty, Knobs};
    use crate::aws::layer::Service;
    use crate::aws::sim::{AwsSim, SimConfig, administrator_policy};
    use crate::aws::{EksApi, IamApi};

    /// Every call reported: operation, and the error code of a failed one.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<(Service, &'static str, Option<String>)>>);

    impl CallObserver for Recorder {
        fn finished(&self, call: Call, error: Option<&crate::Error>) {
            let code = error.map(|e| e.aws().map_or("other".into(), |a| a.code.clone()));
            self.0
                .lock()
                .expect("recorder")
                .push((call.service, call.operation, code));
        }
    }

    #[tokio::test]
    async fn every_call_is_reported_with_its_error_once_it_finished() {
        let sim = Arc::new(AwsSim::new(SimConfig {
            identity_policy: Some(administrator_policy()),
            ..SimConfig::default()
        }));
        sim.add_cluster("prod");
        let recorder = Arc::new(Recorder::default());
        let knobs = Knobs::new();
        let aws = Metered::new(Arc::new(Faulty::new(sim, knobs.clone())), recorder.clone());
        assert!(aws.get_role("nobody").await.expect("GetRole").is_none());
        assert!(
            aws.describe_cluster("prod")
                .await
                .expect("describe")
                .is_some()
        );
        knobs.fail_next("DeleteRole", Fault::timeout());
        aws.delete_role("nobody").await.expect_err("timeout");
        let seen = recorder.0.lock().expect("recorder").clone();
        assert_eq!(
            seen,
            vec![
                (Service::Iam, "GetRole", None),
                (Service::Eks, "DescribeCluster", None),
                (Service::Iam, "DeleteRole", Some("Timeout".into())),
            ]
        );
    }
}
