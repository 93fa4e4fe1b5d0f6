//! What a pass tells Slack, and when: failing streaks once, a run's messages and verdicts
//! owed in the state until Slack took them, and never more than a few seconds of waiting
//! on Slack in all.
//!
//! A run's messages are duties ([`Duty::Say`]), owed in the same save as the change they
//! tell of and removed once Slack took them, so a failed later save, a crash or Slack
//! being down neither loses nor repeats one (but for a crash between Slack's answer and
//! the save that records it). They go out in the order they arose; the first that Slack
//! cannot take holds the rest for the next pass. A thread whose parent cannot be updated
//! gets the news as a reply; a thread that is gone is started again.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::time::Instant;

use super::Agent;
use crate::config::Watch;
use crate::github::pulls::Edited;
use crate::github::{self, CommitStatus};
use crate::report::comment::{self, digest};
use crate::report::short;
use crate::slack::{self, Place, Slack, Thread};
use crate::state::{Duty, Review, Run, State, Voice, WatchState};

/// How long a pass waits on Slack, all its messages together.
pub(super) const SLACK_BUDGET: Duration = Duration::from_secs(5);

/// The most messages owed per watch. While Slack is down a watch keeps at most these
/// many, its oldest dropped first (a run's thread is started again by its next message).
pub(super) const OWED_MESSAGES: usize = 100;

/// Something to tell Slack.
#[derive(Debug, Clone)]
pub(super) struct Message {
    /// The whole message, as a webhook (which cannot thread) posts it.
    pub text: String,
    /// The run it is about, for a bot's thread.
    pub about: Option<About>,
}

/// The run a message is about, and what the message is to its thread.
#[derive(Debug, Clone)]
pub(super) struct About {
    pub commit: String,
    pub role: Voice,
}

impl Message {
    pub fn plain(text: String) -> Message {
        Message { text, about: None }
    }

    pub fn about(commit: &str, role: Voice, text: String) -> Message {
        Message {
            text,
            about: Some(About {
                commit: commit.to_owned(),
                role,
            }),
        }
    }

    fn owed(self) -> Duty {
        let (commit, voice) = match self.about {
            Some(a) => (Some(a.commit), a.role),
            None => (None, Voice::Reply),
        };
        Duty::Say {
            text: self.text,
            commit,
            voice,
        }
    }
}

/// Keeps at most `max` messages owed in `duties`, dropping the oldest; returns the first
/// line of each one dropped.
fn bound(duties: &mut Vec<Duty>, max: usize) -> Vec<String> {
    let owed = duties
        .iter()
        .filter(|d| matches!(d, Duty::Say { .. }))
        .count();
    let mut excess = owed.saturating_sub(max);
    let mut dropped = Vec::new();
    duties.retain(|d| match d {
        Duty::Say { text, .. } if excess > 0 => {
            excess -= 1;
            dropped.push(text.lines().next().unwrap_or_default().to_owned());
            false
        }
        _ => true,
    });
    dropped
}

