//! Client-side rate limits: a token bucket per AWS service in front of an
//! [`IamApi`]/[`EksApi`], so the operator paces itself instead of learning its limits
//! from `Throttling` answers.
//!
//! [`RateLimit`], a [`Layer`] ([`RateLimited`] with an implementation behind it),
//! waits for a token before each call; one instance holds one bucket, so IAM and EKS
//! are paced apart, as AWS throttles them. The bucket ([`TokenBucket`]) lets `burst`
//! calls through at once, then one every `1 / per_second` seconds; it runs on tokio's
//! clock, like every other delay of the operator.
//!
//! When AWS throttles a call anyway (the budget is shared with the account's other
//! clients), the call is retried here, up to [`THROTTLE_ATTEMPTS`] attempts in all,
//! after an exponential delay with jitter, and every call to the service waits out that
//! delay too, so the operator as a whole slows down rather than each caller hammering
//! on. A reconcile pass makes several calls in a row, and one throttled call would
//! otherwise waste the pass. (The SDK adapters also retry in the SDK's adaptive mode;
//! these retries come after theirs.) Other errors are returned at once.
//!
//! Defaults: [`Rate::IAM_DEFAULT`] (10 calls/s, burst 20) and [`Rate::EKS_DEFAULT`]
//! (10 calls/s, burst 20). AWS publishes no numeric request-rate quota for the IAM API
//! or the EKS control-plane API: the "IAM and AWS STS quotas" page of the IAM User Guide
//! and the "Amazon EKS service quotas" page of the EKS User Guide list object counts and
//! sizes only, and AWS Support describes IAM throttling as per-API token buckets whose
//! sizes it does not share (quoted in hashicorp/terraform-provider-aws issue 44853).
//! Both budgets are per account and region and shared with every other client of the
//! account (Terraform, consoles, other controllers), so the defaults are deliberately
//! modest: a steady 10 calls/s per service leaves most of an account's budget to others.
//! The cost is time, not failure: 1,000 bindings (IAM's default roles-per-account quota)
//! at about six IAM reads each take some ten minutes per resync round instead of five.
//! Raise the rates with `--iam-rate`/`--eks-rate` when an account's budget allows.
//!
//! Not implemented: limits per operation (AWS has some), and lowering the rate itself
//! after throttling (the SDK's adaptive retry mode does that for real AWS).

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::bucket::TokenBucket;
use super::layer::{Call, Layer, Layered};
use crate::Result;

/// Attempts of a call AWS throttles, the first included.
pub const THROTTLE_ATTEMPTS: u32 = 4;
/// First delay after a throttled call; doubled at each further attempt.
pub const THROTTLE_DELAY: Duration = Duration::from_millis(200);

/// A token bucket: `burst` calls at once, refilled at `per_second`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: u32,
}

impl Rate {
    pub const IAM_DEFAULT: Rate = Rate {
        per_second: 10.0,
        burst: 20,
    };
    pub const EKS_DEFAULT: Rate = Rate {
        per_second: 10.0,
        burst: 20,
    };

    /// The rate a command line asks for: `per_second` of 0 means no limit.
    pub fn from_flags(per_second: f64, burst: u32) -> Option<Rate> {
        (per_second > 0.0).then_some(Rate { per_second, burst })
    }

    /// The bucket of this rate (a burst of 0 is a burst of 1), none for a rate that is
    /// not a positive number. Callers reserve their tokens from it
    /// ([`TokenBucket::reserve`]): the tokens go negative, and each caller sleeps until
    /// the bucket has refilled to its own, so waiting callers are served in the order
    /// they came.
    fn bucket(self) -> Option<TokenBucket> {
        (self.per_second.is_finite() && self.per_second > 0.0)
            .then(|| TokenBucket::full(f64::from(self.burst.max(1)), self.per_second))
    }
}

