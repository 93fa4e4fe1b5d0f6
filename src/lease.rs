//! The lease that makes one of several agents the leader of a shared state.
//!
//! One small object beside the state says who leads, since when, and in which generation.
//! It is created with `If-None-Match: *` and renewed with `If-Match` on every pass; an
//! agent that finds it unrenewed for the TTL takes it over the same way. Whether it lapsed
//! is judged on S3's clock alone (the object's `Last-Modified` against the `Date` of the
//! answer), so agents whose clocks disagree still agree on who leads.
//!
//! The lease keeps the others from polling and acting for nothing, and fences the leader:
//! right before any start or stop it renews the lease conditionally, so an agent that lost
//! it stops before the call (see `store`). The leader also keeps its lease's deadline on
//! its own monotonic clock, from the moment before it sent the renewal plus the TTL: S3's
//! `Last-Modified` is no earlier, so no other agent takes over before then. Every EC2
//! mutation is made only with enough of that time left, and cut to end within it.
//!
//! The holder is named by its host, state directory, the agent id kept there, and its
//! process id: two processes on one machine with one config (the service and the timer)
//! are two agents, and one stands by; a holder of this machine and agent id whose process
//! is gone (the last `--once`) is taken over at once.

use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::s3::{self, Expect, S3, Version};

/// How finely S3's `Last-Modified` tells time.
const LAST_MODIFIED_GRAIN: Duration = Duration::from_secs(1);

/// The least time an EC2 mutation gets under the lease: with less left, the leader renews
/// first. A call is cut to what is left (see [`crate::retry::Policy::until`]).
pub const CALL_MIN: Duration = Duration::from_secs(1);

/// Kept free at the end of the lease: a request cut at its deadline may have been sent a
/// moment before, and reach EC2 a moment after.
pub const CALL_MARGIN: Duration = Duration::from_millis(250);

/// What a renewal may take and still leave a call its [`CALL_MIN`]: S3 answers a
/// `PutObject` in tens of milliseconds.
const RENEWAL: Duration = Duration::from_millis(750);

/// The shortest `lease_ttl` a leader can act under: one renewal, then one mutation of at
/// least [`CALL_MIN`] and the margin. A longer call is cut to the lease, never the lease
/// stretched to the call, so this is the longest single mutation the lease must cover.
pub const MIN_TTL: Duration = Duration::from_millis(
    (RENEWAL.as_millis() + CALL_MIN.as_millis() + CALL_MARGIN.as_millis()) as u64,
);

/// This process's name in the lease: `agent` (host, state directory and agent id) and
/// its process id.
pub fn holder(agent: &str, pid: u32) -> String {
    format!("{agent}/{pid}")
}

/// When a mutation must end under a lease of `ttl` held `until`, if it may start `now`:
/// with at least half the TTL (and [`CALL_MIN`]) left before the margin, so that a lease
/// is renewed well before it could lapse, and a long lease never cuts a call short;
/// `None`: renew first.
pub fn call_end(until: Instant, now: Instant, ttl: Duration) -> Option<Instant> {
    let end = until.checked_sub(CALL_MARGIN)?;
    (end.saturating_duration_since(now) >= CALL_MIN.max(ttl / 2)).then_some(end)
}

/// Whether process `pid` of this machine is alive, by `/proc`.
pub fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Whether `holder` is a process of the same agent as `me` (same host, state directory
/// and agent id) that is no longer alive: its lease needs no waiting out.
fn gone(me: &str, holder: &str, alive: &dyn Fn(u32) -> bool) -> bool {
    let (Some((agent, _)), Some((theirs, pid))) = (me.rsplit_once('/'), holder.rsplit_once('/'))
    else {
        return false;
    };
    agent == theirs && pid.parse().is_ok_and(|pid| !alive(pid))
}

/// The lease object's body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The leading agent: its host and state directory.
    pub holder: String,
    /// Counts the changes of holder, the first holder being 1.
    pub generation: u64,
    /// When this holder took the lease.
    pub since: DateTime<Utc>,
    /// When it last renewed it. Every renewal writes new bytes, so a new ETag.
    pub renewed: DateTime<Utc>,
}

/// The lease as read.
#[derive(Debug, Clone)]
pub struct Seen {
    /// `None` when the body cannot be read: it is treated as held by nobody known.
    pub lease: Option<Lease>,
    pub version: Version,
}

