//! AWS as the operator sees it: the IAM and EKS traits, domain types and SDK adapters of
//! the crate `pod-identity-aws`, with the AWS simulator and its fault injection (the
//! crate `pod-identity-aws-sim`, only with the `sandbox` feature) under `sim` and
//! `faults`, and the one place the call stack of a service is put together, [`Stack`].

use std::ops::Deref;
use std::sync::Arc;

pub use pod_identity_aws::*;
#[cfg(feature = "sandbox")]
pub use pod_identity_aws_sim as sim;
#[cfg(feature = "sandbox")]
pub use pod_identity_aws_sim::faults;

/// The AWS call stack of one service, built in one place. Outermost first: rate
/// limiting (a throttled call is made again through everything below it), metering
/// (each attempt reported to the observer), fault injection (with the `sandbox` feature
/// only), then the implementation itself.
#[derive(Clone, Default)]
pub struct Stack {
    /// The service's client-side rate limit; `None`: no bucket, and throttled calls are
    /// still retried.
    pub rate: Option<ratelimit::Rate>,
    /// Where metering reports each call; `None`: no metering.
    pub observer: Option<Arc<dyn layer::CallObserver>>,
    /// Knobs in front of the implementation; `None`: none.
    #[cfg(feature = "sandbox")]
    pub knobs: Option<Arc<faults::Knobs>>,
}

#[cfg(feature = "sandbox")]
type Injected = Option<Arc<faults::Knobs>>;
#[cfg(not(feature = "sandbox"))]
type Injected = ();

impl Stack {
    /// A stack limited to `rate` and metered into `observer`, without fault injection.
    pub fn new(
        rate: Option<ratelimit::Rate>,
        observer: Option<Arc<dyn layer::CallObserver>>,
    ) -> Stack {
        Stack {
            rate,
            observer,
            #[cfg(feature = "sandbox")]
            knobs: None,
        }
    }

    fn layers(&self) -> (ratelimit::RateLimit, (Option<metered::Meter>, Injected)) {
        #[cfg(feature = "sandbox")]
        let injected = self.knobs.clone();
        #[cfg(not(feature = "sandbox"))]
        let injected = ();
        let meter = self.observer.clone().map(metered::Meter::new);
        (ratelimit::RateLimit::new(self.rate), (meter, injected))
    }

    /// IAM `inner` behind the stack.
    pub fn iam<T>(&self, inner: T) -> Arc<dyn IamApi>
    where
        T: Deref + Send + Sync + 'static,
        T::Target: IamApi,
    {
        Arc::new(layer::Layered::wrap(inner, self.layers()))
    }

    /// EKS `inner` behind the stack.
    pub fn eks<T>(&self, inner: T) -> Arc<dyn EksApi>
    where
        T: Deref + Send + Sync + 'static,
        T::Target: EksApi,
    {
        Arc::new(layer::Layered::wrap(inner, self.layers()))
    }
}

#[cfg(all(test, feature = "sandbox"))]
mod tests {
    use std::sync::Mutex;

    use super::faults::Knobs;
    use super::layer::{Call, CallObserver, Service};
    use super::ratelimit::THROTTLE_ATTEMPTS;
    use super::sim::{AwsSim, SimConfig};
    use super::*;

    #[derive(Default)]
    struct Reports(Mutex<Vec<(&'static str, bool)>>);

    impl CallObserver for Reports {
        fn finished(&self, call: Call, error: Option<&pod_identity_aws::Error>) {
            let throttled = error.and_then(|e| e.aws()).is_some_and(|a| a.throttled);
            self.0
                .lock()
                .expect("reports")
                .push((call.operation, throttled));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_stack_retries_outermost_meters_each_attempt_and_injects_innermost() {
        let sim = Arc::new(AwsSim::new(SimConfig::default()));
        let reports = Arc::new(Reports::default());
        let knobs = Knobs::new();
        knobs.set_throttle(Service::Iam, 0, 0.0);
        let stack = Stack {
            rate: None,
            observer: Some(reports.clone()),
            knobs: Some(knobs.clone()),
        };
        let iam = stack.iam(sim.clone());
        let e = iam.get_role("r").await.expect_err("throttled");
        assert!(e.aws().is_some_and(|a| a.throttled));
        let attempts = u64::from(THROTTLE_ATTEMPTS);
        assert_eq!(knobs.throttled(Service::Iam), attempts);
        assert_eq!(sim.knobs().calls_of("GetRole"), 0, "never reached");
        assert_eq!(
            *reports.0.lock().expect("reports"),
            vec![("GetRole", true); THROTTLE_ATTEMPTS as usize]
        );
        let eks = Stack::default().eks(sim.clone());
        assert!(eks.describe_cluster("c").await.expect("describe").is_none());
        assert_eq!(sim.knobs().calls_of("DescribeCluster"), 1);
    }
}
