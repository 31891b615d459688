//! Per-script rate limits (`governor`): a token bucket per webhook script,
//! rebuilt when the script's limit changes, dropped when the script is
//! deleted (and after ten idle minutes, for scripts deleted on other nodes).

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use moka::sync::Cache;

use super::RateLimit;
use crate::model::ScriptId;

type Bucket = RateLimiter<NotKeyed, InMemoryState, DefaultClock>;

#[derive(Clone)]
pub struct Limiters {
    buckets: Cache<ScriptId, Arc<(RateLimit, Bucket)>>,
    clock: DefaultClock,
}

impl Default for Limiters {
    fn default() -> Self {
        Self {
            buckets: Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(Duration::from_secs(600))
                .build(),
            clock: DefaultClock::default(),
        }
    }
}

impl Limiters {
    /// Takes one request from the script's bucket; `Err` carries how long
    /// until one is allowed.
    pub fn check(&self, script_id: &ScriptId, limit: RateLimit) -> Result<(), Duration> {
        let bucket = match self.buckets.get(script_id) {
            Some(bucket) if bucket.0 == limit => bucket,
            _ => {
                let rps = NonZeroU32::new(limit.rps).unwrap_or(NonZeroU32::MIN);
                let burst = NonZeroU32::new(limit.burst).unwrap_or(NonZeroU32::MIN);
                let quota = Quota::per_second(rps).allow_burst(burst);
                let bucket = Arc::new((limit, RateLimiter::direct(quota)));
                self.buckets.insert(script_id.clone(), bucket.clone());
                bucket
            }
        };
        bucket
            .1
            .check()
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Drops a deleted script's bucket.
    pub fn forget(&self, script_id: &ScriptId) {
        self.buckets.invalidate(script_id);
    }

    pub fn len(&self) -> u64 {
        self.buckets.run_pending_tasks();
        self.buckets.entry_count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_requests_wait() {
        let limiters = Limiters::default();
        let limit = RateLimit { rps: 10, burst: 20 };
        let (a, b) = (ScriptId::from("a"), ScriptId::from("b"));
        let passed = (0..40)
            .filter(|_| limiters.check(&a, limit).is_ok())
            .count();
        // 20 at once, plus whatever refilled while the loop ran.
        assert!((20..=21).contains(&passed), "{passed}");
        let wait = limiters.check(&a, limit).unwrap_err();
        assert!(wait <= Duration::from_millis(100), "{wait:?}");
        // Another script has a bucket of its own.
        assert!(limiters.check(&b, limit).is_ok());
        // A new limit replaces the bucket; forgetting drops it.
        assert!(limiters.check(&a, RateLimit { rps: 1, burst: 5 }).is_ok());
        limiters.forget(&a);
        assert_eq!(limiters.len(), 1);
    }
}
