//! The on-disk record of what pushwake last saw and did, and the lock that serialises passes.
//!
//! The state is one small JSON file, `state.json`, in the state directory. It is replaced
//! atomically (temp file, fsync, rename, fsync of the directory), so a crash or a SIGTERM
//! leaves either the old or the new file, never half of one. A file that cannot be parsed
//! is never overwritten: the pass stops and names it, so the operator can look.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::{FirstRun, Repo, Watch};

const STATE_FILE: &str = "state.json";
const LOCK_FILE: &str = "pass.lock";
const VERSION: u32 = 3;
/// The most runs kept per watch; the oldest closed ones go first.
const HISTORY: usize = 1000;

/// Everything pushwake remembers between passes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    #[serde(default)]
    pub watches: Vec<WatchState>,
    /// Running instances this deployment started that no watch owns, already reported.
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub orphans: std::collections::BTreeSet<String>,
    /// The watches' [`crate::config::Settings::ownership_fingerprint`] when orphans were
    /// last looked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ownership: Option<String>,
    /// Every place (region, account) this deployment started machines in: orphans are
    /// looked for there, whatever the watches say now.
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub places: std::collections::BTreeSet<crate::config::Target>,
    /// Prices asked of AWS (the price list on demand, the spot price history), by
    /// [`crate::cost::quote_key`], with when: asked again after [`crate::cost::QUOTE_FOR`].
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub quotes: BTreeMap<String, crate::cost::Quote>,
}

/// What is known of one watched branch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WatchState {
    pub repo: String,
    pub branch: String,
    /// The last head that was handled: instances started, or recorded as a baseline.
    pub last_sha: Option<String>,
    /// The ETag GitHub sent with `last_sha`. It is only ever stored together with the SHA
    /// it belongs to: an ETag for an unhandled head would turn the retry into a 304.
    pub etag: Option<String>,
    pub last_checked: Option<DateTime<Utc>>,
    /// The last poll GitHub answered (`last_checked` is the last one tried).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_polled: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    /// The runs of this watch, oldest first, with their results.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runs: Vec<Run>,
    /// What pushwake owes for this watch, retried every pass until done.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub duties: Vec<Duty>,
    /// Pool machines and placements of the template EC2 refused for capacity moments ago:
    /// not asked again until their time is up.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<crate::placement::Refused>,
    /// What the watch's machines cost, USD, by calendar month (UTC), booked as each ends.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub spend: BTreeMap<String, f64>,
}

/// Something pushwake owes, kept in the state until it is done, so that no failure and no
/// restart can lose it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "duty", rename_all = "snake_case")]
pub enum Duty {
    /// Stop this instance, which pushwake started, for this reason; it had run `runtime`
    /// seconds when the rule said so.
    Stop {
        instance: String,
        reason: String,
        runtime: u64,
        /// Its launch time when the rule judged it: carried out only on that same start.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        launched: Option<DateTime<Utc>>,
    },
    /// Post this message (a run's verdict) to Slack, in the thread of the run of `commit`
    /// when it has one.
    Post {
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        commit: Option<String>,
    },
    /// Watch this instance, started for the run of `commit`, which closed before it
    /// reported: a result it reports late still stops it (`stop_when_reported`). Dropped
    /// once it is down or runs another commit.
    Late { instance: String, commit: String },
    /// Set this commit status on a run's commit.
    Status {
        commit: String,
        #[serde(flatten)]
        status: crate::github::CommitStatus,
    },
    /// Tell Slack this message about the watch, or about its run of `commit`: owed from the
    /// save that recorded what it tells of until Slack took it, so that neither a failed
    /// later save nor a crash loses it, and posted in the order the messages arose.
    Say {
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        commit: Option<String>,
        #[serde(default)]
        voice: Voice,
    },
}

/// What an owed message is to its run's Slack thread (a bot's; a webhook posts `text`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Voice {
    /// A message of its own: a reply in the run's thread, or in the channel without one.
    #[default]
    Reply,
    /// Where the run stands: the whole `text` starts the run's thread when it has none;
    /// else the thread's parent is updated in place to `parent`, and `news` is a reply.
    Progress {
        parent: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        news: Option<String>,
    },
}

impl Duty {
    /// Whether a pass must look at the watch's instances for this duty.
    pub fn needs_ec2(&self) -> bool {
        matches!(self, Duty::Stop { .. } | Duty::Late { .. })
    }