/// One call to Slack on the way to delivering a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call<'a> {
    /// A message in the channel; with `thread`, it becomes its run's thread.
    Channel { text: &'a str, thread: bool },
    /// The run's thread parent, updated in place.
    Update { text: &'a str },
    /// A reply in the run's thread; with `broadcast`, also sent to the channel.
    Reply { text: &'a str, broadcast: bool },
}

/// What Slack's answer to a call amounts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Took,
    /// The thread is gone: its parent or its channel deleted.
    ThreadGone,
    /// The message itself is refused (too long, empty): it would be again.
    Refused,
    /// Anything else: Slack down, a token or channel to fix, an edit refused.
    Failed,
}

impl Answer {
    fn of(e: &slack::Error) -> Answer {
        if e.thread_gone() {
            Answer::ThreadGone
        } else if e.refuses_message() {
            Answer::Refused
        } else {
            Answer::Failed
        }
    }
}

/// What comes after an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next<'a> {
    /// Slack took the message.
    Done,
    /// Make this call; first forget the run's thread when `forget`.
    Call { call: Call<'a>, forget: bool },
    /// Keep the message owed, and the ones after it, for the next pass.
    Keep,
    /// Drop the message: Slack will never take it.
    Drop,
}

/// The first call that delivers `text` (`voice` to its run's thread, `threaded` when the
/// run has one; a verdict replies with `broadcast`).
fn opening<'a>(text: &'a str, voice: &'a Voice, threaded: bool, broadcast: bool) -> Call<'a> {
    match (voice, threaded) {
        (Voice::Progress { .. }, false) => Call::Channel { text, thread: true },
        (Voice::Reply, false) => Call::Channel {
            text,
            thread: false,
        },
        (Voice::Progress { parent, .. }, true) => Call::Update { text: parent },
        (Voice::Reply, true) => Call::Reply { text, broadcast },
    }
}

/// The call after `call` was answered `answer`. A parent that cannot be updated (deleted,
/// out of the edit window, any error) has the whole message replied under it instead; a
/// thread that is gone is started again by a run's progress, and any other message goes
/// to the channel (the run's next progress starts the new thread).
fn next<'a>(text: &'a str, voice: &'a Voice, call: Call<'a>, answer: Answer) -> Next<'a> {
    let progress = matches!(voice, Voice::Progress { .. });
    match (call, answer) {
        (_, Answer::Refused) => Next::Drop,
        (Call::Update { .. }, Answer::Took) => match voice {
            Voice::Progress {
                news: Some(news), ..
            } => Next::Call {
                call: Call::Reply {
                    text: news,
                    broadcast: false,
                },
                forget: false,
            },
            _ => Next::Done,
        },
        (_, Answer::Took) => Next::Done,
        (Call::Update { .. }, Answer::ThreadGone | Answer::Failed) => Next::Call {
            call: Call::Reply {
                text,
                broadcast: false,
            },
            forget: false,
        },
        (Call::Reply { .. }, Answer::ThreadGone) => Next::Call {
            call: Call::Channel {
                text,
                thread: progress,
            },
            forget: true,
        },
        (Call::Reply { .. } | Call::Channel { .. }, _) => Next::Keep,
    }
}

/// What became of one owed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Slack took it, or it is dropped for good: no longer owed.
    Done,
    /// Still owed: Slack could not take it, or there was no time left.
    Kept,
}

/// The run of `commit` among `runs`, if any.
fn run_of<'a>(runs: &'a mut [Run], commit: Option<&str>) -> Option<&'a mut Run> {
    let commit = commit?;
    runs.iter_mut().rev().find(|r| r.commit == commit)
}

impl Agent {
    /// Owes `messages` about `watch` in `entry`, in order, to be saved with what they tell
    /// of; only when there is a Slack to tell. Beyond [`OWED_MESSAGES`] the oldest are
    /// dropped, and the log says which.
    pub(super) fn owe(&self, watch: &Watch, entry: &mut WatchState, messages: Vec<Message>) {
        if self.slack.is_none() || messages.is_empty() {
            return;
        }
        entry.duties.extend(messages.into_iter().map(Message::owed));
        let dropped = bound(&mut entry.duties, OWED_MESSAGES);
        if !dropped.is_empty() {
            tracing::warn!(
                "{watch}: Slack has not taken {} message(s) for too long, dropped the oldest: {}",
                dropped.len(),
                dropped.join(" | ")
            );
        }
    }

    /// Posts plain messages in order, until `budget`; the rest are only logged.
    pub(super) async fn post_all(&self, messages: Vec<String>, budget: Instant) {
        for (n, message) in messages.iter().enumerate() {
            if tokio::time::timeout_at(budget, self.post(message))
                .await
                .is_err()
            {
                tracing::warn!(
                    "Slack took too long; {} message(s) not posted",
                    messages.len() - n
                );
                break;
            }
        }
    }