/// The rate-limiting layer of one service: a token bucket (`None`: no bucket), and
/// throttled calls retried.
pub struct RateLimit {
    limiter: Option<Mutex<TokenBucket>>,
    /// No call starts before this instant: the service throttled us.
    paused_until: Mutex<Instant>,
}

fn throttled(result: &Result<impl Sized>) -> bool {
    matches!(result, Err(crate::Error::Aws(e)) if e.throttled)
}

/// The delay before attempt `attempt + 1` of a throttled call: exponential, capped at
/// 16 times the first, with equal jitter.
fn throttle_delay(attempt: u32) -> Duration {
    let exp = THROTTLE_DELAY * (1u32 << attempt.min(4));
    exp.mul_f64(1.0 - rand::random::<f64>() * 0.5)
}

/// A lock on plain data (tokens, an instant): a panic while holding it leaves it
/// usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl RateLimit {
    pub fn new(rate: Option<Rate>) -> Self {
        RateLimit {
            limiter: rate.and_then(Rate::bucket).map(Mutex::new),
            paused_until: Mutex::new(Instant::now()),
        }
    }

    async fn token(&self) {
        loop {
            let until = *lock(&self.paused_until);
            if until <= Instant::now() {
                break;
            }
            tokio::time::sleep_until(until).await;
        }
        if let Some(b) = &self.limiter {
            let wait = lock(b).reserve(Instant::now());
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// Runs a call after a token, again after a delay while AWS throttles it.
impl Layer for RateLimit {
    async fn call<'a, R, F, Fut>(&'a self, _call: Call, f: F) -> Result<R>
    where
        F: Fn() -> Fut + Send + Sync + 'a,
        Fut: Future<Output = Result<R>> + Send + 'a,
        R: Send + 'a,
    {
        let mut attempt = 0;
        loop {
            self.token().await;
            let result = f().await;
            attempt += 1;
            if !throttled(&result) || attempt >= THROTTLE_ATTEMPTS {
                return result;
            }
            let resume = Instant::now() + throttle_delay(attempt - 1);
            let mut until = lock(&self.paused_until);
            *until = (*until).max(resume);
        }
    }
}

/// An AWS implementation behind a token bucket (`None`: no bucket), retrying throttled
/// calls.
pub type RateLimited<T> = Layered<T, RateLimit>;

impl<T> RateLimited<T> {
    pub fn new(inner: T, rate: Option<Rate>) -> Self {
        Layered::wrap(inner, RateLimit::new(rate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_of_zero_disable_the_limit_and_bad_rates_make_no_bucket() {
        assert_eq!(Rate::from_flags(0.0, 5), None);
        assert_eq!(
            Rate::from_flags(2.5, 5),
            Some(Rate {
                per_second: 2.5,
                burst: 5
            })
        );
        for bad in [f64::NAN, f64::INFINITY, -1.0] {
            let r = Rate {
                per_second: bad,
                burst: 1,
            };
            assert!(r.bucket().is_none(), "{bad}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_bucket_serves_its_burst_then_one_token_per_period() {
        let mut b = Rate {
            per_second: 4.0,
            burst: 0,
        }
        .bucket()
        .expect("bucket");
        let mut reserve = || b.reserve(Instant::now());
        // A burst of 0 is a burst of 1.
        assert_eq!(reserve(), Duration::ZERO);
        assert_eq!(reserve(), Duration::from_millis(250));
        assert_eq!(reserve(), Duration::from_millis(500));
        tokio::time::advance(Duration::from_secs(10)).await;
        // Refilled, but never beyond the burst.
        assert_eq!(reserve(), Duration::ZERO);
        assert_eq!(reserve(), Duration::from_millis(250));
    }

    #[test]
    fn throttle_delays_grow_with_jitter_and_are_capped() {
        for attempt in 0..10 {
            let d = throttle_delay(attempt);
            let exp = THROTTLE_DELAY * (1 << attempt.min(4));
            assert!(d >= exp / 2 && d <= exp, "{attempt}: {d:?}");
        }
    }
}