    /// The instance a stop duty is for.
    pub fn stops(&self) -> Option<&str> {
        match self {
            Duty::Stop { instance, .. } => Some(instance),
            Duty::Post { .. } | Duty::Status { .. } | Duty::Say { .. } | Duty::Late { .. } => None,
        }
    }
}

/// One commit on one watch, to be trained `repeats` times on the watch's instances, and
/// what each repeat reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub commit: String,
    /// The first line of the commit's message, for messages and `status`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub title: String,
    /// When the run was opened.
    #[serde(alias = "started_at")]
    pub opened_at: DateTime<Utc>,
    /// How many repeats the run has (SPEC §10), fixed when its first turn plans it; 0 (the
    /// default `repeats`): one per machine of its pool. State files before version 3 are
    /// read with 0, which is what they meant.
    #[serde(default)]
    pub repeats: u32,
    /// Each instance of the run and where it stands, with the repeat it serves now. State
    /// files of version 1 list only the instances started; they are read as started when
    /// the run opened.
    #[serde(deserialize_with = "parts")]
    pub instances: BTreeMap<String, Part>,
    /// Repeats done on a machine that went on to serve another: never given again.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub done: BTreeSet<u32>,
    /// Older commits that waited in the queue and never ran: this run took their place.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replaced: Vec<String>,
    /// Metric, then repeat, then the value its machine reported. Before version 3 the
    /// values were keyed by instance; `parse` keys them by the repeat it was given.
    #[serde(default)]
    pub values: BTreeMap<String, BTreeMap<u32, f64>>,
    /// When the run was closed; `None` while it is open.
    pub completed_at: Option<DateTime<Utc>>,
    /// Complete without every instance reporting every metric.
    #[serde(default)]
    pub partial: bool,
    /// Closed because this newer commit took its machines (`on_busy = "supersede"`), or its
    /// place in the queue; such a run gets no verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub superseded_by: Option<String>,
    /// The commit status last asked for this run, `state: description`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// The run's Slack message, which its news and verdict reply to and which is updated
    /// as it progresses (a bot's only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread: Option<crate::slack::Thread>,
    /// Where each machine that served the run runs: the pool or launched, type, zone,
    /// market.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub placed: BTreeMap<String, crate::placement::Place>,
    /// The instance type of the run's first machine: the run's other launches use it
    /// (comparable hardware), unless the watch's `launch.mix_types`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    /// How many launches from the template the run made: part of each fleet call's
    /// idempotency token, so the same call asked again after a crash launches nothing more.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub fleets: u32,
    /// The last launch news said when nothing could be launched, not said again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_note: Option<String>,
    /// How many repeats a top-up round adds (SPEC §11): the run's first count; 0 before
    /// its first top-up.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub round: u32,
    /// The per-side sizes (baseline, this commit) of each look taken at its verdict.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub looks: Vec<(usize, usize)>,
    /// Open again for a top-up round as the baseline of the run of this commit: it gets
    /// no verdict of its own, and that run's next round waits for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round_for: Option<String>,
    /// Its next round waits for the top-up round of its baseline, this commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waits_for: Option<String>,
    /// When its current top-up round began: its timeout counts from then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round_at: Option<DateTime<Utc>>,
    /// The verdict it got: the primary metric's call, difference and interval, and look.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    /// Each machine's time on the run, for its cost (SPEC §12).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spans: Vec<crate::cost::Span>,
    /// Why a budget refused its start, when one did: said once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub over_budget: Option<String>,
    /// The run on its pull requests and its check run (SPEC §13), from the first pass
    /// that told GitHub of it; `None` for runs before `pull_request_comment` was on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<Review>,
}

/// What a run owes GitHub's pull requests, and what they took: owed until done, retried
/// every pass, so that a failure or a restart loses nothing and repeats nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    /// The open pull requests whose head is the run's commit were asked for while it ran.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub looked: bool,
    /// And asked for again once it closed: a pull request opened since gets the verdict.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub looked_closed: bool,
    /// The digest of the body when they were last asked for while it ran: a run that has
    /// no pull request yet asks again once its body changed (`None` before the first
    /// answer, and after GitHub refused the question for good).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asked: Option<u64>,
    /// Pull request number, then its comment.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub comments: BTreeMap<u64, Comment>,
    /// The check run on the commit (App sign-in), once made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_run: Option<u64>,
    /// The digest of what the check run last took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked: Option<u64>,
    /// Nothing more is owed: the run is over and its last word is on GitHub.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub done: bool,
}