    /// Delivers one message, `voice` to the thread of its run (`thread`, changed when the
    /// thread is lost or started), until `budget`.
    async fn deliver(
        &self,
        slack: &Slack,
        text: &str,
        voice: &Voice,
        broadcast: bool,
        thread: &mut Option<Thread>,
        budget: Instant,
    ) -> Fate {
        let threads = slack.threads();
        let mut call = opening(text, voice, threads && thread.is_some(), broadcast);
        loop {
            let made = tokio::time::timeout_at(budget, make(slack, call, thread.as_ref())).await;
            let answer = match made {
                Err(_) => return Fate::Kept,
                Ok(Ok(ts)) => {
                    if let (Call::Channel { thread: true, .. }, Some(ts), true) =
                        (call, ts, threads)
                    {
                        *thread = Some(ts);
                    }
                    Answer::Took
                }
                Ok(Err(e)) => {
                    tracing::warn!("Slack refused a message ({}): {e}", what(call));
                    Answer::of(&e)
                }
            };
            match next(text, voice, call, answer) {
                Next::Done => return Fate::Done,
                Next::Keep => return Fate::Kept,
                Next::Drop => {
                    tracing::error!(
                        "Slack refuses the message {:?} as it is; it is not asked again",
                        text.lines().next().unwrap_or_default()
                    );
                    return Fate::Done;
                }
                Next::Call { call: c, forget } => {
                    if forget && thread.take().is_some() {
                        tracing::warn!(
                            "a run's Slack thread is gone; its next message starts another"
                        );
                    }
                    call = c;
                }
            }
        }
    }

    /// Posts what is owed to Slack and GitHub: first the messages, in order, each done once
    /// Slack took it, the first it cannot take holding the rest; then verdicts and commit
    /// statuses. What is not done stays owed for the next pass; the state is saved when
    /// anything changed.
    pub(super) async fn post_duties(
        &self,
        state: &mut State,
        budget: Instant,
    ) -> anyhow::Result<()> {
        let mut changed = false;
        // Whether Slack took every message so far: once it did not, later ones wait, so
        // that they arrive in order.
        let mut flowing = true;
        for entry in &mut state.watches {
            let WatchState { runs, duties, .. } = entry;
            let mut kept = Vec::with_capacity(duties.len());
            for duty in std::mem::take(duties) {
                let (text, commit, voice) = match duty {
                    Duty::Say {
                        text,
                        commit,
                        voice,
                    } => (text, commit, voice),
                    other => {
                        kept.push(other);
                        continue;
                    }
                };
                let Some(slack) = &self.slack else {
                    // No Slack to tell any more: nothing is owed.
                    changed = true;
                    continue;
                };
                let mut fate = Fate::Kept;
                if flowing {
                    let mut spare = None;
                    let thread = match run_of(runs, commit.as_deref()) {
                        Some(run) => &mut run.thread,
                        None => &mut spare,
                    };
                    let before = thread.clone();
                    fate = self
                        .deliver(slack, &text, &voice, false, thread, budget)
                        .await;
                    changed |= *thread != before;
                }
                match fate {
                    Fate::Done => changed = true,
                    Fate::Kept => {
                        flowing = false;
                        kept.push(Duty::Say {
                            text,
                            commit,
                            voice,
                        });
                    }
                }
            }
            *duties = kept;
        }
        for entry in &mut state.watches {
            let mut kept = Vec::with_capacity(entry.duties.len());
            for duty in std::mem::take(&mut entry.duties) {
                let posted = match &duty {
                    Duty::Post { text, commit } if flowing => {
                        // A verdict replies in its run's thread, and goes to the channel too.
                        let post =
                            self.post_verdict(text, commit.as_deref(), &mut entry.runs, budget);
                        let (posted, thread) = post.await;
                        changed |= thread;
                        posted
                    }
                    Duty::Status { commit, status } => {
                        let set = self.set_status(&entry.repo, commit, status);
                        let done = tokio::time::timeout_at(budget, set).await;
                        if done.is_err() {
                            tracing::warn!(
                                "no time left for the commit status of {}",
                                short(commit)
                            );
                        }
                        done.unwrap_or(false)
                    }
                    Duty::Post { .. }
                    | Duty::Stop { .. }
                    | Duty::Say { .. }
                    | Duty::Late { .. } => false,
                };
                if posted {
                    changed = true;
                } else {
                    kept.push(duty);
                }
            }
            entry.duties = kept;
        }
        if !flowing {
            tracing::warn!("Slack did not take every message; the rest are owed to the next pass");
        }
        changed |= self.review(state, budget).await;
        if changed {
            self.store.save(state).await?;
        }
        Ok(())
    }

    /// Posts a verdict, replying in the thread of the run of `commit` and to the channel
    /// when it has one. Returns whether Slack took it (or there is no Slack), and whether
    /// the run's thread changed (it was found gone).
    async fn post_verdict(
        &self,
        text: &str,
        commit: Option<&str>,
        runs: &mut [Run],
        budget: Instant,
    ) -> (bool, bool) {
        let Some(slack) = &self.slack else {
            return (true, false);
        };
        let mut spare = None;
        let thread = match run_of(runs, commit) {
            Some(run) => &mut run.thread,
            None => &mut spare,
        };
        let before = thread.clone();
        let fate = self
            .deliver(slack, text, &Voice::Reply, true, thread, budget)
            .await;
        (fate == Fate::Done, *thread != before)
    }