/// What an agent does about the lease in a pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Write `lease` if the object is as `expect`ed, and lead.
    Take { lease: Lease, expect: Expect },
    /// Another agent leads; stand by.
    StandBy(Leader),
}

/// The agent that leads, as another sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leader {
    pub holder: String,
    pub since: Option<DateTime<Utc>>,
    /// When its lease lapses unless renewed.
    pub lapses: DateTime<Utc>,
}

/// Decides, from the lease as `seen` (`None`: there is none) at S3's `now`, what `me`
/// does: create it, renew it, take it over once it lapsed or once its holder, a process of
/// the same agent on this machine, is no longer `alive`, or stand by.
pub fn decide(
    me: &str,
    seen: Option<&Seen>,
    now: DateTime<Utc>,
    ttl: Duration,
    alive: &dyn Fn(u32) -> bool,
) -> Step {
    let fresh = |generation| Lease {
        holder: me.to_owned(),
        generation,
        since: now,
        renewed: now,
    };
    let Some(seen) = seen else {
        return Step::Take {
            lease: fresh(1),
            expect: Expect::Absent,
        };
    };
    let expect = Expect::Etag(seen.version.etag.clone());
    let generation = seen.lease.as_ref().map_or(0, |l| l.generation);
    if let Some(held) = seen.lease.as_ref().filter(|l| l.holder == me) {
        let lease = Lease {
            renewed: now,
            ..held.clone()
        };
        return Step::Take { lease, expect };
    }
    // `Last-Modified` is cut to the second: the lease may be up to a second younger.
    let lapses = seen.version.modified + ttl + LAST_MODIFIED_GRAIN;
    let exited = seen
        .lease
        .as_ref()
        .is_some_and(|l| gone(me, &l.holder, alive));
    if now >= lapses || exited {
        return Step::Take {
            lease: fresh(generation + 1),
            expect,
        };
    }
    Step::StandBy(Leader {
        holder: seen.lease.as_ref().map_or_else(
            || "an agent whose lease cannot be read".to_owned(),
            |l| l.holder.clone(),
        ),
        since: seen.lease.as_ref().map(|l| l.since),
        lapses,
    })
}

/// Where this agent stands after a pass's look at the lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// It leads. `fresh`: it did not hold the lease a pass ago, so what it remembers of the
    /// state may be stale.
    Leads { generation: u64, fresh: bool },
    /// Another agent leads.
    StandsBy(Leader),
}

/// One agent's hold on the lease object at `key`.
#[derive(Debug)]
pub struct Holder {
    s3: S3,
    key: String,
    me: String,
    ttl: Duration,
    /// The lease as this agent last wrote it, and its ETag: a leader renews it without
    /// reading it first, so an unchanged pass costs one request.
    held: Mutex<Option<Held>>,
}

/// The lease as this agent last wrote it.
#[derive(Debug, Clone)]
struct Held {
    etag: String,
    lease: Lease,
    /// Until when it holds, on this machine's monotonic clock: the TTL from before the
    /// write was sent.
    until: Instant,
}

impl Holder {
    pub fn new(s3: S3, key: String, me: String, ttl: Duration) -> Holder {
        Holder {
            s3,
            key,
            me,
            ttl,
            held: Mutex::new(None),
        }
    }