/// A run's comment on one pull request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Comment {
    /// GitHub's id of the comment; `None` until it is made (or after it was deleted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    /// The digest of the body the comment last took: an unchanged body is not sent again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub said: Option<u64>,
}

/// A run's verdict on its primary metric against its baseline, as posted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// The baseline's commit.
    pub baseline: String,
    /// `better`, `worse`, `equivalent`, `within the noise`, or `not settled`.
    pub call: String,
    pub difference: f64,
    pub ci: (f64, f64),
    pub p: f64,
    /// (this look, looks planned), with `max_repeats`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub look: Option<(usize, usize)>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Where one instance stands in a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "part", rename_all = "snake_case")]
pub enum Part {
    /// Up with another commit; it starts for this one when it stops (`on_busy = "queue"`).
    Waiting { why: String },
    /// The start was refused, or the instance fell back to stopped; the next pass retries.
    Failed { why: String },
    /// EC2 accepted the start for `repeat` at this time; the next pass confirms that it
    /// runs.
    Accepted {
        at: DateTime<Utc>,
        #[serde(default)]
        repeat: u32,
    },
    /// Started for this commit's `repeat`: that repeat is its, whatever it does afterwards.
    Started {
        at: DateTime<Utc>,
        #[serde(default)]
        repeat: u32,
    },
    /// It does not run this commit, and why.
    Skipped { why: String },
    /// A launched machine EC2 took away (a spot interruption, a terminated or vanished
    /// machine) before it reported: its repeat is free again, to run once more (up to
    /// `launch.max_retries`), and nothing it reported counts.
    Lost { repeat: u32, why: String },
}

/// What a part amounts to for the people told about a run: a change of kind is news, a
/// start being confirmed is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Waiting,
    Failed,
    Started,
    Skipped,
    Lost,
}

impl Part {
    pub fn kind(&self) -> Kind {
        match self {
            Part::Waiting { .. } => Kind::Waiting,
            Part::Failed { .. } => Kind::Failed,
            Part::Accepted { .. } | Part::Started { .. } => Kind::Started,
            Part::Skipped { .. } => Kind::Skipped,
            Part::Lost { .. } => Kind::Lost,
        }
    }

    /// Whether the instance was started for the run's commit (never to be started again).
    pub fn is_started(&self) -> bool {
        self.kind() == Kind::Started
    }

    /// The repeat the instance was started for, if it was.
    pub fn repeat(&self) -> Option<u32> {
        match self {
            Part::Accepted { repeat, .. } | Part::Started { repeat, .. } => Some(*repeat),
            _ => None,
        }
    }

    /// Whether the part is final: started and confirmed, or skipped.
    pub fn is_settled(&self) -> bool {
        matches!(
            self,
            Part::Started { .. } | Part::Skipped { .. } | Part::Lost { .. }
        )
    }
}

impl std::fmt::Display for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Part::Waiting { why } => write!(f, "waiting: {why}"),
            Part::Failed { why } => write!(f, "failed, will retry: {why}"),
            Part::Accepted { at, repeat } => write!(
                f,
                "start of repeat {repeat} accepted at {}",
                crate::rfc3339(*at)
            ),
            Part::Started { at, repeat } => {
                write!(f, "repeat {repeat} started at {}", crate::rfc3339(*at))
            }
            Part::Skipped { why } => write!(f, "not run: {why}"),
            Part::Lost { repeat, why } => write!(f, "repeat {repeat} lost: {why}"),
        }
    }
}

/// Reads a run's instances: a map of parts, or the plain list of started ids of version 1.
fn parts<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<String, Part>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Parts(BTreeMap<String, Part>),
        Started(Vec<String>),
    }
    Ok(match Either::deserialize(d)? {
        Either::Parts(parts) => parts,
        // The time is fixed up from the run's own in `parse`.
        Either::Started(ids) => ids
            .into_iter()
            .map(|id| {
                (
                    id,
                    Part::Started {
                        at: DateTime::<Utc>::MIN_UTC,
                        repeat: 0,
                    },
                )
            })
            .collect(),
    })
}

