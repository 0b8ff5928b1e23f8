//! The one token bucket of the AWS layer, on tokio's clock (so `tokio::time::pause`
//! makes refill deterministic).
//!
//! It holds at most `capacity` tokens and refills at `per_second`. Two ways take from
//! it:
//! - [`TokenBucket::reserve`] (the client-side rate limiter,
//!   [`ratelimit`](super::ratelimit)): every caller takes its token at once, the
//!   tokens going negative when the bucket is empty, and is told how long to wait until
//!   the bucket has refilled to its token, so waiting callers are served in the order
//!   they came;
//! - [`TokenBucket::try_take`] (the simulated services' rate limits, `faults::Knobs`):
//!   a token if one is there, else nothing, and the call is throttled.
//!
//! The caller holds the bucket under its own lock and passes the instant, so several
//! buckets can be consulted at one instant.

use std::time::Duration;

use tokio::time::Instant;

/// A token bucket: at most `capacity` tokens, refilled at `per_second`.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    capacity: f64,
    per_second: f64,
    /// Tokens at `last`, before refill since then; negative while reservations wait.
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket, now.
    pub fn full(capacity: f64, per_second: f64) -> Self {
        TokenBucket {
            capacity,
            per_second,
            tokens: capacity,
            last: Instant::now(),
        }
    }

    /// Adds the tokens refilled since the last look, never beyond the capacity.
    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.capacity);
        self.last = now;
    }

    /// Takes a token if the bucket has one at `now`.
    pub fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Takes a token at `now` whether or not the bucket has one, and answers how long
    /// the caller waits until the bucket has refilled to it (zero when it had one).
    pub fn reserve(&mut self, now: Instant) -> Duration {
        self.refill(now);
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.per_second)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn try_take_refuses_when_empty_and_refills_up_to_the_capacity() {
        let mut b = TokenBucket::full(2.0, 1.0);
        assert!(b.try_take(Instant::now()));
        assert!(b.try_take(Instant::now()));
        assert!(!b.try_take(Instant::now()), "empty");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(b.try_take(Instant::now()));
        assert!(!b.try_take(Instant::now()));
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(b.try_take(Instant::now()));
        assert!(b.try_take(Instant::now()));
        assert!(!b.try_take(Instant::now()), "never beyond the capacity");
        // A bucket that never refills stays empty.
        let mut never = TokenBucket::full(0.0, 0.0);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(!never.try_take(Instant::now()));
    }

    #[tokio::test(start_paused = true)]
    async fn reserve_goes_negative_and_a_refused_take_leaves_the_tokens() {
        let mut b = TokenBucket::full(1.0, 2.0);
        assert_eq!(b.reserve(Instant::now()), Duration::ZERO);
        assert!(!b.try_take(Instant::now()));
        assert_eq!(b.reserve(Instant::now()), Duration::from_millis(500));
        assert_eq!(b.reserve(Instant::now()), Duration::from_secs(1));
        tokio::time::advance(Duration::from_secs(1)).await;
        // Two reservations waited out; the bucket is back at zero.
        assert!(!b.try_take(Instant::now()));
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(b.try_take(Instant::now()));
    }
}