    /// Renews the lease, takes it, or finds another agent leading.
    pub async fn hold(&self) -> Result<Standing, s3::Error> {
        let held = self.held.lock().expect("lease poisoned").take();
        if let Some(Held { etag, lease, .. }) = held {
            let lease = Lease {
                renewed: self.s3.now(),
                ..lease
            };
            match self.write(lease, Expect::Etag(etag)).await {
                Ok(generation) => {
                    return Ok(Standing::Leads {
                        generation,
                        fresh: false,
                    });
                }
                // Another agent took it: look at who, below.
                Err(e) if e.kind == s3::Kind::Changed => {
                    tracing::warn!("the lease was taken by another agent");
                }
                // Deleted: taken again below, as when there was none.
                Err(e) if e.kind == s3::Kind::Missing => {
                    tracing::warn!("the lease object was deleted; creating it again");
                }
                Err(e) => return Err(e),
            }
        }
        let seen = self.read().await?;
        match decide(&self.me, seen.as_ref(), self.s3.now(), self.ttl, &alive) {
            Step::Take { lease, expect } => {
                let taking = seen
                    .as_ref()
                    .and_then(|s| s.lease.as_ref())
                    .filter(|l| l.holder != self.me);
                if let Some(old) = taking {
                    if gone(&self.me, &old.holder, &alive) {
                        tracing::info!(
                            "taking over the lease from {}, an earlier run of this agent",
                            old.holder
                        );
                    } else {
                        tracing::warn!(
                            "taking over the lease from {}, not renewed for {}",
                            old.holder,
                            humantime::format_duration(self.ttl)
                        );
                    }
                }
                match self.write(lease, expect).await {
                    Ok(generation) => Ok(Standing::Leads {
                        generation,
                        fresh: true,
                    }),
                    // Another agent got there first, or a retried write of ours had gone
                    // through: look again.
                    Err(e) if e.kind == s3::Kind::Changed => {
                        let seen = self.read().await?;
                        let lease = seen.as_ref().and_then(|s| s.lease.as_ref());
                        if let Some(l) = lease.filter(|l| l.holder == self.me) {
                            return Ok(Standing::Leads {
                                generation: l.generation,
                                fresh: true,
                            });
                        }
                        match decide(&self.me, seen.as_ref(), self.s3.now(), self.ttl, &alive) {
                            Step::StandBy(leader) => Ok(Standing::StandsBy(leader)),
                            Step::Take { .. } => Err(e),
                        }
                    }
                    Err(e) => Err(e),
                }
            }
            Step::StandBy(leader) => Ok(Standing::StandsBy(leader)),
        }
    }

    /// Gives up what this agent remembers of the lease, as when its state write failed:
    /// the next pass reads the lease afresh.
    pub fn forget(&self) {
        *self.held.lock().expect("lease poisoned") = None;
    }

    /// When an EC2 call made now must have ended under the lease this agent last wrote,
    /// if enough of it is left (see [`call_end`]); `None`: renew first.
    pub fn call_end(&self) -> Option<Instant> {
        let until = self.held.lock().expect("lease poisoned").as_ref()?.until;
        call_end(until, Instant::now(), self.ttl)
    }

    /// The lease as it is now, for `status`.
    pub async fn read(&self) -> Result<Option<Seen>, s3::Error> {
        Ok(self.s3.get(&self.key).await?.map(|o| Seen {
            lease: serde_json::from_slice(&o.bytes).ok(),
            version: o.version,
        }))
    }