impl Run {
    pub fn open(commit: &str, title: &str, now: DateTime<Utc>) -> Run {
        Run {
            commit: commit.to_owned(),
            title: title.to_owned(),
            opened_at: now,
            repeats: 0,
            instances: BTreeMap::new(),
            done: BTreeSet::new(),
            replaced: Vec::new(),
            values: BTreeMap::new(),
            completed_at: None,
            partial: false,
            superseded_by: None,
            status: None,
            thread: None,
            placed: BTreeMap::new(),
            instance_type: None,
            fleets: 0,
            launch_note: None,
            round: 0,
            looks: Vec::new(),
            round_for: None,
            waits_for: None,
            round_at: None,
            verdict: None,
            spans: Vec::new(),
            over_budget: None,
            review: None,
        }
    }

    /// How many values the run's instances reported, all metrics together.
    pub fn reported(&self) -> usize {
        self.values.values().map(|v| v.len()).sum()
    }

    pub fn is_open(&self) -> bool {
        self.completed_at.is_none()
    }

    /// Whether some machine's time on the run is still being counted: it was up at the
    /// last look.
    pub fn counting(&self) -> bool {
        self.spans.iter().any(|s| s.to.is_none())
    }

    /// The instances started for this run's commit.
    pub fn started(&self) -> impl Iterator<Item = &String> {
        self.instances
            .iter()
            .filter(|(_, p)| p.is_started())
            .map(|(id, _)| id)
    }

    /// Whether the run still has repeats to give machines: fewer were given than it counts,
    /// and either machines can be launched for them (`pool` is `None`) or it counts more
    /// repeats than its `pool` has machines, which serve several in turn. Only the newest
    /// open run gives any; an older one, or one with no more repeats than machines, waits
    /// for none (what it lacks makes it partial).
    pub fn gives_repeats(&self, pool: Option<usize>, newest: bool) -> bool {
        let n = self.repeats as usize;
        newest && pool.is_none_or(|pool| n > pool) && self.taken().len() < n
    }

    /// The instance types the run's repeats ran on (none known: an empty set, as for runs
    /// recorded before types were).
    pub fn types(&self) -> BTreeSet<String> {
        let placed = self
            .placed
            .iter()
            .filter(|(id, _)| self.instances.get(*id).is_some_and(Part::is_started));
        let mut types: BTreeSet<String> = placed
            .filter_map(|(_, p)| p.instance_type.clone())
            .collect();
        types.extend(self.instance_type.clone().filter(|_| types.is_empty()));
        types
    }

    /// Whether a machine launched for the run may still be up (EC2 did not show it ended).
    pub fn has_launched_up(&self) -> bool {
        self.placed.values().any(|p| p.launched && !p.ended)
    }

    /// How often repeat `k` was lost with its machine.
    pub fn losses(&self, k: u32) -> usize {
        let lost = |p: &&Part| matches!(p, Part::Lost { repeat, .. } if *repeat == k);
        self.instances.values().filter(lost).count()
    }

    /// Forgets what repeat `k` reported: its machine was lost before it was done.
    pub fn forget(&mut self, k: u32) {
        for values in self.values.values_mut() {
            values.remove(&k);
        }
    }

    /// The repeats given to a machine: done, or held by a machine started for them.
    pub fn taken(&self) -> BTreeSet<u32> {
        let held = self.instances.values().filter_map(Part::repeat);
        self.done.iter().copied().chain(held).collect()
    }

    /// When the last instance of the run was started, if any was.
    pub fn last_start(&self) -> Option<DateTime<Utc>> {
        self.instances
            .values()
            .filter_map(|p| match p {
                Part::Accepted { at, .. } | Part::Started { at, .. } => Some(*at),
                _ => None,
            })
            .max()
    }

    /// Whether every part is final: nothing is waiting, failing or unconfirmed.
    pub fn is_settled(&self) -> bool {
        self.instances.values().all(Part::is_settled)
    }

    /// The kind of each part: what a message about the run depends on.
    pub fn shape(&self) -> Vec<(String, Kind)> {
        self.instances
            .iter()
            .map(|(id, p)| (id.clone(), p.kind()))
            .collect()
    }

    /// The values reported for `metric`, in the order of the repeats.
    pub fn values_of(&self, metric: &str) -> Vec<f64> {
        self.values
            .get(metric)
            .map(|v| v.values().copied().collect())
            .unwrap_or_default()
    }
}