    /// Sets a commit status on the repository `repo` names; returns whether GitHub took
    /// it (or no watch names the repository any more).
    async fn set_status(&self, repo: &str, commit: &str, status: &CommitStatus) -> bool {
        let Some(watch) = self
            .settings
            .watches
            .iter()
            .find(|w| w.repo.to_string() == repo)
        else {
            return true;
        };
        match self.github.set_status(&watch.repo, commit, status).await {
            Ok(()) => true,
            // Owed no longer: asking again would be refused the same way.
            Err(e) if e.is_permanent() => {
                tracing::error!(
                    "cannot set the commit status of {}, and will not try again: {e}",
                    short(commit)
                );
                true
            }
            Err(e) => {
                tracing::warn!("cannot set the commit status of {}: {e}", short(commit));
                false
            }
        }
    }

    /// Brings every run that owes its pull requests something up to date (SPEC §13), with
    /// `pull_request_comment` on: an open run, or a closed one whose last word GitHub has
    /// not taken yet. Each call is bounded by `budget`; what is left is owed to the next
    /// pass. Returns whether a run's record changed.
    async fn review(&self, state: &mut State, budget: Instant) -> bool {
        if !self.settings.github.pull_request_comment {
            return false;
        }
        let mut changed = false;
        for entry in &mut state.watches {
            let watch = self
                .settings
                .watches
                .iter()
                .find(|w| w.repo.to_string() == entry.repo && w.branch == entry.branch);
            let Some(watch) = watch else {
                continue;
            };
            for i in 0..entry.runs.len() {
                let run = &entry.runs[i];
                if !run.is_open() && run.review.as_ref().is_none_or(|r| r.done) {
                    continue;
                }
                let before = run.review.clone();
                let on_time = self.review_run(watch, &mut entry.runs, i, budget).await;
                changed |= entry.runs[i].review != before;
                if !on_time {
                    tracing::warn!(
                        "{watch}: no time left for the pull requests of {} and later runs; \
                         owed to the next pass",
                        short(&entry.runs[i].commit)
                    );
                    return changed;
                }
            }
        }
        changed
    }

