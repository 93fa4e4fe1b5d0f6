//! What a pass tells Slack, and when: failing streaks once, owed verdicts until taken, and
//! never more than a few seconds of waiting on Slack in all.

use std::time::Duration;

use tokio::time::Instant;

use super::Agent;
use crate::config::Watch;
use crate::github::CommitStatus;
use crate::report::short;
use crate::slack::{Place, Thread};
use crate::state::{Duty, Run, State, WatchState};

/// How long a pass waits on Slack, all its messages together.
pub(super) const SLACK_BUDGET: Duration = Duration::from_secs(5);

/// Something to tell Slack.
#[derive(Debug, Clone)]
pub(super) struct Message {
    /// The whole message, as a webhook (which cannot thread) posts it.
    pub text: String,
    /// The run it is about, for a bot's thread.
    pub about: Option<About>,
}

/// The run a message is about: its watch and commit, and what the message is to its
/// thread.
#[derive(Debug, Clone)]
pub(super) struct About {
    pub repo: String,
    pub branch: String,
    pub commit: String,
    pub role: Role,
}

#[derive(Debug, Clone)]
pub(super) enum Role {
    /// Where the run stands: the thread's parent, posted or updated in place; `news` a
    /// reply beside it.
    Progress {
        parent: String,
        news: Option<String>,
    },
    /// A reply in the run's thread.
    Reply,
}

impl Message {
    pub fn plain(text: String) -> Message {
        Message { text, about: None }
    }

    pub fn about(watch: &Watch, commit: &str, role: Role, text: String) -> Message {
        Message {
            text,
            about: Some(About {
                repo: watch.repo.to_string(),
                branch: watch.branch.clone(),
                commit: commit.to_owned(),
                role,
            }),
        }
    }
}

/// The run of `commit` on the watch `repo@branch` in `state`.
fn run_of<'a>(state: &'a mut State, repo: &str, branch: &str, commit: &str) -> Option<&'a mut Run> {
    state
        .watches
        .iter_mut()
        .find(|w| w.repo == repo && w.branch == branch)?
        .runs
        .iter_mut()
        .rev()
        .find(|r| r.commit == commit)
}

impl Agent {
    /// Posts plain messages in order, until `budget`; the rest are only logged.
    pub(super) async fn post_all(&self, messages: Vec<String>, budget: Instant) {
        let messages = messages.into_iter().map(Message::plain).collect();
        self.tell(None, messages, budget).await;
    }

    /// Posts the messages in order, until `budget`; the rest are only logged. With a bot
    /// and `state`, a run's messages go to its thread: the first starts it (its `ts` is
    /// kept in the run), later ones update it and reply. Returns whether a thread was
    /// started, so that the state is saved.
    pub(super) async fn tell(
        &self,
        mut state: Option<&mut State>,
        messages: Vec<Message>,
        budget: Instant,
    ) -> bool {
        let mut started = false;
        for (n, message) in messages.iter().enumerate() {
            let told = self.tell_one(state.as_deref_mut(), message);
            match tokio::time::timeout_at(budget, told).await {
                Ok(thread) => started |= thread,
                Err(_) => {
                    tracing::warn!(
                        "Slack took too long; {} message(s) not posted",
                        messages.len() - n
                    );
                    break;
                }
            }
        }
        started
    }

    /// Posts one message; returns whether it started a run's thread.
    async fn tell_one(&self, state: Option<&mut State>, message: &Message) -> bool {
        let Some(slack) = &self.slack else {
            return false;
        };
        let run = match (&message.about, state) {
            (Some(a), Some(state)) if slack.threads() => {
                run_of(state, &a.repo, &a.branch, &a.commit).map(|r| (a, r))
            }
            _ => None,
        };
        let Some((about, run)) = run else {
            self.post(&message.text).await;
            return false;
        };
        let result = match (&about.role, &run.thread) {
            (Role::Progress { parent, .. }, None) => match slack.send(parent, Place::Channel).await
            {
                Ok(thread) => {
                    run.thread = thread;
                    return run.thread.is_some();
                }
                Err(e) => Err(e),
            },
            (Role::Progress { parent, news }, Some(thread)) => {
                let updated = slack.update(thread, parent).await;
                match (updated, news) {
                    (Ok(()), Some(news)) => slack
                        .send(
                            news,
                            Place::Reply {
                                thread,
                                broadcast: false,
                            },
                        )
                        .await
                        .map(|_| ()),
                    (updated, _) => updated,
                }
            }
            (Role::Reply, Some(thread)) => slack
                .send(
                    &message.text,
                    Place::Reply {
                        thread,
                        broadcast: false,
                    },
                )
                .await
                .map(|_| ()),
            (Role::Reply, None) => slack.post(&message.text).await,
        };
        if let Err(e) = result {
            tracing::warn!("cannot post to Slack: {e}");
        }
        false
    }

    /// Posts the messages owed (verdicts); each is done once Slack took it, and kept for
    /// the next pass otherwise.
    pub(super) async fn post_duties(
        &self,
        state: &mut State,
        budget: Instant,
        threads_started: bool,
    ) -> anyhow::Result<()> {
        let mut changed = threads_started;
        for entry in &mut state.watches {
            let mut kept = Vec::with_capacity(entry.duties.len());
            for duty in std::mem::take(&mut entry.duties) {
                let posted = match &duty {
                    Duty::Post { text, commit } => {
                        // A verdict replies in its run's thread, and goes to the channel too.
                        let thread = commit.as_ref().and_then(|c| {
                            entry
                                .runs
                                .iter()
                                .rev()
                                .find(|r| r.commit == *c)?
                                .thread
                                .clone()
                        });
                        let post = self.post_verdict(text, thread.as_ref());
                        tokio::time::timeout_at(budget, post).await.unwrap_or(false)
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
                    Duty::Stop { .. } | Duty::Late { .. } => false,
                };
                if posted {
                    changed = true;
                } else {
                    kept.push(duty);
                }
            }
            entry.duties = kept;
        }
        if changed {
            self.store.save(state).await?;
        }
        Ok(())
    }

    /// Posts a verdict, replying in `thread` and to the channel when there is one.
    async fn post_verdict(&self, text: &str, thread: Option<&Thread>) -> bool {
        let (Some(slack), Some(thread)) = (&self.slack, thread) else {
            return self.post(text).await;
        };
        let place = Place::Reply {
            thread,
            broadcast: true,
        };
        match slack.send(text, place).await {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!("cannot post to Slack: {e}");
                false
            }
        }
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

/// Records a failure; returns whether it starts a failing streak, so that a watch that
/// keeps failing is reported once, not every pass.
pub(super) fn fail(entry: &mut WatchState, error: &str) -> bool {
    entry.last_error.replace(error.to_owned()).is_none()
}

/// Clears a failure; returns whether there was one.
pub(super) fn recover(entry: &mut WatchState) -> bool {
    entry.last_error.take().is_some()
}