/// The open run that may start machines (SPEC §11): the newest, unless its next round
/// waits for its baseline's top-up round, whose run then starts.
pub fn starter(runs: &[Run]) -> Option<usize> {
    let newest = runs.iter().rposition(Run::is_open)?;
    let Some(baseline) = &runs[newest].waits_for else {
        return Some(newest);
    };
    let serving = |r: &Run| {
        r.is_open() && &r.commit == baseline && r.round_for.as_ref() == Some(&runs[newest].commit)
    };
    Some(runs.iter().position(serving).unwrap_or(newest))
}

impl WatchState {
    /// The watch's spend in the month of `now`: what ended then, and what runs so far.
    pub fn month_spend(&self, now: DateTime<Utc>) -> f64 {
        let booked = self
            .spend
            .get(&crate::cost::month(now))
            .copied()
            .unwrap_or(0.0);
        let running = self
            .runs
            .iter()
            .flat_map(|r| &r.spans)
            .filter(|s| s.to.is_none());
        booked + running.filter_map(|s| s.cost(now)).sum::<f64>()
    }

    pub(crate) fn new(watch: &Watch) -> WatchState {
        WatchState {
            repo: watch.repo.to_string(),
            branch: watch.branch.clone(),
            last_sha: None,
            etag: None,
            last_checked: None,
            last_polled: None,
            last_error: None,
            runs: Vec::new(),
            duties: Vec::new(),
            refused: Vec::new(),
            spend: BTreeMap::new(),
        }
    }

    /// Records `sha` as handled, with the ETag GitHub sent for it. The only way the two are
    /// written, so an ETag never belongs to an unhandled head.
    pub fn record(&mut self, sha: String, etag: Option<String>) {
        self.last_sha = Some(sha);
        self.etag = etag;
    }

    /// Adds a newly opened run, dropping the oldest closed runs beyond the history kept.
    pub fn push_run(&mut self, run: Run) {
        self.runs.push(run);
        let mut excess = self.runs.len().saturating_sub(HISTORY);
        self.runs.retain(|r| {
            let drop = excess > 0 && !r.is_open();
            excess -= usize::from(drop);
            !drop
        });
    }

    fn is(&self, repo: &Repo, branch: &str) -> bool {
        // No allocation: a pass looks every watch up several times.
        self.branch == branch
            && self.repo.split_once('/') == Some((repo.owner.as_str(), repo.name.as_str()))
    }
}

impl State {
    /// The state of `watch`, if it was ever polled.
    pub fn get(&self, watch: &Watch) -> Option<&WatchState> {
        self.watches
            .iter()
            .find(|w| w.is(&watch.repo, &watch.branch))
    }

    /// The state of `watch`, created empty when it was never polled.
    pub fn entry(&mut self, watch: &Watch) -> &mut WatchState {
        match self
            .watches
            .iter()
            .position(|w| w.is(&watch.repo, &watch.branch))
        {
            Some(i) => &mut self.watches[i],
            None => {
                self.watches.push(WatchState::new(watch));
                self.watches.last_mut().expect("just pushed")
            }
        }
    }
}

/// The state directory: where the state file (unless the state is shared) and the lock
/// live.
#[derive(Debug, Clone)]
pub struct Dir {
    dir: PathBuf,
    /// What a pass without state does, for the advice on a corrupt file.
    first_run: FirstRun,
}

impl Dir {
    pub fn new(dir: impl Into<PathBuf>, first_run: FirstRun) -> Dir {
        Dir {
            dir: dir.into(),
            first_run,
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// Reads the state; a missing file is an empty state. A file that cannot be parsed is
    /// an error that names it, and the file is left as it is.
    pub fn load(&self) -> anyhow::Result<State> {
        let path = self.path();
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(empty()),
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot read state file {}", path.display()));
            }
        };
        parse(&bytes).with_context(|| {
            corrupt(
                &format!("state file {}", path.display()),
                "move it aside",
                self.first_run,
            )
        })
    }

    /// Replaces the state file atomically.
    pub fn save(&self, state: &State) -> anyhow::Result<()> {
        let path = self.path();
        let write = || -> io::Result<()> {
            let mut tmp = tempfile::Builder::new()
                .prefix(".state.")
                .suffix(".tmp")
                .tempfile_in(&self.dir)?;
            tmp.write_all(&to_bytes(state))?;
            tmp.as_file().sync_all()?;
            tmp.persist(&path).map_err(|e| e.error)?;
            // The rename is only durable once the directory entry is.
            File::open(&self.dir)?.sync_all()
        };
        write().with_context(|| format!("cannot write state file {}", path.display()))
    }