    /// Brings `runs[index]`'s pull requests up to date: asks which open ones have its
    /// commit as head (see [`ask`]), makes or edits its comment on each when the body
    /// changed (one call per pull request, and one more to make again a comment found
    /// deleted) unless the pull request moved on to a newer run's commit, and, signed in as
    /// an App, its check run. The record is kept up to date call by call. Returns false
    /// when `budget` ran out.
    async fn review_run(
        &self,
        watch: &Watch,
        runs: &mut [Run],
        index: usize,
        budget: Instant,
    ) -> bool {
        let repo = &watch.repo;
        let commit = runs[index].commit.clone();
        let open = runs[index].is_open();
        let body = comment::body(watch, runs, index);
        let said = digest(&body);
        let review = runs[index].review.get_or_insert_default();
        if ask(review, open, said) {
            let asked = tokio::time::timeout_at(budget, self.github.pulls(repo, &commit)).await;
            let found = match asked {
                Err(_) => return false,
                Ok(Ok(numbers)) => Some((numbers, Some(said))),
                Ok(Err(e)) if e.is_permanent() => {
                    tracing::error!(
                        "{watch}: cannot list the pull requests of {}, and will not ask again \
                         while it runs: {e}",
                        short(&commit)
                    );
                    // No digest: a new body would not make GitHub answer otherwise.
                    Some((Vec::new(), None))
                }
                Ok(Err(e)) => {
                    tracing::warn!(
                        "{watch}: cannot list the pull requests of {}: {e}",
                        short(&commit)
                    );
                    None
                }
            };
            if let Some((numbers, asked)) = found {
                for n in numbers {
                    review.comments.entry(n).or_default();
                }
                review.looked = true;
                review.looked_closed |= !open;
                review.asked = asked;
            }
        }
        adopt_comments(runs, index);

        let moved = moved_on(runs, index);
        let review = runs[index].review.get_or_insert_default();
        for (&number, c) in review.comments.iter_mut() {
            let stale = moved.as_ref().is_none_or(|m| m.contains(&number));
            if c.said == Some(said) || stale {
                continue;
            }
            let put = self.put_comment(watch, number, c.id, &body);
            match tokio::time::timeout_at(budget, put).await {
                Err(_) => return false,
                Ok(Ok(id)) => {
                    c.id = Some(id);
                    c.said = Some(said);
                }
                Ok(Err(e)) if e.is_permanent() => {
                    tracing::error!(
                        "{watch}: cannot comment on pull request #{number} for {}, and will not \
                         send this body again: {e}",
                        short(&commit)
                    );
                    c.said = Some(said);
                }
                Ok(Err(e)) => tracing::warn!(
                    "{watch}: cannot comment on pull request #{number} for {}: {e}",
                    short(&commit)
                ),
            }
        }

        let app = self.github.is_app();
        let check = comment::check(watch, runs, index, &self.status_context(watch));
        let checked = digest(&serde_json::to_string(&check).unwrap_or_default());
        let review = runs[index].review.get_or_insert_default();
        if app && review.checked != Some(checked) {
            let put = self.put_check(repo, review.check_run, &check);
            match tokio::time::timeout_at(budget, put).await {
                Err(_) => return false,
                Ok(Ok(id)) => {
                    review.check_run = Some(id);
                    review.checked = Some(checked);
                }
                Ok(Err(e)) if e.is_permanent() => {
                    tracing::error!(
                        "{watch}: cannot set the check run of {}, and will not send this one \
                         again: {e}",
                        short(&commit)
                    );
                    review.checked = Some(checked);
                }
                Ok(Err(e)) => tracing::warn!(
                    "{watch}: cannot set the check run of {}: {e}",
                    short(&commit)
                ),
            }
        }
        // Over once the run is, its pull requests were asked for again, every one has the
        // last body, and no machine's cost is still to come.
        let run = &runs[index];
        let review = run.review.as_ref().expect("made above");
        let done = review_done(run, review, said, app.then_some(checked), moved.as_ref());
        runs[index].review.get_or_insert_default().done = done;
        true
    }

    /// Edits the comment `id` on pull request `number` to `body`, or makes it when there
    /// is none yet or it was deleted; returns its id.
    async fn put_comment(
        &self,
        watch: &Watch,
        number: u64,
        id: Option<u64>,
        body: &str,
    ) -> Result<u64, github::Error> {
        let id = match id {
            Some(id) => Some(id),
            // Made before its record was saved (a crash, a cut pass), or by a run whose
            // record is gone: found by its marker, so the pull request keeps one comment.
            None => {
                let marker = comment::marker(watch);
                self.github
                    .find_comment(&watch.repo, number, &marker)
                    .await?
            }
        };
        if let Some(id) = id {
            match self.github.edit_comment(&watch.repo, id, body).await? {
                Edited::Done => return Ok(id),
                Edited::Gone => tracing::info!(
                    "{watch}: the comment on pull request #{number} was deleted; making it again"
                ),
            }
        }
        self.github.comment(&watch.repo, number, body).await
    }

    /// Updates the check run `id`, or makes it when there is none yet or it is gone;
    /// returns its id.
    async fn put_check(
        &self,
        repo: &crate::config::Repo,
        id: Option<u64>,
        check: &github::pulls::CheckRun,
    ) -> Result<u64, github::Error> {
        let id = match id {
            Some(id) => Some(id),
            // Made before its record was saved, or its answer lost: a make is sent once.
            None => {
                self.github
                    .find_check(repo, &check.head_sha, &check.name)
                    .await?
            }
        };
        if let Some(id) = id
            && self.github.update_check(repo, id, check).await? == Edited::Done
        {
            return Ok(id);
        }
        self.github.create_check(repo, check).await
    }

    /// Posts to Slack, if configured; returns whether the message was delivered (or there
    /// is no Slack to deliver it to).
    pub(super) async fn post(&self, message: &str) -> bool {
        let Some(slack) = &self.slack else {
            return true;
        };
        match slack.post(message).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!("cannot post to Slack: {e}");
                false
            }
        }
    }
}

