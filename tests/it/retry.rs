//! The retry policy on paused time: what it waits, and when it gives up.

use std::cell::Cell;
use std::future::Future;
use std::time::Duration;

use pushwake::retry::{Policy, Retry, Retryable};
use tokio::time::Instant;

#[derive(Debug)]
struct Fault(Retry);

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "fault {:?}", self.0)
    }
}

impl Retryable for Fault {
    fn retry(&self) -> Retry {
        self.0
    }
    fn timed_out(_: Duration) -> Self {
        Fault(Retry::Backoff)
    }
}

/// Runs `policy` over `attempt`, which is given the number of calls before it. Returns the
/// result, the number of calls, and the time it took.
async fn counted<F, Fut>(policy: Policy, attempt: F) -> (Result<(), Fault>, usize, Duration)
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<(), Fault>>,
{
    let calls = Cell::new(0);
    let start = Instant::now();
    let result = policy
        .run("op", || {
            let n = calls.get();
            calls.set(n + 1);
            attempt(n)
        })
        .await;
    (result, calls.get(), start.elapsed())
}

/// Runs `policy` over an operation that fails with `faults` in turn, then succeeds.
async fn run(policy: Policy, faults: &[Retry]) -> (Result<(), Fault>, usize, Duration) {
    counted(policy, |n| {
        let fault = faults.get(n).copied();
        async move {
            match fault {
                Some(r) => Err(Fault(r)),
                None => Ok(()),
            }
        }
    })
    .await
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_waited_exactly() {
    let (result, calls, took) =
        run(Policy::default(), &[Retry::After(Duration::from_secs(7))]).await;
    assert!(result.is_ok());
    assert_eq!(calls, 2);
    assert_eq!(took, Duration::from_secs(7));
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_past_the_limit_is_left_to_the_next_pass() {
    let (result, calls, took) = run(
        Policy::default(),
        &[Retry::After(Duration::from_secs(3600))],
    )
    .await;
    assert!(result.is_err());
    assert_eq!((calls, took), (1, Duration::ZERO));
}

#[tokio::test(start_paused = true)]
async fn backoff_is_bounded_and_attempts_are_counted() {
    let policy = Policy::default();
    let (result, calls, took) = run(policy, &[Retry::Backoff; 10]).await;
    assert!(result.is_err());
    assert_eq!(calls, policy.attempts as usize);
    // Full jitter: each wait is at most base * 2^n, so three waits at most 0.5 + 1 + 2 s.
    assert!(took <= Duration::from_millis(3500), "{took:?}");
}

#[tokio::test(start_paused = true)]
async fn permanent_errors_are_not_retried() {
    let (result, calls, _) = run(Policy::default(), &[Retry::Never, Retry::Never]).await;
    assert!(result.is_err());
    assert_eq!(calls, 1);
}

#[tokio::test(start_paused = true)]
async fn a_hung_attempt_times_out_and_is_retried() {
    let policy = Policy {
        timeout: Duration::from_secs(2),
        ..Policy::default()
    };
    let (result, calls, took) = counted(policy, |n| async move {
        if n == 0 {
            std::future::pending::<()>().await;
        }
        Ok(())
    })
    .await;
    assert!(result.is_ok());
    assert_eq!(calls, 2);
    assert!(took >= Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn a_call_that_never_answers_ends_at_its_deadline_retries_included() {
    let policy = Policy::default();
    let (result, calls, took) = counted(policy, |_| std::future::pending()).await;
    assert!(result.is_err());
    // Four attempts of 30 s would take two minutes and more; the deadline is one.
    assert!(took <= policy.deadline, "{took:?}");
    assert!(took >= Duration::from_secs(30));
    assert_eq!(calls, 2);
}
