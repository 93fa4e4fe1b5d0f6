//! The one retry policy every network call goes through.
//!
//! Bounded attempts, exponential backoff with full jitter, a time limit per attempt and
//! one for the whole call (retries included), and a server's own "retry after" obeyed when
//! it sends one. Each client says which of its errors are worth another attempt by
//! implementing [`Retryable`].

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Attempts ended, in this process, whatever their outcome: the daemon's sign of progress.
static ATTEMPTS_ENDED: AtomicU64 = AtomicU64::new(0);

/// How many attempts of any network call have ended so far. A pass whose count stops
/// moving is stuck somewhere no deadline reaches, and the daemon stops pinging systemd's
/// watchdog.
pub fn progress() -> u64 {
    ATTEMPTS_ENDED.load(Ordering::Relaxed)
}

/// What an error says about trying again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Trying again will not help: a bad request, a missing thing, a refused permission.
    Never,
    /// A transient failure: back off and try again.
    Backoff,
    /// The server named a time to wait before trying again.
    After(Duration),
}

/// An error that knows whether it is worth another attempt.
pub trait Retryable {
    fn retry(&self) -> Retry;
    /// The error for an attempt that took longer than the policy's per-attempt limit.
    fn timed_out(after: Duration) -> Self;
}

/// How hard to try.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// The backoff ceiling for the first retry; it doubles with each retry.
    pub base: Duration,
    /// The largest wait between two attempts. A server asking for more is not waited for
    /// here: the error is returned, and the next pass tries again.
    pub max_wait: Duration,
    /// The most one attempt may take, connection included.
    pub timeout: Duration,
    /// The most the whole call may take, its retries and waits included.
    pub deadline: Duration,
    /// A fixed time by which every call must have ended, whenever it begins (a fenced
    /// call's lease): see [`Policy::until`].
    pub end: Option<Instant>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            attempts: 4,
            base: Duration::from_millis(500),
            max_wait: Duration::from_secs(30),
            timeout: Duration::from_secs(30),
            deadline: Duration::from_secs(60),
            end: None,
        }
    }
}

impl Policy {
    /// This policy, cut so that a call ends by `end`: its deadline (and so its attempts)
    /// no later, and `None` when no time is left. A fenced call runs under its lease's
    /// deadline this way, whatever the policy allows otherwise.
    pub fn until(&self, end: Instant) -> Option<Policy> {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        Some(Policy {
            deadline: self.deadline.min(left),
            timeout: self.timeout.min(left),
            end: Some(self.end.map_or(end, |e| e.min(end))),
            ..*self
        })
    }

    /// Runs `op` until it succeeds, fails for good, or the attempts run out. `what` names
    /// the call in logs.
    pub async fn run<T, E, F, Fut>(&self, what: &str, mut op: F) -> Result<T, E>
    where
        E: Retryable + std::fmt::Display,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        // A call begun late under a cut policy still ends by the fixed end.
        let end = self.end.map_or(Instant::now() + self.deadline, |fixed| {
            fixed.min(Instant::now() + self.deadline)
        });
        let mut attempt = 1;
        loop {
            let limit = self
                .timeout
                .min(end.saturating_duration_since(Instant::now()));
            // Nothing is sent past the deadline: a request polled once may leave at once.
            if limit.is_zero() {
                return Err(E::timed_out(Duration::ZERO));
            }
            let result = match tokio::time::timeout(limit, op()).await {
                Ok(result) => result,
                // Whole seconds: a limit cut short by the deadline is 29.53 s long.
                Err(_) => Err(E::timed_out(Duration::from_secs(
                    limit.as_secs_f64().round() as u64,
                ))),
            };
            ATTEMPTS_ENDED.fetch_add(1, Ordering::Relaxed);
            let err = match result {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let wait = match err.retry() {
                Retry::Never => return Err(err),
                _ if attempt >= self.attempts => return Err(err),
                Retry::After(d) if d > self.max_wait => return Err(err),
                Retry::After(d) => d,
                Retry::Backoff => self.backoff(attempt),
            };
            // No attempt is started that could not end before the deadline.
            if Instant::now() + wait + Duration::from_millis(100) >= end {
                return Err(err);
            }
            tracing::debug!(
                "{what} failed (attempt {attempt} of {}), retrying in {wait:?}: {err}",
                self.attempts
            );
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    /// Full jitter: a uniform wait between zero and the exponential ceiling, so that many
    /// clients failing together do not retry together.
    fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1 << (attempt - 1).min(16))
            .min(self.max_wait);
        ceiling.mul_f64(fastrand::f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_policy_cut_to_an_end_never_outlasts_it() {
        let policy = Policy::default();
        let cut = policy
            .until(Instant::now() + Duration::from_secs(3))
            .unwrap();
        assert_eq!(
            (cut.deadline, cut.timeout),
            (Duration::from_secs(3), Duration::from_secs(3))
        );
        assert_eq!(cut.attempts, policy.attempts);
        let far = policy
            .until(Instant::now() + Duration::from_secs(600))
            .unwrap();
        assert_eq!(
            (far.deadline, far.timeout),
            (policy.deadline, policy.timeout)
        );
        assert!(policy.until(Instant::now()).is_none(), "no time left");
    }

    #[derive(Debug)]
    struct Hung;

    impl std::fmt::Display for Hung {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("hung")
        }
    }

    impl Retryable for Hung {
        fn retry(&self) -> Retry {
            Retry::Backoff
        }
        fn timed_out(_: Duration) -> Self {
            Hung
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_begun_late_under_a_cut_policy_still_ends_by_its_end() {
        let start = Instant::now();
        let cut = Policy::default()
            .until(start + Duration::from_secs(3))
            .unwrap();
        // The call begins two seconds later, as the last of a batch would.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let result: Result<(), Hung> = cut
            .run("a hung call", std::future::pending::<Result<(), Hung>>)
            .await;
        assert!(result.is_err());
        assert!(
            Instant::now() <= start + Duration::from_secs(3),
            "ended {:?} after the start",
            Instant::now() - start
        );
    }
}