    /// Creates the directory if needed and checks that it can be written, so a pass finds
    /// out before it starts anything that it could not record having done so.
    pub fn prepare(&self) -> anyhow::Result<()> {
        fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create state directory {}", self.dir.display()))?;
        tempfile::tempfile_in(&self.dir)
            .with_context(|| format!("cannot write in state directory {}", self.dir.display()))?;
        Ok(())
    }

    /// Takes the pass lock, waiting for another process's pass to end first, for at most
    /// `wait`: a pass that cannot get the lock by then gives up, so passes from cron never
    /// pile up behind a stuck one. The lock is released when the returned guard is
    /// dropped, or when the process dies.
    pub async fn lock(&self, wait: Duration) -> anyhow::Result<PassLock> {
        let path = self.dir.join(LOCK_FILE);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open lock file {}", path.display()))?;
        let end = tokio::time::Instant::now() + wait;
        let mut told = false;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(PassLock { _file: file }),
                Err(fs::TryLockError::WouldBlock) if tokio::time::Instant::now() < end => {
                    if !told {
                        tracing::info!("another pass holds {}; waiting for it", path.display());
                        told = true;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(fs::TryLockError::WouldBlock) => bail!(
                    "another pass has held {} for {}s; this pass gives up",
                    path.display(),
                    wait.as_secs()
                ),
                Err(fs::TryLockError::Error(e)) => {
                    return Err(e).with_context(|| format!("cannot lock {}", path.display()));
                }
            }
        }
    }
}

/// What to say of a state that cannot be parsed, at `place`, which `aside` would clear.
pub fn corrupt(place: &str, aside: &str, first_run: FirstRun) -> String {
    let afresh = match first_run {
        FirstRun::Baseline => "the next pass then records each head as a baseline",
        FirstRun::Start => {
            "with first_run = \"start\" the next pass then treats each head as new and starts \
             every watch's stopped instances"
        }
    };
    format!(
        "{place} is corrupt; it was left as it is: repair it, or {aside} to start afresh \
         ({afresh})"
    )
}

/// An empty state, as before the first pass.
pub fn empty() -> State {
    State {
        version: VERSION,
        ..State::default()
    }
}

/// The state as written, to a file or to S3.
pub fn to_bytes(state: &State) -> Vec<u8> {
    let mut json = serde_json::to_vec_pretty(state).expect("the state serializes");
    json.push(b'\n');
    json
}

/// Held for the whole of a pass.
#[derive(Debug)]
pub struct PassLock {
    _file: File,
}

/// Parses state file bytes. Never panics, whatever the input.
pub fn parse(bytes: &[u8]) -> anyhow::Result<State> {
    let mut json: serde_json::Value = serde_json::from_slice(bytes)?;
    let version = json.get("version").and_then(serde_json::Value::as_u64);
    if matches!(version, Some(1 | 2)) {
        migrate::to_repeats(&mut json);
    }
    let mut state: State = serde_json::from_value(json)?;
    match state.version {
        VERSION => {}
        1 | 2 => {
            // Version 1 kept only the started instances of a run, as they were started
            // when it opened.
            if state.version == 1 {
                for run in state.watches.iter_mut().flat_map(|w| w.runs.iter_mut()) {
                    for part in run.instances.values_mut() {
                        if let Part::Started { at, .. } = part {
                            *at = run.opened_at;
                        }
                    }
                }
            }
            state.version = VERSION;
        }
        v => bail!("state version {v} is not a supported version (1 to {VERSION})"),
    }
    Ok(state)
}

mod migrate;

#[cfg(test)]
mod tests {
    use super::*;

    fn empty() -> WatchState {
        WatchState::new(&Watch::example("main", &[]))
    }