/// Makes one call; a message posted to the channel comes back as its thread.
async fn make(
    slack: &Slack,
    call: Call<'_>,
    thread: Option<&Thread>,
) -> Result<Option<Thread>, slack::Error> {
    match (call, thread) {
        (Call::Update { text }, Some(thread)) => slack.update(thread, text).await.map(|()| None),
        (Call::Reply { text, broadcast }, Some(thread)) => {
            slack.send(text, Place::Reply { thread, broadcast }).await
        }
        (Call::Channel { text, .. } | Call::Update { text } | Call::Reply { text, .. }, _) => {
            slack.send(text, Place::Channel).await
        }
    }
}

/// The call, for the log.
fn what(call: Call<'_>) -> &'static str {
    match call {
        Call::Channel { thread: true, .. } => "a run's first message",
        Call::Channel { .. } => "a message",
        Call::Update { .. } => "an update of a run's thread",
        Call::Reply { .. } => "a reply in a run's thread",
    }
}

/// A pull request keeps one comment of the watch's, whatever the pushes to it: a run that
/// has no comment yet on a pull request takes the one an earlier run made there, which
/// from then on is edited for this run alone.
fn adopt_comments(runs: &mut [Run], index: usize) {
    let (earlier, rest) = runs.split_at_mut(index);
    let Some(review) = rest[0].review.as_mut() else {
        return;
    };
    for (number, comment) in review.comments.iter_mut().filter(|(_, c)| c.id.is_none()) {
        let held = earlier.iter_mut().rev().find_map(|r| {
            let theirs = r.review.as_mut()?;
            let id = theirs.comments.get(number)?.id?;
            theirs.comments.remove(number);
            Some(id)
        });
        if let Some(id) = held {
            comment.id = Some(id);
            comment.said = None;
        }
    }
}

/// Whether to ask GitHub for the open pull requests whose head is the run's commit: once
/// while it runs; again while it runs without one, whenever its body (of digest `said`)
/// changed since the last answer, so that a pull request opened after the push sees the
/// run before its verdict; and once more when it is over.
fn ask(review: &Review, open: bool, said: u64) -> bool {
    let again = review.asked.is_some_and(|a| a != said) && review.comments.is_empty();
    !review.looked || (open && again) || (!open && !review.looked_closed)
}

/// The pull requests of `runs[index]` that moved on: a newer run of the watch, of another
/// commit, holds them, as their head is its commit now. This run's body would be stale
/// there, so it edits them no more. `None` while a newer run has not asked for its pull
/// requests yet: which moved on is not known, and nothing is edited until it is.
fn moved_on(runs: &[Run], index: usize) -> Option<BTreeSet<u64>> {
    let run = &runs[index];
    let mut held = BTreeSet::new();
    for newer in runs[index + 1..].iter().filter(|r| r.commit != run.commit) {
        match &newer.review {
            // Opened before comments were on: it asks for none.
            None => {}
            Some(r) if !r.looked => return None,
            Some(r) => held.extend(r.comments.keys().copied()),
        }
    }
    Some(held)
}

/// Whether `run` owes its pull requests nothing more: it is over, they were asked for
/// since, each comment took the body of digest `said` but those that `moved` on (and the
/// check run `checked`, when there is one to set), and every machine's time is counted.
fn review_done(
    run: &Run,
    review: &Review,
    said: u64,
    checked: Option<u64>,
    moved: Option<&BTreeSet<u64>>,
) -> bool {
    let Some(moved) = moved else {
        return false;
    };
    !run.is_open()
        && review.looked_closed
        && review
            .comments
            .iter()
            .all(|(n, c)| c.said == Some(said) || moved.contains(n))
        && checked.is_none_or(|c| review.checked == Some(c))
        && !run.counting()
}

/// Records a failure; returns whether it starts a failing streak, so that a watch that
/// keeps failing is reported once, not every pass.
pub(super) fn fail(entry: &mut WatchState, error: &str) -> bool {
    entry.last_error.replace(error.to_owned()).is_none()
}

/// Clears a failure; returns whether there was one.
pub(super) fn recover(entry: &mut WatchState) -> bool {
    entry.last_error.take().is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn say(text: &str) -> Duty {
        Duty::Say {
            text: text.into(),
            commit: Some("c1".into()),
            voice: Voice::Reply,
        }
    }

    #[test]
    fn a_run_takes_the_comment_an_earlier_run_made_on_the_same_pull_request() {
        use crate::state::Comment;
        let now = chrono::Utc::now();
        let with = |commit: &str, comments: &[(u64, Option<u64>)]| {
            let mut run = Run::open(commit, "", now);
            let review = run.review.get_or_insert_default();
            for &(pr, id) in comments {
                let said = id.map(|_| 1);
                review.comments.insert(pr, Comment { id, said });
            }
            run
        };
        let mut runs = vec![
            with("c1", &[(7, Some(70))]),
            with("c2", &[(7, Some(71)), (8, Some(80))]),
            with("c3", &[(7, None), (9, None)]),
        ];
        adopt_comments(&mut runs, 2);
        let comments = |i: usize| runs[i].review.as_ref().unwrap().comments.clone();
        // The newest earlier holder gives it up; the body is sent again, this run's.
        assert_eq!(
            comments(2)[&7],
            Comment {
                id: Some(71),
                said: None
            }
        );
        assert_eq!(
            comments(2)[&9],
            Comment::default(),
            "no earlier comment there"
        );
        assert!(!comments(1).contains_key(&7) && comments(1).contains_key(&8));
        assert_eq!(
            comments(0)[&7].id,
            Some(70),
            "an older one is left as it is"
        );
    }

    #[test]
    fn a_run_without_a_pull_request_asks_again_when_its_body_changed_and_not_otherwise() {
        let mut review = Review::default();
        assert!(ask(&review, true, 1), "first");
        review.looked = true;
        review.asked = Some(1);
        assert!(!ask(&review, true, 1), "the same body");
        assert!(ask(&review, true, 2), "a new body, no pull request yet");
        review.comments.insert(7, Default::default());
        assert!(
            !ask(&review, true, 2),
            "one found: asked once more when over"
        );
        assert!(ask(&review, false, 2), "over");
        review.looked_closed = true;
        assert!(!ask(&review, false, 3));
        // Refused for good: not asked again while it runs.
        let refused = Review {
            looked: true,
            ..Review::default()
        };
        assert!(!ask(&refused, true, 2));
    }

    #[test]
    fn an_older_run_edits_no_comment_a_newer_run_of_another_commit_holds() {
        use crate::state::Comment;
        let now = chrono::Utc::now();
        let with = |commit: &str, looked: bool, prs: &[u64]| {
            let mut run = Run::open(commit, "", now);
            let review = run.review.get_or_insert_default();
            review.looked = looked;
            for &pr in prs {
                review.comments.insert(pr, Comment::default());
            }
            run
        };
        let runs = vec![with("c1", true, &[7, 8]), with("c2", true, &[7])];
        assert_eq!(moved_on(&runs, 0), Some(BTreeSet::from([7])));
        assert_eq!(moved_on(&runs, 1), Some(BTreeSet::new()), "the newest");
        let unasked = vec![with("c1", true, &[7]), with("c2", false, &[])];
        assert_eq!(moved_on(&unasked, 0), None, "not known yet");
        let same = vec![with("c1", true, &[7]), with("c1", true, &[7])];
        assert_eq!(
            moved_on(&same, 0),
            Some(BTreeSet::new()),
            "its own commit again"
        );
        let mut before = vec![with("c1", true, &[7]), Run::open("c2", "", now)];
        before[1].review = None;
        assert_eq!(moved_on(&before, 0), Some(BTreeSet::new()), "asks for none");
        // Over, and the one it does not hold any more does not keep it owed.
        let mut runs = runs;
        runs[0].completed_at = Some(now);
        let review = runs[0].review.as_mut().unwrap();
        review.looked_closed = true;
        review.comments.get_mut(&8).unwrap().said = Some(5);
        let moved = moved_on(&runs, 0);
        let review = runs[0].review.as_ref().unwrap();
        assert!(review_done(&runs[0], review, 5, None, moved.as_ref()));
        assert!(!review_done(&runs[0], review, 5, None, None));
    }

    fn progress(news: Option<&str>) -> Voice {
        Voice::Progress {
            parent: "parent".into(),
            news: news.map(str::to_owned),
        }
    }

    #[test]
    fn the_oldest_messages_go_first_and_no_other_duty_does() {
        let stop = Duty::Stop {
            instance: "i-1".into(),
            reason: "max_runtime".into(),
            runtime: 1,
            launched: None,
        };
        let mut duties = vec![say("one\nmore"), stop.clone(), say("two"), say("three")];
        assert_eq!(bound(&mut duties, 2), ["one"]);
        assert_eq!(duties, [stop.clone(), say("two"), say("three")]);
        assert!(bound(&mut duties, 2).is_empty());
        assert_eq!(bound(&mut duties, 0), ["two", "three"]);
        assert_eq!(duties, [stop]);
    }

    #[test]
    fn a_run_s_progress_starts_its_thread_then_updates_it() {
        let voice = progress(Some("news"));
        assert_eq!(
            opening("whole", &voice, false, false),
            Call::Channel {
                text: "whole",
                thread: true
            }
        );
        let update = opening("whole", &voice, true, false);
        assert_eq!(update, Call::Update { text: "parent" });
        let reply = Call::Reply {
            text: "news",
            broadcast: false,
        };
        assert_eq!(
            next("whole", &voice, update, Answer::Took),
            Next::Call {
                call: reply,
                forget: false
            }
        );
        assert_eq!(next("whole", &voice, reply, Answer::Took), Next::Done);
        let quiet = progress(None);
        let update = opening("whole", &quiet, true, false);
        assert_eq!(next("whole", &quiet, update, Answer::Took), Next::Done);
    }

    #[test]
    fn an_update_slack_refuses_becomes_a_reply_with_the_whole_message() {
        for answer in [Answer::Failed, Answer::ThreadGone] {
            let voice = progress(Some("news"));
            let update = opening("whole", &voice, true, false);
            assert_eq!(
                next("whole", &voice, update, answer),
                Next::Call {
                    call: Call::Reply {
                        text: "whole",
                        broadcast: false
                    },
                    forget: false
                },
                "{answer:?}"
            );
        }
    }

    #[test]
    fn a_lost_thread_is_started_again_by_progress_and_other_messages_go_to_the_channel() {
        let voice = progress(None);
        let reply = Call::Reply {
            text: "whole",
            broadcast: false,
        };
        assert_eq!(
            next("whole", &voice, reply, Answer::ThreadGone),
            Next::Call {
                call: Call::Channel {
                    text: "whole",
                    thread: true
                },
                forget: true
            }
        );
        let verdict = opening("verdict", &Voice::Reply, true, true);
        assert_eq!(
            verdict,
            Call::Reply {
                text: "verdict",
                broadcast: true
            }
        );
        assert_eq!(
            next("verdict", &Voice::Reply, verdict, Answer::ThreadGone),
            Next::Call {
                call: Call::Channel {
                    text: "verdict",
                    thread: false
                },
                forget: true
            }
        );
        // Started once: a new parent Slack cannot take waits for the next pass.
        let channel = Call::Channel {
            text: "whole",
            thread: true,
        };
        assert_eq!(
            next("whole", &voice, channel, Answer::ThreadGone),
            Next::Keep
        );
    }

    #[test]
    fn slack_down_keeps_the_message_and_a_refused_one_is_dropped() {
        let voice = Voice::Reply;
        let channel = opening("stop", &voice, false, false);
        assert_eq!(next("stop", &voice, channel, Answer::Failed), Next::Keep);
        let reply = opening("stop", &voice, true, false);
        assert_eq!(next("stop", &voice, reply, Answer::Failed), Next::Keep);
        assert_eq!(next("stop", &voice, reply, Answer::Refused), Next::Drop);
        let quiet = progress(None);
        let update = opening("whole", &quiet, true, false);
        assert_eq!(next("whole", &quiet, update, Answer::Refused), Next::Drop);
    }

    #[test]
    fn an_owed_message_round_trips_through_the_state() {
        let duty = Duty::Say {
            text: "whole".into(),
            commit: Some("c1".into()),
            voice: progress(Some("news")),
        };
        let json = serde_json::to_value(&duty).unwrap();
        assert_eq!(json["duty"], "say");
        assert_eq!(serde_json::from_value::<Duty>(json).unwrap(), duty);
        let plain: Duty = serde_json::from_str(r#"{"duty": "say", "text": "t"}"#).unwrap();
        assert_eq!(
            plain,
            Duty::Say {
                text: "t".into(),
                commit: None,
                voice: Voice::Reply
            }
        );
    }
}