    async fn write(&self, lease: Lease, expect: Expect) -> Result<u64, s3::Error> {
        let body = serde_json::to_vec(&lease).expect("a lease serializes");
        // Taken before the request leaves: S3's Last-Modified, from which the others count
        // the TTL, is no earlier.
        let sent = Instant::now();
        let etag = self.s3.put(&self.key, &body, &expect).await?;
        let generation = lease.generation;
        let held = Held {
            etag,
            lease,
            until: sent + self.ttl,
        };
        *self.held.lock().expect("lease poisoned") = Some(held);
        Ok(generation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(180);
    const ALIVE: fn(u32) -> bool = |_| true;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    fn seen(holder: &str, modified: i64) -> Seen {
        Seen {
            lease: Some(Lease {
                holder: holder.into(),
                generation: 4,
                since: at(-1000),
                renewed: at(modified),
            }),
            version: Version {
                etag: "\"e1\"".into(),
                modified: at(modified),
            },
        }
    }

    #[test]
    fn the_first_agent_creates_the_lease() {
        let Step::Take { lease, expect } = decide("a", None, at(0), TTL, &ALIVE) else {
            panic!("no lease to stand by for");
        };
        assert_eq!(expect, Expect::Absent);
        assert_eq!((lease.holder.as_str(), lease.generation), ("a", 1));
    }

    #[test]
    fn the_holder_renews_it_keeping_its_generation_and_since() {
        let step = decide("a", Some(&seen("a", -5)), at(0), TTL, &ALIVE);
        let Step::Take { lease, expect } = step else {
            panic!("the holder stood by");
        };
        assert_eq!(expect, Expect::Etag("\"e1\"".into()));
        assert_eq!(
            (lease.generation, lease.since, lease.renewed),
            (4, at(-1000), at(0))
        );
    }

    #[test]
    fn another_agent_stands_by_until_it_lapses_then_takes_over() {
        let step = decide("b", Some(&seen("a", -180)), at(0), TTL, &ALIVE);
        assert_eq!(
            step,
            Step::StandBy(Leader {
                holder: "a".into(),
                since: Some(at(-1000)),
                lapses: at(1),
            }),
            "Last-Modified is cut to the second: a second's grace"
        );
        let Step::Take { lease, expect } = decide("b", Some(&seen("a", -181)), at(0), TTL, &ALIVE)
        else {
            panic!("a lapsed lease was not taken");
        };
        assert_eq!(expect, Expect::Etag("\"e1\"".into()));
        assert_eq!(
            (lease.holder.as_str(), lease.generation, lease.since),
            ("b", 5, at(0))
        );
    }

    #[test]
    fn an_unreadable_lease_is_waited_out_like_any_other() {
        let mut unreadable = seen("a", -10);
        unreadable.lease = None;
        assert!(matches!(
            decide("b", Some(&unreadable), at(0), TTL, &ALIVE),
            Step::StandBy(Leader { since: None, .. })
        ));
        unreadable.version.modified = at(-200);
        assert!(matches!(
            decide("b", Some(&unreadable), at(0), TTL, &ALIVE),
            Step::Take {
                lease: Lease { generation: 1, .. },
                ..
            }
        ));
    }

    #[test]
    fn two_processes_of_one_agent_are_two_holders_and_an_exited_one_is_taken_over_at_once() {
        let (service, timer) = ("h:/var/lib/pushwake#42/100", "h:/var/lib/pushwake#42/200");
        let held = seen(service, -5);
        // The service runs: the timer's pass stands by, however alike their names.
        assert!(matches!(
            decide(timer, Some(&held), at(0), TTL, &|pid| pid == 100),
            Step::StandBy(Leader { .. })
        ));
        // The last `--once` has exited: its own next run takes the lease back at once.
        let Step::Take { lease, expect } = decide(timer, Some(&held), at(0), TTL, &|_| false)
        else {
            panic!("an exited run's lease was waited out");
        };
        assert_eq!(expect, Expect::Etag("\"e1\"".into()));
        assert_eq!((lease.holder.as_str(), lease.generation), (timer, 5));
        // Another agent's, or another machine's, exited process is waited out as ever.
        for other in [
            "h:/var/lib/pushwake#43/100",
            "g:/var/lib/pushwake#42/100",
            "old-name",
        ] {
            assert!(
                matches!(
                    decide(timer, Some(&seen(other, -5)), at(0), TTL, &|_| false),
                    Step::StandBy(_)
                ),
                "{other}"
            );
        }
    }

    #[test]
    fn the_shortest_lease_covers_a_renewal_and_one_call() {
        assert_eq!(MIN_TTL, Duration::from_secs(2));
        assert_eq!(
            MIN_TTL,
            crate::config::MIN_LEASE_TTL,
            "the config refuses less"
        );
        assert!(MIN_TTL >= RENEWAL + CALL_MIN + CALL_MARGIN);
        assert_eq!(holder("h:/d#42", 7), "h:/d#42/7");
        assert!(alive(std::process::id()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_is_made_only_with_a_second_left_and_ends_a_margin_before_the_lease() {
        let ttl = MIN_TTL;
        let until = Instant::now() + ttl;
        let end = call_end(until, Instant::now(), ttl).expect("a fresh lease");
        assert_eq!(end, until - CALL_MARGIN);
        tokio::time::advance(Duration::from_millis(700)).await;
        assert_eq!(
            call_end(until, Instant::now(), ttl),
            Some(end),
            "1.05 s left"
        );
        tokio::time::advance(Duration::from_millis(100)).await;
        let now = Instant::now();
        assert_eq!(call_end(until, now, ttl), None, "0.95 s left: renew first");
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(call_end(until, Instant::now(), ttl), None, "long lapsed");
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_lease_is_renewed_at_half_its_time_and_never_cuts_a_call_short() {
        let ttl = Duration::from_secs(180);
        let until = Instant::now() + ttl;
        tokio::time::advance(Duration::from_secs(89)).await;
        let end = call_end(until, Instant::now(), ttl).expect("90.75 s left");
        assert!(end - Instant::now() > crate::retry::Policy::default().deadline);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(call_end(until, Instant::now(), ttl), None, "89.75 s left");
    }
}