    #[test]
    fn a_version_1_run_is_read_with_its_instances_started() {
        let v1 = br#"{"version": 1, "watches": [{"repo": "octo/trainer", "branch": "main",
            "last_sha": "abc", "etag": null, "last_checked": null, "last_error": null,
            "runs": [{"commit": "abc", "started_at": "2026-11-28T10:00:00Z",
                      "instances": ["i-00000001"], "values": {}, "completed_at": null}]}]}"#;
        let state = parse(v1).unwrap();
        assert_eq!(state.version, VERSION);
        let run = &state.watches[0].runs[0];
        let at = "2026-11-28T10:00:00Z".parse().unwrap();
        assert_eq!(run.opened_at, at);
        assert_eq!(run.instances["i-00000001"], Part::Started { at, repeat: 1 });
        assert_eq!(run.repeats, 0, "one per machine of the pool, as it meant");
        assert!(run.is_settled() && run.is_open());
    }

    #[test]
    fn a_version_2_run_reads_its_values_by_repeat_as_it_read_them_by_instance() {
        let v2 = br#"{"version": 2, "watches": [{"repo": "octo/trainer", "branch": "main",
            "last_sha": "abc", "etag": null, "last_checked": null, "last_error": null,
            "runs": [{"commit": "abc", "opened_at": "2026-11-28T10:00:00Z",
                      "instances": {
                        "i-00000002": {"part": "started", "at": "2026-11-28T10:01:00Z"},
                        "i-00000001": {"part": "started", "at": "2026-11-28T10:02:00Z"},
                        "i-00000003": {"part": "skipped", "why": "terminated"},
                        "i-00000004": {"part": "accepted", "at": "2026-11-28T10:03:00Z"}},
                      "values": {"accuracy": {"i-00000002": 0.5, "i-00000001": 0.25}},
                      "completed_at": null}]}]}"#;
        let state = parse(v2).unwrap();
        assert_eq!(state.version, VERSION);
        let run = &state.watches[0].runs[0];
        assert_eq!(run.repeats, 0, "one per machine of the pool, as it meant");
        let at = |m: u32| format!("2026-11-28T10:{m:02}:00Z").parse().unwrap();
        assert_eq!(
            run.instances["i-00000001"],
            Part::Started {
                at: at(2),
                repeat: 1
            }
        );
        assert_eq!(run.instances["i-00000002"].repeat(), Some(2));
        assert_eq!(run.instances["i-00000003"].repeat(), None);
        assert_eq!(run.instances["i-00000004"].repeat(), Some(3));
        // Read in the order of the instances' ids, as before.
        assert_eq!(run.values_of("accuracy"), [0.25, 0.5]);
        assert_eq!(run.values["accuracy"][&1], 0.25);
        assert_eq!(run.taken(), BTreeSet::from([1, 2, 3]));
        // And it is written, and read again, as version 3.
        assert_eq!(parse(&to_bytes(&state)).unwrap(), state);
    }

    #[test]
    fn a_version_3_run_round_trips() {
        let mut run = Run::open("abc", "Title", Utc::now());
        run.instances
            .insert("i-00000001".into(), Part::Waiting { why: "busy".into() });
        run.instances.insert(
            "i-00000002".into(),
            Part::Accepted {
                at: run.opened_at,
                repeat: 3,
            },
        );
        run.repeats = 4;
        run.done.insert(1);
        run.values
            .entry("accuracy".into())
            .or_default()
            .insert(1, 0.5);
        let mut state = State {
            version: VERSION,
            ..State::default()
        };
        state.watches.push(WatchState {
            runs: vec![run],
            ..empty()
        });
        let json = serde_json::to_vec(&state).unwrap();
        assert_eq!(parse(&json).unwrap(), state);
    }

    #[test]
    fn an_unknown_version_is_refused() {
        let err = parse(br#"{"version": 9, "watches": []}"#).unwrap_err();
        assert!(err.to_string().contains("version 9"), "{err}");
    }

    #[test]
    fn history_drops_the_oldest_closed_runs_and_never_an_open_one() {
        let mut ws = empty();
        let now = Utc::now();
        ws.push_run(Run::open("open", "", now));
        for i in 0..HISTORY {
            let mut run = Run::open(&format!("c{i}"), "", now);
            run.completed_at = Some(now);
            ws.push_run(run);
        }
        assert_eq!(ws.runs.len(), HISTORY);
        assert_eq!(ws.runs[0].commit, "open");
        assert_eq!(ws.runs[1].commit, "c1");
    }

    #[test]
    fn parts_say_what_they_are() {
        let at = "2026-11-28T10:00:00Z".parse().unwrap();
        let accepted = Part::Accepted { at, repeat: 1 };
        assert_eq!(accepted.kind(), Kind::Started);
        assert!(accepted.is_started() && !accepted.is_settled());
        assert!(Part::Skipped { why: "x".into() }.is_settled());
        assert_eq!(
            Part::Failed {
                why: "no capacity".into()
            }
            .to_string(),
            "failed, will retry: no capacity"
        );
    }
}
